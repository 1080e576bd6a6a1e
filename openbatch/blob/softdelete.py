"""Soft delete of blobs and containers (Azure's "Soft delete for blobs" and "for containers").

On while the account's service properties say ``<DeleteRetentionPolicy><Enabled>true</Enabled>
<Days>n</Days>`` (1-365 days; Azure sets container soft delete through its management plane, which
no data-plane SDK can reach, so here the same policy covers containers). Then:

- deleting a blob soft-deletes it (and, with ``x-ms-delete-snapshots``, its snapshots); deleting a
  snapshot or a version soft-deletes that one. With versioning on, deleting a blob keeps it as a
  version instead, as Azure does. A soft-deleted record keeps its row under the stamp
  ``DELETED + its stamp`` ("D" the blob, "DS..." a snapshot, "DV..." a version): no read finds it,
  ``include=deleted`` lists it until its retention ends;
- writing new content over a blob (versioning off) keeps its previous state as a soft-deleted
  snapshot, and so does writing a blob whose name has a soft-deleted blob;
- Undelete Blob restores the blob and its soft-deleted snapshots and versions; on a live blob, it
  restores the snapshots;
- deleting a container soft-deletes it with its blobs: its row is kept as ``name\\0version`` (the
  name is free at once); Restore Container brings it back under its name;
- what outlives its retention is invisible at once (every query compares the service clock with
  the record's end) and purged by the service's sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from xml.etree.ElementTree import Element

from defusedxml.ElementTree import fromstring

from openbatch.blob import snapshots
from openbatch.blob.errors import BlobError
from openbatch.blob.models import DELETED, SNAPSHOT, Blob, Container, Deletion, Lease

if TYPE_CHECKING:
    from openbatch.blob.store import MetaStore

MIN_DAYS, MAX_DAYS = 1, 365
DAY_US = 86400 * 1_000_000


@dataclass(frozen=True)
class Policy:
    enabled: bool = False
    days: int = 0


def policy_of(service_properties: str | None) -> Policy:
    """The DeleteRetentionPolicy of stored service properties."""
    if not service_properties or "DeleteRetentionPolicy" not in service_properties:
        return Policy()
    element = fromstring(service_properties.encode("utf-8")).find("DeleteRetentionPolicy")
    return _policy(element) if element is not None else Policy()


def _policy(element: Element) -> Policy:
    enabled = (element.findtext("Enabled") or "").strip().lower() == "true"
    days = (element.findtext("Days") or "").strip()
    return Policy(enabled, int(days) if enabled and days.isdigit() else 0)


def check_policy(root: Element) -> None:
    """The DeleteRetentionPolicy of a Set Blob Service Properties body: on, it needs Days 1-365
    (400 InvalidXmlNodeValue)."""
    element = root.find("DeleteRetentionPolicy")
    if element is None or (element.findtext("Enabled") or "").strip().lower() != "true":
        return
    days = (element.findtext("Days") or "").strip()
    if not days.isdigit() or not MIN_DAYS <= int(days) <= MAX_DAYS:
        raise BlobError("InvalidXmlNodeValue", "The value for one of the XML nodes is not in the correct format.",
                        XmlNodeName="Days", XmlNodeValue=days[:16])


def remaining_days(deleted: Deletion, now_us: int) -> int:
    """RemainingRetentionDays: whole days left, counting the one under way."""
    return max(0, -(-(deleted.until_us - now_us) // DAY_US))


class SoftDelete:
    """The accounts' retention policies, and the soft-delete steps the service takes inside its
    transactions."""

    def __init__(self, meta: MetaStore) -> None:
        self.meta = meta
        self.policies = {account: policy_of(body) for account, body in meta.all_service_properties().items()}

    def stored(self, account: str, body: str) -> None:
        self.policies[account] = policy_of(body)

    def policy(self, account: str) -> Policy:
        return self.policies.get(account, Policy())

    def account_of(self, container_id: int) -> str | None:
        """The account of a container, when any account keeps deleted blobs (else None: no lookup)."""
        if not any(p.enabled for p in self.policies.values()):
            return None
        return self.meta.container_account(container_id)

    def _deletion(self, account: str, now_us: int) -> Deletion | None:
        policy = self.policy(account)
        return Deletion(now_us, now_us + policy.days * DAY_US) if policy.enabled else None

    # --- blobs ------------------------------------------------------------------------------------

    def delete(self, account: str, blob: Blob, now_us: int) -> bool:
        """Soft-delete one record (True), or say the account keeps no deleted blobs (False)."""
        deleted = self._deletion(account, now_us)
        if deleted is None:
            return False
        if blob.is_base:
            self._make_room(blob.container_id, blob.name, now_us)
        blob.stamp, blob.deleted, blob.lease = DELETED + blob.stamp, deleted, Lease()
        self.meta.save_blob(blob)
        return True

    def keep_overwritten(self, account: str, blob: Blob, old: Blob | None, now_us: int) -> None:
        """Before new content replaces ``old`` (versioning off): its state as a soft-deleted snapshot;
        a soft-deleted blob of the name (there is one only when no live one is) becomes one too."""
        deleted = self._deletion(account, now_us)
        if deleted is None:
            return
        if old is None or not old.committed:
            self._make_room(blob.container_id, blob.name, now_us)
            return
        snap = snapshots.take_snapshot(self.meta, old, None)
        snap.stamp, snap.deleted = DELETED + snap.stamp, deleted
        self.meta.save_blob(snap)

    def _make_room(self, container_id: int, name: str, now_us: int) -> None:
        """A name has one base blob, deleted or not: an earlier soft-deleted one becomes a
        soft-deleted snapshot."""
        earlier = self.meta.get_blob(container_id, name, DELETED)
        if earlier is not None:
            earlier.stamp = DELETED + SNAPSHOT + snapshots.new_id()
            self.meta.save_blob(earlier)

    def undelete(self, container_id: int, name: str, live: Blob | None, now_us: int) -> None:
        """Undelete Blob: the soft-deleted blob (unless a live one has the name: then it becomes a
        snapshot) and every soft-deleted snapshot and version of the name, while restorable."""
        records = self.meta.deleted_records(container_id, name, now_us)
        if live is None and not records:
            raise BlobError("BlobNotFound")
        for record in records:
            stamp = record.live_stamp
            if stamp == "" and live is not None:
                stamp = SNAPSHOT + snapshots.new_id()
            record.stamp, record.deleted = stamp, None
            self.meta.save_blob(record)

    # --- containers -------------------------------------------------------------------------------

    def delete_container(self, c: Container, now_us: int) -> bool:
        """Soft-delete a container (True), unless the account keeps no deleted containers."""
        deleted = self._deletion(c.account, now_us)
        if deleted is None:
            return False
        version = snapshots.new_id()
        deleted = replace(deleted, version=version)
        self.meta.rename_container(c, f"{c.name}\x00{version}", deleted)
        return True

    def restore_container(self, account: str, name: str, version: str | None, now_us: int) -> Container:
        """Restore Container: the soft-deleted container of that name and version, under its name."""
        if not version:
            raise BlobError("MissingRequiredHeader", HeaderName="x-ms-deleted-container-version")
        c = self.meta.deleted_container(account, name, version, now_us)
        if c is None:
            raise BlobError("ContainerNotFound")
        if self.meta.get_container(account, name) is not None:
            raise BlobError("ContainerAlreadyExists")
        self.meta.rename_container(c, name, None)
        c.name, c.deleted = name, None
        return c
