"""What a Blob request says in its headers and query, parsed for the handler modules (api.py and
the api_* modules): conditions, metadata, content settings, lengths, ranges, snapshot / version.

Translation only: malformed values raise Azure's errors (InvalidHeaderValue, InvalidQueryParameterValue,
MissingRequiredHeader ...); no rule of the service is decided here.
"""

from __future__ import annotations

import base64
import binascii

from openbatch.blob import snapshots, wire
from openbatch.blob import tags as blob_tags
from openbatch.blob.errors import BlobError, bad_header, bad_query
from openbatch.blob.http import Request
from openbatch.blob.models import ContentSettings
from openbatch.common.clock import rfc1123_us
from openbatch.common.conditions import Conditions

_CONTENT_HEADERS = ("x-ms-blob-content-type", "x-ms-blob-content-encoding", "x-ms-blob-content-language",
                    "x-ms-blob-content-md5", "x-ms-blob-cache-control", "x-ms-blob-content-disposition")


def conditions(req: Request) -> Conditions:
    return Conditions.from_headers(req.headers.get)


def source_conditions(req: Request) -> Conditions:
    """The x-ms-source-if-* conditions a copy puts on its source."""
    return Conditions.from_headers(req.headers.get, "x-ms-source-")


def metadata(req: Request) -> dict[str, str]:
    return {k[10:]: v.strip() for k, v in req.headers.items() if k.startswith("x-ms-meta-")}


def tags(req: Request) -> dict[str, str] | None:
    """x-ms-tags: the tags a write gives the blob (None: the header is absent)."""
    return blob_tags.parse_header(req.headers.get("x-ms-tags"))


def b64_header(req: Request, name: str) -> bytes | None:
    value = req.headers.get(name)
    if value is None or value == "":
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_header(name, value[:64]) from exc


def content_settings(req: Request, *, put_blob: bool) -> ContentSettings:
    """Content headers to store: ``x-ms-blob-*`` (Put Blob also takes the plain ones)."""
    h = req.headers

    def pick(name: str, default: str = "") -> str:
        value = h.get(f"x-ms-blob-{name}")
        if value is None and put_blob:
            value = h.get(name)
        return value if value is not None else default

    return ContentSettings(
        content_type=pick("content-type", "application/octet-stream") or "application/octet-stream",
        content_encoding=pick("content-encoding"),
        content_language=pick("content-language"),
        content_md5=b64_header(req, "x-ms-blob-content-md5"),
        cache_control=pick("cache-control"),
        content_disposition=pick("content-disposition"),
    )


def sets_content(req: Request) -> bool:
    """Does a Set Blob Properties request set the content headers (all of them together)?"""
    return any(name in req.headers for name in _CONTENT_HEADERS)


def declared_length(req: Request, limit: int) -> int | None:
    """The Content-Length of a body (None when sent chunked); 413 when over ``limit``."""
    value = req.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise bad_header("Content-Length", value[:32])
    if int(value) > limit:
        raise BlobError("RequestBodyTooLarge", status=413, MaxLimit=str(limit))
    return int(value)


def no_body(req: Request) -> None:
    """Operations whose Content-Length must be 0 (create page / append blob, clear pages, from-URL
    writes): a body is refused before it is read."""
    length = req.headers.get("content-length")
    if length is not None and length.strip() not in ("", "0"):
        raise bad_header("Content-Length", length[:32], "The Content-Length of this operation must be 0.")
    if req.headers.get("transfer-encoding"):
        raise bad_header("Transfer-Encoding", req.headers["transfer-encoding"][:32],
                         "This operation takes no request body.")


def byte_range(req: Request) -> tuple[int, int | None] | None:
    """``bytes=a-b`` / ``bytes=a-`` from x-ms-range or Range; anything else means the whole blob."""
    value = req.headers.get("x-ms-range") or req.headers.get("range")
    if not value:
        return None
    return _parse_range(value)


def _parse_range(value: str) -> tuple[int, int | None] | None:
    unit, _, spec = value.strip().partition("=")
    first, dash, last = spec.strip().partition("-")
    if unit.strip().lower() != "bytes" or not dash or not first.isdigit() or not (last.isdigit() or last == ""):
        return None
    start, end = int(first), (int(last) if last else None)
    if end is not None and end < start:
        return None
    return start, end


def closed_range(req: Request, *names: str, required: bool = True) -> tuple[int, int] | None:
    """A ``bytes=a-b`` range with both ends (Put Page, source ranges, page-range queries): from the
    first of ``names`` given; missing is MissingRequiredHeader (when ``required``), malformed
    InvalidHeaderValue."""
    for name in names:
        value = req.headers.get(name)
        if value:
            parsed = _parse_range(value)
            if parsed is None or parsed[1] is None:
                raise bad_header(name, value[:64])
            return parsed[0], parsed[1]
    if required:
        raise BlobError("MissingRequiredHeader", HeaderName=names[0])
    return None


def open_range(req: Request, name: str) -> tuple[int, int | None] | None:
    """An optional ``bytes=a-b`` / ``bytes=a-`` range header (x-ms-source-range of Put Block From URL)."""
    value = req.headers.get(name)
    if not value:
        return None
    parsed = _parse_range(value)
    if parsed is None:
        raise bad_header(name, value[:64])
    return parsed


def int_header(req: Request, name: str, *, required: bool = False, lo: int = 0) -> int | None:
    """A whole-number header of at least ``lo`` (400 InvalidHeaderValue otherwise)."""
    value = req.headers.get(name)
    if value is None or value.strip() == "":
        if required:
            raise BlobError("MissingRequiredHeader", HeaderName=name)
        return None
    text = value.strip()
    if not text.lstrip("-").isdigit() or int(text) < lo or int(text) >= 1 << 63:
        raise bad_header(name, value[:32])
    return int(text)


def int_query(req: Request, name: str, lo: int, hi: int) -> int | None:
    value = req.query.get(name)
    if value is None or value == "":
        return None
    if not value.lstrip("-").isdigit():
        raise bad_query(name, value[:64])
    number = int(value)
    if number < lo:
        raise BlobError("OutOfRangeInput", QueryParameterName=name, QueryParameterValue=value[:64])
    return min(number, hi)


def stamp(req: Request) -> str:
    """The snapshot (``?snapshot=``) or version (``?versionid=``) a request addresses; "" for the blob."""
    q = req.query
    if "snapshot" not in q and "versionid" not in q:  # (every read asks: the common answer first)
        return ""
    return snapshots.stamp_of(q.get("snapshot"), q.get("versionid"))


def etag_headers(etag: str, modified_us: int) -> list[tuple[str, str]]:
    return [("etag", wire.quoted(etag)), ("last-modified", rfc1123_us(modified_us))]
