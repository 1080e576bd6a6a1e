"""Page blobs: Put Page (update, clear, from URL), Get Page Ranges (and the diff against a snapshot),
resize and sequence numbers. Raises BlobError; knows no HTTP.

A page blob is sparse: its parts are the written page runs, in order and never overlapping; what
no part covers reads as zeros and costs no space. Writing or clearing a range cuts the parts it
overlaps (a part keeps the bytes left and right of the range, still pointing into its extent) and,
for a write, adds one part for the new extent. Extents no part references any more are deleted;
extents some part still references in part get the unused stretches punched out of their file
(``ExtentStore.trim``), so clearing and overwriting pages frees space. Snapshots keep their own
parts, so a page a snapshot still shows keeps its bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from openbatch.blob import snapshots
from openbatch.blob.checks import check_md5
from openbatch.blob.errors import BlobError, bad_header
from openbatch.blob.extents import ExtentWriter
from openbatch.blob.models import Blob, ContentSettings, Part
from openbatch.blob.service import MIB, Blobs, ReplaceGuard
from openbatch.common.clock import now_us
from openbatch.common.conditions import Conditions
from openbatch.common.ids import etag_value

PAGE_BLOB = "PageBlob"
PAGE = 512
MAX_PAGE_WRITE = 4 * MIB
MAX_PAGE_BLOB = 8 << 40  # 8 TiB
MAX_SEQUENCE_NUMBER = (1 << 63) - 1
SEQUENCE_ACTIONS = ("max", "update", "increment")


@dataclass(frozen=True)
class SequenceConditions:
    """x-ms-if-sequence-number-le / -lt / -eq of a page write (None: not given)."""

    le: int | None = None
    lt: int | None = None
    eq: int | None = None

    def check(self, blob: Blob) -> None:
        n = blob.sequence_number
        if (self.le is not None and n > self.le) or (self.lt is not None and n >= self.lt) or (
                self.eq is not None and n != self.eq):
            raise BlobError("SequenceNumberConditionNotMet")


@dataclass(frozen=True)
class PageList:
    blob: Blob
    ranges: list[tuple[int, int]]  # (first byte, last byte) of written pages
    clears: list[tuple[int, int]]  # diff only: pages cleared since the previous snapshot
    next_marker: str


def check_size(size: int, header: str = "x-ms-blob-content-length") -> int:
    if size % PAGE or size > MAX_PAGE_BLOB:
        raise bad_header(header, str(size), "A page blob's size is a multiple of 512 bytes, at most 8 TiB.")
    return size


def check_pages(first: int, last: int, blob: Blob) -> tuple[int, int]:
    """A page range ``bytes=first-last`` as ``[start, end)``: 512-byte aligned and inside the blob
    (416 InvalidPageRange otherwise)."""
    if first % PAGE or (last + 1) % PAGE or last >= blob.size:
        raise BlobError("InvalidPageRange")
    return first, last + 1


class PageBlobs:
    """The page-blob operations, on top of the Blob service's stores."""

    def __init__(self, blobs: Blobs) -> None:
        self.blobs = blobs

    def create(self, account: str, container: str, name: str, size: int | None, sequence_number: int | None,
               content: ContentSettings, metadata: dict[str, str], cond: Conditions,
               on_replace: ReplaceGuard = None, tags: dict[str, str] | None = None) -> Blob:
        """Put Blob of a page blob: ``size`` bytes of zeros (x-ms-blob-content-length, required)."""
        if size is None:
            raise BlobError("MissingRequiredHeader", HeaderName="x-ms-blob-content-length")
        check_size(size)
        return self.blobs.create_blob(account, container, name, PAGE_BLOB, content, metadata, cond, on_replace,
                                      size=size, sequence_number=sequence_number or 0, tags=tags)

    def writable(self, account: str, container: str, name: str, cond: Conditions, seq: SequenceConditions) -> Blob:
        blob = self.blobs.blob(account, container, name, cond, read=False)
        if blob.blob_type != PAGE_BLOB:
            raise BlobError("InvalidBlobType")
        seq.check(blob)
        return blob

    async def upload_pages(self, account: str, container: str, name: str, pages: tuple[int, int],
                           body: AsyncIterator[bytes], length: int | None, transactional_md5: bytes | None,
                           cond: Conditions, seq: SequenceConditions) -> tuple[Blob, bytes | None]:
        """Put Page (update): the body is written over the pages ``bytes=first-last``."""
        first, last = pages
        if length is not None and length != last - first + 1:
            raise BlobError("InvalidPageRange", "The page range does not match the length of the body.")
        if last - first + 1 > MAX_PAGE_WRITE:
            raise BlobError("InvalidPageRange", "At most 4 MiB of pages may be written at once.")
        check_pages(first, last, self.writable(account, container, name, cond, seq))
        writer = await self.blobs.ingest(body, MAX_PAGE_WRITE, md5=True)
        try:
            check_md5(transactional_md5, writer.md5)
            return self.commit(account, container, name, pages, writer, cond, seq), writer.md5
        except BaseException:
            writer.discard()
            raise

    def commit(self, account: str, container: str, name: str, pages: tuple[int, int], writer: ExtentWriter,
               cond: Conditions, seq: SequenceConditions) -> Blob:
        """Write the extent ``writer`` wrote over the pages ``bytes=first-last`` (the caller discards
        the extent if this raises)."""
        if writer.size != pages[1] - pages[0] + 1:
            raise BlobError("InvalidPageRange", "The page range does not match the length of the body.")
        return self._write(account, container, name, pages, writer.extent, cond, seq)

    def clear_pages(self, account: str, container: str, name: str, pages: tuple[int, int], cond: Conditions,
                    seq: SequenceConditions) -> Blob:
        """Put Page (clear): the pages read as zeros again and their bytes are given back."""
        return self._write(account, container, name, pages, "", cond, seq)

    def _write(self, account: str, container: str, name: str, pages: tuple[int, int], extent: str,
               cond: Conditions, seq: SequenceConditions) -> Blob:
        meta = self.blobs.meta
        with meta.tx():
            blob = self.writable(account, container, name, cond, seq)
            start, end = check_pages(*pages, blob)
            new = Part(pos=start, length=end - start, extent=extent, offset=0) if extent else None
            touched = self._cut(blob, start, end, new)
            blob.etag, blob.modified_us = etag_value(), now_us()
            meta.save_blob(blob)
        self._reclaim(touched)
        return blob

    def _cut(self, blob: Blob, start: int, end: int | None, new: Part | None) -> list[str]:
        """Remove what the blob holds in ``[start, end)`` (to its end when ``end`` is None), then add
        ``new``; return the extents whose parts were cut."""
        meta = self.blobs.meta
        cut = meta.parts(blob.id, start, end)
        meta.delete_parts(blob.id, [p.pos for p in cut])
        kept: list[Part] = []
        for p in cut:
            if p.pos < start:
                kept.append(replace(p, length=start - p.pos))
            if end is not None and p.pos + p.length > end:
                kept.append(replace(p, pos=end, length=p.pos + p.length - end, offset=p.offset + end - p.pos))
        if new is not None:
            kept.append(new)
        meta.insert_parts(blob.id, kept)
        return [p.extent for p in cut]

    def _reclaim(self, extents: list[str]) -> None:
        """After a commit: delete the extents nothing references, punch out what is unused of the rest."""
        self.blobs.release(extents)
        self.blobs.extents.trim(extents, self.blobs.meta.extent_ranges)

    def page_ranges(self, account: str, container: str, name: str, cond: Conditions, stamp: str,
                    pages: tuple[int, int] | None, previous: str | None, marker: str,
                    limit: int | None) -> PageList:
        """Get Page Ranges of the blob (or of a snapshot / version) within ``pages``; with ``previous``
        (the stamp of an earlier snapshot) the pages written and cleared since then."""
        blob = self.blobs.blob(account, container, name, cond, stamp=stamp)
        if blob.blob_type != PAGE_BLOB:
            raise BlobError("InvalidBlobType")
        start, end = 0, blob.size
        if pages is not None:  # any byte range will do for a query; pages touching it are listed
            if pages[0] >= blob.size and blob.size:
                raise BlobError("InvalidRange", RangeRequested=f"bytes={pages[0]}-{pages[1]}",
                                ContentLength=str(blob.size))
            start, end = pages[0], min(pages[1] + 1, blob.size)
        if marker:
            if not marker.isdigit():
                raise BlobError("OutOfRangeInput", QueryParameterName="marker", QueryParameterValue=marker[:64])
            start = max(start, int(marker))
        meta = self.blobs.meta
        current = _runs(meta.parts(blob.id, start, end) if end > start else [], start, end)
        if previous is None:
            ranges: list[tuple[str, int, int]] = [("page", s, e) for s, e, _ in _merge(current)]
        else:
            before = snapshots.find(meta, blob.container_id, name, previous)
            if before is None or not before.snapshot:
                raise BlobError("PreviousSnapshotNotFound", status=409)
            old = _runs(meta.parts(before.id, start, end) if end > start else [], start, end)
            ranges = _diff(current, old)
        page, nxt = ranges, ""
        if limit is not None and len(ranges) > limit:
            page, nxt = ranges[:limit], str(ranges[limit][1])
        return PageList(blob, [(s, e - 1) for k, s, e in page if k == "page"],
                        [(s, e - 1) for k, s, e in page if k == "clear"], nxt)

    def set_properties(self, account: str, container: str, name: str, size: int | None, action: str | None,
                       number: int | None, content: ContentSettings | None, cond: Conditions) -> Blob:
        """Set Blob Properties of a page blob: resize (``size``), a sequence number action, and the
        content headers when the request set any (only then: Azure leaves them alone otherwise)."""
        if size is not None:
            check_size(size)
        act = _sequence_action(action, number)
        meta = self.blobs.meta
        touched: list[str] = []
        with meta.tx():
            blob = self.blobs.blob(account, container, name, cond, read=False)
            if blob.blob_type != PAGE_BLOB:
                raise BlobError("InvalidBlobType")
            if size is not None and size < blob.size:
                touched = self._cut(blob, size, None, None)
            if size is not None:
                blob.size = size
            if act is not None:
                blob.sequence_number = _next_sequence_number(blob.sequence_number, act, number)
            if content is not None:
                blob.content = content
            blob.etag, blob.modified_us = etag_value(), now_us()
            meta.save_blob(blob)
        self._reclaim(touched)
        return blob


def _sequence_action(action: str | None, number: int | None) -> str | None:
    if action is None or action == "":
        if number is not None:
            raise BlobError("MissingRequiredHeader", HeaderName="x-ms-sequence-number-action")
        return None
    act = action.strip().lower()
    if act not in SEQUENCE_ACTIONS:
        raise bad_header("x-ms-sequence-number-action", action[:32])
    if act == "increment" and number is not None:
        raise bad_header("x-ms-blob-sequence-number", str(number), "Increment takes no sequence number.")
    if act != "increment" and number is None:
        raise BlobError("MissingRequiredHeader", HeaderName="x-ms-blob-sequence-number")
    return act


def _next_sequence_number(current: int, action: str, number: int | None) -> int:
    if action == "increment":
        if current >= MAX_SEQUENCE_NUMBER:
            raise BlobError("SequenceNumberIncrementTooLarge")
        return current + 1
    assert number is not None
    return max(current, number) if action == "max" else number


# A run of a blob within a window: (start, end, (extent, offset at start)).
Run = tuple[int, int, tuple[str, int]]


def _runs(parts: list[Part], start: int, end: int) -> list[Run]:
    """The parts clipped to ``[start, end)``, each with where its first byte is stored."""
    runs = []
    for p in parts:
        lo, hi = max(start, p.pos), min(end, p.pos + p.length)
        if hi > lo:
            runs.append((lo, hi, (p.extent, p.offset + lo - p.pos)))
    return runs


def _merge(runs: list[Run]) -> list[Run]:
    """Adjacent runs as one (the ranges Azure reports are maximal)."""
    merged: list[Run] = []
    for run in runs:
        if merged and merged[-1][1] == run[0]:
            merged[-1] = (merged[-1][0], run[1], merged[-1][2])
        else:
            merged.append(run)
    return merged


def _diff(current: list[Run], old: list[Run]) -> list[tuple[str, int, int]]:
    """What changed between two states of a page blob: ("page", s, e) where the current bytes are
    not the ones the old state stored there (written since), ("clear", s, e) where the old state had
    pages and the current one has none (cleared since). Both states point into extents, so equal
    storage means unchanged."""
    cuts = sorted({b for run in (*current, *old) for b in run[:2]})
    out: list[tuple[str, int, int]] = []
    ci = oi = 0
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        while ci < len(current) and current[ci][1] <= lo:
            ci += 1
        while oi < len(old) and old[oi][1] <= lo:
            oi += 1
        now = _at(current, ci, lo)
        was = _at(old, oi, lo)
        if now == was:
            continue
        kind = "page" if now is not None else "clear"
        if out and out[-1][0] == kind and out[-1][2] == lo:
            out[-1] = (kind, out[-1][1], hi)
        else:
            out.append((kind, lo, hi))
    return out


def _at(runs: list[Run], i: int, pos: int) -> tuple[str, int] | None:
    """Where byte ``pos`` is stored according to ``runs[i]`` (None: not covered)."""
    if i < len(runs) and runs[i][0] <= pos < runs[i][1]:
        extent, offset = runs[i][2]
        return extent, offset + pos - runs[i][0]
    return None

