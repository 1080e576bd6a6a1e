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
and Put Block List.

The files belong to the task, which may swap them for links while the server works: patterns are
matched by walking directory descriptors without following links (:mod:`openbatch.node.safefs`),
and each file is opened once, when it is uploaded, resolving links only while they stay inside
the node's directory; the upload streams from that descriptor. A file the task's own account may
not read is not uploaded either, so a task cannot publish what it could not read itself; what is
skipped is said in ``fileuploaderr.txt``.

Failures raise :class:`OutputFileError` with the failureInfo Azure reports (category
usererror): FileUploadContainerNotFound, FileUploadAccessDenied, FileUploadConflict,
FileUploadTimedOut, FileUploadMiscError. Like Azure, a log of the uploads is written next to
stdout.txt: ``fileuploadout.txt`` and ``fileuploaderr.txt``.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import os
import re
import stat
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from openbatch.node import safefs
from openbatch.node.failure import TaskFailure
from openbatch.node.fetch import BLOB_API_VERSION, TokenSource, public_url
from openbatch.node.safefs import Owner

BLOCK_SIZE = 4 << 20
SINGLE_PUT_LIMIT = 4 << 20
STREAM_CHUNK = 1 << 20
UPLOAD_LOG = "fileuploadout.txt"
UPLOAD_ERR = "fileuploaderr.txt"
MAX_DEPTH = 128  # directories below a ``**`` that are searched

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
    source: str  # relative to the node root
    path: Path  # where that is, for messages
    container_url: str  # with its SAS; never shown
    blob_name: str
    headers: dict[str, str] = field(default_factory=dict)
    identity: str = ""  # the identityReference's resourceId: upload with a token of that identity
    auth: dict[str, str] = field(default_factory=dict)  # its Authorization header; never shown


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


def match_files(pattern: str, working_dir: Path, node_root: Path) -> list[tuple[str, str]]:
    """(path relative to ``node_root``, name relative to the pattern's fixed directories) of each
    file or link the pattern matches inside the node; links are resolved only when opened."""
    pattern = pattern.replace("\\", "/")
    base, _ = _split_base(pattern)
    absolute = pattern.startswith("/")
    full = os.path.normpath(pattern if absolute else os.path.join(working_dir, pattern))
    base_dir = os.path.normpath(base or "/") if absolute else os.path.normpath(working_dir / base)
    relative = os.path.relpath(full, node_root)
    if relative == "." or relative == ".." or relative.startswith("../"):
        return []
    try:
        with safefs.closing(safefs.open_dir(node_root)) as root:
            found = _expand(root, [], relative.split("/"), 0)
    except OSError:
        return []
    matches = []
    for parts in sorted(found):
        rel = os.path.relpath(os.path.join(node_root, *parts), base_dir)
        matches.append(("/".join(parts), parts[-1] if rel.startswith("..") else rel))
    return matches


def _matching(fd: int, part: str, want_dirs: bool) -> list[str]:
    """Names in the directory ``fd`` matching one pattern component (glob's rules: a leading '.'
    must be spelled out); directories only (never links) or, for the last component, files and links."""
    if not _MAGIC.search(part):
        names = [part]
    else:
        with safefs.closing(os.dup(fd)) as listing:
            names = [n for n in os.listdir(listing) if fnmatch.fnmatchcase(n, part)
                     and (part.startswith(".") or not n.startswith("."))]
    found = []
    for name in names:
        try:
            mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode) if want_dirs else (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            found.append(name)
    return found


def _expand(fd: int, prefix: list[str], parts: list[str], depth: int) -> list[list[str]]:
    head, rest = parts[0], parts[1:]
    if head == "**":
        found = _expand(fd, prefix, rest, depth) if rest else [[*prefix, n] for n in _matching(fd, "*", False)]
        subdirs = _matching(fd, "*", True) if depth < MAX_DEPTH else []
        return found + _descend(fd, prefix, subdirs, parts, depth)
    if not rest:
        return [[*prefix, name] for name in _matching(fd, head, False)]
    return _descend(fd, prefix, _matching(fd, head, True), rest, depth)


def _descend(fd: int, prefix: list[str], subdirs: list[str], parts: list[str], depth: int) -> list[list[str]]:
    found: list[list[str]] = []
    for name in subdirs:
        try:
            child = safefs.walk(fd, [name])
        except OSError:
            continue  # gone, or swapped for a link since it was listed
        with safefs.closing(child):
            found.extend(_expand(child, [*prefix, name], parts, depth + 1))
    return found


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
    specs: list[dict[str, Any]], *, working_dir: Path, node_root: Path, succeeded: bool, env: Mapping[str, str] | None
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
        identity = str((container.get("identityReference") or {}).get("resourceId") or "")
        for source, relative in match_files(pattern, working_dir, node_root):
            uploads.append(_Upload(source, node_root / source, url, blob_name(dest_path, relative, wild),
                                   _headers(container), identity))
    return uploads


# -- the Blob REST calls -----------------------------------------------------------------------


def _blob_url(container_url: str, name: str, query: str = "") -> str:
    parts = urlsplit(container_url)
    path = parts.path.rstrip("/") + "/" + quote(name, safe="/~")
    full = "&".join(q for q in (parts.query, query) if q)
    return urlunsplit((parts.scheme, parts.netloc, path, full, ""))


async def _file_chunks(fd: int, start: int, length: int) -> AsyncIterator[bytes]:
    """``length`` bytes of the open file from ``start`` (fewer if it shrank meanwhile)."""
    offset, end = start, start + length
    while offset < end:
        data = os.pread(fd, min(STREAM_CHUNK, end - offset), offset)
        if not data:
            break
        offset += len(data)
        yield data


def _check(response: httpx.Response, item: _Upload) -> None:
    if response.status_code in (200, 201):
        return
    code = _CODES.get(response.status_code, "FileUploadMiscError")
    details = [
        {"name": "FilePath", "value": str(item.path)},
        {"name": "BlobUrl", "value": _shown(item)},
        {"name": "HttpStatusCode", "value": str(response.status_code)},
    ]
    error_code = response.headers.get("x-ms-error-code")
    if error_code:
        details.append({"name": "StorageErrorCode", "value": error_code})
    raise OutputFileError(code, _MESSAGES[code], details)


async def _put_blob(client: httpx.AsyncClient, item: _Upload, fd: int, size: int) -> None:
    headers = {"x-ms-version": BLOB_API_VERSION, "x-ms-blob-type": "BlockBlob", "Content-Length": str(size),
               **item.headers, **item.auth}
    content = _file_chunks(fd, 0, size) if size else b""
    response = await client.put(_blob_url(item.container_url, item.blob_name), content=content, headers=headers)
    _check(response, item)


def _block_id(index: int) -> str:
    return base64.b64encode(f"openbatch-{index:08d}".encode()).decode()


async def _put_blocks(client: httpx.AsyncClient, item: _Upload, fd: int, size: int) -> None:
    ids = []
    for index, start in enumerate(range(0, size, BLOCK_SIZE)):
        length = min(BLOCK_SIZE, size - start)
        block_id = _block_id(index)
        url = _blob_url(item.container_url, item.blob_name, f"comp=block&blockid={quote(block_id, safe='')}")
        headers = {"x-ms-version": BLOB_API_VERSION, "Content-Length": str(length), **item.auth}
        response = await client.put(url, content=_file_chunks(fd, start, length), headers=headers)
        _check(response, item)
        ids.append(block_id)
    body = "".join(f"<Latest>{i}</Latest>" for i in ids)
    xml = f'<?xml version="1.0" encoding="utf-8"?><BlockList>{body}</BlockList>'.encode()
    headers = {"x-ms-version": BLOB_API_VERSION, "Content-Type": "application/xml", **item.auth}
    for name, value in item.headers.items():
        headers[_BLOB_PROPERTY.get(name.lower(), name)] = value
    url = _blob_url(item.container_url, item.blob_name, "comp=blocklist")
    _check(await client.put(url, content=xml, headers=headers), item)


class _Skipped(Exception):
    """A matched file that is not uploaded (said in the upload log, not a failure)."""


def _readable_by(owner: Owner | None, st: os.stat_result) -> bool:
    """Whether the task's account (None: the server's own) may read a file of this ``st``."""
    if owner is None or owner.uid == 0:
        return True
    if st.st_uid == owner.uid:
        return bool(st.st_mode & stat.S_IRUSR)
    if st.st_gid == owner.gid:
        return bool(st.st_mode & stat.S_IRGRP)
    return bool(st.st_mode & stat.S_IROTH)


def _open_source(root: int, node_root: Path, item: _Upload, owner: Owner | None) -> tuple[int, int]:
    """The file to upload, opened once (links followed only inside the node): (fd, size)."""
    try:
        fd, st = safefs.open_beneath(root, str(node_root), item.source)
    except safefs.UnsafePath:
        raise _Skipped("a link that leads out of the node's directory") from None
    except FileNotFoundError:
        raise _Skipped("gone before it could be uploaded") from None
    if not stat.S_ISREG(st.st_mode) or not _readable_by(owner, st):
        os.close(fd)
        raise _Skipped("not a regular file the task's user may read")
    return fd, st.st_size


async def _upload_one(client: httpx.AsyncClient, item: _Upload, fd: int, size: int) -> None:
    try:
        if size <= SINGLE_PUT_LIMIT:
            await _put_blob(client, item, fd, size)
        else:
            await _put_blocks(client, item, fd, size)
    except httpx.TimeoutException:
        raise OutputFileError("FileUploadTimedOut", _MESSAGES["FileUploadTimedOut"], _where(item)) from None
    except (httpx.HTTPError, httpx.InvalidURL, ValueError, OSError) as exc:
        details = [*_where(item), {"name": "Reason", "value": type(exc).__name__}]
        raise OutputFileError("FileUploadMiscError", _MESSAGES["FileUploadMiscError"], details) from None


def _where(item: _Upload) -> list[dict[str, str]]:
    return [{"name": "FilePath", "value": str(item.path)}, {"name": "BlobUrl", "value": _shown(item)}]


def _shown(item: _Upload) -> str:
    """The blob's URL without its SAS, for messages and logs."""
    try:
        return public_url(_blob_url(item.container_url, item.blob_name))
    except ValueError:
        return "(an invalid URL)"


class _UploadLog:
    """``fileuploadout.txt`` / ``fileuploaderr.txt`` in the task directory, opened without
    following links the task may have put there, and handed to the task's account."""

    def __init__(self, task_dir: Path, owner: Owner | None):
        self.fds: dict[str, int] = {}
        try:
            with safefs.closing(safefs.open_dir(task_dir)) as directory:
                for name in (UPLOAD_LOG, UPLOAD_ERR):
                    self.fds[name] = safefs.append_file(directory, name, owner)
        except OSError:
            pass  # the uploads matter more than their log

    def line(self, name: str, text: str) -> None:
        fd = self.fds.get(name)
        if fd is not None:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            os.write(fd, f"{stamp} {text}\n".encode(errors="replace"))

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


async def upload_output_files(
    client: httpx.AsyncClient,
    specs: list[dict[str, Any]],
    *,
    working_dir: Path,
    task_dir: Path,
    node_root: Path,
    succeeded: bool,
    env: Mapping[str, str] | None = None,
    owner: Owner | None = None,
    tokens: TokenSource | None = None,
) -> None:
    """Upload the files of every spec whose condition holds; OutputFileError for the first failure.

    Every upload is attempted even after a failure (as many outputs as possible land); the first
    failure is raised at the end. Only files inside ``node_root`` that ``owner`` (the task's
    account, None: the server's own) may read are uploaded.
    """
    if not specs:
        return
    uploads = await asyncio.to_thread(plan_uploads, specs, working_dir=working_dir, node_root=node_root,
                                      succeeded=succeeded, env=env)
    if not uploads:
        return
    await _authorize(uploads, tokens)
    first: OutputFileError | None = None
    log = _UploadLog(task_dir, owner)
    try:
        with safefs.closing(safefs.open_dir(node_root)) as root:
            for item in uploads:
                try:
                    await _upload_checked(client, item, root, node_root, owner, log)
                except OutputFileError as exc:
                    log.line(UPLOAD_ERR, f"{item.path} -> {_shown(item)}: {exc.code}: {exc.message}")
                    first = first or exc
    finally:
        log.close()
    if first is not None:
        raise first


async def _authorize(uploads: list[_Upload], tokens: TokenSource | None) -> None:
    """Bearer tokens for uploads naming an identity (``tokens``: the node's managed-identity
    endpoint). Without one the upload goes unauthorized and fails as Blob answers it."""
    found: dict[str, str] = {}
    for item in uploads:
        if not item.identity or tokens is None:
            continue
        if item.identity not in found:
            try:
                found[item.identity] = await tokens(item.identity)
            except TaskFailure:
                found[item.identity] = ""
        if found[item.identity]:
            item.auth["Authorization"] = f"Bearer {found[item.identity]}"


async def _upload_checked(client: httpx.AsyncClient, item: _Upload, root: int, node_root: Path,
                          owner: Owner | None, log: _UploadLog) -> None:
    try:
        fd, size = _open_source(root, node_root, item, owner)
    except _Skipped as why:
        log.line(UPLOAD_ERR, f"{item.path}: not uploaded: {why}")
        return
    try:
        await _upload_one(client, item, fd, size)
    finally:
        os.close(fd)
    log.line(UPLOAD_LOG, f"{item.path} -> {_shown(item)} ({size} bytes)")
