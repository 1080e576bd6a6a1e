"""Blob routes whose bytes come from a URL: Copy Blob (and Copy Blob From URL), Abort Copy, Put Blob /
Put Block / Append Block / Put Page From URL. Parse, authorize the source, call one ``Copies``
operation, render; nothing here decides a rule or touches storage.

A source URL naming this Blob endpoint is read locally (and authorized like any read: its SAS,
the caller's key for the same account, or public access); any other URL is another server's,
fetched by the copy itself.
"""

from __future__ import annotations

import base64
import ipaddress
from urllib.parse import urlsplit

from openbatch.blob import params, snapshots
from openbatch.blob.append import AppendBlobs, AppendConditions
from openbatch.blob.auth import Authorizer, Grant
from openbatch.blob.copies import Copies, LocalSource, RemoteSource, Source
from openbatch.blob.errors import BlobError, bad_header
from openbatch.blob.http import Request, Response, parse_query
from openbatch.blob.models import Blob
from openbatch.blob.pages import SequenceConditions
from openbatch.blob.service import Blobs
from openbatch.blob.tags import copy_source_tags
from openbatch.common.escapes import unquote_strict
from openbatch.config import Settings

ENCRYPTED = ("x-ms-request-server-encrypted", "true")
_SOURCE_CONDITIONS = {"x-ms-source-if-match": "If-Match", "x-ms-source-if-none-match": "If-None-Match",
                      "x-ms-source-if-modified-since": "If-Modified-Since",
                      "x-ms-source-if-unmodified-since": "If-Unmodified-Since", "x-ms-source-if-tags": "x-ms-if-tags"}


def append_conditions(req: Request) -> AppendConditions:
    return AppendConditions(params.int_header(req, "x-ms-blob-condition-maxsize"),
                            params.int_header(req, "x-ms-blob-condition-appendpos"))


def sequence_conditions(req: Request) -> SequenceConditions:
    return SequenceConditions(params.int_header(req, "x-ms-if-sequence-number-le"),
                              params.int_header(req, "x-ms-if-sequence-number-lt"),
                              params.int_header(req, "x-ms-if-sequence-number-eq"))


def _flag(req: Request, name: str) -> bool | None:
    value = req.headers.get(name)
    if value is None or value == "":
        return None
    if value.strip().lower() not in ("true", "false"):
        raise bad_header(name, value[:16])
    return value.strip().lower() == "true"


def md5_header(md5: bytes | None) -> list[tuple[str, str]]:
    return [("content-md5", base64.b64encode(md5).decode())] if md5 is not None else []


class CopyHandlers:
    """The copy routes of ``BlobApi`` (a mixin: ``blobs``, ``auth``, ``settings``, ``copies``, ``appends``)."""

    blobs: Blobs
    auth: Authorizer
    settings: Settings
    copies: Copies
    appends: AppendBlobs

    # --- Copy Blob, Put Blob From URL, Abort Copy -----------------------------------------------

    async def copy_blob(self, req: Request, grant: Grant) -> Response:
        """A Put Blob with x-ms-copy-source: Put Blob From URL when it names a blob type (201), else
        Copy Blob (202; x-ms-requires-sync: Copy Blob From URL)."""
        if "x-ms-blob-type" in req.headers:
            return await self._put_blob_from_url(req, grant)
        source = self.copy_source(req, grant)
        assert req.blob is not None
        metadata = params.metadata(req) or None
        tier = req.headers.get("x-ms-access-tier")
        tags, source_tags = params.tags(req), copy_source_tags(req.headers.get("x-ms-copy-source-tag-option"),
                                                               req.headers.get("x-ms-tags"))
        if isinstance(source, LocalSource):
            blob = self.copies.copy_local(req.account, req.container, req.blob, source, _shown(req), metadata,
                                          params.conditions(req), params.source_conditions(req), grant.replace_guard,
                                          tier, seal=_flag(req, "x-ms-seal-blob"), tags=tags, source_tags=source_tags)
        else:
            if _flag(req, "x-ms-seal-blob"):
                raise bad_header("x-ms-seal-blob", "true", "Sealing is only served for copies within this server.")
            if source_tags:
                raise bad_header("x-ms-copy-source-tag-option", "COPY", "The tags of another server's blob cannot "
                                                                        "be copied.")
            blob = await self.copies.start_copy(req.account, req.container, req.blob, source, metadata,
                                                params.conditions(req), grant.replace_guard, tier,
                                                sync=bool(_flag(req, "x-ms-requires-sync")), tags=tags)
        assert blob.copy is not None
        headers = [*params.etag_headers(blob.etag, blob.modified_us), ("x-ms-copy-id", blob.copy.copy_id),
                   ("x-ms-copy-status", blob.copy.status), *_version(blob)]
        return Response(202, headers)

    async def _put_blob_from_url(self, req: Request, grant: Grant) -> Response:
        if (req.headers.get("x-ms-blob-type") or "").lower() != "blockblob":
            raise bad_header("x-ms-blob-type", req.headers.get("x-ms-blob-type", "")[:32],
                             "Put Blob From URL makes block blobs.")
        params.no_body(req)
        source = self.copy_source(req, grant)
        assert req.blob is not None
        own = _flag(req, "x-ms-copy-source-blob-properties") is False or params.sets_content(req)
        content = params.content_settings(req, put_blob=False) if own else None
        md5 = params.b64_header(req, "x-ms-source-content-md5")
        cond, tier = params.conditions(req), req.headers.get("x-ms-access-tier")
        tags, source_tags = params.tags(req), copy_source_tags(req.headers.get("x-ms-copy-source-tag-option"),
                                                               req.headers.get("x-ms-tags"))
        if isinstance(source, LocalSource) and md5 is None:  # no byte moves (an MD5 to check reads them)
            blob = self.copies.copy_local(req.account, req.container, req.blob, source, _shown(req),
                                          params.metadata(req), cond, params.source_conditions(req),
                                          grant.replace_guard, tier, put_blob=True, content=content, tags=tags,
                                          source_tags=source_tags)
        else:
            if source_tags:
                raise bad_header("x-ms-copy-source-tag-option", "COPY", "Copying the source's tags is only served "
                                                                        "for blobs of this server.")
            blob = await self.copies.put_blob(req.account, req.container, req.blob, source,
                                              params.source_conditions(req), md5, content, params.metadata(req), cond,
                                              grant.replace_guard, tier, tags=tags)
        headers = [*params.etag_headers(blob.etag, blob.modified_us), ENCRYPTED, *md5_header(blob.content.content_md5),
                   *_version(blob)]
        return Response(201, headers)

    async def abort_copy(self, req: Request, grant: Grant) -> Response:
        action = req.headers.get("x-ms-copy-action")
        if not action:
            raise BlobError("MissingRequiredHeader", HeaderName="x-ms-copy-action")
        if action.strip().lower() != "abort":
            raise bad_header("x-ms-copy-action", action[:32])
        copy_id = req.query.get("copyid")
        if not copy_id:
            raise BlobError("MissingRequiredQueryParameter", QueryParameterName="copyid")
        assert req.blob is not None
        self.copies.abort_copy(req.account, req.container, req.blob, copy_id, params.conditions(req))
        return Response(204)

    # --- the From URL writes --------------------------------------------------------------------

    async def put_block_from_url(self, req: Request, grant: Grant, block_id: str) -> Response:
        params.no_body(req)
        source = self.copy_source(req, grant)
        assert req.blob is not None
        md5 = await self.copies.stage_block(req.account, req.container, req.blob, block_id, source,
                                            params.open_range(req, "x-ms-source-range"), params.source_conditions(req),
                                            params.b64_header(req, "x-ms-source-content-md5"),
                                            req.headers.get("x-ms-lease-id"))
        return Response(201, [ENCRYPTED, *md5_header(md5)])

    async def append_block_from_url(self, req: Request, grant: Grant) -> Response:
        params.no_body(req)
        source = self.copy_source(req, grant)
        assert req.blob is not None
        done = await self.copies.append_block(req.account, req.container, req.blob, source,
                                              params.open_range(req, "x-ms-source-range"),
                                              params.source_conditions(req),
                                              params.b64_header(req, "x-ms-source-content-md5"),
                                              params.conditions(req), append_conditions(req))
        return Response(201, [*params.etag_headers(done.blob.etag, done.blob.modified_us), ENCRYPTED,
                              *md5_header(done.md5), ("x-ms-blob-append-offset", str(done.offset)),
                              ("x-ms-blob-committed-block-count", str(done.blob.committed_blocks))])

    async def put_page_from_url(self, req: Request, grant: Grant) -> Response:
        params.no_body(req)
        pages = params.closed_range(req, "x-ms-range", "range")
        source_range = params.closed_range(req, "x-ms-source-range")
        assert pages is not None and source_range is not None and req.blob is not None
        source = self.copy_source(req, grant)
        blob, md5 = await self.copies.upload_pages(req.account, req.container, req.blob, pages, source, source_range,
                                                   params.source_conditions(req),
                                                   params.b64_header(req, "x-ms-source-content-md5"),
                                                   params.conditions(req), sequence_conditions(req))
        return Response(201, [*params.etag_headers(blob.etag, blob.modified_us), ENCRYPTED, *md5_header(md5),
                              ("x-ms-blob-sequence-number", str(blob.sequence_number))])

    # --- sources --------------------------------------------------------------------------------

    def copy_source(self, req: Request, grant: Grant) -> Source:
        """The source x-ms-copy-source names: a blob of this server (authorized here) or another URL.

        A URL that does not parse is 400 InvalidHeaderValue. A blob of this server is this Blob
        endpoint under the host the client called, the public URL, or a loopback name or the
        configured host with the Blob port; a namesake on any other host or port is never served
        from here.
        """
        url = req.headers.get("x-ms-copy-source", "")
        shown = url.split("?", 1)[0][:256]
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            names = [unquote_strict(s) for s in parts.path.split("/", 3)[1:]]
            query = dict(reversed(parse_query(parts.query)))
        except (ValueError, BlobError):  # BadEscape is a ValueError
            raise bad_header("x-ms-copy-source", shown) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise bad_header("x-ms-copy-source", shown)
        if not self._serves(req, parts.hostname, port):
            return RemoteSource(url, _remote_headers(req))
        if len(names) < 3 or names[0] not in self.settings.accounts or not names[1] or not names[2]:
            raise BlobError("CannotVerifyCopySource", "The specified resource does not exist.", status=404)
        if req.headers.get("x-ms-copy-source-authorization"):
            raise BlobError("CannotVerifyCopySource", "x-ms-copy-source-authorization (an Entra ID token) cannot be "
                            "verified by this server; give the source URL a SAS.", status=401)
        source = LocalSource(names[0], names[1], names[2],
                             snapshots.stamp_of(query.get("snapshot"), query.get("versionid")))
        self.auth.authorize_copy_source(grant, req.account, (source.account, source.container, source.name), query,
                                        req.client_ip, req.scheme)
        return source

    def _serves(self, req: Request, host: str, port: int) -> bool:
        """Is ``host:port`` this Blob endpoint?"""
        host = host.lower()
        if port == self.settings.blob_port and (host == self.settings.host.lower() or _is_loopback(host)):
            return True
        for scheme, netloc in ((req.scheme, req.host), *_scheme_netloc(self.settings.blob_url)):
            try:
                known = urlsplit(f"{scheme}://{netloc}")
                known_port = known.port or (443 if scheme == "https" else 80)
            except ValueError:
                continue
            if known.hostname is not None and (known.hostname.lower(), known_port) == (host, port):
                return True
        return False


def _remote_headers(req: Request) -> dict[str, str]:
    """What the GET to another server carries: the caller's credential for it, the source conditions."""
    headers = {theirs: req.headers[ours] for ours, theirs in _SOURCE_CONDITIONS.items() if req.headers.get(ours)}
    authorization = req.headers.get("x-ms-copy-source-authorization")
    if authorization:
        headers["Authorization"] = authorization
    return headers


def _shown(req: Request) -> str:
    """The copy source as kept in the destination's properties: without its query (a SAS is a secret)."""
    return req.headers.get("x-ms-copy-source", "").split("?", 1)[0]


def _version(blob: Blob) -> list[tuple[str, str]]:
    return [("x-ms-version-id", blob.version_id)] if blob.version_id is not None else []


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _scheme_netloc(url: str) -> list[tuple[str, str]]:
    parts = urlsplit(url)
    return [(parts.scheme, parts.netloc)] if parts.netloc else []
