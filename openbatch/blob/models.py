"""Blob domain records shared by the store, the service and the wire layer."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    status: str
    progress: str
    completed_us: int


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


# A piece of a read: (extent, offset, length) of a data file, or inline bytes.
Piece = tuple[str, int, int] | bytes
