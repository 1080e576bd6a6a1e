"""The values of the autoscale formula language, and how Azure prints them in ``AutoScaleRun.results``.

Types (learn.microsoft.com, "Create a formula to automatically scale compute nodes", Types):
``double`` is a Python float, ``doubleVec`` a tuple of floats, ``string`` a str, ``timestamp`` an
aware UTC datetime, ``timeinterval`` a :class:`Span` of 100 ns ticks (``TimeInterval_100ns`` is the
unit, as .NET's TimeSpan). The node deallocation options (``requeue``,
``terminate``, ``taskcompletion``, ``retaineddata``) are keywords of their own type, only good for
``$NodeDeallocationOption``.

Azure evaluates formulas in .NET: doubles print as .NET's ``double.ToString()`` does (shortest
round-trip digits, ``E+15`` style exponents, ``NaN``, ``Infinity``), time intervals as
``TimeSpan.ToString()`` (``00:03:00``, ``1.00:00:00``), timestamps as ``2016-10-13T19:18:47.805Z``
(the documented sample output) and vectors as ``[1,2,3]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """A time interval in 100 ns ticks."""

    ticks: int

    @staticmethod
    def of(delta: timedelta) -> Span:
        return Span((delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10)

    @property
    def seconds(self) -> float:
        return self.ticks / 10_000_000

    def delta(self) -> timedelta:
        return timedelta(microseconds=self.ticks / 10)


@dataclass(frozen=True, slots=True)
class Option:
    """A node deallocation option keyword."""

    name: str


Vec = tuple[float, ...]
Value = float | Vec | str | datetime | Span | Option

DEALLOCATION_OPTIONS = ("requeue", "terminate", "taskcompletion", "retaineddata")

_SECOND = 10_000_000
TIME_INTERVALS: dict[str, Span] = {
    "TimeInterval_Zero": Span(0),
    "TimeInterval_100ns": Span(1),
    "TimeInterval_Microsecond": Span(10),
    "TimeInterval_Millisecond": Span(10_000),
    "TimeInterval_Second": Span(_SECOND),
    "TimeInterval_Minute": Span(60 * _SECOND),
    "TimeInterval_Hour": Span(3_600 * _SECOND),
    "TimeInterval_Day": Span(86_400 * _SECOND),
    "TimeInterval_Week": Span(7 * 86_400 * _SECOND),
    "TimeInterval_Year": Span(365 * 86_400 * _SECOND),
}

# The members of a timestamp (weekday: 1 for Monday ... 7 for Sunday, as the documentation says).
TIMESTAMP_MEMBERS = ("year", "month", "day", "weekday", "hour", "minute", "second")


def type_name(value: Value) -> str:
    if isinstance(value, float):
        return "double"
    if isinstance(value, tuple):
        return "doubleVec"
    if isinstance(value, str):
        return "string"
    if isinstance(value, datetime):
        return "timestamp"
    if isinstance(value, Span):
        return "timeinterval"
    return "nodeDeallocationOption"


def member(stamp: datetime, name: str) -> float:
    if name == "weekday":
        return float(stamp.isoweekday())
    return float(getattr(stamp, name))


# --- printing ------------------------------------------------------------------------------------


def format_double(x: float) -> str:
    """``x`` as .NET (Core 3.0+) prints a double: ``3``, ``0.5``, ``1E+15``, ``1E-05``, ``NaN``."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    sign, digits, exponent = Decimal(repr(x)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    power = len(text) + exponent - 1  # the decimal exponent of the first digit
    if power >= 15 or power <= -5:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        body = f"{mantissa}E{'+' if power >= 0 else '-'}{abs(power):02d}"
    elif exponent >= 0:
        body = text + "0" * exponent
    elif power >= 0:
        body = text[: power + 1] + "." + text[power + 1:]
    else:
        body = "0." + "0" * (-power - 1) + text
    return ("-" if sign else "") + body


def format_interval(span: Span) -> str:
    """An interval as .NET's ``TimeSpan.ToString()``: ``[-][d.]hh:mm:ss[.fffffff]``."""
    ticks = span.ticks
    sign = "-" if ticks < 0 else ""
    ticks = abs(ticks)
    days, rest = divmod(ticks, 864_000_000_000)
    hours, rest = divmod(rest, 36_000_000_000)
    minutes, rest = divmod(rest, 600_000_000)
    seconds, fraction = divmod(rest, 10_000_000)
    text = f"{sign}{f'{days}.' if days else ''}{hours:02d}:{minutes:02d}:{seconds:02d}"
    return text + (f".{fraction:07d}" if fraction else "")


def format_timestamp(stamp: datetime) -> str:
    stamp = stamp.astimezone(UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def format_value(value: Value) -> str:
    if isinstance(value, float):
        return format_double(value)
    if isinstance(value, tuple):
        return "[" + ",".join(format_double(v) for v in value) + "]"
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, Span):
        return format_interval(value)
    if isinstance(value, Option):
        return value.name
    return value
