"""Copies from URLs: Put Block / Append Block / Put Page / Put Blob From URL, and Copy Blob from
another server (asynchronous, with progress and Abort Copy). Raises BlobError; knows no HTTP of
its own clients (it is an HTTP client of the copy source).

A source on this server is read from its extents (no request goes out); any other source is
fetched with one streaming GET (a ``Range`` for a source range, the request's
``x-ms-copy-source-authorization`` as its ``Authorization``, the ``x-ms-source-if-*`` conditions
as ``If-*``), written into a new extent as it arrives, so no copy holds more than a chunk in
memory. The bytes become visible only with the commit that references the extent, exactly as an
upload's would. Redirects are not followed. Source URLs are logged and stored without their query
(a SAS is a secret).

Copy Blob from another server answers once the source has answered (202, ``x-ms-copy-status:
pending``) and copies in the background: the destination is an empty blob with the source's
properties until the copy succeeds; its ``x-ms-copy-progress`` moves every 16 MiB. Abort Copy
stops it (the destination stays empty, ``aborted``); a copy cut off by a server restart is
``failed`` (its source URL and credentials are not kept, so it cannot be resumed).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace

import httpx

from openbatch.blob.append import MAX_APPEND_BLOCK, AppendBlobs, AppendConditions, Appended
from openbatch.blob.checks import check_blob_name, check_md5, check_metadata
from openbatch.blob.errors import BlobError
from openbatch.blob.extents import BodyTooLarge, ExtentWriter
from openbatch.blob.models import Blob, ContentSettings, CopyInfo, Part
from openbatch.blob.pages import MAX_PAGE_WRITE, PageBlobs, SequenceConditions, check_pages
from openbatch.blob.service import (
    MAX_BLOCK_SIZE,
    MAX_PUT_BLOB_SIZE,
    MIB,
    Blobs,
    ReplaceGuard,
    check_overwrite,
    fresh_blob,
)
from openbatch.blob.tags import check_condition
from openbatch.blob.tiers import check_online, check_tier
from openbatch.common.clock import from_us, now_us
from openbatch.common.conditions import OK, Conditions, evaluate
from openbatch.common.ids import request_id

log = logging.getLogger("openbatch.blob.copies")

MAX_SYNC_COPY = 256 * MIB  # Copy Blob From URL (x-ms-requires-sync)
MAX_ASYNC_COPY = 50_000 * 4000 * MIB  # the largest block blob
PROGRESS_EVERY = 16 * MIB
_TIMEOUT = httpx.Timeout(30.0, read=120.0)
_CODE = re.compile(rb"<Code>([^<]{1,128})</Code>")
_RESTARTED = "500 InternalError Copy failed: the server restarted while the copy was in progress."


@dataclass(frozen=True)
class LocalSource:
    """A blob (``stamp``: or its snapshot / version) of this server."""

    account: str
    container: str
    name: str
    stamp: str = ""


@dataclass(frozen=True)
class RemoteSource:
    """Any other http(s) URL. ``headers``: what the GET carries besides the range (Authorization,
    If-* from the source conditions)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def shown(self) -> str:
        return self.url.split("?", 1)[0]


Source = LocalSource | RemoteSource


@dataclass
class Fetched:
    """A source's bytes in a new extent, with what the source said about itself."""

    writer: ExtentWriter
    content: ContentSettings


def source_error(status: int, code: str, message: str) -> BlobError:
    """CannotVerifyCopySource, carrying what the source answered (as Azure reports it)."""
    return BlobError("CannotVerifyCopySource", message or "Could not verify the copy source.", status=status,
                     CopySourceStatusCode=str(status), CopySourceErrorCode=code,
                     CopySourceErrorMessage=message or code)


class Copies:
    """Copy operations whose bytes come from a URL."""

    def __init__(self, blobs: Blobs, appends: AppendBlobs, pages: PageBlobs) -> None:
        self.blobs = blobs
        self.appends = appends
        self.pages = pages
        self._client: httpx.AsyncClient | None = None
        self._running: dict[str, asyncio.Task[None]] = {}

    async def close(self) -> None:
        """Stop the background copies (they are marked failed at the next start) and the client."""
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def recover(self) -> int:
        """Startup: copies a previous run left pending failed with it."""
        with self.blobs.meta.tx():
            return self.blobs.meta.fail_pending_copies(_RESTARTED, now_us())

    # --- reading a source ---------------------------------------------------------------------

    async def fetch(self, source: Source, byte_range: tuple[int, int | None] | None, cond: Conditions,
                    limit: int, md5: bytes | None = None) -> Fetched:
        """The source's bytes (or ``byte_range`` of them) in a new extent; at most ``limit`` bytes.
        ``md5`` is x-ms-source-content-md5: what the fetched bytes must hash to."""
        if isinstance(source, LocalSource):
            fetched = await self._fetch_local(source, byte_range, cond, limit)
        else:
            response = await self._open(source, byte_range)
            try:
                fetched = await self._receive(source, response, byte_range, limit)
            finally:
                await response.aclose()
        try:
            check_md5(md5, fetched.writer.md5)
        except BaseException:
            fetched.writer.discard()
            raise
        return fetched

    async def _fetch_local(self, source: LocalSource, byte_range: tuple[int, int | None] | None, cond: Conditions,
                           limit: int) -> Fetched:
        try:
            blob = self.blobs.blob(source.account, source.container, source.name, Conditions(), stamp=source.stamp)
            check_online(blob)
            plan = self.blobs.open_read(source.account, source.container, source.name, byte_range, Conditions(),
                                        source.stamp)
        except BlobError as err:
            raise source_error(err.status or _LOCAL_STATUS.get(err.code, 400), err.code, err.message) from None
        if evaluate(cond, blob.etag, from_us(blob.modified_us), read=False) != OK:
            raise BlobError("SourceConditionNotMet")
        check_condition(cond.if_tags, lambda: self.blobs.meta.tags(blob.id), "SourceConditionNotMet")
        if plan.length > limit:
            raise BlobError("RequestBodyTooLarge", status=413, MaxLimit=str(limit))
        writer = await self._write(self.blobs.stream(plan), limit)
        return Fetched(writer, replace(blob.content))

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=_TIMEOUT, follow_redirects=False, trust_env=False)
        return self._client

    async def _open(self, source: RemoteSource, byte_range: tuple[int, int | None] | None) -> httpx.Response:
        """Send the GET and wait for the source's answer (status and headers), not its body."""
        headers = {"x-ms-version": "2025-01-05", **source.headers}
        if byte_range is not None:
            first, last = byte_range
            headers["Range"] = f"bytes={first}-{'' if last is None else last}"
        try:
            request = self._http().build_request("GET", source.url, headers=headers)
            response = await self._http().send(request, stream=True)
        except (httpx.HTTPError, ValueError) as exc:
            log.info("copy source %s unreachable: %s", source.shown[:256], type(exc).__name__)
            raise source_error(404, "CannotVerifyCopySource", "Could not reach the copy source.") from None
        if response.status_code in (200, 206):
            return response
        try:
            body = await anext(response.aiter_raw(64 << 10), b"")
        except httpx.HTTPError:
            body = b""
        finally:
            await response.aclose()
        found = _CODE.search(body)
        code = found.group(1).decode("utf-8", "replace") if found else response.reason_phrase or "Error"
        if response.status_code in (304, 412):
            raise BlobError("SourceConditionNotMet")
        raise source_error(response.status_code, code, f"The copy source answered {response.status_code} {code}.")

    async def _receive(self, source: RemoteSource, response: httpx.Response, byte_range: tuple[int, int | None] | None,
                       limit: int, on_progress: Callable[[int], Awaitable[None]] | None = None) -> Fetched:
        _, skip, length = _extent_of(response, byte_range)
        if length is not None and length > limit:
            raise BlobError("RequestBodyTooLarge", status=413, MaxLimit=str(limit))
        body = _window(response.aiter_raw(), skip, length, on_progress)
        try:
            writer = await self._write(body, limit)
        except httpx.HTTPError:
            log.info("copy source %s broke off", source.shown[:256])
            raise source_error(404, "CannotVerifyCopySource", "The copy source broke off its answer.") from None
        if length is not None and writer.size != length:
            writer.discard()
            raise source_error(404, "CannotVerifyCopySource", "The copy source sent fewer bytes than it announced.")
        return Fetched(writer, _content_of(response.headers))

    async def _write(self, chunks: AsyncIterator[bytes], limit: int) -> ExtentWriter:
        writer = self.blobs.extents.create(md5=True)
        try:
            await self.blobs.extents.ingest(chunks, writer, limit)
        except BodyTooLarge:
            writer.discard()
            raise BlobError("RequestBodyTooLarge", status=413, MaxLimit=str(limit)) from None
        except BaseException:
            writer.discard()
            raise
        return writer

    # --- the From URL operations --------------------------------------------------------------

    async def stage_block(self, account: str, container: str, name: str, block_id: str, source: Source,
                          byte_range: tuple[int, int | None] | None, cond: Conditions, md5: bytes | None,
                          lease_id: str | None) -> bytes | None:
        """Put Block From URL: the source's bytes (a range of them) staged as block ``block_id``."""

        async def produce() -> ExtentWriter:
            return (await self.fetch(source, byte_range, cond, MAX_BLOCK_SIZE, md5)).writer

        return (await self.blobs.stage_block(account, container, name, block_id, produce, lease_id)).md5

    async def append_block(self, account: str, container: str, name: str, source: Source,
                           byte_range: tuple[int, int | None] | None, source_cond: Conditions, md5: bytes | None,
                           cond: Conditions, append: AppendConditions) -> Appended:
        """Append Block From URL: the source's bytes become the append blob's next block."""
        self.appends.writable(account, container, name, cond, append, 0)
        writer = (await self.fetch(source, byte_range, source_cond, MAX_APPEND_BLOCK, md5)).writer
        try:
            return self.appends.commit(account, container, name, writer, cond, append)
        except BaseException:
            writer.discard()
            raise

    async def upload_pages(self, account: str, container: str, name: str, pages: tuple[int, int], source: Source,
                           source_range: tuple[int, int], source_cond: Conditions, md5: bytes | None,
                           cond: Conditions, seq: SequenceConditions) -> tuple[Blob, bytes | None]:
        """Put Page From URL: ``source_range`` of the source written over ``pages``."""
        if source_range[1] - source_range[0] != pages[1] - pages[0]:
            raise BlobError("InvalidPageRange", "The source range and the page range differ in length.")
        if pages[1] - pages[0] + 1 > MAX_PAGE_WRITE:
            raise BlobError("InvalidPageRange", "At most 4 MiB of pages may be written at once.")
        check_pages(*pages, self.pages.writable(account, container, name, cond, seq))
        writer = (await self.fetch(source, source_range, source_cond, MAX_PAGE_WRITE, md5)).writer
        try:
            return self.pages.commit(account, container, name, pages, writer, cond, seq), writer.md5
        except BaseException:
            writer.discard()
            raise

    async def put_blob(self, account: str, container: str, name: str, source: Source, source_cond: Conditions,
                       md5: bytes | None, content: ContentSettings | None, metadata: dict[str, str], cond: Conditions,
                       on_replace: ReplaceGuard, tier: str | None, *, tags: dict[str, str] | None = None) -> Blob:
        """Put Blob From URL, the bytes moving (from another server, or to check x-ms-source-content-md5):
        a block blob of the source's bytes, with the source's content headers unless ``content`` gives them."""
        fetched = await self.fetch(source, None, source_cond, MAX_PUT_BLOB_SIZE, md5)
        writer = fetched.writer
        try:
            parts = [Part(pos=0, length=writer.size, extent=writer.extent, offset=0)] if writer.size else []
            blob = self.blobs.commit_put(account, container, name, parts, writer.md5 or b"", content or fetched.content,
                                         metadata, cond, on_replace, tier, tags=tags)
        except BaseException:
            writer.discard()
            raise
        if writer.size == 0:
            writer.discard()
        return blob

    # --- Copy Blob ----------------------------------------------------------------------------

    def copy_local(self, account: str, container: str, name: str, source: LocalSource, source_url: str,
                   metadata: dict[str, str] | None, cond: Conditions, source_cond: Conditions,
                   on_replace: ReplaceGuard = None, tier: str | None = None, *, seal: bool | None = None,
                   put_blob: bool = False, content: ContentSettings | None = None,
                   tags: dict[str, str] | None = None, source_tags: bool = False) -> Blob:
        """Copy a blob of this server (or a snapshot / version of it): the copy shares the source's
        extents (no bytes move), done at once. It is of the source's type, sealed as the source is
        unless ``seal`` says otherwise; an existing destination must be of that type. Put Blob From
        URL (``put_blob``) makes a block blob whatever the source and replaces any blob, with the
        source's content headers unless ``content`` gives them. The copy has
        the source's tier unless ``tier`` is given; an archived source is offline (BlobArchived:
        rehydrating through a copy is not supported). The copy has the tags ``tags`` gives it, or
        with ``source_tags`` the source's (x-ms-copy-source-tag-option: COPY)."""
        check_blob_name(name)
        if metadata is not None:
            check_metadata(metadata)
        tier = check_tier(tier)
        now = now_us()
        blobs, meta = self.blobs, self.blobs.meta
        with meta.tx():
            src = blobs.blob(source.account, source.container, source.name, Conditions(lease_id=source_cond.lease_id),
                             stamp=source.stamp)
            check_online(src)
            if evaluate(source_cond, src.etag, from_us(src.modified_us), read=False) != OK:
                raise BlobError("SourceConditionNotMet")
            check_condition(source_cond.if_tags, lambda: meta.tags(src.id), "SourceConditionNotMet")
            parts = meta.parts(src.id)
            c = blobs.container(account, container)
            old = meta.get_blob(c.id, name)
            check_overwrite(cond, old, on_replace, meta.tags)
            blob_type = "BlockBlob" if put_blob else src.blob_type
            _check_copy_target(old, blob_type, put_blob)
            blob = fresh_blob(c.id, name, old, now, (tier or src.tier) if blob_type == "BlockBlob" else None)
            blob.size, blob.block_id_len = src.size, src.block_id_len
            blob.content = replace(src.content) if content is None else content
            blob.blob_type, blob.sequence_number = blob_type, src.sequence_number
            blob.sealed = blob_type == "AppendBlob" and (src.sealed if seal is None else seal)
            blob.metadata = dict(src.metadata) if metadata is None else metadata
            blob.copy = CopyInfo(copy_id=request_id(), source=source_url, status="success",
                                 progress=f"{src.size}/{src.size}", completed_us=now)
            blob.tags = meta.tags(src.id) if source_tags else tags
            meta.save_blob(blob)
            released = blobs.replace_content(blob, old, parts)
        blobs.release(released)
        return blob


    async def start_copy(self, account: str, container: str, name: str, source: RemoteSource,
                         metadata: dict[str, str] | None, cond: Conditions, on_replace: ReplaceGuard,
                         tier: str | None, *, sync: bool, tags: dict[str, str] | None = None) -> Blob:
        """Copy Blob (``sync``: Copy Blob From URL, at most 256 MiB, done before answering) from
        another server. Answers once the source has: the destination is created pending."""
        check_blob_name(name)
        if metadata is not None:
            check_metadata(metadata)
        tier = check_tier(tier)
        self._destination(account, container, name, cond, on_replace, None)  # fail before asking the source
        response = await self._open(source, None)
        try:
            total, _, _ = _extent_of(response, None)
            if sync and total > MAX_SYNC_COPY:
                raise BlobError("CannotVerifyCopySource", "Copy Blob From URL copies at most 256 MiB.", status=409)
            copy = CopyInfo(copy_id=request_id(), source=source.shown, status="pending", progress=f"0/{total}",
                            completed_us=None)
            blob_type = response.headers.get("x-ms-blob-type", "BlockBlob")
            if blob_type not in ("BlockBlob", "PageBlob", "AppendBlob"):
                blob_type = "BlockBlob"
            with self.blobs.meta.tx():
                old = self._destination(account, container, name, cond, on_replace, blob_type)
                blob = fresh_blob(old[0], name, old[1], now_us(), tier if blob_type == "BlockBlob" else None)
                blob.blob_type, blob.content, blob.copy = blob_type, _content_of(response.headers), copy
                blob.metadata = _metadata_of(response.headers) if metadata is None else metadata
                blob.tags = tags
                self.blobs.meta.save_blob(blob)
                released = self.blobs.replace_content(blob, old[1], [])
            self.blobs.release(released)
        except BaseException:
            await response.aclose()
            raise
        run = self._run(blob, source, response, total)
        if sync:
            await run
            done = self.blobs.meta.get_blob_by_id(blob.id)
            if done is None or done.copy is None or done.copy.status != "success":
                description = done.copy.description if done is not None and done.copy is not None else ""
                raise source_error(409, "CannotVerifyCopySource", description or "The copy did not complete.")
            return done
        self._running[copy.copy_id] = asyncio.get_running_loop().create_task(run)
        return blob

    async def _run(self, blob: Blob, source: RemoteSource, response: httpx.Response, total: int) -> None:
        """Receive a pending copy's bytes, then make them the destination's (if it is still waiting
        for this copy); a failure is recorded as the copy's status."""
        assert blob.copy is not None
        copy_id = blob.copy.copy_id
        meta = self.blobs.meta
        reported = 0

        async def progress(done: int) -> None:
            nonlocal reported
            if done - reported >= PROGRESS_EVERY:
                reported = done
                with meta.tx():
                    meta.set_copy_progress(blob.id, copy_id, f"{done}/{total}")

        try:
            fetched = await self._receive(source, response, None, MAX_ASYNC_COPY, progress)
        except BlobError as err:
            self._finish(blob.id, copy_id, None, f"{err.status or 500} {err.code} {err.message}")
            return
        except Exception:
            log.exception("copy %s from %s failed", copy_id, source.shown[:256])
            self._finish(blob.id, copy_id, None, "500 InternalError Copy failed.")
            return
        finally:
            await response.aclose()
            self._running.pop(copy_id, None)
        self._finish(blob.id, copy_id, fetched, "")

    def _destination(self, account: str, container: str, name: str, cond: Conditions, on_replace: ReplaceGuard,
                     blob_type: str | None) -> tuple[int, Blob | None]:
        """The container id and the blob a copy is about to replace, once it may (conditions,
        lease, SAS, an existing blob of the same type with no copy pending)."""
        c = self.blobs.container(account, container)
        old = self.blobs.meta.get_blob(c.id, name)
        check_overwrite(cond, old, on_replace, self.blobs.meta.tags)
        if blob_type is not None:
            _check_copy_target(old, blob_type, False)
        elif old is not None and old.copy is not None and old.copy.status == "pending":
            raise BlobError("PendingCopyOperation")
        return c.id, old

    def _finish(self, blob_id: int, copy_id: str, fetched: Fetched | None, failure: str) -> None:
        """Record how a pending copy ended: its bytes become the destination's content (success) or
        the failure its status; unless the destination no longer waits for this copy (aborted,
        overwritten, deleted), whose bytes are then dropped."""
        meta = self.blobs.meta
        writer = fetched.writer if fetched is not None else None
        committed = False
        try:
            with meta.tx():
                blob = meta.get_blob_by_id(blob_id)
                if blob is None or blob.copy is None or blob.copy.copy_id != copy_id or blob.copy.status != "pending":
                    return
                now = now_us()
                if writer is None:
                    blob.copy = replace(blob.copy, status="failed", completed_us=now, description=failure)
                else:
                    meta.insert_parts(blob_id, [Part(pos=0, length=writer.size, extent=writer.extent, offset=0)]
                                      if writer.size else [])
                    blob.size = writer.size
                    blob.content.content_md5 = blob.content.content_md5 or writer.md5
                    blob.copy = replace(blob.copy, status="success", progress=f"{writer.size}/{writer.size}",
                                        completed_us=now)
                    committed = True
                meta.save_blob(blob)
        finally:
            if writer is not None and (not committed or writer.size == 0):
                writer.discard()

    def abort_copy(self, account: str, container: str, name: str, copy_id: str, cond: Conditions) -> None:
        """Abort Copy: stop a pending copy; the destination stays an empty blob, ``aborted``."""
        meta = self.blobs.meta
        with meta.tx():
            blob = self.blobs.blob(account, container, name, cond, read=False)
            if blob.copy is None or blob.copy.status != "pending":
                raise BlobError("NoPendingCopyOperation")
            if blob.copy.copy_id != copy_id:
                raise BlobError("CopyIdMismatch")
            blob.copy = replace(blob.copy, status="aborted", completed_us=now_us())
            meta.save_blob(blob)
        task = self._running.pop(copy_id, None)
        if task is not None:
            task.cancel()


def _check_copy_target(old: Blob | None, blob_type: str, put_blob: bool) -> None:
    """Copy Blob: an existing destination must be of the source's type and not receiving a copy."""
    if old is None or not old.committed or put_blob:
        return
    if old.blob_type != blob_type:
        raise BlobError("InvalidBlobType")
    if old.copy is not None and old.copy.status == "pending":
        raise BlobError("PendingCopyOperation")


_LOCAL_STATUS = {"BlobNotFound": 404, "ContainerNotFound": 404, "InvalidRange": 416, "BlobArchived": 409}


def _extent_of(response: httpx.Response, byte_range: tuple[int, int | None] | None) -> tuple[int, int, int | None]:
    """(the source's whole size, bytes of the answer to skip, bytes to take) — a server that ignored
    the Range header (200 to a range request) is read past the bytes before the range."""
    length = response.headers.get("content-length")
    size = int(length) if length and length.isdigit() else None
    if response.status_code == 206:
        total = response.headers.get("content-range", "").rpartition("/")[2]
        return (int(total) if total.isdigit() else (size or 0)), 0, size
    whole = size or 0
    if byte_range is None:
        return whole, 0, size
    first, last = byte_range
    if first >= whole:
        raise source_error(416, "InvalidRange", "The source range is past the end of the copy source.")
    end = whole if last is None else min(last + 1, whole)
    return whole, first, end - first


async def _window(chunks: AsyncIterator[bytes], skip: int, length: int | None,
                  on_progress: Callable[[int], Awaitable[None]] | None) -> AsyncIterator[bytes]:
    """``length`` bytes (all when None) of ``chunks`` after the first ``skip``."""
    done = 0
    async for chunk in chunks:
        if skip:
            cut = min(skip, len(chunk))
            chunk, skip = chunk[cut:], skip - cut
        if length is not None:
            chunk = chunk[: length - done]
        if chunk:
            done += len(chunk)
            yield chunk
            if on_progress is not None:
                await on_progress(done)
        if length is not None and done >= length:
            return


def _content_of(headers: httpx.Headers) -> ContentSettings:
    """The content headers a source answered with (a range answer's MD5 is the whole blob's
    x-ms-blob-content-md5)."""
    md5 = headers.get("x-ms-blob-content-md5") if "content-range" in headers else headers.get("content-md5")
    content_md5 = None
    if md5:
        with contextlib.suppress(ValueError):
            content_md5 = base64.b64decode(md5, validate=True)
    return ContentSettings(
        content_type=headers.get("content-type") or "application/octet-stream",
        content_encoding=headers.get("content-encoding", ""), content_language=headers.get("content-language", ""),
        content_md5=content_md5, cache_control=headers.get("cache-control", ""),
        content_disposition=headers.get("content-disposition", ""))


def _metadata_of(headers: httpx.Headers) -> dict[str, str]:
    return {k[10:]: v for k, v in headers.items() if k.lower().startswith("x-ms-meta-")}
