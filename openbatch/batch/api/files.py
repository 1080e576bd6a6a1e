"""Batch Files API routes (task files and node files): parse, call batch/domain/files.py, render.

Reads take ``ocp-range: bytes=a-b`` (what the SDKs send; answered 200 with those bytes, the only
status they accept) or a standard ``Range`` header (answered 206 with Content-Range).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from email.utils import formatdate

from openbatch.batch.api.jobs import list_filter, max_results
from openbatch.batch.api.routing import (
    BatchRequest,
    BatchResponse,
    Route,
    check_conditions,
    dumps,
    metadata_url,
    next_link,
    no_content,
)
from openbatch.batch.domain import errors as e
from openbatch.batch.domain import files
from openbatch.compute.base import NodeFile, OpenedFile

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def _location(req: BatchRequest) -> files.Location:
    p = req.params
    if "jobId" in p:
        return files.task_location(req.ctx, req.account, p["jobId"], p["taskId"], req.base_url)
    return files.node_location(req.ctx, req.account, p["poolId"], p["nodeId"], req.base_url)


def _flag(req: BatchRequest, name: str) -> bool:
    value = req.query.get(name, "false").lower()
    if value not in ("true", "false"):
        raise e.InvalidQueryParameterValue(
            f"The value for the query parameter {name} must be true or false.",
            {"QueryParameterName": name, "QueryParameterValue": value},
        )
    return value == "true"


async def list_files(req: BatchRequest) -> BatchResponse:
    from openbatch.batch.wire import odata

    loc = _location(req)
    props = odata.TASK_FILE_FILTER_PROPERTIES if "jobId" in req.params else odata.NODE_FILE_FILTER_PROPERTIES
    flt = list_filter(req, "file", props)
    docs, token = await files.list_files(req.ctx, loc, recursive=_flag(req, "recursive"), match=flt,
                                   after=req.seq_skiptoken(), limit=max_results(req))
    body: dict[str, object] = {"odata.metadata": metadata_url(req, "files", False), "value": docs}
    if token is not None:
        body["odata.nextLink"] = next_link(req, str(token))
    return BatchResponse(200, dumps(body))


def _headers(loc: files.Location, name: str, f: NodeFile) -> list[tuple[str, str]]:
    return [
        ("ETag", files.file_etag(f)),
        ("Last-Modified", formatdate(f.mtime, usegmt=True)),
        ("ocp-creation-time", formatdate(f.ctime, usegmt=True)),
        ("ocp-batch-file-isdirectory", "true" if f.is_directory else "false"),
        ("ocp-batch-file-url", loc.file_url(name)),
        ("ocp-batch-file-mode", files.file_mode(f)),
    ]


def _conditions(req: BatchRequest, f: NodeFile) -> BatchResponse | None:
    return check_conditions(req, {"eTag": files.file_etag(f), "lastModified": files.iso(f.mtime)}, read=True)


def _range(req: BatchRequest, size: int) -> tuple[int, int, bool] | None:
    """(first, last, standard Range header) of the requested bytes; None for the whole file."""
    text = req.headers.get("ocp-range")
    standard = text is None
    text = text if text is not None else req.headers.get("range")
    if not text:
        return None
    m = _RANGE.match(text)
    if m is None or not (m.group(1) or m.group(2)):
        raise e.InvalidRange("The range specified is invalid.", {"Range": text})
    if not m.group(1):  # the last N bytes
        count = int(m.group(2))
        if count == 0:
            raise e.InvalidRange("The range specified is invalid for the current size of the file.", {"Range": text})
        return max(0, size - count), size - 1, standard
    first = int(m.group(1))
    last = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    if first >= size or (m.group(2) and int(m.group(2)) < first):
        if size == 0 and first == 0:
            return None
        raise e.InvalidRange("The range specified is invalid for the current size of the file.", {"Range": text})
    return first, last, standard


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


async def get_file(req: BatchRequest) -> BatchResponse:
    loc = _location(req)
    name = files.clean_path(req.params["filePath"])
    opened = await files.open_file(req.ctx, loc, name)
    try:
        return _file_response(req, loc, name, opened)
    except BaseException:
        opened.close()
        raise


def _file_response(req: BatchRequest, loc: files.Location, name: str, opened: OpenedFile) -> BatchResponse:
    f = opened.info
    cached = _conditions(req, f)
    if cached is not None:
        opened.close()
        return cached
    headers = _headers(loc, name, f)
    if f.is_directory or req.method == "HEAD":
        opened.close()
        size = 0 if f.is_directory else f.size
        return BatchResponse(200, headers=[*headers, ("Content-Length", str(size))], stream=_empty(),
                             content_type=files.CONTENT_TYPE)
    wanted = _range(req, f.size)
    first, last, status = 0, f.size - 1, 200
    if wanted is not None:
        first, last, standard = wanted
        if standard:
            status = 206
            headers.append(("Content-Range", f"bytes {first}-{last}/{f.size}"))
    length = max(0, last - first + 1)
    if length:
        stream = files.read(opened, name, first, last)
    else:
        opened.close()
        stream = _empty()
    headers += [("Content-Length", str(length)), ("Accept-Ranges", "bytes")]
    return BatchResponse(status, headers=headers, stream=stream, content_type=files.CONTENT_TYPE)


async def delete_file(req: BatchRequest) -> BatchResponse:
    loc = _location(req)
    await files.delete(req.ctx, loc, files.clean_path(req.params["filePath"]), _flag(req, "recursive"))
    return no_content(200)


_TASK = "/jobs/{jobId}/tasks/{taskId}/files"
_NODE = "/pools/{poolId}/nodes/{nodeId}/files"

ROUTES: list[Route] = [
    Route("GET", _TASK, list_files),
    Route("GET", _TASK + "/{filePath*}", get_file),
    Route("HEAD", _TASK + "/{filePath*}", get_file),
    Route("DELETE", _TASK + "/{filePath*}", delete_file),
    Route("GET", _NODE, list_files),
    Route("GET", _NODE + "/{filePath*}", get_file),
    Route("HEAD", _NODE + "/{filePath*}", get_file),
    Route("DELETE", _NODE + "/{filePath*}", delete_file),
]
