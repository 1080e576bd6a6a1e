"""Blob Batch (``POST ?comp=batch``, service or container scope): the multipart/mixed body in and out.

A batch carries up to 256 sub-requests, each an HTTP request of its own (request line, headers,
an empty body) in one ``application/http`` part; they must all be Delete Blob or all Set Blob Tier.
Each sub-request is routed, authorized (its own SharedKey signature or SAS) and served exactly as
if it had come alone; the answer is a 202 whose multipart/mixed body holds one ``application/http``
response per sub-request, in order, each with its ``Content-ID``. A batch that cannot be read as a
whole (malformed, too many sub-requests, mixed operations, a sub-request outside the container of a
container-scoped batch) is answered, as Azure answers it, by a 202 holding a single error part.

This module only reads and writes the format and states the batch's own rules; the api layer runs
each sub-request through the ordinary route/authorize/handle path.
"""

from __future__ import annotations

import http
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from openbatch.blob.errors import BlobError, bad_header
from openbatch.blob.http import Request, Response

MAX_SUBREQUESTS = 256
MAX_BODY = 4 << 20  # bytes; 256 signed sub-requests take well under 1 MiB
OPERATIONS = ("delete_blob", "set_blob_tier")  # the handlers a sub-request may reach
_CRLF = b"\r\n"


@dataclass(frozen=True)
class SubRequest:
    """One sub-request as sent: where it sits in the batch and the HTTP request it carries."""

    content_id: str | None
    method: str
    target: str  # the request target: path and query, as sent
    headers: list[tuple[bytes, bytes]]  # lower-case names, as ASGI gives them


@dataclass(frozen=True)
class SubResponse:
    content_id: str | None
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""


def invalid(message: str) -> BlobError:
    """A batch that cannot be served as a whole."""
    return BlobError("InvalidInput", f"One of the request inputs is not valid: {message}")


def boundary(content_type: str | None) -> str:
    """The boundary of a ``multipart/mixed; boundary=...`` Content-Type (400 InvalidHeaderValue otherwise)."""
    kind, _, params = (content_type or "").partition(";")
    if kind.strip().lower() != "multipart/mixed":
        raise bad_header("Content-Type", (content_type or "")[:128], "The batch Content-Type must be multipart/mixed "
                                                                      "with a boundary.")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        value = value.strip().strip('"')
        if name.strip().lower() == "boundary" and 0 < len(value) <= 200:
            return value
    raise bad_header("Content-Type", (content_type or "")[:128], "The batch Content-Type has no boundary.")


async def read_body(chunks: AsyncIterator[bytes]) -> bytes:
    """The whole batch body (413 past MAX_BODY)."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > MAX_BODY:
            raise BlobError("RequestBodyTooLarge", status=413, MaxLimit=str(MAX_BODY))
    return bytes(body)


def _split_head(block: bytes) -> tuple[list[bytes], bytes]:
    """The header lines of ``block`` up to its first empty line, and what follows."""
    lines = block.split(b"\n")
    for i, line in enumerate(lines):
        if line.rstrip(b"\r") == b"":
            return [x.rstrip(b"\r") for x in lines[:i]], b"\n".join(lines[i + 1:])
    return [x.rstrip(b"\r") for x in lines], b""


def _headers(lines: list[bytes], what: str) -> list[tuple[bytes, bytes]]:
    out = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not name.strip() or name != name.strip():
            raise invalid(f"a malformed header line in {what}.")
        out.append((name.lower(), value.strip()))
    return out


def _part(block: bytes) -> SubRequest:
    mime_lines, rest = _split_head(block.lstrip(b"\r\n"))
    mime = dict(_headers(mime_lines, "a batch part"))
    if mime.get(b"content-type", b"").split(b";")[0].strip().lower() != b"application/http":
        raise invalid("every batch part must be application/http.")
    head, body = _split_head(rest)
    if not head or body.strip():
        raise invalid("a sub-request must be a request line and headers, with no body.")
    words = head[0].decode("latin-1").split(" ")
    if len(words) != 3 or not words[2].startswith("HTTP/1.") or not words[1]:
        raise invalid("a sub-request line must read 'METHOD target HTTP/1.1'.")
    content_id = mime.get(b"content-id")
    return SubRequest(content_id.decode("latin-1") if content_id is not None else None, words[0],
                      words[1], _headers(head[1:], "a sub-request"))


def parse(body: bytes, boundary_value: str) -> list[SubRequest]:
    """The sub-requests of a batch body, in order (BlobError: the batch cannot be served)."""
    delimiter = b"--" + boundary_value.encode("latin-1")
    pieces = body.split(delimiter)
    if len(pieces) < 3:
        raise invalid("the batch body holds no sub-request.")
    parts: list[SubRequest] = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):  # the close delimiter: what follows is an epilogue
            break
        if len(parts) == MAX_SUBREQUESTS:
            raise BlobError("ExceedsMaxBatchRequestCount", "The batch operation exceeds maximum number of allowed "
                                                           f"subrequests ({MAX_SUBREQUESTS}).")
        parts.append(_part(piece))
    else:
        raise invalid("the batch body has no closing delimiter.")
    if not parts:
        raise invalid("the batch body holds no sub-request.")
    return parts


def check_operations(names: list[str]) -> None:
    """Every sub-request is a Delete Blob, or every one a Set Blob Tier."""
    if any(name not in OPERATIONS for name in names):
        raise invalid("a batch may only hold Delete Blob and Set Blob Tier sub-requests.")
    if len(set(names)) > 1:
        raise BlobError("AllBatchSubRequestsShouldBeSameApi", "All batch subrequests should be the same api.")


def render(responses: list[SubResponse], boundary_value: str) -> bytes:
    """The multipart/mixed body answering a batch."""
    delimiter = b"--" + boundary_value.encode("latin-1")
    out = bytearray()
    for r in responses:
        out += delimiter + _CRLF + b"Content-Type: application/http" + _CRLF
        if r.content_id is not None:
            out += b"Content-ID: " + r.content_id.encode("latin-1") + _CRLF
        out += _CRLF
        reason = http.HTTPStatus(r.status).phrase if r.status in http.HTTPStatus._value2member_map_ else "Unknown"
        out += f"HTTP/1.1 {r.status} {reason}".encode("latin-1") + _CRLF
        for name, value in r.headers:
            out += name.encode("latin-1") + b": " + value.encode("latin-1", "replace") + _CRLF
        if r.body:
            out += b"Content-Length: " + str(len(r.body)).encode() + _CRLF + _CRLF + r.body + _CRLF
        else:
            out += _CRLF
    out += delimiter + b"--" + _CRLF
    return bytes(out)


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def sub_request(parent: Request, part: SubRequest) -> tuple[Request, bytes]:
    """The Request a sub-request is (the batch's client, scheme and host), and its raw query. Without
    an x-ms-version of its own it is served at the batch's version."""
    target = part.target
    if not target.startswith("/"):  # an absolute URL: its path and query
        parsed = urlsplit(target)
        target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    path, _, query = target.partition("?")
    headers = part.headers
    if not any(name == b"host" for name, _ in headers):
        headers = [*headers, (b"host", parent.host.encode("latin-1"))]
    scope = {"method": part.method, "raw_path": path.encode("latin-1"), "path": path, "headers": headers,
             "client": (parent.client_ip, 0), "scheme": parent.scheme}
    sub = Request(scope, _no_body)
    if "x-ms-version" not in sub.headers:
        sub.version = parent.version
    return sub, query.encode("latin-1")


def answer(content_id: str | None, sub: Request, resp: Response) -> SubResponse:
    """A handler's response to a sub-request, as its part of the batch response."""
    headers = [("x-ms-request-id", sub.request_id), ("x-ms-version", sub.version)]
    client_id = sub.headers.get("x-ms-client-request-id")
    if client_id is not None:
        headers.append(("x-ms-client-request-id", client_id))
    return SubResponse(content_id, resp.status, headers + resp.headers, resp.body)
