"""Blob routes of page and append blobs: creating them (Put Blob), Append Block, Append Blob Seal,
Put Page, Get Page Ranges (and diffs), resize and sequence numbers (Set Blob Properties). Parse,
call one ``PageBlobs`` / ``AppendBlobs`` operation, render; nothing here decides a rule.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from openbatch.blob import params, snapshots, wire
from openbatch.blob.api_copies import (
    ENCRYPTED,
    CopyHandlers,
    append_conditions,
    md5_header,
    sequence_conditions,
)
from openbatch.blob.append import MAX_APPEND_BLOCK, AppendBlobs
from openbatch.blob.auth import Grant
from openbatch.blob.errors import BlobError, bad_header
from openbatch.blob.http import Request, Response, parse_query
from openbatch.blob.pages import MAX_PAGE_WRITE, PageBlobs
from openbatch.common.escapes import unquote_strict

MAX_PAGE_RANGES = 10_000  # per answer when the client asks for pages of ranges (maxresults)


class PageHandlers(CopyHandlers):
    """The page- and append-blob routes of ``BlobApi`` (a mixin, like CopyHandlers)."""

    pages: PageBlobs
    appends: AppendBlobs

    async def create_typed_blob(self, req: Request, grant: Grant) -> Response:
        """Put Blob with x-ms-blob-type PageBlob / AppendBlob: an empty blob of that type."""
        params.no_body(req)
        if req.headers.get("x-ms-access-tier"):
            raise BlobError("AccessTierNotSupportedForBlobType")
        assert req.blob is not None
        content, metadata = params.content_settings(req, put_blob=True), params.metadata(req)
        tags = params.tags(req)
        if (req.headers.get("x-ms-blob-type") or "").lower() == "pageblob":
            blob = self.pages.create(req.account, req.container, req.blob,
                                     params.int_header(req, "x-ms-blob-content-length"),
                                     params.int_header(req, "x-ms-blob-sequence-number"), content, metadata,
                                     params.conditions(req), grant.replace_guard, tags)
        else:
            blob = self.blobs.create_blob(req.account, req.container, req.blob, "AppendBlob", content, metadata,
                                          params.conditions(req), grant.replace_guard, tags=tags)
        headers = [*params.etag_headers(blob.etag, blob.modified_us), ENCRYPTED]
        if blob.version_id is not None:
            headers.append(("x-ms-version-id", blob.version_id))
        return Response(201, headers)

    async def append_block(self, req: Request, grant: Grant) -> Response:
        if req.headers.get("x-ms-copy-source"):
            return await self.append_block_from_url(req, grant)
        length = params.declared_length(req, MAX_APPEND_BLOCK)
        assert req.blob is not None
        done = await self.appends.append_block(req.account, req.container, req.blob, req.body(), length,
                                               params.b64_header(req, "content-md5"), params.conditions(req),
                                               append_conditions(req))
        return Response(201, [*params.etag_headers(done.blob.etag, done.blob.modified_us), ENCRYPTED,
                              *md5_header(done.md5),
                              ("x-ms-blob-append-offset", str(done.offset)),
                              ("x-ms-blob-committed-block-count", str(done.blob.committed_blocks))])

    async def seal_append_blob(self, req: Request, grant: Grant) -> Response:
        assert req.blob is not None
        blob = self.appends.seal(req.account, req.container, req.blob, params.conditions(req), append_conditions(req))
        return Response(200, [*params.etag_headers(blob.etag, blob.modified_us), ("x-ms-blob-sealed", "true")])

    async def put_page(self, req: Request, grant: Grant) -> Response:
        """Put Page: x-ms-page-write update (the body, or From URL with x-ms-copy-source) or clear."""
        write = (req.headers.get("x-ms-page-write") or "").strip().lower()
        if not write:
            raise BlobError("MissingRequiredHeader", HeaderName="x-ms-page-write")
        if write not in ("update", "clear"):
            raise bad_header("x-ms-page-write", write[:16])
        if write == "update" and req.headers.get("x-ms-copy-source"):
            return await self.put_page_from_url(req, grant)
        pages = params.closed_range(req, "x-ms-range", "range")
        assert pages is not None and req.blob is not None
        cond, seq = params.conditions(req), sequence_conditions(req)
        md5 = None
        if write == "clear":
            params.no_body(req)
            blob = self.pages.clear_pages(req.account, req.container, req.blob, pages, cond, seq)
        else:
            length = params.declared_length(req, MAX_PAGE_WRITE)
            blob, md5 = await self.pages.upload_pages(req.account, req.container, req.blob, pages, req.body(), length,
                                                      params.b64_header(req, "content-md5"), cond, seq)
        headers = [*params.etag_headers(blob.etag, blob.modified_us),
                   ("x-ms-blob-sequence-number", str(blob.sequence_number))]
        if write == "update":
            headers.append(ENCRYPTED)
        return Response(201, headers + md5_header(md5))

    async def get_page_ranges(self, req: Request, grant: Grant) -> Response:
        """Get Page Ranges; with ``prevsnapshot`` (or x-ms-previous-snapshot-url) the diff since then."""
        assert req.blob is not None
        previous = self._previous_snapshot(req)
        limit = params.int_query(req, "maxresults", 1, MAX_PAGE_RANGES)
        listing = self.pages.page_ranges(req.account, req.container, req.blob, params.conditions(req),
                                         params.stamp(req), params.closed_range(req, "x-ms-range", "range",
                                                                                 required=False),
                                         previous, req.query.get("marker", ""), limit)
        headers = [*params.etag_headers(listing.blob.etag, listing.blob.modified_us), ("content-type", wire.XML_TYPE),
                   ("x-ms-blob-content-length", str(listing.blob.size))]
        return Response(200, headers, wire.page_list_xml(listing.ranges, listing.clears, listing.next_marker))

    def _previous_snapshot(self, req: Request) -> str | None:
        """The snapshot a diff starts from: ``prevsnapshot`` or the snapshot of x-ms-previous-snapshot-url
        (a managed-disk form; here it must name a snapshot of the same blob on this server)."""
        if req.query.get("prevsnapshot"):
            return snapshots.stamp_of(req.query["prevsnapshot"], None)
        url = req.headers.get("x-ms-previous-snapshot-url")
        if not url:
            return None
        try:
            parts = urlsplit(url)
            names = [unquote_strict(s) for s in parts.path.split("/", 3)[1:]]
            snapshot = dict(parse_query(parts.query)).get("snapshot")
        except (ValueError, BlobError):
            names, snapshot = [], None
        if not snapshot or names[-2:] != [req.container, req.blob]:
            raise bad_header("x-ms-previous-snapshot-url", url.split("?", 1)[0][:256],
                             "It must name a snapshot of this blob.")
        return snapshots.stamp_of(snapshot, None)

    def set_page_properties(self, req: Request) -> Response:
        """Set Blob Properties with x-ms-blob-content-length / x-ms-sequence-number-action (page blobs);
        the content headers change only when the request sets one of them."""
        assert req.blob is not None
        content = params.content_settings(req, put_blob=False) if params.sets_content(req) else None
        blob = self.pages.set_properties(req.account, req.container, req.blob,
                                         params.int_header(req, "x-ms-blob-content-length"),
                                         req.headers.get("x-ms-sequence-number-action"),
                                         params.int_header(req, "x-ms-blob-sequence-number"), content,
                                         params.conditions(req))
        return Response(200, [*params.etag_headers(blob.etag, blob.modified_us),
                              ("x-ms-blob-sequence-number", str(blob.sequence_number))])


def changes_pages(req: Request) -> bool:
    """Is a Set Blob Properties request a page blob's resize or sequence-number action?"""
    return "x-ms-blob-content-length" in req.headers or "x-ms-sequence-number-action" in req.headers
