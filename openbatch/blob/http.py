"""The raw ASGI plumbing of the Blob endpoint: request parsing, body streaming, response sending.

Deliberately small (no framework): the Blob endpoint is measured against Azurite and every
microsecond per request counts for small blobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from openbatch.blob.errors import BlobError
from openbatch.common.clock import http_date
from openbatch.common.escapes import BadEscape, unquote_strict
from openbatch.common.ids import request_id

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

DEFAULT_VERSION = "2025-01-05"
HEADER_CASE = "openbatch.header_case"  # scope key: response header names to send in this case (transport.py)
SECONDARY = "-secondary"  # {account}-secondary: the read-only secondary endpoint of a geo-redundant account
_SERVER = b"Windows-Azure-Blob/1.0 Microsoft-HTTPAPI/2.0"


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


def decode_component(raw: str, what: str) -> str:
    """Percent-decode a path segment or query value as UTF-8 (400 InvalidUri for a malformed escape)."""
    try:
        return unquote_strict(raw)
    except BadEscape as exc:
        raise BlobError("InvalidUri", f"The {what} is not valid percent-encoded UTF-8: {exc}.") from exc


def blob_name(raw: str) -> str:
    """A blob name from its path segments: percent-decoded, and ``\\`` read as ``/``, as Azure
    stores it (Azure replaces a backslash in a blob name, escaped or not, with a slash)."""
    return decode_component(raw, "blob name").replace("\\", "/")


def parse_query(raw: str) -> list[tuple[str, str]]:
    """Query pairs, percent-decoded ('+' stays '+', as Azure and the SDK signers treat it)."""
    pairs = []
    for item in raw.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((decode_component(name, "query"), decode_component(value, "query")))
    return pairs


class Request:
    """One Blob request: its path split into account/container/blob, query, headers, body."""

    __slots__ = ("method", "raw_path", "account", "container", "blob", "pairs", "query", "headers",
                 "request_id", "version", "client_ip", "scheme", "host", "_receive", "body_done", "secondary",
                 "scope")

    def __init__(self, scope: dict[str, Any], receive: Receive) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        raw = scope.get("raw_path")
        self.raw_path: str = raw.decode("latin-1") if raw else scope["path"]
        self.request_id = request_id()
        self._receive = receive
        self.body_done = False
        raw_headers = scope["headers"]
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in raw_headers}
        if len(headers) != len(raw_headers):  # repeated headers: combine their values, as HTTP does
            headers = {}
            for name, value in raw_headers:
                key, text = name.decode("latin-1"), value.decode("latin-1")
                headers[key] = f"{headers[key]},{text}" if key in headers else text
        self.headers = headers
        self.version = headers.get("x-ms-version") or DEFAULT_VERSION
        client = scope.get("client")
        self.client_ip: str = client[0] if client else ""
        self.scheme: str = scope.get("scheme", "http")
        self.host = headers.get("host", "")
        # Everything above cannot fail; what follows may raise BlobError (rendered by the caller).
        self.account = self.container = ""
        self.blob: str | None = None
        self.secondary = False  # addressed to the account's read-only secondary endpoint
        self.pairs: list[tuple[str, str]] = []
        self.query: dict[str, str] = {}

    def parse_target(self, query_string: bytes, accounts: Collection[str]) -> None:
        """Split the path and the query; may raise BlobError.

        Path style is ``/{account}/{container}/{blob}``. A path whose first segment is not a
        served account is ``/{container}/{blob}`` of the account the request names otherwise
        (its SharedKey header or host name, else the only account): azure-storage 0.33 sends
        the later chunks of a ranged download that way.
        """
        segments = self.raw_path.split("/", 3)
        first = decode_component(segments[1], "account") if len(segments) > 1 else ""
        if first.endswith(SECONDARY) and first[:-len(SECONDARY)] in accounts:
            first, self.secondary = first[:-len(SECONDARY)], True
        implicit = None if first in accounts else self._implicit_account(accounts)
        if implicit is not None:
            self.account = implicit
            segments = ["", implicit, *self.raw_path.split("/", 2)[1:]]
        else:
            self.account = first
        self.container = decode_component(segments[2], "container name") if len(segments) > 2 else ""
        blob = segments[3] if len(segments) > 3 else ""
        self.blob = blob_name(blob) if blob else None
        if query_string:
            self.pairs = parse_query(query_string.decode("latin-1"))
            for name, value in self.pairs:
                self.query.setdefault(name, value)

    def _implicit_account(self, accounts: Collection[str]) -> str | None:
        authorization = self.headers.get("authorization", "")
        if authorization.startswith("SharedKey "):
            name = authorization[10:].partition(":")[0].strip()
            return name if name in accounts else None
        label = self.host.partition(".")[0]
        if label in accounts and "." in self.host:
            return label
        if len(accounts) == 1:
            return next(iter(accounts))
        return None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    async def body(self) -> AsyncIterator[bytes]:
        """The request body, chunk by chunk as it arrives."""
        while not self.body_done:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            if not message.get("more_body", False):
                self.body_done = True
            if chunk:
                yield chunk


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    length: int | None = None  # Content-Length when streaming or answering HEAD
    close: bool = False


async def send_response(send: Send, req: Request, resp: Response) -> None:
    headers = [
        (b"x-ms-request-id", req.request_id.encode()),
        (b"x-ms-version", req.version.encode("latin-1")),
        (b"date", http_date().encode()),
        (b"server", _SERVER),
    ]
    client_id = req.headers.get("x-ms-client-request-id")
    if client_id is not None:
        headers.append((b"x-ms-client-request-id", client_id.encode("latin-1")))
    headers.extend((k.encode("latin-1"), v.encode("latin-1", "replace")) for k, v in resp.headers)
    cased = {k.lower().encode("latin-1"): k.encode("latin-1") for k, _ in resp.headers if not k.islower()}
    if cased:  # metadata names: the transport writes them in their case
        req.scope[HEADER_CASE] = cased
    length = resp.length if resp.length is not None else len(resp.body)
    if resp.status != 304:
        headers.append((b"content-length", str(length).encode()))
    if resp.close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    if resp.stream is None or req.method == "HEAD":
        await send({"type": "http.response.body", "body": resp.body if req.method != "HEAD" else b""})
        return
    watcher = _DisconnectWatcher(req) if length > _WATCH_ABOVE else None
    try:
        async for chunk in resp.stream:
            if watcher is not None and watcher.gone:
                raise ClientGone()
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    finally:
        if watcher is not None:
            watcher.task.cancel()
    await send({"type": "http.response.body", "body": b""})


_WATCH_ABOVE = 8 << 20


class _DisconnectWatcher:
    """Notices a client that went away during a long download, so the rest is not read for nothing."""

    def __init__(self, req: Request) -> None:
        self.gone = False
        self._req = req
        self.task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self._req._receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                return
