"""Output files: upload what a task produced to blob containers after its command ends.

Each ``OutputFile`` has a ``filePattern`` (relative to the working directory, or absolute;
``*``, ``**``, ``?``, ``[abc]``, ``[!abc]``; names starting with '.' only match a pattern that
spells the dot; ``$VAR`` / ``${VAR}`` expanded from the task's environment first), a destination
``containerUrl`` with a SAS plus an optional ``path``, ``uploadHeaders``, and an
``uploadCondition`` (tasksuccess / taskfailure / taskcompletion, any case).

Blob names follow Azure's rules: a pattern without wildcards uploads one file to ``path`` (or its
file name); with wildcards ``path`` is a virtual directory and each blob is named by the file's
path relative to the pattern's fixed leading directories (``../std*.txt`` with path ``t1`` gives
``t1/stdout.txt``). Files are streamed: one Put Blob up to 4 MiB, else Put Block in 4 MiB blocks
and Put Block List. Only files whose real location is inside the node's directory are uploaded
(a link to elsewhere is skipped), so a task cannot publish files it could not read itself.

Failures raise :class:`OutputFileError` with the failureInfo Azure reports (category
usererror): FileUploadContainerNotFound, FileUploadAccessDenied, FileUploadConflict,
FileUploadTimedOut, FileUploadMiscError. Like Azure, a log of the uploads is written next to
stdout.txt: ``fileuploadout.txt`` and ``fileuploaderr.txt``.
"""

from __future__ import annotations

import base64
import glob
import os
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from openbatch.node.failure import TaskFailure
from openbatch.node.fetch import BLOB_API_VERSION, public_url

BLOCK_SIZE = 4 << 20
SINGLE_PUT_LIMIT = 4 << 20
STREAM_CHUNK = 1 << 20
UPLOAD_LOG = "fileuploadout.txt"
UPLOAD_ERR = "fileuploaderr.txt"

_CODES = {404: "FileUploadContainerNotFound", 401: "FileUploadAccessDenied", 403: "FileUploadAccessDenied",
          409: "FileUploadConflict"}
_MESSAGES = {
    "FileUploadContainerNotFound": "One of the specified Azure container(s) was not found while attempting to upload an output file",
    "FileUploadAccessDenied": "Access to one of the specified Azure container(s) was denied while attempting to upload an output file",
    "FileUploadConflict": "A conflict was encountered while attempting to upload an output file",
    "FileUploadTimedOut": "The upload of an output file timed out",
    "FileUploadMiscError": "Miscellaneous error encountered while uploading one of the output files",
}
# User headers that must not reach the wire as given: transport framing and auth belong to us.
_FORBIDDEN = {"host", "content-length", "transfer-encoding", "connection", "authorization", "expect",
              "x-ms-blob-type", "x-ms-version", "x-ms-date"}
# On Put Block List the body is XML: the blob's own content headers travel as x-ms-blob-*.
_BLOB_PROPERTY = {"content-type": "x-ms-blob-content-type", "content-encoding": "x-ms-blob-content-encoding",
                  "content-language": "x-ms-blob-content-language", "content-md5": "x-ms-blob-content-md5",
                  "cache-control": "x-ms-blob-cache-control", "content-disposition": "x-ms-blob-content-disposition"}
_MAGIC = re.compile(r"[*?\[]")
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


class OutputFileError(TaskFailure):
    """An output file could not be uploaded; the fields are the task's failureInfo."""


@dataclass
class _Upload:
    source: Path
    container_url: str  # with its SAS; never shown
    blob_name: str
    headers: dict[str, str] = field(default_factory=dict)


def should_upload(spec: Mapping[str, Any], succeeded: bool) -> bool:
    options = spec.get("uploadOptions") or {}
    condition = str(options.get("uploadCondition") or "taskcompletion").lower()
    if condition == "tasksuccess":
        return succeeded
    if condition == "taskfailure":
        return not succeeded
    return True


def expand_vars(pattern: str, env: Mapping[str, str] | None) -> str:
    if not env or "$" not in pattern:
        return pattern
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), pattern)


def _split_base(pattern: str) -> tuple[str, bool]:
    """The pattern's fixed leading directories and whether it has wildcards at all."""
    parts = pattern.split("/")
    fixed: list[str] = []
    for part in parts[:-1]:
        if _MAGIC.search(part):
            break
        fixed.append(part)
    wild = bool(_MAGIC.search(pattern))
    return "/".join(fixed), wild


def _inside(path: str, root: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip("/") + "/")


def match_files(pattern: str, working_dir: Path, allowed_root: Path) -> list[tuple[Path, str]]:
    """(file, name relative to the pattern's fixed directories) for each regular file matched."""
    pattern = pattern.replace("\\", "/")
    base, wild = _split_base(pattern)
    absolute = pattern.startswith("/")
    found = glob.glob(pattern, root_dir=working_dir, recursive=True) if wild else [pattern]
    base_dir = os.path.normpath(base or "/") if absolute else os.path.normpath(working_dir / base)
    root = os.path.realpath(allowed_root)
    matches = []
    for name in sorted(found):
        full = os.path.normpath(name if absolute else working_dir / name)
        if not os.path.isfile(full) or not _inside(full, root):
            continue
        rel = os.path.relpath(full, base_dir)
        matches.append((Path(full), os.path.basename(full) if rel.startswith("..") else rel))
    return matches


def blob_name(path: str | None, relative: str, wild: bool) -> str:
    if not wild:
        return path or Path(relative).name
    if path:
        return f"{path.rstrip('/')}/{relative}"
    return relative


def _headers(spec: Mapping[str, Any]) -> dict[str, str]:
    headers = {}
    for item in spec.get("uploadHeaders") or []:
        name = str(item.get("name") or "").strip()
        if name and name.lower() not in _FORBIDDEN:
            headers[name] = str(item.get("value") or "")
    return headers


def plan_uploads(
    specs: list[dict[str, Any]], *, working_dir: Path, allowed_root: Path, succeeded: bool, env: Mapping[str, str] | None
) -> list[_Upload]:
    uploads = []
    for spec in specs:
        if not should_upload(spec, succeeded):
            continue
        container = ((spec.get("destination") or {}).get("container")) or {}
        url = str(container.get("containerUrl") or "")
        pattern = expand_vars(str(spec.get("filePattern") or ""), env)
        if not url or not pattern:
            continue
        _, wild = _split_base(pattern.replace("\\", "/"))
        dest_path = str(container.get("path") or "").replace("\\", "/").strip("/") or None
        for source, relative in match_files(pattern, working_dir, allowed_root):
            uploads.append(_Upload(source, url, blob_name(dest_path, relative, wild), _headers(container)))
    return uploads


# -- the Blob REST calls -----------------------------------------------------------------------


def _blob_url(container_url: str, name: str, query: str = "") -> str:
    parts = urlsplit(container_url)
    path = parts.path.rstrip("/") + "/" + quote(name, safe="/~")
    full = "&".join(q for q in (parts.query, query) if q)
    return urlunsplit((parts.scheme, parts.netloc, path, full, ""))


async def _file_chunks(path: Path, start: int, length: int) -> AsyncIterator[bytes]:
    with open(path, "rb") as handle:
        handle.seek(start)
        left = length
        while left > 0:
            data = handle.read(min(STREAM_CHUNK, left))
            if not data:
                break
            left -= len(data)
            yield data


def _check(response: httpx.Response, item: _Upload) -> None:
    if response.status_code in (200, 201):
        return
    code = _CODES.get(response.status_code, "FileUploadMiscError")
    details = [
        {"name": "FilePath", "value": str(item.source)},
        {"name": "BlobUrl", "value": _shown(item)},
        {"name": "HttpStatusCode", "value": str(response.status_code)},
    ]
    error_code = response.headers.get("x-ms-error-code")
    if error_code:
        details.append({"name": "StorageErrorCode", "value": error_code})
    raise OutputFileError(code, _MESSAGES[code], details)


async def _put_blob(client: httpx.AsyncClient, item: _Upload, size: int) -> None:
    headers = {"x-ms-version": BLOB_API_VERSION, "x-ms-blob-type": "BlockBlob", "Content-Length": str(size),
               **item.headers}
    content = _file_chunks(item.source, 0, size) if size else b""
    response = await client.put(_blob_url(item.container_url, item.blob_name), content=content, headers=headers)
    _check(response, item)


def _block_id(index: int) -> str:
    return base64.b64encode(f"openbatch-{index:08d}".encode()).decode()


async def _put_blocks(client: httpx.AsyncClient, item: _Upload, size: int) -> None:
    ids = []
    for index, start in enumerate(range(0, size, BLOCK_SIZE)):
        length = min(BLOCK_SIZE, size - start)
        block_id = _block_id(index)
        url = _blob_url(item.container_url, item.blob_name, f"comp=block&blockid={quote(block_id, safe='')}")
        headers = {"x-ms-version": BLOB_API_VERSION, "Content-Length": str(length)}
        response = await client.put(url, content=_file_chunks(item.source, start, length), headers=headers)
        _check(response, item)
        ids.append(block_id)
    body = "".join(f"<Latest>{i}</Latest>" for i in ids)
    xml = f'<?xml version="1.0" encoding="utf-8"?><BlockList>{body}</BlockList>'.encode()
    headers = {"x-ms-version": BLOB_API_VERSION, "Content-Type": "application/xml"}
    for name, value in item.headers.items():
        headers[_BLOB_PROPERTY.get(name.lower(), name)] = value
    url = _blob_url(item.container_url, item.blob_name, "comp=blocklist")
    _check(await client.put(url, content=xml, headers=headers), item)


async def _upload_one(client: httpx.AsyncClient, item: _Upload) -> int:
    try:
        size = item.source.stat().st_size
        if size <= SINGLE_PUT_LIMIT:
            await _put_blob(client, item, size)
        else:
            await _put_blocks(client, item, size)
        return size
    except httpx.TimeoutException:
        raise OutputFileError("FileUploadTimedOut", _MESSAGES["FileUploadTimedOut"], _where(item)) from None
    except (httpx.HTTPError, httpx.InvalidURL, ValueError, OSError) as exc:
        details = [*_where(item), {"name": "Reason", "value": type(exc).__name__}]
        raise OutputFileError("FileUploadMiscError", _MESSAGES["FileUploadMiscError"], details) from None


def _where(item: _Upload) -> list[dict[str, str]]:
    return [{"name": "FilePath", "value": str(item.source)}, {"name": "BlobUrl", "value": _shown(item)}]


def _shown(item: _Upload) -> str:
    """The blob's URL without its SAS, for messages and logs."""
    try:
        return public_url(_blob_url(item.container_url, item.blob_name))
    except ValueError:
        return "(an invalid URL)"


def _log_line(handle: TextIO | None, text: str) -> None:
    if handle is not None:
        handle.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {text}\n")


def _open_log(path: Path) -> TextIO | None:
    try:
        return open(path, "a", encoding="utf-8")
    except OSError:
        return None


async def upload_output_files(
    client: httpx.AsyncClient,
    specs: list[dict[str, Any]],
    *,
    working_dir: Path,
    task_dir: Path,
    succeeded: bool,
    env: Mapping[str, str] | None = None,
    node_root: Path | None = None,
) -> None:
    """Upload the files of every spec whose condition holds; OutputFileError for the first failure.

    Every upload is attempted even after a failure (as many outputs as possible land); the first
    failure is raised at the end. ``node_root`` bounds what may be uploaded (default: the task dir).
    """
    if not specs:
        return
    uploads = plan_uploads(specs, working_dir=working_dir, allowed_root=node_root or task_dir, succeeded=succeeded,
                           env=env)
    if not uploads:
        return
    first: OutputFileError | None = None
    out, err = _open_log(task_dir / UPLOAD_LOG), _open_log(task_dir / UPLOAD_ERR)
    try:
        for item in uploads:
            shown = _shown(item)
            try:
                size = await _upload_one(client, item)
            except OutputFileError as exc:
                _log_line(err, f"{item.source} -> {shown}: {exc.code}: {exc.message}")
                first = first or exc
                continue
            _log_line(out, f"{item.source} -> {shown} ({size} bytes)")
    finally:
        for handle in (out, err):
            if handle is not None:
                handle.close()
    if first is not None:
        raise first
