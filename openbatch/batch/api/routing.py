"""The Batch HTTP plumbing every api module shares: routing, auth, the request, rendering.

Handlers are ``async def handler(req: BatchRequest) -> BatchResponse``; they parse, call one
domain operation, and render. Errors raised anywhere as ``BatchError`` become Azure's JSON error.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

import orjson

from openbatch.batch.api.bearer import authenticate_bearer
from openbatch.batch.domain import errors as e
from openbatch.batch.domain.common import BatchContext, Doc, now_iso, public
from openbatch.batch.wire import numbers
from openbatch.common import sharedkey
from openbatch.common.escapes import BadEscape, unquote_strict

MAX_BODY = 1024 * 1024  # Azure Batch refuses request bodies of 1 MB and more.
MAX_SEQ = (1 << 63) - 1  # the largest submission sequence number the store can hold (SQLite INTEGER)

Handler = Callable[["BatchRequest"], Awaitable["BatchResponse"]]


@dataclass
class BatchResponse:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    stream: AsyncIterator[bytes] | None = None
    content_type: str = "application/json;odata=minimalmetadata"


@dataclass
class BatchRequest:
    ctx: BatchContext
    method: str
    path: str
    raw_path: str
    query: dict[str, str]
    query_pairs: list[tuple[str, str]]
    headers: dict[str, str]
    base_url: str
    request_id: str
    receive: Callable[[], Awaitable[dict[str, Any]]]
    account: str = ""
    version: Any = None
    params: dict[str, str] = field(default_factory=dict)
    operation: str = ""  # "METHOD /route/{}": the spec's operation, set by the router

    async def body(self, limit: int = MAX_BODY) -> bytes:
        declared = self.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) >= limit:
            raise e.RequestBodyTooLarge("The request body is too large and exceeds the maximum permissible limit.")
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await self.receive()
            if message["type"] == "http.disconnect":  # gone (or cut off) mid-body: a truncated body is no request
                raise e.InvalidRequestBody("The request body is incomplete: the client disconnected.")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size >= limit:
                raise e.RequestBodyTooLarge("The request body is too large and exceeds the maximum permissible limit.")
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def json(self, limit: int = MAX_BODY, *, optional: bool = False) -> dict[str, Any]:
        """The JSON object of the body (``{}`` for an absent ``optional`` one), with the numbers
        this operation's spec expects read from strings as Azure reads them (wire/numbers.py)."""
        raw = await self.body(limit)
        if optional and not raw.strip():
            return {}
        try:
            data = orjson.loads(raw) if raw.strip() else None
        except orjson.JSONDecodeError as exc:
            raise e.InvalidRequestBody(f"The request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise e.InvalidRequestBody("The request body must be a JSON object.")
        return numbers.read_numbers(data, self.operation)

    def seq_skiptoken(self) -> int:
        """The ``$skiptoken`` of a list paged by submission sequence (0 for the first page)."""
        return int_skiptoken(self.query.get("$skiptoken", ""))

    def int_query(self, name: str, default: int, lo: int, hi: int) -> int:
        text = self.query.get(name)
        if text is None or text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            raise e.InvalidQueryParameterValue(
                f"The value for one of the query parameters specified in the request URI is invalid: {name}.",
                {"QueryParameterName": name, "QueryParameterValue": text},
            ) from None
        if not lo <= value <= hi:
            raise e.InvalidQueryParameterValue(
                f"The value for the query parameter {name} must be between {lo} and {hi}.",
                {"QueryParameterName": name, "QueryParameterValue": text},
            )
        return value


def int_skiptoken(text: str | None) -> int:
    """A ``$skiptoken`` that is a position (a sequence number or an index); 0 when absent.

    ASCII digits only (str.isdigit also takes '²' and other scripts' digits, which int() refuses)
    and within the store's 64-bit integers: anything else names no page (400).
    """
    text = text or "0"
    if not (text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= MAX_SEQ):
        raise e.InvalidQueryParameterValue(
            "The value for one of the query parameters specified in the request URI is invalid: $skiptoken.",
            {"QueryParameterName": "$skiptoken", "QueryParameterValue": text[:256]},
        )
    return int(text)


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    handler: Handler


class Router:
    """Routes by literal segments with ``{name}`` (one segment) and ``{name*}`` (the rest)."""

    def __init__(self, routes: list[Route]):
        self._routes: list[tuple[str, re.Pattern[str], Handler, str]] = []
        for route in routes:
            regex = re.sub(r"\\\{(\w+)\\\*\\\}", r"(?P<\1>.+)", re.escape(route.pattern))
            regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", regex)
            self._routes.append((route.method, re.compile(f"^{regex}/?$"), route.handler,
                                 operation_key(route.method, route.pattern)))

    def operations(self) -> set[str]:
        """Every ``METHOD /path/{}`` this router serves (the spec's operations, written alike)."""
        return {key for *_, key in self._routes}

    def match(self, method: str, raw_path: str) -> tuple[Handler, dict[str, str], str]:
        """The handler, the decoded path parameters and the operation key of a request."""
        path_matched = False
        for route_method, regex, handler, key in self._routes:
            m = regex.match(raw_path)
            if m is None:
                continue
            path_matched = True
            if route_method == method:
                return handler, _path_params(m.groupdict()), key
        if path_matched:
            raise e.MethodNotAllowed(f"The HTTP verb {method} is not supported on this resource.")
        raise e.ResourceNotFound("The specified resource does not exist.")


def operation_key(method: str, pattern: str) -> str:
    """``POST /pools/{poolId}/resize`` -> ``POST /pools/{}/resize``: an operation whatever its
    parameters are called (the spec's ``jobScheduleId`` is a route's ``scheduleId``)."""
    return f"{method} {re.sub(r'{[^}]*}', '{}', pattern)}"


def _path_params(raw: dict[str, str]) -> dict[str, str]:
    """Percent-decoded path parameters; a malformed escape is 400 InvalidUri, never a different name."""
    try:
        return {k: unquote_strict(v) for k, v in raw.items()}
    except BadEscape as exc:
        raise e.InvalidUri(f"The requested URI does not represent any resource on the server: {exc}.") from None


def authenticate(ctx: BatchContext, method: str, headers: dict[str, str], raw_path: str,
                 query_pairs: list[tuple[str, str]], secure: bool = True) -> str:
    """The account a SharedKey request is signed by (or a bearer token acts on, over HTTPS only:
    ``secure``), or AuthenticationFailed."""
    value = headers.get("authorization")
    if value and value[:7].lower() == "bearer ":
        if not secure:
            raise e.AuthenticationFailed(
                "Server failed to authenticate the request. Make sure the value of Authorization header is formed "
                "correctly including the signature.",
                {"AuthenticationErrorDetail": "Authentication with bearer tokens requires HTTPS (serve with --https)."})
        return authenticate_bearer(ctx, headers, value[7:].strip())
    if not value:
        raise e.AuthenticationFailed(
            "Server failed to authenticate the request. Make sure the value of Authorization header is formed "
            "correctly including the signature.", {"AuthenticationErrorDetail": "The Authorization header is missing."}
        )
    try:  # Azure checks the signed date before the signature
        sharedkey.check_request_date(headers, sharedkey.BATCH_DATE_HEADERS)
    except sharedkey.RequestDateError as exc:
        raise e.AuthenticationFailed(
            "Server failed to authenticate the request. Make sure the value of Authorization header is formed "
            "correctly including the signature.", {"AuthenticationErrorDetail": exc.detail}
        ) from None
    parsed = sharedkey.parse_authorization(value)
    account = ctx.settings.accounts.get(parsed[1]) if parsed else None
    if parsed is None or parsed[0] != "SharedKey" or account is None:
        raise e.AuthenticationFailed(
            "Server failed to authenticate the request. Make sure the value of Authorization header is formed "
            "correctly including the signature.",
            {"AuthenticationErrorDetail": "The account or the authentication scheme is not known."},
        )
    candidates = sharedkey.batch_candidates(method, headers, account.name, raw_path, query_pairs)
    if not sharedkey.matches(account, parsed[2], candidates):
        raise e.AuthenticationFailed(
            "Server failed to authenticate the request. Make sure the value of Authorization header is formed "
            "correctly including the signature.",
            {"AuthenticationErrorDetail": "The MAC signature found in the HTTP request is not the same as any "
                                          "computed signature."},
        )
    return account.name


# --- rendering ---------------------------------------------------------------------------------


def metadata_url(req: BatchRequest, entity_set: str, element: bool) -> str:
    return f"{req.base_url}/$metadata#{entity_set}{'/@Element' if element else ''}"


def dumps(body: Any) -> bytes:
    return orjson.dumps(body)


def entity_headers(doc: Doc) -> list[tuple[str, str]]:
    headers = []
    if doc.get("eTag"):
        headers.append(("ETag", str(doc["eTag"])))
    if doc.get("lastModified"):
        headers.append(("Last-Modified", http_date(str(doc["lastModified"]))))
    return headers


def http_date(iso: str) -> str:
    from email.utils import format_datetime

    from openbatch.batch.domain.common import parse_iso

    return format_datetime(parse_iso(iso), usegmt=True)


def select_and_version(req: BatchRequest, kind: str, doc: Doc) -> Doc:
    """Public fields in the requested api-version's names, then ``$select``."""
    from openbatch.batch.wire import odata, versions

    out = versions.from_internal(kind, public(doc), req.version)
    select = req.query.get("$select")
    if select:
        try:
            out = odata.apply_select(out, odata.parse_select(select))
        except odata.ODataError as exc:
            raise e.InvalidQueryParameterValue(str(exc), {"QueryParameterName": "$select",
                                                          "QueryParameterValue": select}) from None
    return out


def entity(req: BatchRequest, kind: str, entity_set: str, doc: Doc, status: int = 200) -> BatchResponse:
    body = {"odata.metadata": metadata_url(req, entity_set, True), **select_and_version(req, kind, doc)}
    return BatchResponse(status, dumps(body), entity_headers(doc))


def listing(req: BatchRequest, kind: str, entity_set: str, docs: list[Doc], next_link: str | None) -> BatchResponse:
    body: dict[str, Any] = {
        "odata.metadata": metadata_url(req, entity_set, False),
        "value": [select_and_version(req, kind, d) for d in docs],
    }
    if next_link:
        body["odata.nextLink"] = next_link
    return BatchResponse(200, dumps(body))


def next_link(req: BatchRequest, token: str) -> str:
    """The URL of the next page: this request's query with a new skiptoken."""
    pairs = [(k, v) for k, v in req.query_pairs if k.lower() != "$skiptoken"]
    pairs.append(("$skiptoken", token))
    query = "&".join(f"{quote(k, safe='$')}={quote(v, safe='')}" for k, v in pairs)
    return f"{req.base_url}{req.raw_path}?{query}"


def created(req: BatchRequest, doc: Doc, location: str) -> BatchResponse:
    headers = [*entity_headers(doc), ("Location", location), ("DataServiceId", location)]
    return BatchResponse(201, b"", headers)


def no_content(status: int, doc: Doc | None = None, location: str | None = None) -> BatchResponse:
    """202/200/204 answers without a body; entity headers when there is an entity."""
    headers = entity_headers(doc) if doc else []
    if location:
        headers += [("DataServiceId", location)]
    return BatchResponse(status, b"", headers)


def parse_query(query_string: bytes) -> list[tuple[str, str]]:
    return parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)


def new_request_id() -> str:
    return str(uuid.uuid4())


def error_response(req_id: str, base_url: str, exc: e.BatchError) -> BatchResponse:
    from openbatch.batch.wire.errors import error_body, status_of

    body = error_body(exc, base_url, req_id, now_iso())
    return BatchResponse(status_of(exc), dumps(body), list(getattr(exc, "headers", [])))


# --- conditional requests ----------------------------------------------------------------------


def check_conditions(req: BatchRequest, doc: Doc, *, read: bool) -> BatchResponse | None:
    """Apply If-Match / If-None-Match / If-Modified-Since / If-Unmodified-Since to ``doc``.

    Returns a 304 response for a read whose If-None-Match / If-Modified-Since says the client's
    copy is current; raises ConditionNotMet (412) when a precondition fails; None to go on.
    """
    from openbatch.batch.domain.common import parse_iso
    from openbatch.common import conditions

    cond = conditions.Conditions.from_headers(req.headers.get)
    if cond.empty:
        return None
    last = parse_iso(str(doc["lastModified"])) if doc.get("lastModified") else None
    outcome = conditions.evaluate(cond, str(doc.get("eTag") or ""), last, read=read)
    if outcome == conditions.NOT_MODIFIED:
        return BatchResponse(304, b"", entity_headers(doc))
    if outcome == conditions.PRECONDITION_FAILED:
        raise e.ConditionNotMet("The condition specified using HTTP conditional header(s) is not met.")
    return None
