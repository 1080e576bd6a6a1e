"""Sample histories of a pool's metrics, and the sample methods formulas call on them.

"A sample is 30 seconds worth of metrics data": the service records one sample of every metric
every 30 s of service-clock time (:class:`History`, bounded to the last 24 hours), and formulas
read them through the service variables' methods:

- ``GetSample(count)``: the ``count`` most recent samples;
- ``GetSample(start [, percent])``, ``GetSample(start, end [, percent])``: the samples of a time
  frame given as look-back intervals (``TimeInterval_Minute * 10``) or timestamps; with a percent,
  ``InsufficientSampleData`` when fewer than that percentage of the frame's 30 s samples exist;
- ``GetSamplePercent(start [, end])``: that percentage (``$X.GetSamplePercent(...) < 70 ? ...``);
- ``GetSamplePeriod()`` (30 s), ``Count()`` (samples in the history), ``HistoryBeginTime()``.

Samples are kept in memory only: after a restart the history starts again, as Azure's may have
gaps ("samples may not be recorded for a particular interval").
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from openbatch.batch.domain.autoscale.errors import FormulaError, InsufficientSamples
from openbatch.batch.domain.autoscale.values import Span, Vec, format_double

PERIOD = 30.0
KEEP = 2880  # 24 hours of samples per pool

# The read-only service variables, each a metric with a sample history.
RESOURCE_METRICS = ("$CPUPercent", "$WallClockSeconds", "$MemoryBytes", "$DiskBytes", "$DiskReadBytes",
                    "$DiskWriteBytes", "$DiskReadOps", "$DiskWriteOps", "$NetworkInBytes", "$NetworkOutBytes")
POOL_METRICS = ("$SampleNodeCount", "$ActiveTasks", "$RunningTasks", "$PendingTasks", "$SucceededTasks",
                "$FailedTasks", "$TaskSlotsPerNode", "$CurrentDedicatedNodes", "$CurrentLowPriorityNodes",
                "$UsableNodeCount", "$PreemptedNodeCount")
METRICS = RESOURCE_METRICS + POOL_METRICS
METHODS = ("GetSample", "GetSamplePeriod", "Count", "HistoryBeginTime", "GetSamplePercent")


class History:
    """One sample of every metric per 30 s tick, oldest first, at most ``keep`` of them."""

    def __init__(self, keep: int = KEEP):
        self.keep = keep
        self.times: deque[float] = deque(maxlen=keep)
        self.rows: deque[tuple[float, ...]] = deque(maxlen=keep)

    def add(self, when: float, values: Mapping[str, float]) -> None:
        self.times.append(when)
        self.rows.append(tuple(float(values.get(name, 0.0)) for name in METRICS))

    def due(self, now: float) -> bool:
        return not self.times or self.times[-1] + PERIOD <= now

    def catch_up(self, now: float, values: Mapping[str, float]) -> None:
        """Record ``values`` for every tick up to ``now`` (the first sample is taken at ``now``)."""
        if not self.times:
            self.add(now, values)
            return
        ticks = int((now - self.times[-1]) // PERIOD)
        if ticks <= 0:
            return
        first = self.times[-1] + PERIOD * max(1, ticks - self.keep + 1)
        for i in range(min(ticks, self.keep)):
            self.add(first + i * PERIOD, values)

    def series(self, metric: str) -> Series:
        column = METRICS.index(metric)
        return Series(metric, list(self.times), [row[column] for row in self.rows])


class SampleSource(Protocol):
    """Where domain operations find a pool's history (the engine keeps them; see engine_autoscale)."""

    def history(self, account: str, pool: Mapping[str, Any], now: float) -> History:
        """The pool's history, sampled up to ``now`` (a first sample is taken if it has none)."""
        ...


class NoSamples:
    """A source with no engine behind it: histories stay empty."""

    def history(self, account: str, pool: Mapping[str, Any], now: float) -> History:
        return History()


# --- the methods ---------------------------------------------------------------------------------


def _stamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _absolute(now: float, when: Any) -> float:
    if isinstance(when, Span):
        return now - when.seconds
    if isinstance(when, datetime):
        return when.timestamp()
    raise FormulaError("A time frame is given as a timeinterval or a timestamp.")


class Series:
    """One metric's samples: what its methods see."""

    def __init__(self, metric: str, times: list[float], values: list[float]):
        self.metric = metric
        self.times = times
        self.values = values

    def latest(self) -> float:
        if not self.values:
            raise InsufficientSamples(self.metric, "100", "0")
        return self.values[-1]

    def frame(self, now: float, start: Any, end: Any = None) -> tuple[float, float]:
        """(oldest, newest) of a time frame: the samples taken after the first, up to the second."""
        first = _absolute(now, start)
        second = now if end is None else _absolute(now, end)
        return min(first, second), max(first, second)

    def in_frame(self, lo: float, hi: float) -> Vec:
        return tuple(v for t, v in zip(self.times, self.values, strict=True) if lo < t <= hi)

    def percent(self, lo: float, hi: float) -> float:
        count = len(self.in_frame(lo, hi))
        expected = (hi - lo) / PERIOD
        if expected <= 0:
            return 100.0 if count else 0.0
        return min(100.0, 100.0 * count / expected)

    def get_sample(self, now: float, args: list[Any]) -> Vec:
        if len(args) == 1 and isinstance(args[0], float):
            count = args[0]
            if not math.isfinite(count) or count < 0:
                raise FormulaError(f"GetSample needs a count of samples of 0 or more, not {format_double(count)}.")
            wanted = int(count)
            return tuple(self.values[len(self.values) - wanted:]) if wanted else ()
        wanted_percent: float | None = None
        if args and isinstance(args[-1], float):
            wanted_percent = args[-1]
            args = args[:-1]
        if not 1 <= len(args) <= 2:
            raise FormulaError("GetSample takes a count, or a time frame and an optional percentage.")
        lo, hi = self.frame(now, *args)
        if wanted_percent is not None:
            received = self.percent(lo, hi)
            if received < wanted_percent:
                raise InsufficientSamples(self.metric, format_double(wanted_percent), str(int(received)))
        return self.in_frame(lo, hi)

    def get_sample_percent(self, now: float, args: list[Any]) -> float:
        if not 1 <= len(args) <= 2:
            raise FormulaError("GetSamplePercent takes a time frame: a start and an optional end.")
        return self.percent(*self.frame(now, *args))

    def history_begin_time(self) -> datetime:
        if not self.times:
            raise InsufficientSamples(self.metric, "100", "0")
        return _stamp(self.times[0])

    def call(self, method: str, now: float, args: list[Any]) -> Any:
        if method == "GetSample":
            return self.get_sample(now, args)
        if method == "GetSamplePercent":
            return self.get_sample_percent(now, args)
        if args:
            raise FormulaError(f"{method} takes no arguments.")
        if method == "GetSamplePeriod":
            return Span(int(PERIOD * 10_000_000))
        if method == "Count":
            return float(len(self.values))
        return self.history_begin_time()
