"""Blob domain rules: containers, blobs, blocks, listings, copies. Raises BlobError; knows no HTTP.

Runs on the event loop thread; metadata statements are short and synchronous, so each
operation's check-then-commit is atomic with respect to other requests. Request bodies are
streamed into new extents first and only then committed, so a failed or cut-off upload
leaves nothing visible.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from openbatch.blob import cors, leases, snapshots, softdelete, tags, tiers, wire
from openbatch.blob.checks import (
    check_blob_name,
    check_blob_type,
    check_container_name,
    check_md5,
    check_metadata,
    check_public_access,
    decode_block_id,
)
from openbatch.blob.errors import BlobError
from openbatch.blob.extents import BodyTooLarge, ExtentStore, ExtentWriter
from openbatch.blob.models import (
    SNAPSHOT,
    Blob,
    Container,
    ContentSettings,
    Part,
    Piece,
    StagedBlock,
)
from openbatch.blob.store import MetaStore, order_key
from openbatch.blob.tiers import check_online, check_tier
from openbatch.common.clock import from_us, now_us
from openbatch.common.conditions import NOT_MODIFIED, OK, Conditions, evaluate
from openbatch.common.ids import etag_value

MIB = 1 << 20
# Called before a write replaces an existing blob; raises to refuse (e.g. a SAS that may only create).
ReplaceGuard = Callable[[], None] | None
MAX_BLOCK_SIZE = 4000 * MIB
MAX_PUT_BLOB_SIZE = 5000 * MIB
MAX_COMMITTED_BLOCKS = 50_000
MAX_UNCOMMITTED_BLOCKS = 100_000
MAX_LIST_RESULTS = 5000
MAX_RANGE_MD5 = 4 * MIB
UNCOMMITTED_TTL_US = 7 * 24 * 3600 * 1_000_000
INLINE_MAX = 32 << 10  # Put Blob bodies up to this size live in the metadata store (no file)


@dataclass
class ReadPlan:
    """What a Get Blob returns: the blob and the byte range ``[start, end)`` as extent pieces."""

    blob: Blob
    start: int
    end: int
    partial: bool
    pieces: list[Piece] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass
class BlockListing:
    blob: Blob
    committed: list[tuple[str, int]] | None
    uncommitted: list[tuple[str, int]] | None


def successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (None: no bound)."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code <= 0x10FFFF:
            chars[-1] = chr(0xE000 if 0xD800 <= code <= 0xDFFF else code)
            return "".join(chars)
        chars.pop()
    return None


class Blobs:
    """The Blob service's domain: every operation of the REST API minus the wire."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta = MetaStore(root / "meta.db")
        self.extents = ExtentStore(root / "data")
        self.versions = snapshots.Versioning(self.meta)
        self.softdelete = softdelete.SoftDelete(self.meta)
        self._cors: dict[str, tuple[cors.CorsRule, ...]] = {}  # account -> its CORS rules (as last set)

    # --- lifecycle ----------------------------------------------------------------------------

    def recover(self) -> int:
        """Startup: expire old uncommitted blocks and deleted blobs past their retention, delete data
        files no record references."""
        self.expire_uncommitted()
        return self.extents.sweep(self.meta.all_extents())

    def expire_uncommitted(self) -> None:
        """Drop blocks staged too long ago, and what soft delete keeps past its retention (already
        invisible: every query compares the clock with the retention)."""
        with self.meta.tx():
            expired = self.meta.expire_staged(now_us() - UNCOMMITTED_TTL_US)
            blobs, containers = self.meta.expired(now_us())
            expired += [e for blob_id in blobs for e in self.meta.delete_blob(blob_id)]
            expired += [e for container_id in containers for e in self.meta.delete_container(container_id)]
        self.release(expired)

    def close(self) -> None:
        self.meta.close()

    def release(self, extents: list[str]) -> None:
        if extents:
            self.extents.release(extents, self.meta.is_referenced)

    # --- service ------------------------------------------------------------------------------

    def get_service_properties(self, account: str) -> str | None:
        return self.meta.get_service_properties(account)

    def set_service_properties(self, account: str, body: str) -> None:
        """Set Blob Service Properties: the elements the document has replace those stored; those it
        omits stay as they were, as Azure keeps them."""
        body = wire.merge_service_properties(self.meta.get_service_properties(account), body)
        with self.meta.tx():
            self.meta.set_service_properties(account, body)
        self.versions.stored(account, body)
        self.softdelete.stored(account, body)
        self._cors.pop(account, None)

    def cors_rules(self, account: str) -> tuple[cors.CorsRule, ...]:
        """The account's CORS rules (from its service properties)."""
        found = self._cors.get(account)
        if found is None:
            found = self._cors[account] = cors.rules(self.meta.get_service_properties(account))
        return found

    def list_containers(self, account: str, prefix: str, marker: str, limit: int,
                        deleted: bool = False) -> tuple[list[Container], str]:
        """A page of containers (``deleted``: the soft-deleted ones too, each after its name)."""
        start = max(prefix, marker)
        items = self.meta.list_containers(account, start, successor(prefix) if prefix else None, limit + 1,
                                          now_us() if deleted else None)
        if len(items) > limit:
            return items[:limit], items[limit].name
        return items, ""

    # --- containers ---------------------------------------------------------------------------

    def container(self, account: str, name: str, lease_id: str | None = None) -> Container:
        """A container; with ``lease_id`` (x-ms-lease-id), only while that lease is active."""
        c = self.meta.get_container(account, name)
        if c is None:
            check_container_name(name)
            raise BlobError("ContainerNotFound")
        leases.check_read(c.lease, lease_id, now_us(), "Container")
        return c

    def container_usage(self, account: str, name: str) -> tuple[int, int]:
        """(blobs, bytes) the container holds now (the dashboard's overview)."""
        return self.meta.container_usage(self.container(account, name).id)

    def find_container(self, account: str, name: str) -> Container | None:
        return self.meta.get_container(account, name)

    def create_container(self, account: str, name: str, metadata: dict[str, str], public_access: str | None) -> Container:
        check_container_name(name)
        check_metadata(metadata)
        public = check_public_access(public_access)
        with self.meta.tx():
            if self.meta.get_container(account, name) is not None:
                raise BlobError("ContainerAlreadyExists")
            c = Container(id=0, account=account, name=name, etag=etag_value(), modified_us=now_us(),
                          metadata=metadata, public_access=public)
            return self.meta.insert_container(c)

    def delete_container(self, account: str, name: str, cond: Conditions) -> None:
        with self.meta.tx():
            c = self.container(account, name)
            _check_write(cond, c.etag, c.modified_us)
            leases.check_write(c.lease, cond.lease_id, now_us(), "Container")
            extents = [] if self.softdelete.delete_container(c, now_us()) else self.meta.delete_container(c.id)
        self.release(extents)

    def restore_container(self, account: str, name: str, deleted_name: str | None, version: str | None) -> Container:
        """Restore Container (``x-ms-deleted-container-name`` / ``-version``), under its own name."""
        if not deleted_name:
            raise BlobError("MissingRequiredHeader", HeaderName="x-ms-deleted-container-name")
        if deleted_name != name:
            raise BlobError("InvalidHeaderValue", "A container is restored under its own name.",
                            HeaderName="x-ms-deleted-container-name", HeaderValue=deleted_name[:64])
        check_container_name(name)
        with self.meta.tx():
            return self.softdelete.restore_container(account, name, version, now_us())

    def set_container_metadata(self, account: str, name: str, metadata: dict[str, str], cond: Conditions) -> Container:
        check_metadata(metadata)
        with self.meta.tx():
            c = self.container(account, name, cond.lease_id)
            _check_write(cond, c.etag, c.modified_us)
            c.metadata, c.etag, c.modified_us = metadata, etag_value(), now_us()
            self.meta.update_container(c)
        return c

    def set_container_acl(self, account: str, name: str, public_access: str | None, acl: str,
                          cond: Conditions) -> Container:
        public = check_public_access(public_access)
        with self.meta.tx():
            c = self.container(account, name, cond.lease_id)
            _check_write(cond, c.etag, c.modified_us)
            c.public_access, c.acl, c.etag, c.modified_us = public, acl, etag_value(), now_us()
            self.meta.update_container(c)
        return c

    def list_blobs(self, account: str, container: str, prefix: str, delimiter: str, marker: str, limit: int,
                   uncommitted: bool, kinds: str = "", *, with_tags: bool = False) -> tuple[list[Blob | str], str]:
        """A page of blobs (and, with a delimiter, of blob-name prefixes) and the next marker.

        ``kinds`` (SNAPSHOT, VERSION) lists snapshots and previous versions too; their markers name
        the record to resume at (``name`` NUL ``stamp``: names cannot hold NUL). ``with_tags``
        reads each blob's tags (include=tags)."""
        if with_tags:
            page, nxt = self.list_blobs(account, container, prefix, delimiter, marker, limit, uncommitted, kinds)
            listed = [i for i in page if isinstance(i, Blob)]
            found = self.meta.tags_of([b.id for b in listed if b.tag_count])
            for b in listed:
                b.tags = found.get(b.id, {})
            return page, nxt
        c = self.container(account, container)
        end = successor(prefix) if prefix else None
        name, _, key = marker.partition("\x00")
        cursor = (name, key) if name >= prefix else (prefix, "")
        items: list[Blob | str] = []
        while True:
            want = min(limit - len(items) + 1, 1000)
            batch = self.meta.list_blobs(c.id, cursor[0], end, not uncommitted, want, kinds, cursor[1])
            skip: str | None = None
            for blob in batch:
                item: Blob | str = blob
                if delimiter:
                    cut = blob.name.find(delimiter, len(prefix))
                    if cut >= 0:
                        item = blob.name[: cut + len(delimiter)]
                if len(items) == limit:
                    return items, _marker(item, kinds)
                items.append(item)
                if isinstance(item, str):
                    skip = item
                    break
            if skip is not None:
                # Skip every name under this prefix and go on after it.
                after = successor(skip)
                if after is None or (end is not None and after >= end):
                    return items, ""
                cursor = (after, "")
            elif len(batch) < want:
                return items, ""
            elif kinds:
                cursor = (batch[-1].name, order_key(batch[-1]) + "\x00")
            else:
                cursor = (batch[-1].name + "\x00", "")

    # --- blobs --------------------------------------------------------------------------------

    def _committed_blob(self, container_id: int, name: str, stamp: str = "") -> Blob:
        blob = snapshots.find(self.meta, container_id, name, stamp) if stamp else self.meta.get_blob(container_id, name)
        if blob is None or not blob.committed:
            raise BlobError("BlobNotFound")
        if blob.blob_type == "AppendBlob":
            blob.committed_blocks = self.meta.count_parts(blob.id)
        return blob

    def blob(self, account: str, container: str, name: str, cond: Conditions, *, read: bool = True,
             stamp: str = "") -> Blob:
        """A committed blob whose conditions hold (Get Blob Properties / Get Metadata); ``stamp``
        names one of its snapshots or versions (snapshots.stamp_of)."""
        c = self.container(account, container)
        blob = self._committed_blob(c.id, name, stamp)
        if read:
            _check_read(cond, blob)
            leases.check_read(blob.lease, cond.lease_id, now_us())
        else:
            _check_write(cond, blob.etag, blob.modified_us)
            blob.lease = leases.check_write(blob.lease, cond.lease_id, now_us())
        tags.check_condition(cond.if_tags, lambda: self.meta.tags(blob.id))
        return blob

    def lease_blob(self, account: str, container: str, name: str, req: leases.LeaseRequest,
                   cond: Conditions) -> tuple[Blob, leases.LeaseOutcome]:
        """Lease Blob: acquire, renew, change, release or break the blob's lease (its ETag and
        Last-Modified do not change)."""
        with self.meta.tx():
            blob = self._committed_blob(self.container(account, container).id, name)
            _check_write(cond, blob.etag, blob.modified_us)
            tags.check_condition(cond.if_tags, lambda: self.meta.tags(blob.id))
            outcome = leases.apply(blob.lease, req, now_us())
            blob.lease = outcome.lease
            self.meta.save_blob(blob)
        return blob, outcome

    def lease_container(self, account: str, name: str, req: leases.LeaseRequest,
                        cond: Conditions) -> tuple[Container, leases.LeaseOutcome]:
        """Lease Container (its ETag and Last-Modified do not change)."""
        with self.meta.tx():
            c = self.container(account, name)
            _check_write(cond, c.etag, c.modified_us)
            outcome = leases.apply(c.lease, req, now_us(), "Container")
            c.lease = outcome.lease
            self.meta.update_container(c)
        return c, outcome

    async def ingest(self, body: AsyncIterator[bytes], limit: int, md5: bool) -> ExtentWriter:
        writer = self.extents.create(md5=md5)
        try:
            await self.extents.ingest(body, writer, limit)
        except BodyTooLarge as exc:
            writer.discard()
            raise BlobError("RequestBodyTooLarge") from exc
        except BaseException:
            writer.discard()
            raise
        return writer

    async def put_blob(self, account: str, container: str, name: str, body: AsyncIterator[bytes],
                       size_hint: int | None, content: ContentSettings, metadata: dict[str, str],
                       cond: Conditions, transactional_md5: bytes | None,
                       on_replace: ReplaceGuard = None, tier: str | None = None,
                       blob_type: str | None = "BlockBlob", *, tags: dict[str, str] | None = None
                       ) -> tuple[Blob, bytes]:
        """Put Blob: the body becomes the blob's whole content (small bodies inline, others an extent).

        ``on_replace`` (the authorizer's) is called before an existing blob is overwritten; ``tier``
        is the access tier asked for (x-ms-access-tier), None for the default; ``blob_type`` is
        x-ms-blob-type, which Put Blob requires; ``tags`` are x-ms-tags.
        """
        check_blob_name(name)
        check_container_name(container)
        check_blob_type(blob_type)
        check_metadata(metadata)
        tier = check_tier(tier)
        c = self.container(account, container)
        if not cond.empty or on_replace is not None:  # fail before receiving the body; checked again at commit
            _check_overwrite(cond, self.meta.get_blob(c.id, name), on_replace, self.meta.tags)
        if size_hint is not None and size_hint <= INLINE_MAX:
            data = await _collect(body, INLINE_MAX)
            md5 = hashlib.md5(data).digest()
            check_md5(transactional_md5, md5)
            check_md5(content.content_md5, md5)
            parts = [Part(pos=0, length=len(data), extent="", offset=0, data=data)] if data else []
            blob = self.commit_put(account, container, name, parts, md5, content, metadata, cond, on_replace, tier,
                                   tags=tags)
            return blob, md5
        writer = await self.ingest(body, MAX_PUT_BLOB_SIZE, md5=True)
        md5 = writer.md5 or b""
        try:
            check_md5(transactional_md5, md5)
            check_md5(content.content_md5, md5)
            parts = [Part(pos=0, length=writer.size, extent=writer.extent, offset=0)] if writer.size else []
            blob = self.commit_put(account, container, name, parts, md5, content, metadata, cond, on_replace, tier,
                                   tags=tags)
        except BaseException:
            writer.discard()
            raise
        if writer.size == 0:
            writer.discard()
        return blob, md5

    def commit_put(self, account: str, container: str, name: str, parts: list[Part], md5: bytes,
                    content: ContentSettings, metadata: dict[str, str], cond: Conditions,
                    on_replace: ReplaceGuard, tier: str | None, *, tags: dict[str, str] | None = None) -> Blob:
        now = now_us()
        content = replace(content, content_md5=content.content_md5 or md5)
        with self.meta.tx():
            c = self.container(account, container)
            old = self.meta.get_blob(c.id, name)
            _check_overwrite(cond, old, on_replace, self.meta.tags)
            blob = _fresh_blob(c.id, name, old, now, tier)
            blob.size, blob.content, blob.metadata = sum(p.length for p in parts), content, metadata
            blob.tags = tags
            self.meta.save_blob(blob)
            released = self.replace_content(blob, old, parts)
        self.release(released)
        return blob

    def create_blob(self, account: str, container: str, name: str, blob_type: str, content: ContentSettings,
                    metadata: dict[str, str], cond: Conditions, on_replace: ReplaceGuard = None, *,
                    size: int = 0, sequence_number: int = 0, tags: dict[str, str] | None = None) -> Blob:
        """Put Blob of a page or append blob: an empty blob of that type (a page blob of ``size``
        zero bytes) replaces whatever the name held, as Put Blob does."""
        check_blob_name(name)
        check_metadata(metadata)
        with self.meta.tx():
            c = self.container(account, container)
            old = self.meta.get_blob(c.id, name)
            _check_overwrite(cond, old, on_replace, self.meta.tags)
            blob = _fresh_blob(c.id, name, old, now_us(), None)
            blob.blob_type, blob.size, blob.sequence_number = blob_type, size, sequence_number
            blob.content, blob.metadata, blob.tags = content, metadata, tags
            self.meta.save_blob(blob)
            released = self.replace_content(blob, old, [])
        self.release(released)
        return blob

    def replace_content(self, blob: Blob, old: Blob | None, parts: list[Part]) -> list[str]:
        """Make ``parts`` the blob's content, dropping its staged blocks; return released extents.
        With versioning on, the old content is kept as a previous version. New content has the tags
        ``blob.tags`` gives it (x-ms-tags), or none."""
        self.versions.before_write(blob, old, content_replaced=True)
        account = self.softdelete.account_of(blob.container_id)
        if account is not None and not self.versions.kept_by(blob.container_id):
            self.softdelete.keep_overwritten(account, blob, old, now_us())
        if blob.tags or (old is not None and old.tag_count):
            self.meta.set_tags(blob, blob.tags or {})
        if old is None:
            self.meta.insert_parts(blob.id, parts)
            return []
        released = self.meta.replace_parts(blob.id, parts)
        if old.staged_count:
            released += self.meta.clear_staged(blob.id)
        return released

    def set_blob_properties(self, account: str, container: str, name: str, content: ContentSettings,
                            cond: Conditions) -> Blob:
        with self.meta.tx():
            blob = self.blob(account, container, name, cond, read=False)
            check_online(blob)
            blob.content, blob.etag, blob.modified_us = content, etag_value(), now_us()
            self.meta.save_blob(blob)
        return blob

    def set_blob_metadata(self, account: str, container: str, name: str, metadata: dict[str, str],
                          cond: Conditions) -> Blob:
        check_metadata(metadata)
        with self.meta.tx():
            blob = self.blob(account, container, name, cond, read=False)
            check_online(blob)
            self.versions.before_write(blob, replace(blob), content_replaced=False)
            blob.metadata, blob.etag, blob.modified_us = metadata, etag_value(), now_us()
            self.meta.save_blob(blob)
        return blob

    def snapshot_blob(self, account: str, container: str, name: str, metadata: dict[str, str] | None,
                      cond: Conditions) -> Blob:
        """Snapshot Blob: a read-only copy of the blob as it is now (with ``metadata`` if given). A
        leased blob may be snapshotted without its lease id (a given one must match)."""
        if metadata is not None:
            check_metadata(metadata)
        with self.meta.tx():
            blob = self.blob(account, container, name, Conditions(lease_id=cond.lease_id, if_tags=cond.if_tags))
            _check_write(cond, blob.etag, blob.modified_us)
            check_online(blob)
            return snapshots.take_snapshot(self.meta, blob, metadata)

    def delete_blob(self, account: str, container: str, name: str, cond: Conditions, stamp: str = "",
                    delete_snapshots: str | None = None) -> bool:
        """Delete Blob: the base blob (its snapshots too with ``delete_snapshots`` "include", only them
        with "only"; a blob with snapshots and neither is 409 SnapshotsPresent), or the one snapshot
        or version ``stamp`` names. With versioning on, a deleted base blob stays as a version; with
        soft delete on, what is deleted is kept for the retention period (softdelete.py). True when
        the deletion is permanent (x-ms-delete-type-permanent)."""
        mode = snapshots.check_delete_snapshots(delete_snapshots, stamp)
        now = now_us()
        with self.meta.tx():
            blob = self.blob(account, container, name, cond, read=False, stamp=stamp)
            snaps = self.meta.stamps(blob.container_id, name, SNAPSHOT) if blob.is_base else []
            if snaps and mode is None:
                raise BlobError("SnapshotsPresent")
            doomed, extents = list(snaps), []
            if mode != snapshots.ONLY_SNAPSHOTS:
                if not stamp and (blob.version_id is not None or self.versions.kept_by(blob.container_id)):
                    self.versions.before_delete(blob)  # it stays as a previous version
                    extents += self.meta.delete_blob(blob.id)
                else:
                    doomed.append(blob)
            kept = {r.id for r in doomed if self.softdelete.delete(account, r, now)}
            extents += [e for r in doomed if r.id not in kept for e in self.meta.delete_blob(r.id)]
        self.release(extents)
        return not kept

    def undelete_blob(self, account: str, container: str, name: str) -> None:
        """Undelete Blob: what soft delete keeps of the name, restored (softdelete.py)."""
        with self.meta.tx():
            c = self.container(account, container)
            live = self.meta.get_blob(c.id, name)
            self.softdelete.undelete(c.id, name, live if live is not None and live.committed else None, now_us())

    def set_blob_tier(self, account: str, container: str, name: str, tier_header: str | None,
                      cond: Conditions | None = None, stamp: str = "", priority: str | None = None) -> bool:
        """Set Blob Tier; True when an archived blob is being rehydrated (``priority``:
        x-ms-rehydrate-priority; see tiers.py). Neither the ETag nor Last-Modified change, as on Azure."""
        tier = check_tier(tier_header, required=True)
        rehydrate_priority = tiers.check_priority(priority)
        with self.meta.tx():
            blob = self.blob(account, container, name, Conditions(if_tags=cond.if_tags if cond else None), stamp=stamp)
            if blob.blob_type != "BlockBlob":
                raise BlobError("InvalidBlobType", "Only block blobs have access tiers on this account.")
            blob.lease = leases.check_write(blob.lease, cond.lease_id if cond else None, now_us())
            assert tier is not None  # required
            rehydrating = tiers.change(blob, tier, rehydrate_priority, now_us())
            self.meta.save_blob(blob)
        return rehydrating

    # --- reads --------------------------------------------------------------------------------

    def open_read(self, account: str, container: str, name: str, byte_range: tuple[int, int | None] | None,
                  cond: Conditions, stamp: str = "") -> ReadPlan:
        """Resolve a Get Blob: conditions, range (416 past the end) and the pieces to send (runs of
        zeros for the unwritten pages of a page blob)."""
        blob = self.blob(account, container, name, cond, stamp=stamp)
        check_online(blob)
        start, end, partial = 0, blob.size, False
        if byte_range is not None:
            first, last = byte_range
            if first >= blob.size:
                raise BlobError("InvalidRange", RangeRequested=f"bytes={first}-{'' if last is None else last}",
                                ContentLength=str(blob.size))
            start, partial = first, True
            end = blob.size if last is None else min(last + 1, blob.size)
        pieces: list[Piece] = []
        cursor = start
        if end > start:
            for p in self.meta.parts(blob.id, start, end):
                lo, hi = max(start, p.pos), min(end, p.pos + p.length)
                if lo > cursor:
                    pieces.append(("", 0, lo - cursor))
                if p.data is not None:
                    pieces.append(p.data[lo - p.pos: hi - p.pos])
                else:
                    pieces.append((p.extent, p.offset + lo - p.pos, hi - lo))
                cursor = hi
        if end > cursor:
            pieces.append(("", 0, end - cursor))
        return ReadPlan(blob=blob, start=start, end=end, partial=partial, pieces=pieces)

    def inline_bytes(self, plan: ReadPlan) -> bytes | None:
        """The bytes of a read whose content is all inline (no file I/O), else None."""
        if all(isinstance(p, bytes) for p in plan.pieces):
            return b"".join(p for p in plan.pieces if isinstance(p, bytes))
        return None

    async def stream(self, plan: ReadPlan) -> AsyncIterator[bytes]:
        """The bytes of a read plan; its extents stay on disk until the stream ends."""
        extents = [p[0] for p in plan.pieces if isinstance(p, tuple) and p[0]]
        self.extents.pin(extents)
        try:
            async for chunk in self.extents.read(plan.pieces):
                yield chunk
        finally:
            self.extents.unpin(extents, self.meta.is_referenced, self.meta.extent_ranges)

    async def read_with_md5(self, plan: ReadPlan) -> tuple[bytes, bytes]:
        """A (small) range read in full with its MD5 (x-ms-range-get-content-md5)."""
        if plan.length > MAX_RANGE_MD5:
            raise BlobError("OutOfRangeInput", "The range must be at most 4 MiB to request its MD5.")
        chunks = [chunk async for chunk in self.stream(plan)]
        data = b"".join(chunks)
        return data, hashlib.md5(data).digest()

    def check_transactional_md5(self, digest: bytes, md5: bytes | None) -> None:
        """The MD5 ``digest`` of a request body read whole (a block list) against its Content-MD5."""
        check_md5(md5, digest)

    # --- blocks -------------------------------------------------------------------------------

    async def put_block(self, account: str, container: str, name: str, block_id: str,
                        body: AsyncIterator[bytes], transactional_md5: bytes | None,
                        lease_id: str | None = None) -> bytes | None:
        """Put Block: stream the body into a new extent and stage it under ``block_id`` (a leased
        blob takes blocks only from the lease holder, ``lease_id``)."""

        async def receive() -> ExtentWriter:
            writer = await self.ingest(body, MAX_BLOCK_SIZE, md5=transactional_md5 is not None)
            try:
                check_md5(transactional_md5, writer.md5)
            except BaseException:
                writer.discard()
                raise
            return writer

        return (await self.stage_block(account, container, name, block_id, receive, lease_id)).md5

    async def stage_block(self, account: str, container: str, name: str, block_id: str,
                          produce: Callable[[], Awaitable[ExtentWriter]], lease_id: str | None = None) -> ExtentWriter:
        """Put Block around any producer of the block's bytes (the request body; a copy source for
        Put Block From URL): checked before ``produce`` runs and again when the block is staged."""
        check_blob_name(name)
        id_len = decode_block_id(block_id)
        c = self.container(account, container)
        self._check_stage(self.meta.get_blob(c.id, name), block_id, id_len, lease_id)
        writer = await produce()
        try:
            replaced = self._commit_stage(account, container, name, block_id, id_len, writer, lease_id)
        except BaseException:
            writer.discard()
            raise
        self.release([replaced] if replaced else [])
        return writer

    def _check_stage(self, blob: Blob | None, block_id: str, id_len: int, lease_id: str | None) -> None:
        if blob is None or not blob.committed:
            leases.check_new(lease_id)
        else:
            leases.check_write(blob.lease, lease_id, now_us())
        if blob is None:
            return
        if blob.committed and blob.blob_type != "BlockBlob":
            raise BlobError("InvalidBlobType")
        if blob.staged_count and blob.block_id_len is not None and blob.block_id_len != id_len:
            raise BlobError("InvalidBlobOrBlock", "All block ids of a blob must have the same length.")
        if blob.staged_count >= MAX_UNCOMMITTED_BLOCKS and self.meta.get_staged(blob.id, block_id) is None:
            raise BlobError("BlockCountExceedsLimit")

    def _commit_stage(self, account: str, container: str, name: str, block_id: str, id_len: int,
                      writer: ExtentWriter, lease_id: str | None) -> str | None:
        now = now_us()
        with self.meta.tx():
            c = self.container(account, container)
            blob = self.meta.get_blob(c.id, name)
            self._check_stage(blob, block_id, id_len, lease_id)
            if blob is None:
                blob = self.meta.save_blob(Blob(id=0, container_id=c.id, name=name, committed=False,
                                                etag=etag_value(), created_us=now, modified_us=now, size=0))
            replaced = self.meta.put_staged(blob.id, StagedBlock(block_id, writer.extent, writer.size), now)
            if replaced is None:
                blob.staged_count += 1
            blob.block_id_len = id_len
            self.meta.save_blob(blob)
        return replaced

    def put_block_list(self, account: str, container: str, name: str, entries: list[tuple[str, str]],
                       content: ContentSettings, metadata: dict[str, str], cond: Conditions,
                       on_replace: ReplaceGuard = None, tier: str | None = None, *,
                       tags: dict[str, str] | None = None) -> Blob:
        """Put Block List: the listed staged/committed blocks become the blob's content."""
        check_blob_name(name)
        check_metadata(metadata)
        tier = check_tier(tier)
        if len(entries) > MAX_COMMITTED_BLOCKS:
            raise BlobError("BlockListTooLong")
        now = now_us()
        with self.meta.tx():
            c = self.container(account, container)
            old = self.meta.get_blob(c.id, name)
            _check_overwrite(cond, old, on_replace, self.meta.tags)
            if old is not None and old.committed and old.blob_type != "BlockBlob":
                raise BlobError("InvalidBlobType")
            parts, id_len = self._resolve_blocks(old, entries)
            blob = _fresh_blob(c.id, name, old, now, tier)
            blob.size = parts[-1].pos + parts[-1].length if parts else 0
            blob.content, blob.metadata, blob.block_id_len, blob.tags = content, metadata, id_len, tags
            self.meta.save_blob(blob)
            released = self.replace_content(blob, old, parts)
        self.release(released)
        return blob

    def _resolve_blocks(self, blob: Blob | None, entries: list[tuple[str, str]]) -> tuple[list[Part], int | None]:
        committed: dict[str, Part] = {}
        staged: dict[str, StagedBlock] = {}
        if blob is not None:
            if blob.committed:
                committed = {p.block_id: p for p in self.meta.parts(blob.id) if p.block_id is not None}
            staged = {s.block_id: s for s in self.meta.staged(blob.id)}
        parts: list[Part] = []
        lengths: set[int] = set()
        pos = 0
        for kind, block_id in entries:
            lengths.add(decode_block_id(block_id, code="InvalidBlockList"))
            s = staged.get(block_id) if kind != "Committed" else None
            if s is not None:
                parts.append(Part(pos=pos, length=s.size, extent=s.extent, offset=0, block_id=block_id))
            else:
                p = committed.get(block_id) if kind != "Uncommitted" else None
                if p is None:
                    raise BlobError("InvalidBlockList")
                parts.append(replace(p, pos=pos))
            pos += parts[-1].length
        if len(lengths) > 1:
            raise BlobError("InvalidBlockList", "All block ids of a blob must have the same length.")
        return parts, (lengths.pop() if lengths else None)

    def get_block_list(self, account: str, container: str, name: str, list_type: str,
                       lease_id: str | None = None, stamp: str = "", if_tags: str | None = None) -> BlockListing:
        c = self.container(account, container)
        blob = snapshots.find(self.meta, c.id, name, stamp) if stamp else self.meta.get_blob(c.id, name)
        if blob is None:
            raise BlobError("BlobNotFound")
        if blob.committed and blob.blob_type != "BlockBlob":
            raise BlobError("InvalidBlobType")
        leases.check_read(blob.lease, lease_id, now_us())
        tags.check_condition(if_tags, lambda: self.meta.tags(blob.id))
        committed = uncommitted = None
        if list_type in ("committed", "all"):
            parts = self.meta.parts(blob.id) if blob.committed else []
            committed = [(p.block_id, p.length) for p in parts if p.block_id is not None]
        if list_type in ("uncommitted", "all"):
            uncommitted = [(s.block_id, s.size) for s in self.meta.staged(blob.id)]
        return BlockListing(blob=blob, committed=committed, uncommitted=uncommitted)


async def _collect(body: AsyncIterator[bytes], limit: int) -> bytes:
    chunks = []
    size = 0
    async for chunk in body:
        size += len(chunk)
        if size > limit:
            raise BlobError("RequestBodyTooLarge")
        chunks.append(chunk)
    return b"".join(chunks)


def _marker(item: Blob | str, kinds: str) -> str:
    """The NextMarker naming ``item``, the first of the next page."""
    if isinstance(item, str):
        return item
    return f"{item.name}\x00{order_key(item)}" if kinds else item.name


def _fresh_blob(container_id: int, name: str, old: Blob | None, now: int, tier: str | None) -> Blob:
    """The record of a blob about to receive new committed content (keeps id and creation time;
    the tier is the one given, else inferred)."""
    created = old.created_us if old is not None and old.committed else now
    return Blob(id=old.id if old else 0, container_id=container_id, name=name, committed=True,
                etag=etag_value(), created_us=created, modified_us=now, size=0, tier=tier,
                tier_changed_us=now if tier is not None else None,
                lease=old.lease if old is not None and old.committed else leases.NO_LEASE)


def _check_read(cond: Conditions, blob: Blob) -> None:
    if cond.none_match_any:  # "only if it does not exist" cannot hold for a read (Azure: 400)
        raise BlobError("UnsatisfiableCondition", "The request includes an unsatisfiable condition for this "
                                                  "operation.")
    outcome = evaluate(cond, blob.etag, from_us(blob.modified_us), read=True)
    if outcome == NOT_MODIFIED:
        raise BlobError("ConditionNotMet", status=304)
    if outcome != OK:
        raise BlobError("ConditionNotMet")


def _check_write(cond: Conditions, etag: str, modified_us: int) -> None:
    if evaluate(cond, etag, from_us(modified_us), read=False) != OK:
        raise BlobError("ConditionNotMet")


def _check_overwrite(cond: Conditions, blob: Blob | None, on_replace: ReplaceGuard,
                     tags_of: Callable[[int], dict[str, str]] | None = None) -> None:
    """May a write create or replace ``blob``: the caller's guard when it exists, then the
    conditions (If-None-Match: * -> 409; x-ms-if-tags on the blob's tags, read through
    ``tags_of``), then its lease (``blob.lease`` becomes the lease the new content keeps)."""
    exists = blob is not None and blob.committed
    if exists and on_replace is not None:
        on_replace()
    if exists and blob is not None:
        check_online(blob)  # an archived blob cannot be overwritten until it is rehydrated
    if exists and cond.none_match_any:
        raise BlobError("BlobAlreadyExists")
    if not cond.empty and evaluate(cond, blob.etag if blob and exists else None,
                                   from_us(blob.modified_us) if blob and exists else None, read=False) != OK:
        raise BlobError("ConditionNotMet")
    if blob is not None and exists and cond.if_tags is not None:
        if tags_of is None:  # a write that cannot read tags must not pretend to have checked them
            raise BlobError("UnsupportedHeader", HeaderName="x-ms-if-tags")
        tags.check_condition(cond.if_tags, lambda: tags_of(blob.id))
    if blob is not None and exists:
        blob.lease = leases.check_write(blob.lease, cond.lease_id, now_us())
    else:
        leases.check_new(cond.lease_id)


# The write rules every blob write shares, for the feature modules (append.py, pages.py, copies.py).
check_overwrite = _check_overwrite
fresh_blob = _fresh_blob
