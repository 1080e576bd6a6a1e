"""Append blobs: Append Block (and From URL), Append Blob Seal. Raises BlobError; knows no HTTP.

An append blob is a block blob whose blocks can only be added at its end: each Append Block
streams its body into a new extent and commits one more part at the blob's current length, so a
block is either wholly appended or not at all. Creating one is Put Blob (``Blobs.create_blob``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from openbatch.blob.checks import check_md5
from openbatch.blob.errors import BlobError, bad_header
from openbatch.blob.extents import ExtentWriter
from openbatch.blob.models import Blob, Part
from openbatch.blob.service import MIB, Blobs
from openbatch.common.clock import now_us
from openbatch.common.conditions import Conditions
from openbatch.common.ids import etag_value

APPEND_BLOB = "AppendBlob"
MAX_APPEND_BLOCK = 100 * MIB  # since x-ms-version 2022-11-02 (4 MiB before; the larger limit is served to all)
MAX_APPEND_BLOCKS = 50_000


@dataclass(frozen=True)
class AppendConditions:
    """x-ms-blob-condition-maxsize / x-ms-blob-condition-appendpos (None: not given)."""

    max_size: int | None = None
    append_position: int | None = None

    def check(self, blob: Blob, length: int) -> None:
        if self.max_size is not None and blob.size + length > self.max_size:
            raise BlobError("MaxBlobSizeConditionNotMet")
        if self.append_position is not None and blob.size != self.append_position:
            raise BlobError("AppendPositionConditionNotMet")


@dataclass(frozen=True)
class Appended:
    blob: Blob
    offset: int  # x-ms-blob-append-offset: where the block landed
    md5: bytes | None  # of the block


class AppendBlobs:
    """The append-blob operations, on top of the Blob service's stores."""

    def __init__(self, blobs: Blobs) -> None:
        self.blobs = blobs

    def writable(self, account: str, container: str, name: str, cond: Conditions, append: AppendConditions,
                 length: int) -> Blob:
        """The append blob a block of ``length`` bytes may be appended to now (all the checks
        Append Block makes; checked before the body is received and again when it is committed)."""
        blob = self.blobs.blob(account, container, name, cond, read=False)
        if blob.blob_type != APPEND_BLOB:
            raise BlobError("InvalidBlobType")
        if blob.sealed:
            raise BlobError("BlobIsSealed")
        if (blob.committed_blocks or 0) >= MAX_APPEND_BLOCKS:
            raise BlobError("BlockCountExceedsLimit", "The committed block count cannot exceed the maximum "
                                                      "limit of 50,000 blocks.")
        append.check(blob, length)
        return blob

    async def append_block(self, account: str, container: str, name: str, body: AsyncIterator[bytes],
                           length: int | None, transactional_md5: bytes | None, cond: Conditions,
                           append: AppendConditions) -> Appended:
        """Append Block: the body (1 byte to 100 MiB) becomes the blob's next block."""
        if length == 0:
            raise bad_header("Content-Length", "0", "An appended block must hold at least one byte.")
        self.writable(account, container, name, cond, append, length or 0)
        writer = await self.blobs.ingest(body, MAX_APPEND_BLOCK, md5=True)
        try:
            check_md5(transactional_md5, writer.md5)
            return self.commit(account, container, name, writer, cond, append)
        except BaseException:
            writer.discard()
            raise

    def commit(self, account: str, container: str, name: str, writer: ExtentWriter, cond: Conditions,
               append: AppendConditions) -> Appended:
        """Commit the extent ``writer`` wrote as the blob's next block (the caller discards the
        extent if this raises)."""
        if writer.size == 0:
            raise bad_header("Content-Length", "0", "An appended block must hold at least one byte.")
        meta = self.blobs.meta
        with meta.tx():
            blob = self.writable(account, container, name, cond, append, writer.size)
            offset = blob.size
            meta.insert_parts(blob.id, [Part(pos=offset, length=writer.size, extent=writer.extent, offset=0)])
            blob.size += writer.size
            blob.committed_blocks = (blob.committed_blocks or 0) + 1
            blob.etag, blob.modified_us = etag_value(), now_us()
            meta.save_blob(blob)
        return Appended(blob, offset, writer.md5)

    def seal(self, account: str, container: str, name: str, cond: Conditions, append: AppendConditions) -> Blob:
        """Append Blob Seal: no block may be appended any more. Idempotent; the ETag and Last-Modified
        do not change (as on Azure)."""
        meta = self.blobs.meta
        with meta.tx():
            blob = self.blobs.blob(account, container, name, cond, read=False)
            if blob.blob_type != APPEND_BLOB:
                raise BlobError("InvalidBlobType")
            if append.append_position is not None and blob.size != append.append_position:
                raise BlobError("AppendPositionConditionNotMet")
            if not blob.sealed:
                blob.sealed = True
                meta.save_blob(blob)
        return blob
