"""Blob routes: parse the request, authorize it, call one ``Blobs`` operation, render the result.

Path style ``/{account}/{container}/{blob}`` as Azurite serves it; any ``x-ms-version`` is
served (the response echoes it). Nothing here decides a rule or touches storage.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from openbatch.blob import batch, cors, leases, userkeys, wire
from openbatch.blob.api_pages import PageHandlers, changes_pages
from openbatch.blob.append import AppendBlobs
from openbatch.blob.auth import OPERATIONS, Authorizer, Grant, Rule
from openbatch.blob.copies import Copies
from openbatch.blob.errors import BlobError, bad_query
from openbatch.blob.http import ClientGone, Receive, Request, Response, Send, send_response
from openbatch.blob.models import DELETED, SNAPSHOT, VERSION, Blob
from openbatch.blob.pages import PageBlobs
from openbatch.blob.params import b64_header as _b64_header
from openbatch.blob.params import byte_range as _range
from openbatch.blob.params import conditions as _conditions
from openbatch.blob.params import content_settings as _content_settings
from openbatch.blob.params import declared_length as _declared_length
from openbatch.blob.params import etag_headers as _etag_headers
from openbatch.blob.params import int_query as _int_query
from openbatch.blob.params import metadata as _metadata
from openbatch.blob.params import stamp
from openbatch.blob.params import tags as _tags
from openbatch.blob.service import MAX_BLOCK_SIZE, MAX_LIST_RESULTS, MAX_PUT_BLOB_SIZE, Blobs
from openbatch.blob.tags import BlobTagging, parse_search
from openbatch.common.clock import from_us, now_us
from openbatch.common.identity import identity_service
from openbatch.common.sas import StoredPolicy
from openbatch.config import Settings

log = logging.getLogger("openbatch.blob")

Handler = Callable[[Request, Grant], Awaitable[Response]]

# (level, method, restype, comp) -> handler; who may call each one is auth.OPERATIONS[handler].
ROUTES: dict[tuple[str, str, str, str], str] = {
    ("service", "GET", "", "list"): "list_containers",
    ("service", "GET", "service", "properties"): "get_service_properties",
    ("service", "PUT", "service", "properties"): "set_service_properties",
    ("service", "GET", "service", "stats"): "get_service_stats",
    ("service", "POST", "", "batch"): "submit_batch",
    ("service", "POST", "service", "userdelegationkey"): "get_user_delegation_key",
    ("container", "PUT", "container", ""): "create_container",
    ("container", "GET", "container", ""): "container_properties",
    ("container", "HEAD", "container", ""): "container_properties",
    ("container", "DELETE", "container", ""): "delete_container",
    ("container", "GET", "container", "metadata"): "container_properties",
    ("container", "HEAD", "container", "metadata"): "container_properties",
    ("container", "PUT", "container", "metadata"): "set_container_metadata",
    ("container", "GET", "container", "acl"): "get_container_acl",
    ("container", "HEAD", "container", "acl"): "get_container_acl",
    ("container", "PUT", "container", "acl"): "set_container_acl",
    ("container", "PUT", "container", "lease"): "lease_container",
    ("container", "POST", "container", "batch"): "submit_batch",
    ("container", "GET", "container", "list"): "list_blobs",
    ("blob", "PUT", "", ""): "put_blob",
    ("blob", "PUT", "", "block"): "put_block",
    ("blob", "PUT", "", "blocklist"): "put_block_list",
    ("blob", "GET", "", "blocklist"): "get_block_list",
    ("blob", "GET", "", ""): "get_blob",
    ("blob", "HEAD", "", ""): "blob_properties",
    ("blob", "GET", "", "metadata"): "blob_metadata",
    ("blob", "HEAD", "", "metadata"): "blob_metadata",
    ("blob", "PUT", "", "metadata"): "set_blob_metadata",
    ("blob", "PUT", "", "properties"): "set_blob_properties",
    ("blob", "DELETE", "", ""): "delete_blob",
    ("blob", "PUT", "", "tier"): "set_blob_tier",
    ("blob", "PUT", "", "lease"): "lease_blob",
    ("blob", "PUT", "", "snapshot"): "snapshot_blob",
    ("blob", "PUT", "", "copy"): "abort_copy",
    ("blob", "PUT", "", "appendblock"): "append_block",
    ("blob", "PUT", "", "seal"): "seal_append_blob",
    ("blob", "PUT", "", "page"): "put_page",
    ("blob", "GET", "", "pagelist"): "get_page_ranges",
    ("blob", "PUT", "", "undelete"): "undelete_blob",
    ("container", "PUT", "container", "undelete"): "restore_container",
    ("blob", "GET", "", "tags"): "get_blob_tags",
    ("blob", "PUT", "", "tags"): "set_blob_tags",
    ("service", "GET", "", "blobs"): "find_blobs_by_tags",
    ("container", "GET", "container", "blobs"): "find_blobs_by_tags",
}
# The operations a request may address to a snapshot (?snapshot=) or a version (?versionid=) of a
# blob; any other answers 400 InvalidQueryParameterValue (snapshots and versions are read-only).
_STAMPED = {"get_blob", "blob_properties", "blob_metadata", "get_block_list", "get_page_ranges", "delete_blob",
            "set_blob_tier", "get_blob_tags", "set_blob_tags"}
# Operations of Azure's Blob REST API this server does not serve, by (level, method, comp): they answer
# 400 UnsupportedQueryParameter naming their comp, rather than InvalidQueryParameterValue (Azure's
# answer for a comp value that names no operation at all).
NOT_SERVED: dict[tuple[str, str, str], str] = {
    ("container", "PUT", "rename"): "Rename Container",
    ("blob", "POST", "query"): "Query Blob Contents",
    ("blob", "PUT", "expiry"): "Set Blob Expiry",
    ("blob", "PUT", "immutabilityPolicies"): "Set Blob Immutability Policy",
    ("blob", "DELETE", "immutabilityPolicies"): "Delete Blob Immutability Policy",
    ("blob", "PUT", "legalhold"): "Set Blob Legal Hold",
    ("blob", "PUT", "incrementalcopy"): "Incremental Copy Blob",
}
_LIST_INCLUDES = {"metadata", "uncommittedblobs", "copy", "snapshots", "deleted", "tags", "versions",
                  "immutabilitypolicy", "legalhold", "deletedwithversions", "permissions"}
_ENCRYPTED = ("x-ms-request-server-encrypted", "true")
_SMALL_READ = 64 << 10  # blobs up to this size are read at once and sent as one body


def _version_id(blob: Blob) -> list[tuple[str, str]]:
    return [("x-ms-version-id", blob.version_id)] if blob.version_id is not None else []


def _level(req: Request) -> str:
    if not req.container:
        return "service"
    return "container" if req.blob is None else "blob"


def _lease_request(req: Request) -> leases.LeaseRequest:
    h = req.headers
    return leases.parse_request(h.get("x-ms-lease-action"), h.get("x-ms-lease-id"), h.get("x-ms-proposed-lease-id"),
                                h.get("x-ms-lease-duration"), h.get("x-ms-lease-break-period"))


def _lease_response(etag: str, modified_us: int, outcome: leases.LeaseOutcome, action: str) -> Response:
    headers = _etag_headers(etag, modified_us)
    if outcome.lease_id is not None:
        headers.append(("x-ms-lease-id", outcome.lease_id))
    if outcome.lease_time is not None:
        headers.append(("x-ms-lease-time", str(outcome.lease_time)))
    return Response(_LEASE_STATUS[action], headers)


_LEASE_STATUS = {"acquire": 201, "renew": 200, "change": 200, "release": 200, "break": 202}


def _endpoint(req: Request) -> str:
    return f"{req.scheme}://{req.host}/{req.account}/"


class BlobApi(PageHandlers):
    """The request handlers; each one translates and calls one domain operation (those of page and
    append blobs and of copies from URLs are in api_pages.py and api_copies.py)."""

    def __init__(self, blobs: Blobs, auth: Authorizer, settings: Settings) -> None:
        self.blobs = blobs
        self.auth = auth
        self.settings = settings
        self.appends = AppendBlobs(blobs)
        self.pages = PageBlobs(blobs)
        self.copies = Copies(blobs, self.appends, self.pages)
        self.tagging = BlobTagging(blobs)
        self.routes: dict[tuple[str, str, str, str], tuple[Handler, Rule]] = {
            key: (getattr(self, name), OPERATIONS[name]) for key, name in ROUTES.items()
        }

    def route(self, req: Request) -> tuple[Handler, Rule]:
        level = _level(req)
        comp = req.query.get("comp", "")
        restype = req.query.get("restype", "")
        if restype == "account" and comp == "properties" and req.method in ("GET", "HEAD"):
            return self.account_info, OPERATIONS["account_info"]
        key = (level, req.method, restype if level != "blob" else "", comp)
        found = self.routes.get(key)
        if found is not None and comp == "lease" and req.headers.get("x-ms-lease-action", "").lower() == "break":
            return found[0], OPERATIONS["break_" + ROUTES[key]]  # a SAS with delete may break a lease
        if found is not None:
            return found
        if any(k[0] == level and k[2:] == key[2:] for k in self.routes):
            raise BlobError("UnsupportedHttpVerb", status=405)
        what = NOT_SERVED.get((level, req.method, comp))
        if what is not None:
            raise BlobError("UnsupportedQueryParameter", f"{what} is not supported by this server.",
                            QueryParameterName="comp", QueryParameterValue=comp)
        if level == "container" and restype != "container":
            raise bad_query("restype", restype[:64])
        raise bad_query("comp", comp[:64])

    # --- service ------------------------------------------------------------------------------

    async def list_containers(self, req: Request, grant: Grant) -> Response:
        prefix = req.query.get("prefix", "")
        marker = req.query.get("marker", "")
        limit = _int_query(req, "maxresults", 1, MAX_LIST_RESULTS) or MAX_LIST_RESULTS
        include = set(filter(None, req.query.get("include", "").split(",")))
        if not include <= {"metadata", "deleted", "system"}:
            raise bad_query("include", req.query.get("include", "")[:64])
        items, nxt = self.blobs.list_containers(req.account, prefix, wire.decode_marker(marker), limit,
                                                "deleted" in include)
        body = wire.list_containers_xml(_endpoint(req), prefix, marker, req.query.get("maxresults", ""), items,
                                        wire.encode_marker(nxt) if nxt else "", "metadata" in include)
        return Response(200, [("content-type", wire.XML_TYPE)], body)

    async def get_service_properties(self, req: Request, grant: Grant) -> Response:
        stored = self.blobs.get_service_properties(req.account)
        body = (stored or wire.DEFAULT_SERVICE_PROPERTIES).encode("utf-8")
        return Response(200, [("content-type", wire.XML_TYPE)], body)

    async def set_service_properties(self, req: Request, grant: Grant) -> Response:
        _declared_length(req, wire.SERVICE_PROPERTIES_XML.max_body)
        body = await wire.read_xml(req.body(), wire.SERVICE_PROPERTIES_XML)
        self.blobs.set_service_properties(req.account, wire.parse_service_properties(body))
        return Response(202)

    async def account_info(self, req: Request, grant: Grant) -> Response:
        """A geo-redundant general purpose v2 account with read access to its secondary (served at
        ``/{account}-secondary``) and no hierarchical namespace."""
        return Response(200, [("x-ms-sku-name", "Standard_RAGRS"), ("x-ms-account-kind", "StorageV2"),
                              ("x-ms-is-hns-enabled", "false")])

    async def get_user_delegation_key(self, req: Request, grant: Grant) -> Response:
        if grant.principal is None:
            raise BlobError("AuthenticationFailed", AuthenticationErrorDetail="Only a bearer token (Microsoft Entra "
                            "ID) may get a user delegation key.")
        _declared_length(req, userkeys.KEY_INFO_XML.max_body)
        body = await wire.read_xml(req.body(), userkeys.KEY_INFO_XML)
        start, expiry = userkeys.parse_key_info(body, from_us(now_us()))
        xml = userkeys.key_xml(self.settings.accounts[req.account], grant.principal, start, expiry, req.version)
        return Response(200, [("content-type", wire.XML_TYPE)], xml)

    async def get_service_stats(self, req: Request, grant: Grant) -> Response:
        """Get Blob Service Stats: the secondary is this very store, so it is live and in sync now."""
        return Response(200, [("content-type", wire.XML_TYPE)], wire.service_stats_xml(now_us()))

    # --- containers ---------------------------------------------------------------------------

    async def create_container(self, req: Request, grant: Grant) -> Response:
        c = self.blobs.create_container(req.account, req.container, _metadata(req),
                                        req.headers.get("x-ms-blob-public-access"))
        return Response(201, _etag_headers(c.etag, c.modified_us))

    async def container_properties(self, req: Request, grant: Grant) -> Response:
        c = self.blobs.container(req.account, req.container, req.headers.get("x-ms-lease-id"))
        return Response(200, wire.container_headers(c))

    async def delete_container(self, req: Request, grant: Grant) -> Response:
        self.blobs.delete_container(req.account, req.container, _conditions(req))
        return Response(202)

    async def restore_container(self, req: Request, grant: Grant) -> Response:
        c = self.blobs.restore_container(req.account, req.container, req.headers.get("x-ms-deleted-container-name"),
                                         req.headers.get("x-ms-deleted-container-version"))
        return Response(201, _etag_headers(c.etag, c.modified_us))

    async def set_container_metadata(self, req: Request, grant: Grant) -> Response:
        c = self.blobs.set_container_metadata(req.account, req.container, _metadata(req), _conditions(req))
        return Response(200, _etag_headers(c.etag, c.modified_us))

    async def get_container_acl(self, req: Request, grant: Grant) -> Response:
        c = self.blobs.container(req.account, req.container, req.headers.get("x-ms-lease-id"))
        headers = [*_etag_headers(c.etag, c.modified_us), ("content-type", wire.XML_TYPE)]
        if c.public_access:
            headers.append(("x-ms-blob-public-access", c.public_access))
        return Response(200, headers, wire.signed_identifiers_xml(c.acl))

    async def set_container_acl(self, req: Request, grant: Grant) -> Response:
        _declared_length(req, wire.ACL_XML.max_body)
        acl = wire.parse_signed_identifiers(await wire.read_xml(req.body(), wire.ACL_XML))
        c = self.blobs.set_container_acl(req.account, req.container, req.headers.get("x-ms-blob-public-access"),
                                         acl, _conditions(req))
        return Response(200, _etag_headers(c.etag, c.modified_us))

    async def lease_container(self, req: Request, grant: Grant) -> Response:
        lease = _lease_request(req)
        c, outcome = self.blobs.lease_container(req.account, req.container, lease, _conditions(req))
        return _lease_response(c.etag, c.modified_us, outcome, lease.action)

    async def list_blobs(self, req: Request, grant: Grant) -> Response:
        q = req.query
        prefix, delimiter, marker = q.get("prefix", ""), q.get("delimiter", ""), q.get("marker", "")
        limit = _int_query(req, "maxresults", 1, MAX_LIST_RESULTS) or MAX_LIST_RESULTS
        include = {v for _, value in req.pairs if _ == "include" for v in value.split(",") if v}
        if not include <= _LIST_INCLUDES:
            raise bad_query("include", ",".join(sorted(include - _LIST_INCLUDES))[:64])
        kinds = (SNAPSHOT if "snapshots" in include else "") + (VERSION if "versions" in include else "") + (
            DELETED if include & {"deleted", "deletedwithversions"} else "")
        items, nxt = self.blobs.list_blobs(req.account, req.container, prefix, delimiter, wire.decode_marker(marker),
                                           limit, "uncommittedblobs" in include, kinds, with_tags="tags" in include)
        body = wire.list_blobs_xml(_endpoint(req), req.container, prefix, marker, q.get("maxresults", ""),
                                   delimiter, items, wire.encode_marker(nxt) if nxt else "", "metadata" in include)
        return Response(200, [("content-type", wire.XML_TYPE)], body)

    # --- blobs --------------------------------------------------------------------------------

    async def put_blob(self, req: Request, grant: Grant) -> Response:
        if req.headers.get("x-ms-copy-source"):
            return await self.copy_blob(req, grant)
        if (req.headers.get("x-ms-blob-type") or "").lower() in ("pageblob", "appendblob"):
            return await self.create_typed_blob(req, grant)
        size = _declared_length(req, MAX_PUT_BLOB_SIZE)
        assert req.blob is not None
        blob, md5 = await self.blobs.put_blob(req.account, req.container, req.blob, req.body(), size,
                                              _content_settings(req, put_blob=True), _metadata(req),
                                              _conditions(req), _b64_header(req, "content-md5"), grant.replace_guard,
                                              req.headers.get("x-ms-access-tier"), req.headers.get("x-ms-blob-type"),
                                              tags=_tags(req))
        headers = [*_etag_headers(blob.etag, blob.modified_us), _ENCRYPTED,
                   ("content-md5", base64.b64encode(md5).decode()), *_version_id(blob)]
        return Response(201, headers)

    async def put_block(self, req: Request, grant: Grant) -> Response:
        block_id = req.query.get("blockid")
        if not block_id:
            raise BlobError("MissingRequiredQueryParameter", QueryParameterName="blockid")
        if req.headers.get("x-ms-copy-source"):
            return await self.put_block_from_url(req, grant, block_id)
        _declared_length(req, MAX_BLOCK_SIZE)
        assert req.blob is not None
        md5 = await self.blobs.put_block(req.account, req.container, req.blob, block_id, req.body(),
                                         _b64_header(req, "content-md5"), req.headers.get("x-ms-lease-id"))
        headers = [_ENCRYPTED]
        if md5 is not None:
            headers.append(("content-md5", base64.b64encode(md5).decode()))
        return Response(201, headers)

    async def put_block_list(self, req: Request, grant: Grant) -> Response:
        _declared_length(req, wire.BLOCK_LIST_XML.max_body)
        body = await wire.read_xml(req.body(), wire.BLOCK_LIST_XML)
        self.blobs.check_transactional_md5(body.md5, _b64_header(req, "content-md5"))
        assert req.blob is not None
        blob = self.blobs.put_block_list(req.account, req.container, req.blob, wire.parse_block_list(body),
                                         _content_settings(req, put_blob=False), _metadata(req), _conditions(req),
                                         grant.replace_guard, req.headers.get("x-ms-access-tier"), tags=_tags(req))
        return Response(201, [*_etag_headers(blob.etag, blob.modified_us), _ENCRYPTED, *_version_id(blob)])

    async def get_block_list(self, req: Request, grant: Grant) -> Response:
        list_type = req.query.get("blocklisttype", "committed").lower()
        if list_type not in ("committed", "uncommitted", "all"):
            raise bad_query("blocklisttype", list_type[:32])
        assert req.blob is not None
        listing = self.blobs.get_block_list(req.account, req.container, req.blob, list_type,
                                            req.headers.get("x-ms-lease-id"), stamp(req), req.headers.get("x-ms-if-tags"))
        headers = [("content-type", wire.XML_TYPE), ("x-ms-blob-content-length", str(listing.blob.size))]
        if listing.blob.committed:
            headers += _etag_headers(listing.blob.etag, listing.blob.modified_us)
        return Response(200, headers, wire.block_list_xml(listing.committed, listing.uncommitted))

    def _blob_response(self, blob: Blob, grant: Grant, *, full_md5: bool) -> list[tuple[str, str]]:
        headers = wire.blob_headers(blob, full_md5=full_md5)
        if grant.overrides:
            names = {k.lower() for k in grant.overrides}
            headers = [h for h in headers if h[0] not in names] + list(grant.overrides.items())
        return headers

    async def get_blob(self, req: Request, grant: Grant) -> Response:
        assert req.blob is not None
        plan = self.blobs.open_read(req.account, req.container, req.blob, _range(req), _conditions(req), stamp(req))
        headers = self._blob_response(plan.blob, grant, full_md5=not plan.partial)
        status = 200
        if plan.partial:
            status = 206
            headers.append(("content-range", f"bytes {plan.start}-{plan.end - 1}/{plan.blob.size}"))
        if plan.partial and req.headers.get("x-ms-range-get-content-md5", "").lower() == "true":
            data, md5 = await self.blobs.read_with_md5(plan)
            headers.append(("content-md5", base64.b64encode(md5).decode()))
            return Response(status, headers, data)
        if plan.length <= _SMALL_READ:
            inline = self.blobs.inline_bytes(plan)
            if inline is None:
                inline = b"".join([chunk async for chunk in self.blobs.stream(plan)])
            return Response(status, headers, inline)
        return Response(status, headers, stream=self.blobs.stream(plan), length=plan.length)

    async def blob_properties(self, req: Request, grant: Grant) -> Response:
        assert req.blob is not None
        blob = self.blobs.blob(req.account, req.container, req.blob, _conditions(req), stamp=stamp(req))
        headers = self._blob_response(blob, grant, full_md5=True)
        headers += wire.tier_headers(blob)
        return Response(200, headers, length=blob.size)

    async def blob_metadata(self, req: Request, grant: Grant) -> Response:
        assert req.blob is not None
        blob = self.blobs.blob(req.account, req.container, req.blob, _conditions(req), stamp=stamp(req))
        return Response(200, [*_etag_headers(blob.etag, blob.modified_us), *wire.metadata_headers(blob.metadata)])

    async def set_blob_metadata(self, req: Request, grant: Grant) -> Response:
        assert req.blob is not None
        blob = self.blobs.set_blob_metadata(req.account, req.container, req.blob, _metadata(req), _conditions(req))
        return Response(200, [*_etag_headers(blob.etag, blob.modified_us), _ENCRYPTED, *_version_id(blob)])

    async def set_blob_properties(self, req: Request, grant: Grant) -> Response:
        assert req.blob is not None
        if changes_pages(req):
            return self.set_page_properties(req)
        blob = self.blobs.set_blob_properties(req.account, req.container, req.blob,
                                              _content_settings(req, put_blob=False), _conditions(req))
        return Response(200, _etag_headers(blob.etag, blob.modified_us))

    async def delete_blob(self, req: Request, grant: Grant) -> Response:
        assert req.blob is not None
        if req.query.get("deletetype"):  # permanent deletion of soft-deleted snapshots and versions
            raise BlobError("UnsupportedQueryParameter", "Permanent deletion (deletetype) is not supported by this "
                                                         "server.", QueryParameterName="deletetype",
                            QueryParameterValue=req.query["deletetype"][:32])
        permanent = self.blobs.delete_blob(req.account, req.container, req.blob, _conditions(req), stamp(req),
                                           req.headers.get("x-ms-delete-snapshots"))
        return Response(202, [("x-ms-delete-type-permanent", "true" if permanent else "false")])

    async def undelete_blob(self, req: Request, grant: Grant) -> Response:
        assert req.blob is not None
        self.blobs.undelete_blob(req.account, req.container, req.blob)
        return Response(200)

    async def snapshot_blob(self, req: Request, grant: Grant) -> Response:
        assert req.blob is not None
        snap = self.blobs.snapshot_blob(req.account, req.container, req.blob, _metadata(req) or None,
                                        _conditions(req))
        assert snap.snapshot is not None
        return Response(201, [*_etag_headers(snap.etag, snap.modified_us), ("x-ms-snapshot", snap.snapshot),
                              _ENCRYPTED])

    async def set_blob_tier(self, req: Request, grant: Grant) -> Response:
        assert req.blob is not None
        rehydrated = self.blobs.set_blob_tier(req.account, req.container, req.blob,
                                              req.headers.get("x-ms-access-tier"), _conditions(req), stamp(req),
                                              req.headers.get("x-ms-rehydrate-priority"))
        return Response(202 if rehydrated else 200)

    # --- blob index tags ------------------------------------------------------------------------

    async def get_blob_tags(self, req: Request, grant: Grant) -> Response:
        assert req.blob is not None
        found = self.tagging.get(req.account, req.container, req.blob, _conditions(req), stamp(req))
        return Response(200, [("content-type", wire.XML_TYPE)], wire.tags_xml(found))

    async def set_blob_tags(self, req: Request, grant: Grant) -> Response:
        _declared_length(req, wire.TAGS_XML.max_body)
        body = await wire.read_xml(req.body(), wire.TAGS_XML)
        self.blobs.check_transactional_md5(body.md5, _b64_header(req, "content-md5"))
        assert req.blob is not None
        self.tagging.set(req.account, req.container, req.blob, wire.parse_tags(body), _conditions(req), stamp(req))
        return Response(204)

    async def find_blobs_by_tags(self, req: Request, grant: Grant) -> Response:
        """Find Blobs by Tags, account-wide (``/?comp=blobs``) or in a container."""
        where = req.query.get("where")
        search = parse_search(where, account_wide=not req.container)
        limit = _int_query(req, "maxresults", 1, MAX_LIST_RESULTS) or MAX_LIST_RESULTS
        after = wire.decode_marker(req.query.get("marker", "")).partition("\x00")
        found, nxt = self.tagging.find(req.account, req.container or None, search, (after[0], after[2]), limit)
        body = wire.found_blobs_xml(_endpoint(req), search.text, [(f.container, f.name, f.tags) for f in found],
                                    wire.encode_marker("\x00".join(nxt)) if nxt else "")
        return Response(200, [("content-type", wire.XML_TYPE)], body)

    async def submit_batch(self, req: Request, grant: Grant) -> Response:
        """Blob Batch: each sub-request is routed, authorized and served as if sent alone."""
        _declared_length(req, batch.MAX_BODY)
        separator = batch.boundary(req.headers.get("content-type"))
        body = await batch.read_body(req.body())
        try:
            plan = [self._batch_route(req, part) for part in batch.parse(body, separator)]
            batch.check_operations([handler.__name__ for _, _, handler, _ in plan])
        except BlobError as err:  # the batch as a whole: one error part
            answers = [batch.answer(None, req, _error_response(err, req))]
        else:
            answers = [batch.answer(part.content_id, sub, await self._batch_run(sub, handler, rule))
                       for part, sub, handler, rule in plan]
        out = f"batchresponse_{uuid.uuid4()}"
        return Response(202, [("content-type", f"multipart/mixed; boundary={out}")], batch.render(answers, out))

    def _batch_route(self, req: Request, part: batch.SubRequest) -> tuple[batch.SubRequest, Request, Handler, Rule]:
        sub, query = batch.sub_request(req, part)
        try:
            sub.parse_target(query, self.settings.accounts)
            handler, rule = self.route(sub)
        except BlobError as err:
            raise batch.invalid(f"a sub-request cannot be served ({err.code}).") from None
        if sub.account != req.account or (req.container and sub.container != req.container) or sub.blob is None:
            raise batch.invalid("every sub-request must name a blob of the batch's account (and container).")
        return part, sub, handler, rule

    async def _batch_run(self, sub: Request, handler: Handler, rule: Rule) -> Response:
        try:
            return await handler(sub, self.auth.authorize(sub, rule))
        except BlobError as err:
            return _error_response(err, sub)
        except Exception:
            log.exception("blob batch sub-request failed: %s %s", sub.method, sub.raw_path[:200])
            return _error_response(BlobError("InternalError", "The server encountered an internal error.",
                                             status=500), sub)

    async def lease_blob(self, req: Request, grant: Grant) -> Response:
        assert req.blob is not None
        lease = _lease_request(req)
        blob, outcome = self.blobs.lease_blob(req.account, req.container, req.blob, lease, _conditions(req))
        return _lease_response(blob.etag, blob.modified_us, outcome, lease.action)


class BlobService:
    """The Blob endpoint: ASGI app plus start (recovery) and stop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.data_dir / "blob"
        self._api: BlobApi | None = None
        self._blobs: Blobs | None = None
        self._expiry: asyncio.Task[None] | None = None

    @property
    def blobs(self) -> Blobs:
        if self._blobs is None:
            raise RuntimeError("the blob service is not started")
        return self._blobs

    async def start(self) -> None:
        blobs = Blobs(self.root)
        removed = blobs.recover()
        if removed:
            log.info("blob recovery: removed %d unreferenced data files", removed)
        self._blobs = blobs
        settings = self.settings
        auth = Authorizer(settings.accounts, self._public_access, self._stored_policy,
                          lambda: identity_service(settings.data_dir, settings.oauth == "accept-any"))
        self._api = BlobApi(blobs, auth, self.settings)
        failed = self._api.copies.recover()
        if failed:
            log.info("blob recovery: %d copies from other servers were cut off by the restart (failed)", failed)
        self._expiry = asyncio.get_running_loop().create_task(self._expire_loop())

    async def stop(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
        if self._api is not None:
            await self._api.copies.close()
        if self._blobs is not None:
            self._blobs.close()
            self._blobs = None

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(3600)
            try:
                self.blobs.expire_uncommitted()
            except Exception:  # keep serving; the next round retries
                log.exception("expiring uncommitted blocks failed")

    def _public_access(self, account: str, container: str) -> str | None:
        c = self.blobs.find_container(account, container)
        return c.public_access if c is not None else None

    def _stored_policy(self, account: str, container: str, identifier: str) -> StoredPolicy | None:
        c = self.blobs.find_container(account, container)
        return wire.stored_policies(c.acl).get(identifier) if c is not None else None

    async def app(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        req = Request(scope, receive)
        try:
            resp = await self._handle(req, scope)
        except BlobError as err:
            resp = _error_response(err, req)
        except ClientGone:
            return
        except Exception:
            log.exception("blob request failed: %s %s", req.method, req.raw_path[:200])
            resp = _error_response(BlobError("InternalError", "The server encountered an internal error.",
                                             status=500), req)
        if req.account in self.settings.accounts and req.method != "OPTIONS" and self._blobs is not None:
            rules = self._blobs.cors_rules(req.account)
            if rules:
                names = [*_ALWAYS_SENT, *(name for name, _ in resp.headers)]
                resp.headers += cors.response_headers(rules, req.headers.get("origin"), req.method, names)
        try:
            await send_response(send, req, resp)
        except ClientGone:
            return

    async def _handle(self, req: Request, scope: dict[str, Any]) -> Response:
        if self._api is None:
            raise BlobError("ServerBusy", "The server is starting.", status=503)
        req.parse_target(scope.get("query_string", b""), self.settings.accounts)
        if not req.account:
            raise BlobError("InvalidUri")
        if req.method == "OPTIONS":  # a CORS preflight: answered from the CORS rules, with no authorization
            h = req.headers
            return Response(200, cors.preflight(self.blobs.cors_rules(req.account), h.get("origin"),
                                                h.get("access-control-request-method"),
                                                h.get("access-control-request-headers")))
        handler, rule = self._api.route(req)
        if req.secondary and req.method not in ("GET", "HEAD"):
            raise BlobError("AuthorizationFailure", "Write operations are not allowed on the secondary endpoint.")
        grant = self._api.auth.authorize(req, rule)
        if req.blob is not None and ("snapshot" in req.query or "versionid" in req.query) and (
                handler.__name__ not in _STAMPED):
            name = "snapshot" if "snapshot" in req.query else "versionid"
            raise bad_query(name, req.query[name][:64], "A snapshot or version cannot be changed.")
        return await handler(req, grant)


# The headers send_response adds to every response (for Access-Control-Expose-Headers).
_ALWAYS_SENT = ("x-ms-request-id", "x-ms-version", "date", "server", "content-length")


def _error_response(err: BlobError, req: Request) -> Response:
    status = wire.status_of(err)
    headers = wire.error_headers(err)
    if status == 304 or req.method == "HEAD":
        return Response(status, headers)
    headers.append(("content-type", wire.XML_TYPE))
    close = err.code == "RequestBodyTooLarge" and not req.body_done
    return Response(status, headers, wire.error_body(err, req.request_id, now_us()), close=close)


def build_blob_service(settings: Settings) -> BlobService:
    return BlobService(settings)
