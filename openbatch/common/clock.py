"""Time: one ``now()``, and the two text forms Azure uses (RFC 1123 in headers, ISO-8601 in bodies).

Times are UTC-aware ``datetime`` objects in memory and integer microseconds since the Unix epoch
in stores (exact, portable, and cheap to compare).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


def now_us() -> int:
    """The current time in microseconds since the epoch."""
    return time.time_ns() // 1000


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
    second = int(time.time())
    if _date_cache[0] != second:
        _date_cache = (second, rfc1123(from_us(second * 1_000_000)))
    return _date_cache[1]


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
