"""Sample histories and the sample methods of service variables, and the /proc readings behind the
resource metrics: no server, no clock (times are passed in)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from openbatch.batch.domain.autoscale import Environment, History, compile_formula, evaluate
from openbatch.batch.domain.autoscale.machine import (
    cpu_times,
    disk_counters,
    memory_used_mb,
    network_counters,
)
from openbatch.batch.domain.autoscale.samples import KEEP, METRICS, PERIOD

T0 = datetime(2024, 3, 4, 10, 0, tzinfo=UTC).timestamp()


def values(pending: float) -> dict[str, float]:
    return {m: 0.0 for m in METRICS} | {"$PendingTasks": pending}


def history_of(pendings: list[float]) -> History:
    """A sample every 30 s ending at T0 (the last value at T0)."""
    history = History()
    start = T0 - PERIOD * (len(pendings) - 1)
    for i, pending in enumerate(pendings):
        history.add(start + i * PERIOD, values(pending))
    return history


def evaluate_at(history: History, text: str, now: float = T0) -> tuple[str, str | None]:
    outcome = evaluate(compile_formula(text), Environment(datetime.fromtimestamp(now, UTC), history, 0, 0))
    return outcome.results.split(";", 3)[-1], outcome.error.detail if outcome.error else None


def test_catch_up_takes_a_sample_per_period() -> None:
    history = History()
    history.catch_up(T0, values(1))
    history.catch_up(T0 + 29, values(2))  # not due yet
    assert list(history.times) == [T0]
    history.catch_up(T0 + 95, values(3))  # ticks at +30, +60, +90
    assert list(history.times) == [T0, T0 + 30, T0 + 60, T0 + 90]
    assert history.series("$PendingTasks").values == [1, 3, 3, 3]
    assert not history.due(T0 + 119) and history.due(T0 + 120)


def test_history_is_bounded() -> None:
    history = History(keep=5)
    history.catch_up(T0, values(0))
    history.catch_up(T0 + 3600, values(1))  # 120 ticks due: only the last 5 are kept
    assert list(history.times) == [T0 + 3600 - 120, T0 + 3600 - 90, T0 + 3600 - 60, T0 + 3600 - 30, T0 + 3600]
    assert KEEP == 2880  # 24 hours of 30 s samples


def test_get_sample_by_count() -> None:
    history = history_of([1, 2, 3, 4])
    assert evaluate_at(history, "x = $PendingTasks.GetSample(1);") == ("$x=[4]", None)
    assert evaluate_at(history, "x = $PendingTasks.GetSample(3);") == ("$x=[2,3,4]", None)
    assert evaluate_at(history, "x = $PendingTasks.GetSample(10);") == ("$x=[1,2,3,4]", None)
    assert evaluate_at(history, "x = $PendingTasks.GetSample(0);") == ("$x=[]", None)
    assert evaluate_at(history, "x = $PendingTasks;") == ("$x=4", None)  # the latest sample


def test_get_sample_by_time_frame() -> None:
    history = history_of([1, 2, 3, 4, 5, 6, 7])  # T0-180 ... T0
    assert evaluate_at(history, "x = $PendingTasks.GetSample(TimeInterval_Second * 90);") == ("$x=[5,6,7]", None)
    # look-back start and end, as the documentation's $RunningTasks.GetSample(1 * TimeInterval_Minute, 6 * ...)
    assert evaluate_at(history, "x = $PendingTasks.GetSample(TimeInterval_Minute, TimeInterval_Minute * 2);") == (
        "$x=[4,5]", None)
    start = datetime.fromtimestamp(T0 - 100, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert evaluate_at(history, f'x = $PendingTasks.GetSample(time("{start}"));') == ("$x=[4,5,6,7]", None)
    assert evaluate_at(history, f'x = $PendingTasks.GetSample(time("{start}"), TimeInterval_Minute);') == (
        "$x=[4,5]", None)


def test_sample_percent_and_insufficient_data() -> None:
    history = history_of([1, 2, 3])  # 3 samples over the last minute
    assert evaluate_at(history, "x = $PendingTasks.GetSamplePercent(TimeInterval_Minute * 3);") == (
        "$x=50", None)  # 3 of the 6 samples three minutes hold
    assert evaluate_at(history, "x = $PendingTasks.GetSamplePercent(0 * TimeInterval_Minute, "
                                "TimeInterval_Minute);") == ("$x=100", None)
    assert evaluate_at(history, "x = avg($PendingTasks.GetSample(TimeInterval_Minute * 3, 50));") == ("$x=2", None)
    assert evaluate_at(history, "y = 1;\n  x = avg($PendingTasks.GetSample(TimeInterval_Minute * 3, 70));") == (
        "$y=1", "Line 2, Col 34: Insufficient data from data set: $PendingTasks wanted 70%, received 50%")
    empty = History()
    assert evaluate_at(empty, "x = $CPUPercent.GetSample(TimeInterval_Minute * 10, 10);")[1] == (
        "Line 1, Col 26: Insufficient data from data set: $CPUPercent wanted 10%, received 0%")


def test_insufficient_data_is_azures_error() -> None:
    text = "$RunningTasks.GetSample(10 * TimeInterval_Minute, 0 * TimeInterval_Second, 100);"
    outcome = evaluate(compile_formula(text), Environment(datetime.fromtimestamp(T0, UTC), history_of([1]), 0, 0))
    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.summary, outcome.error.detail) == (
        "InsufficientSampleData", "Autoscale evaluation failed due to insufficient sample data",
        "Line 1, Col 24: Insufficient data from data set: $RunningTasks wanted 100%, received 5%")


def test_the_documented_pending_tasks_formula() -> None:
    formula = """startingNumberOfVMs = 1;
maxNumberofVMs = 25;
pendingTaskSamplePercent = $PendingTasks.GetSamplePercent(180 * TimeInterval_Second);
pendingTaskSamples = pendingTaskSamplePercent < 70 ? startingNumberOfVMs : avg($PendingTasks.GetSample(180 * TimeInterval_Second));
$TargetDedicatedNodes=min(maxNumberofVMs, pendingTaskSamples);
$NodeDeallocationOption = taskcompletion;"""
    young = evaluate(compile_formula(formula), Environment(datetime.fromtimestamp(T0, UTC), history_of([9]), 0, 0))
    assert young.dedicated == 1  # too few samples yet: the starting number
    old = evaluate(compile_formula(formula), Environment(datetime.fromtimestamp(T0, UTC),
                                                         history_of([0, 10, 20, 30, 40, 50, 60]), 0, 0))
    assert old.dedicated == 25 and old.option == "taskcompletion"  # avg 35, at most 25
    assert old.results == ("$TargetDedicatedNodes=25;$TargetLowPriorityNodes=0;$NodeDeallocationOption=taskcompletion;"
                           "$maxNumberofVMs=25;$pendingTaskSamplePercent=100;$pendingTaskSamples=35;"
                           "$startingNumberOfVMs=1")


def test_period_count_and_begin_time() -> None:
    history = history_of([1, 2, 3])
    assert evaluate_at(history, "x = $ActiveTasks.GetSamplePeriod();") == ("$x=00:00:30", None)
    assert evaluate_at(history, "x = $ActiveTasks.Count();") == ("$x=3", None)
    assert evaluate_at(history, "x = $ActiveTasks.HistoryBeginTime();") == ("$x=2024-03-04T09:59:00.000Z", None)
    assert evaluate_at(History(), "x = $ActiveTasks.HistoryBeginTime();")[1] == (
        "Line 1, Col 34: Insufficient data from data set: $ActiveTasks wanted 100%, received 0%")


@pytest.mark.parametrize(("call", "detail"), [
    ("$CPUPercent.GetSample(-1)", "Line 1, Col 22: GetSample needs a count of samples of 0 or more, not -1."),
    ('$CPUPercent.GetSample("x")', "Line 1, Col 22: A time frame is given as a timeinterval or a timestamp."),
    ("$CPUPercent.GetSamplePercent(1)", "Line 1, Col 29: A time frame is given as a timeinterval or a timestamp."),
])
def test_sample_method_errors(call: str, detail: str) -> None:
    assert evaluate_at(history_of([1]), f"{call};")[1] == detail


# --- /proc ------------------------------------------------------------------------------------------


def test_proc_parsers() -> None:
    assert cpu_times("cpu  10 0 10 70 10 0 0 0 0 0\ncpu0 1 2 3 4\n") == (20.0, 100.0)
    assert memory_used_mb("MemTotal:       4096000 kB\nMemFree:  100 kB\nMemAvailable:   2048000 kB\n") == 2000.0
    diskstats = ("   8       0 sda 100 0 200 0 50 0 400 0 0 0 0\n"
                 "   8       1 sda1 100 0 200 0 50 0 400 0 0 0 0\n")
    assert disk_counters(diskstats, {"sda"}) == (200 * 512, 400 * 512, 100, 50)
    net = ("Inter-|   Receive |  Transmit\n face |bytes packets|bytes\n"
           "    lo: 999 1 0 0 0 0 0 0 999 1 0 0 0 0 0 0\n"
           "  eth0: 1000 5 0 0 0 0 0 0 2000 6 0 0 0 0 0 0\n")
    assert network_counters(net) == (1000.0, 2000.0)
