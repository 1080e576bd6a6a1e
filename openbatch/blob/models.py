"""Blob domain records shared by the store, the service and the wire layer."""

from __future__ import annotations

from dataclasses import dataclass, field

# Lease states as stored; "expired" and "broken" are also what a leased / breaking lease becomes
# once its time has passed (see Lease.state_at).
AVAILABLE, LEASED, EXPIRED, BREAKING, BROKEN = "available", "leased", "expired", "breaking", "broken"
INFINITE = -1  # the duration of an infinite lease


@dataclass(frozen=True)
class Lease:
    """The lease of a blob or container as stored. Times are the service clock's, so a lease
    expires (and a break completes) by the clock alone, with no timer: see :meth:`state_at`."""

    id: str | None = None
    state: str = AVAILABLE  # available | leased | breaking | broken
    duration: int | None = None  # leased: INFINITE or 15..60 seconds (kept once expired, for renew)
    until_us: int | None = None  # leased (fixed): when it expires; breaking: when it is broken

    def state_at(self, now_us: int) -> str:
        """available | leased | expired | breaking | broken at ``now_us``."""
        due = self.until_us is not None and now_us >= self.until_us
        if self.state == LEASED and self.duration != INFINITE and due:
            return EXPIRED
        if self.state == BREAKING and due:
            return BROKEN
        return self.state

    def locked_at(self, now_us: int) -> bool:
        """Whether writes need the lease id (x-ms-lease-status: locked)."""
        return self.state_at(now_us) in (LEASED, BREAKING)


@dataclass(frozen=True)
class Rehydration:
    """An archived blob on its way back to an online tier: ``tier`` once the service clock reads
    ``until_us`` (Standard priority takes hours, High less than one)."""

    tier: str
    priority: str  # Standard | High
    until_us: int


@dataclass(frozen=True)
class Deletion:
    """A soft-deleted blob or container: when it was deleted, and until when it can be restored."""

    at_us: int
    until_us: int
    version: str = ""  # containers: the deleted container's version (Restore Container names it)


@dataclass
class Container:
    id: int
    account: str
    name: str
    etag: str
    modified_us: int
    metadata: dict[str, str] = field(default_factory=dict)
    public_access: str | None = None  # None (private), "blob" or "container"
    acl: str = ""  # stored access policies: the SignedIdentifiers XML as last set
    lease: Lease = field(default_factory=Lease)
    deleted: Deletion | None = None  # soft-deleted (its name is then stored with its version)


@dataclass
class ContentSettings:
    """The content headers stored with a blob (returned as Content-* on reads)."""

    content_type: str = "application/octet-stream"
    content_encoding: str = ""
    content_language: str = ""
    content_md5: bytes | None = None
    cache_control: str = ""
    content_disposition: str = ""


@dataclass
class CopyInfo:
    copy_id: str
    source: str
    status: str  # pending | success | aborted | failed
    progress: str  # "copied/total" bytes
    completed_us: int | None  # None while pending
    description: str = ""  # x-ms-copy-status-description of a failed or aborted copy


@dataclass
class Blob:
    id: int
    container_id: int
    name: str
    committed: bool  # False: only uncommitted blocks exist so far
    etag: str
    created_us: int
    modified_us: int
    size: int
    content: ContentSettings = field(default_factory=ContentSettings)
    metadata: dict[str, str] = field(default_factory=dict)
    block_id_len: int | None = None  # decoded length every block id of this blob must have
    staged_count: int = 0
    copy: CopyInfo | None = None
    tier: str | None = None  # the access tier set on the blob; None: inferred (Hot, the account default)
    tier_changed_us: int | None = None
    rehydration: Rehydration | None = None  # while the blob is still Archive (see settle)
    lease: Lease = field(default_factory=Lease)
    deleted: Deletion | None = None  # soft-deleted (its retention running)
    tag_count: int = 0
    # Blob index tags: None when not read from the store; as read for a response, or those a write
    # gives the new content (x-ms-tags; the service stores them when it replaces the content)
    tags: dict[str, str] | None = None
    blob_type: str = "BlockBlob"  # BlockBlob | PageBlob | AppendBlob
    sequence_number: int = 0  # page blobs: x-ms-blob-sequence-number
    sealed: bool = False  # append blobs: no more blocks may be appended
    # Which record of the name this is: "" the base blob (the current version), SNAPSHOT + id a
    # snapshot, VERSION + id a previous version. Snapshots and versions are read-only copies that
    # share the base blob's extents.
    stamp: str = ""  # soft-deleted records: DELETED + the stamp they had (see softdelete.py)
    version_id: str | None = None  # the version this content is (written while versioning was on)
    committed_blocks: int | None = None  # append blobs: counted when read for a response (not stored)

    def settle(self, now_us: int) -> Blob:
        """The blob as it is at ``now_us``: a rehydration that is due has made it online."""
        rehydration = self.rehydration
        if rehydration is not None and now_us >= rehydration.until_us:
            self.tier, self.tier_changed_us, self.rehydration = rehydration.tier, rehydration.until_us, None
        return self

    @property
    def live_stamp(self) -> str:
        """The stamp of the record it is (or was, before it was soft-deleted)."""
        return self.stamp[1:] if self.stamp.startswith(DELETED) else self.stamp

    @property
    def snapshot(self) -> str | None:
        stamp = self.live_stamp
        return stamp[1:] if stamp.startswith(SNAPSHOT) else None

    @property
    def is_base(self) -> bool:
        return self.live_stamp == ""


DELETED = "D"  # the stamp prefix of a soft-deleted record: "D" the base blob, "D" + "S..." a snapshot ...
SNAPSHOT = "S"  # stamp prefixes; snapshots sort before versions, the base blob ("") after both
VERSION = "V"


@dataclass(frozen=True)
class Part:
    """A byte run of a committed blob: ``length`` bytes at ``offset`` of data file ``extent``.

    Small Put Blob content is kept inline instead (``extent`` "" and the bytes in ``data``).
    """

    pos: int  # offset of this part within the blob
    length: int
    extent: str
    offset: int
    block_id: str | None = None  # the committed block this part is (None for Put Blob data)
    data: bytes | None = None


@dataclass(frozen=True)
class StagedBlock:
    block_id: str
    extent: str
    size: int


# A piece of a read: (extent, offset, length) of a data file, or inline bytes. Extent "" is a run
# of zeros (the unwritten pages of a page blob).
Piece = tuple[str, int, int] | bytes
