"""When a job schedule makes its jobs (domain/recurrence.plan), as Azure's Schedule documents it:
pure, no server — a schedule document, a time, whether a job of it is still active."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from openbatch.batch.domain.recurrence import Plan, plan

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def doc(last: datetime | None = None, **schedule: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"creationTime": iso(T0), "schedule": {
        k: iso(v) if isinstance(v, datetime) else v for k, v in schedule.items()}}
    if last is not None:
        out["_lastDue"] = iso(last)
    return out


def test_without_a_schedule_one_job_at_once_then_nothing() -> None:
    assert plan(doc(), T0, False) == Plan(run=T0)
    assert plan(doc(), T0 + 5 * HOUR, False) == Plan(run=T0)  # no window: late is fine
    assert plan(doc(last=T0), T0 + MIN, True) == Plan(over=True)  # over once its job has ended


def test_do_not_run_until_delays_the_first_run() -> None:
    start = T0 + HOUR
    assert plan(doc(doNotRunUntil=start), T0, False) == Plan(next_run=start, wake=start)
    assert plan(doc(doNotRunUntil=start), start, False) == Plan(run=start)


def test_recurring_runs_every_interval_from_the_first() -> None:
    schedule = doc(recurrenceInterval="PT1H")
    assert plan(schedule, T0, False) == Plan(run=T0)
    after_first = doc(last=T0, recurrenceInterval="PT1H")
    assert plan(after_first, T0 + MIN, True) == Plan(next_run=T0 + HOUR, wake=T0 + HOUR)
    assert plan(after_first, T0 + HOUR, False) == Plan(run=T0 + HOUR)


def test_a_due_run_waits_for_the_active_job_until_the_next_one_is_due() -> None:
    schedule = doc(last=T0, recurrenceInterval="PT1H")
    # due, but job 1 still runs: wait, no later than when run 3 is due
    assert plan(schedule, T0 + HOUR + MIN, True) == Plan(next_run=T0 + HOUR, wake=T0 + 2 * HOUR)
    assert plan(schedule, T0 + HOUR + 30 * MIN, False) == Plan(run=T0 + HOUR)
    # the run that was due is not carried forward into the next interval
    assert plan(schedule, T0 + 2 * HOUR + MIN, False) == Plan(run=T0 + 2 * HOUR)


def test_a_start_window_loses_runs_that_cannot_start_in_time() -> None:
    schedule = doc(last=T0, recurrenceInterval="PT1H", startWindow="PT10M")
    assert plan(schedule, T0 + HOUR + 5 * MIN, True) == Plan(next_run=T0 + HOUR, wake=T0 + HOUR + 10 * MIN)
    assert plan(schedule, T0 + HOUR + 15 * MIN, False) == Plan(next_run=T0 + 2 * HOUR, wake=T0 + 2 * HOUR)
    one_off = doc(startWindow="PT10M")
    assert plan(one_off, T0 + 11 * MIN, False) == Plan(over=True)  # its only run was lost


def test_after_a_long_outage_only_the_latest_run_can_start() -> None:
    schedule = doc(last=T0, recurrenceInterval="PT1H", startWindow="PT30M")
    assert plan(schedule, T0 + 5 * HOUR + 20 * MIN, False) == Plan(run=T0 + 5 * HOUR)
    assert plan(schedule, T0 + 5 * HOUR + 40 * MIN, False) == Plan(next_run=T0 + 6 * HOUR, wake=T0 + 6 * HOUR)


def test_do_not_run_after_ends_the_schedule_when_it_has_passed() -> None:
    end = T0 + 90 * MIN
    schedule = doc(last=T0 + HOUR, recurrenceInterval="PT1H", doNotRunAfter=end)
    assert plan(schedule, T0 + HOUR + MIN, False) == Plan(wake=end)  # run 3 would be after it
    assert plan(schedule, end, False) == Plan(over=True)
    late = doc(recurrenceInterval="PT1H", doNotRunAfter=T0 - MIN)
    assert plan(late, T0, False) == Plan(over=True)  # nothing may be created any more


def test_a_changed_do_not_run_until_moves_the_runs() -> None:
    start = T0 + 10 * HOUR
    schedule = doc(last=T0, recurrenceInterval="PT1H", doNotRunUntil=start)
    assert plan(schedule, T0 + 2 * HOUR, False) == Plan(next_run=start, wake=start)
