"""When a job schedule creates its jobs: a pure function of the schedule document and the time.

Azure's rules (Schedule in the Batch REST reference):

- runs are due at ``doNotRunUntil`` (or, without one, when the schedule was created) and then
  every ``recurrenceInterval``; without an interval there is one run;
- a run must start within ``startWindow`` of its due time (default: no limit), and never after
  the next run is due ("not carried forward into the next recurrence interval"): a run that could
  not start in time is lost;
- a schedule has at most one active job: a run due while its previous job is still active waits
  for that job, as long as its window lasts;
- no job is created after ``doNotRunAfter``; the schedule completes once no run can follow and
  its last job has finished (with ``doNotRunAfter``, once that time has passed).

The same rules cover a server that was down: the latest run that fell due meanwhile starts at
once if its window is still open; the ones before it are lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from openbatch.batch.wire import models as m

Doc = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """What the schedule should do now."""

    run: datetime | None = None  # create a job now, for the run due at this time
    next_run: datetime | None = None  # executionInfo.nextRunTime (None: none is coming)
    wake: datetime | None = None  # look again at this time (None: only when something happens)
    over: bool = False  # no job will be created any more: complete once no job of it is active


@dataclass(frozen=True)
class _Rules:
    first: datetime
    every: timedelta | None
    window: timedelta | None
    after: datetime | None

    def slot_after(self, last: datetime | None) -> datetime | None:
        """The first due time after ``last`` (the run that was made last), None if there is none."""
        if last is None:
            return self.first
        if self.every is None:
            return None
        return self.first + max(0, (last - self.first) // self.every + 1) * self.every

    def latest(self, due: datetime, now: datetime) -> datetime:
        """The last due time at or before ``now``, from ``due`` on."""
        if self.every is None:
            return due
        return max(due, self.first + ((now - self.first) // self.every) * self.every)

    def closes(self, due: datetime) -> datetime | None:
        """When the run due at ``due`` is lost if it has not started (None: never)."""
        spans = [s for s in (self.window, self.every) if s is not None]
        return due + min(spans) if spans else None


def when(text: Any) -> datetime | None:
    return m.parse_datetime(text) if isinstance(text, str) else None


def _rules(doc: Doc) -> _Rules:
    schedule = doc.get("schedule") or {}
    first = when(schedule.get("doNotRunUntil")) or when(doc.get("creationTime"))
    assert first is not None, "a job schedule always has a creation time"
    every = m.parse_duration(str(schedule["recurrenceInterval"])) if schedule.get("recurrenceInterval") else None
    window = m.parse_duration(str(schedule["startWindow"])) if schedule.get("startWindow") else None
    return _Rules(first, every, window, when(schedule.get("doNotRunAfter")))


def plan(doc: Doc, now: datetime, job_active: bool) -> Plan:
    """What a job schedule should do at ``now`` (``job_active``: a job it made has not finished)."""
    rules = _rules(doc)
    due = rules.slot_after(when(doc.get("_lastDue")))
    while due is not None and (rules.after is None or (due <= rules.after and now <= rules.after)):
        if now < due:
            return Plan(next_run=due, wake=due)
        latest = rules.latest(due, now)
        close = rules.closes(latest)
        if close is None or now < close:
            return Plan(next_run=latest, wake=close) if job_active else Plan(run=latest)
        due = latest + rules.every if rules.every is not None else None
    if due is not None and rules.after is not None and now < rules.after:
        return Plan(wake=rules.after)  # the next run falls after doNotRunAfter: complete then
    return Plan(over=True)
