"""Leases on blobs and containers: Lease Blob / Lease Container, and the lease check of every
other operation.

A lease is a stored record (:class:`~openbatch.blob.models.Lease`) whose times are the service
clock's: it expires, and a break completes, when the clock passes the stored time, computed when
the lease is next looked at (no timer). The lease state machine is data: :data:`TRANSITIONS` maps
(state the lease is in, action asked) to what happens, as Azure's "Lease Blob" tables and its own
SDK tests describe it (an expired lease keeps its id, so it can be renewed, until the resource is
written; a breaking lease still locks writes; a broken one can only be released or re-acquired).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from openbatch.blob.errors import BlobError, bad_header
from openbatch.blob.models import AVAILABLE, BREAKING, BROKEN, EXPIRED, INFINITE, LEASED, Lease

ACTIONS = ("acquire", "renew", "change", "release", "break")
MIN_DURATION, MAX_DURATION, MAX_BREAK_PERIOD = 15, 60, 60
NO_LEASE = Lease()
_US = 1_000_000


@dataclass(frozen=True)
class LeaseRequest:
    """One Lease Blob / Lease Container request, validated."""

    action: str
    lease_id: str | None = None  # x-ms-lease-id: the lease the caller holds
    proposed_id: str | None = None  # x-ms-proposed-lease-id
    duration: int | None = None  # x-ms-lease-duration (acquire): INFINITE or 15..60
    break_period: int | None = None  # x-ms-lease-break-period (break): 0..60, None: the lease's own


@dataclass(frozen=True)
class LeaseOutcome:
    lease: Lease  # the lease to store
    lease_id: str | None = None  # x-ms-lease-id to answer (acquire, renew, change)
    lease_time: int | None = None  # x-ms-lease-time to answer (break): seconds until it is broken


def _guid(value: str, header: str) -> str:
    """A lease id as given, once it is known to be a GUID (400 InvalidHeaderValue otherwise)."""
    try:
        uuid.UUID(value)
    except ValueError:
        raise bad_header(header, value[:64]) from None
    return value


def same_id(a: str | None, b: str | None) -> bool:
    """Lease ids are GUIDs: equal whatever their case or spelling ({...}, no dashes)."""
    return a is not None and b is not None and uuid.UUID(a) == uuid.UUID(b)


def _seconds(value: str | None, header: str, valid: Callable[[int], bool]) -> int | None:
    if value is None or value.strip() == "":
        return None
    text = value.strip()
    if not text.lstrip("-").isdigit() or not valid(int(text)):
        raise bad_header(header, value[:32])
    return int(text)


def parse_request(action: str | None, lease_id: str | None, proposed_id: str | None, duration: str | None,
                  break_period: str | None) -> LeaseRequest:
    """Validate the headers of a lease request (x-ms-lease-action and what that action needs)."""
    if not action:
        raise BlobError("MissingRequiredHeader", HeaderName="x-ms-lease-action")
    act = action.strip().lower()
    if act not in ACTIONS:
        raise bad_header("x-ms-lease-action", action[:32])
    needed = {"acquire": ("x-ms-lease-duration",), "renew": ("x-ms-lease-id",), "release": ("x-ms-lease-id",),
              "change": ("x-ms-lease-id", "x-ms-proposed-lease-id"), "break": ()}[act]
    given = {"x-ms-lease-duration": duration, "x-ms-lease-id": lease_id, "x-ms-proposed-lease-id": proposed_id}
    for header in needed:
        if not given[header]:
            raise BlobError("MissingRequiredHeader", HeaderName=header)
    return LeaseRequest(
        action=act,
        lease_id=_guid(lease_id, "x-ms-lease-id") if lease_id else None,
        proposed_id=_guid(proposed_id, "x-ms-proposed-lease-id") if proposed_id else None,
        duration=_seconds(duration, "x-ms-lease-duration",
                          lambda d: d == INFINITE or MIN_DURATION <= d <= MAX_DURATION) if act == "acquire" else None,
        break_period=_seconds(break_period, "x-ms-lease-break-period",
                              lambda p: 0 <= p <= MAX_BREAK_PERIOD) if act == "break" else None,
    )


# --- the state machine ------------------------------------------------------------------------------


def _fail(code: str, what: str) -> BlobError:
    what = what.lower()
    messages = {
        "LeaseAlreadyPresent": "There is already a lease present.",
        "LeaseIdMismatchWithLeaseOperation": f"The lease ID specified did not match the lease ID for the {what}.",
        "LeaseNotPresentWithLeaseOperation": f"There is currently no lease on the {what}.",
        "LeaseIsBrokenAndCannotBeRenewed": "The lease ID matched, but the lease has been broken explicitly and "
                                           "cannot be renewed.",
        "LeaseIsBreakingAndCannotBeAcquired": "The lease ID matched, but the lease is currently in breaking state "
                                              "and cannot be acquired until it is broken.",
        "LeaseIsBreakingAndCannotBeChanged": "The lease ID matched, but the lease is currently in breaking state and "
                                             "cannot be changed.",
    }
    return BlobError(code, messages[code], status=409)


Step = Callable[[Lease, LeaseRequest, int, str], LeaseOutcome]


def _acquire(lease: Lease, req: LeaseRequest, now_us: int, what: str) -> LeaseOutcome:
    lease_id = req.proposed_id or str(uuid.uuid4())
    duration = req.duration if req.duration is not None else INFINITE
    until = None if duration == INFINITE else now_us + duration * _US
    return LeaseOutcome(Lease(id=lease_id, state=LEASED, duration=duration, until_us=until), lease_id=lease_id)


def _acquire_held(lease: Lease, req: LeaseRequest, now_us: int, what: str) -> LeaseOutcome:
    """Acquire while leased: only the holder may (again, with a new duration)."""
    if not same_id(req.proposed_id, lease.id):
        raise _fail("LeaseAlreadyPresent", what)
    return _acquire(lease, LeaseRequest("acquire", proposed_id=lease.id, duration=req.duration), now_us, what)


def _acquire_breaking(lease: Lease, req: LeaseRequest, now_us: int, what: str) -> LeaseOutcome:
    if same_id(req.proposed_id, lease.id):
        raise _fail("LeaseIsBreakingAndCannotBeAcquired", what)
    raise _fail("LeaseAlreadyPresent", what)


def _holder(lease: Lease, req: LeaseRequest, what: str) -> None:
    if not same_id(req.lease_id, lease.id):
        raise _fail("LeaseIdMismatchWithLeaseOperation", what)


def _renew(lease: Lease, req: LeaseRequest, now_us: int, what: str) -> LeaseOutcome:
    _holder(lease, req, what)
    until = None if lease.duration == INFINITE else now_us + (lease.duration or MAX_DURATION) * _US
    renewed = Lease(id=lease.id, state=LEASED, duration=lease.duration, until_us=until)
    return LeaseOutcome(renewed, lease_id=lease.id)


def _renew_broken(lease: Lease, req: LeaseRequest, now_us: int, what: str) -> LeaseOutcome:
    _holder(lease, req, what)
    raise _fail("LeaseIsBrokenAndCannotBeRenewed", what)


def _change(lease: Lease, req: LeaseRequest, now_us: int, what: str) -> LeaseOutcome:
    if not (same_id(req.lease_id, lease.id) or same_id(req.proposed_id, lease.id)):
        raise _fail("LeaseIdMismatchWithLeaseOperation", what)
    changed = Lease(id=req.proposed_id, state=LEASED, duration=lease.duration, until_us=lease.until_us)
    return LeaseOutcome(changed, lease_id=req.proposed_id)


def _change_breaking(lease: Lease, req: LeaseRequest, now_us: int, what: str) -> LeaseOutcome:
    _holder(lease, req, what)
    raise _fail("LeaseIsBreakingAndCannotBeChanged", what)


def _release(lease: Lease, req: LeaseRequest, now_us: int, what: str) -> LeaseOutcome:
    _holder(lease, req, what)
    return LeaseOutcome(NO_LEASE)


def _break_leased(lease: Lease, req: LeaseRequest, now_us: int, what: str) -> LeaseOutcome:
    """A fixed lease breaks when it would have expired, or sooner with a shorter break period; an
    infinite one at once, or after the break period."""
    ends = [lease.until_us] if lease.duration != INFINITE and lease.until_us is not None else []
    if req.break_period is not None:
        ends.append(now_us + req.break_period * _US)
    return _breaking(lease.id, min(ends) if ends else now_us, now_us)


def _break_breaking(lease: Lease, req: LeaseRequest, now_us: int, what: str) -> LeaseOutcome:
    until = lease.until_us if lease.until_us is not None else now_us
    if req.break_period is not None:
        until = min(until, now_us + req.break_period * _US)
    return _breaking(lease.id, until, now_us)


def _break_now(lease: Lease, req: LeaseRequest, now_us: int, what: str) -> LeaseOutcome:
    return _breaking(lease.id, now_us, now_us)


def _breaking(lease_id: str | None, until_us: int, now_us: int) -> LeaseOutcome:
    if until_us <= now_us:
        return LeaseOutcome(Lease(id=lease_id, state=BROKEN), lease_time=0)
    seconds = math.ceil((until_us - now_us) / _US)
    return LeaseOutcome(Lease(id=lease_id, state=BREAKING, until_us=until_us), lease_time=seconds)


def _no_lease(code: str) -> Step:
    def step(lease: Lease, req: LeaseRequest, now_us: int, what: str) -> LeaseOutcome:
        raise _fail(code, what)
    return step


_MISMATCH = _no_lease("LeaseIdMismatchWithLeaseOperation")
_NOT_PRESENT = _no_lease("LeaseNotPresentWithLeaseOperation")

# (the lease's state now, the action) -> what happens.
TRANSITIONS: dict[tuple[str, str], Step] = {
    (AVAILABLE, "acquire"): _acquire,
    (AVAILABLE, "renew"): _MISMATCH,
    (AVAILABLE, "change"): _NOT_PRESENT,
    (AVAILABLE, "release"): _MISMATCH,
    (AVAILABLE, "break"): _NOT_PRESENT,
    (LEASED, "acquire"): _acquire_held,
    (LEASED, "renew"): _renew,
    (LEASED, "change"): _change,
    (LEASED, "release"): _release,
    (LEASED, "break"): _break_leased,
    (EXPIRED, "acquire"): _acquire,
    (EXPIRED, "renew"): _renew,
    (EXPIRED, "change"): _NOT_PRESENT,
    (EXPIRED, "release"): _release,
    (EXPIRED, "break"): _break_now,
    (BREAKING, "acquire"): _acquire_breaking,
    (BREAKING, "renew"): _renew_broken,
    (BREAKING, "change"): _change_breaking,
    (BREAKING, "release"): _release,
    (BREAKING, "break"): _break_breaking,
    (BROKEN, "acquire"): _acquire,
    (BROKEN, "renew"): _renew_broken,
    (BROKEN, "change"): _NOT_PRESENT,
    (BROKEN, "release"): _release,
    (BROKEN, "break"): _break_now,
}


def apply(lease: Lease, req: LeaseRequest, now_us: int, what: str = "Blob") -> LeaseOutcome:
    """The outcome of ``req`` on ``lease`` at ``now_us`` (``what``: "Blob" or "Container")."""
    return TRANSITIONS[(lease.state_at(now_us), req.action)](lease, req, now_us, what)


# --- the lease check of other operations ---------------------------------------------------------------


def check_write(lease: Lease, lease_id: str | None, now_us: int, what: str = "Blob") -> Lease:
    """May a write (or delete) go ahead under ``lease``, the request carrying ``lease_id``
    (x-ms-lease-id)? Return the lease the resource keeps: once written, a resource forgets an
    expired or broken lease (it can no longer be renewed)."""
    given = _guid(lease_id, "x-ms-lease-id") if lease_id else None
    state = lease.state_at(now_us)
    if state in (LEASED, BREAKING):
        if given is None:
            raise BlobError("LeaseIdMissing", f"There is currently a lease on the {what.lower()} and no lease ID was "
                                              "specified in the request.", status=412)
        if not same_id(given, lease.id):
            raise _mismatch(what)
        return lease
    if given is not None:
        raise _not_present(what)
    return NO_LEASE if state in (EXPIRED, BROKEN) else lease


def check_read(lease: Lease, lease_id: str | None, now_us: int, what: str = "Blob") -> None:
    """A read (or a container operation that only may name a lease) with x-ms-lease-id: the lease
    must be active and be that one."""
    if not lease_id:
        return
    given = _guid(lease_id, "x-ms-lease-id")
    if not lease.locked_at(now_us):
        raise _not_present(what)
    if not same_id(given, lease.id):
        raise _mismatch(what)


def check_new(lease_id: str | None, what: str = "Blob") -> None:
    """A write creating a resource: there is no lease it could name."""
    if lease_id:
        _guid(lease_id, "x-ms-lease-id")
        raise _not_present(what)


def _mismatch(what: str) -> BlobError:
    return BlobError(f"LeaseIdMismatchWith{what}Operation",
                     f"The lease ID specified did not match the lease ID for the {what.lower()}.", status=412)


def _not_present(what: str) -> BlobError:
    return BlobError(f"LeaseNotPresentWith{what}Operation", f"There is currently no lease on the {what.lower()}.",
                     status=412)

