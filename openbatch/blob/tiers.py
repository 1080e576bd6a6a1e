"""Access tier changes and rehydration from Archive (Azure's "Blob rehydration from the archive tier").

An archived blob is offline. Set Blob Tier to an online tier (or Copy Blob to one) starts a
rehydration that takes the service clock's time: Standard priority up to 15 hours, High under one
hour (Azure's figures for objects under 10 GB; here always those). Meanwhile the blob stays
Archive (reads are 409 BlobArchived) and says ``rehydrate-pending-to-{tier}``; the rehydration
cannot be cancelled or redirected (409 BlobBeingRehydrated), only sped up from Standard to High.
It completes when the clock passes its time (:meth:`Blob.settle`, on every read of the record).
"""

from __future__ import annotations

from openbatch.blob.errors import BlobError, bad_header
from openbatch.blob.models import Blob, Rehydration

ARCHIVE = "Archive"
STANDARD, HIGH = "Standard", "High"
REHYDRATE_SECONDS = {STANDARD: 15 * 3600, HIGH: 3600}
_PRIORITIES = {p.lower(): p for p in REHYDRATE_SECONDS}
_US = 1_000_000
ACCESS_TIERS = {t.lower(): t for t in ("Hot", "Cool", "Cold", ARCHIVE)}  # block blob tiers of a standard account


def check_priority(value: str | None) -> str | None:
    """x-ms-rehydrate-priority: Standard or High (None when not given)."""
    if value is None or value == "":
        return None
    priority = _PRIORITIES.get(value.strip().lower())
    if priority is None:
        raise bad_header("x-ms-rehydrate-priority", value[:32])
    return priority


def _being_rehydrated(message: str) -> BlobError:
    return BlobError("BlobBeingRehydrated", f"This operation is not permitted because the blob is being "
                                            f"rehydrated: {message}", status=409)


def change(blob: Blob, tier: str, priority: str | None, now_us: int) -> bool:
    """Set Blob Tier on ``blob`` (settled): True when a rehydration is under way (202 Accepted),
    False when the tier simply changed (200)."""
    pending = blob.rehydration
    if pending is not None:
        if tier != pending.tier:
            raise _being_rehydrated(f"it is on its way to {pending.tier}.")
        if priority == STANDARD and pending.priority == HIGH:
            raise _being_rehydrated("its priority can be raised, not lowered.")
        if priority == HIGH and pending.priority == STANDARD:
            until = min(pending.until_us, now_us + REHYDRATE_SECONDS[HIGH] * _US)
            blob.rehydration = Rehydration(tier, HIGH, until)
        return True
    if blob.tier == ARCHIVE and tier != ARCHIVE:
        chosen = priority or STANDARD
        blob.rehydration = Rehydration(tier, chosen, now_us + REHYDRATE_SECONDS[chosen] * _US)
        return True
    blob.tier, blob.tier_changed_us = tier, now_us
    return False


def check_tier(value: str | None, *, required: bool = False) -> str | None:
    """An access tier (``x-ms-access-tier``) in Azure's spelling; None when not given."""
    if value is None or value == "":
        if required:
            raise BlobError("MissingRequiredHeader", HeaderName="x-ms-access-tier")
        return None
    tier = ACCESS_TIERS.get(value.lower())
    if tier is None:
        raise BlobError("InvalidHeaderValue", HeaderName="x-ms-access-tier", HeaderValue=value[:64])
    return tier


def check_online(blob: Blob) -> None:
    """An archived blob is offline: it cannot be read or changed until it is rehydrated."""
    if blob.tier == ARCHIVE:
        raise BlobError("BlobArchived")
