"""Identifiers: request ids, opaque storage ids, ETag values."""

from __future__ import annotations

import os
import time


def request_id() -> str:
    """A request id as Azure sends in ``x-ms-request-id`` / ``request-id`` (a random UUID, version 4)."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def opaque_id() -> str:
    """A random 128-bit id as 32 hex characters (file names, copy ids...)."""
    return os.urandom(16).hex()


# .NET ticks (100 ns since 0001-01-01) of the Unix epoch: Azure ETags look like 0x8DC... because
# they are derived from such ticks; ours are too, and strictly increase within a process.
_TICKS_AT_EPOCH = 621355968000000000
_last_tick = 0


def etag_value() -> str:
    """A fresh, unquoted ETag value like ``0x8DC2A3B4C5D6E7F``, unique within this process."""
    global _last_tick
    tick = _TICKS_AT_EPOCH + time.time_ns() // 100
    if tick <= _last_tick:
        tick = _last_tick + 1
    _last_tick = tick
    return f"0x{tick:X}"
