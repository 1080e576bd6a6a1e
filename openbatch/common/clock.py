"""Time: the service's clock, and the two text forms Azure uses (RFC 1123 in headers, ISO-8601 in bodies).

Times are UTC-aware ``datetime`` objects in memory and integer microseconds since the Unix epoch
in stores (exact, portable, and cheap to compare).

The service's clock (:data:`SERVICE`, behind :func:`now`, :func:`now_us`, :func:`http_date`) is
the wall clock plus an offset that only moves forward, and only when a test asks
(``openbatch serve --test-clock``): job schedules, autoscale intervals, lease expiry and
everything else the service does "later" read it and wait on it with :meth:`ServiceClock.call_at`,
so a test runs five minutes of a schedule in milliseconds instead of sleeping. Authentication
compares signed dates and SAS times with the real wall clock (:func:`real_now`): clients sign
with theirs.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from pathlib import Path

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)


class Timer:
    """A callback due at a time of the service's clock; ``cancel()`` it."""

    def __init__(self, clock: ServiceClock, when: float, callback: Callable[[], object],
                 loop: asyncio.AbstractEventLoop):
        self.when = when
        self._clock = clock
        self._callback = callback
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None
        self.cancelled = False
        self._arm()

    def _arm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_later(max(0.0, self.when - self._clock.time()), self._fire)

    def _fire(self) -> None:
        self._handle = None
        if self.cancelled:
            return
        if self._clock.time() < self.when:  # woken early (a clock moved back by nobody): wait again
            self._arm()
            return
        self.cancel()
        self._callback()

    def cancel(self) -> None:
        self.cancelled = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._clock._timers.discard(self)


class ServiceClock:
    """The wall clock plus an offset that :meth:`advance` moves forward (tests only)."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._timers: set[Timer] = set()
        self._file: Path | None = None

    def keep_in(self, path: Path) -> None:
        """Keep the offset in ``path`` (read now, written on every advance), so a test server that
        restarts goes on where its clock was rather than going back in time."""
        self._file = path
        try:
            self.offset = max(0.0, float(path.read_text()))
        except (OSError, ValueError):
            self.offset = 0.0

    def time(self) -> float:
        """Seconds since the epoch, as ``time.time()``."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward: every timer now due fires at once."""
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError("the clock only moves forward, by a finite number of seconds")
        self.offset += seconds
        if self._file is not None:
            temp = self._file.with_name(self._file.name + ".new")
            temp.write_text(repr(self.offset))
            os.replace(temp, self._file)
        for timer in list(self._timers):
            if not timer.cancelled:
                timer._arm()

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """Call ``callback`` on the running loop once this clock reads ``when`` (seconds since the epoch)."""
        timer = Timer(self, when, callback, asyncio.get_running_loop())
        self._timers.add(timer)
        return timer

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        return self.call_at(self.time() + delay, callback)


SERVICE = ServiceClock()


def now() -> datetime:
    """The service's current time, UTC."""
    return from_us(now_us())


def now_us() -> int:
    """The service's current time in microseconds since the epoch."""
    return time.time_ns() // 1000 + round(SERVICE.offset * 1_000_000)


def real_now() -> datetime:
    """The wall clock's time, UTC: what clients sign with."""
    return datetime.now(UTC)


def to_us(dt: datetime) -> int:
    """Microseconds since the epoch of an aware (or naive-as-UTC) datetime."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    """The UTC datetime of microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=us)


def rfc1123(dt: datetime) -> str:
    """``Mon, 02 Jan 2006 15:04:05 GMT`` (locale independent)."""
    dt = dt.astimezone(UTC)
    return (
        f"{_DAYS[dt.weekday()]}, {dt.day:02d} {_MONTHS[dt.month - 1]} {dt.year:04d} "
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} GMT"
    )


def rfc1123_us(us: int) -> str:
    """RFC 1123 form of microseconds since the epoch (recent values are cached)."""
    return _rfc1123_second(us // 1_000_000)


@lru_cache(maxsize=4096)
def _rfc1123_second(second: int) -> str:
    return rfc1123(from_us(second * 1_000_000))


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """The current time as an HTTP ``Date`` value, formatted at most once a second."""
    global _date_cache
    second = int(SERVICE.time())
    if _date_cache[0] != second:
        _date_cache = (second, rfc1123(from_us(second * 1_000_000)))
    return _date_cache[1]


@lru_cache(maxsize=256)  # every signed request parses its date; a client sends the same one for a second
def parse_rfc1123(value: str) -> datetime | None:
    """Parse an HTTP date; None when it is not one."""
    try:
        dt = parsedate_to_datetime(value.strip())
        if dt is None:
            return None
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):  # years past 9999 overflow
        return None


def iso8601(dt: datetime, digits: int = 7) -> str:
    """``2006-01-02T15:04:05.0000000Z`` with ``digits`` fractional digits (0 for none)."""
    dt = dt.astimezone(UTC)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if digits <= 0:
        return base + "Z"
    frac = f"{dt.microsecond:06d}0"[:digits].ljust(digits, "0")
    return f"{base}.{frac}Z"


def parse_iso8601(value: str) -> datetime | None:
    """Parse the ISO-8601 forms Azure accepts (date, minutes, seconds, fractions, Z or offset)."""
    m = _ISO.match(value.strip())
    if not m:
        return None
    year, month, day, hour, minute, second, frac, zone = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    try:
        dt = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
                      micro, tzinfo=UTC)
    except ValueError:
        return None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        dt -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return dt
