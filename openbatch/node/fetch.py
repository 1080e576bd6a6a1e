"""Resource files: download a task's inputs into its working directory before the command runs.

Sources (``ResourceFile``): ``httpUrl`` (``blobSource`` in old api-versions) is one file from any
http(s) URL, SAS URLs of this server included; ``storageContainerUrl`` (with its SAS) and
``autoStorageContainerName`` are every blob of a container whose name starts with
``blobPrefix``, listed over the Blob REST API and kept under their names. ``filePath`` is where
the file goes (for containers, a directory), relative to the working directory and never outside
it; ``fileMode`` is an octal permission string (0770 when absent, as on Azure).

The working directory belongs to the task, which may have left links in it (or swap directories
for links while a retry downloads): every directory and file is made and opened from the working
directory's descriptor with :mod:`openbatch.node.safefs`, never following a link, and handed to
the task's account as it is created. Bodies are streamed to a temporary name next to the target
and renamed over it when complete. Every
failure becomes a :class:`ResourceFileError` carrying the failureInfo Azure reports for it:
BlobNotFound (404), BlobAccessDenied (401/403), BlobDownloadTimedOut, BlobDownloadMiscError,
ResourceContainerNotFound / ResourceContainerAccessDenied / ResourceContainerListTimedOut /
ResourceContainerListMiscError while listing, ResourceDirectoryCreateFailed,
ResourceFileCreateFailed, ResourceFileWriteFailed and DiskFull for local trouble. SAS query
strings never appear in messages or details.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx
from defusedxml import ElementTree

from openbatch.node import safefs
from openbatch.node.failure import TaskFailure
from openbatch.node.safefs import Owner

log = logging.getLogger(__name__)

DEFAULT_MODE = 0o770
CHUNK = 1 << 20
CONCURRENCY = 8
BLOB_API_VERSION = "2021-08-06"

_DOWNLOAD = {404: "BlobNotFound", 401: "BlobAccessDenied", 403: "BlobAccessDenied"}
_LISTING = {404: "ResourceContainerNotFound", 401: "ResourceContainerAccessDenied", 403: "ResourceContainerAccessDenied"}
_MESSAGES = {
    "BlobNotFound": "The specified blob does not exist.",
    "BlobAccessDenied": "Access to the specified blob was denied.",
    "BlobDownloadTimedOut": "The download of a resource file timed out.",
    "BlobDownloadMiscError": "Miscellaneous error encountered while downloading one of the specified Azure Blob(s)",
    "ResourceContainerNotFound": "The specified Azure Storage container was not found.",
    "ResourceContainerAccessDenied": "Access to the specified Azure Storage container was denied.",
    "ResourceContainerListTimedOut": "Listing the blobs of the specified Azure Storage container timed out.",
    "ResourceContainerListMiscError": "Miscellaneous error encountered while listing the specified Azure Storage container.",
}


class ResourceFileError(TaskFailure):
    """A resource file could not be put in place; the fields are the task's failureInfo."""


@dataclass(frozen=True)
class _Download:
    url: str  # with its SAS; never shown
    parts: list[str]  # the target, relative to the working directory
    mode: int
    target: Path  # where that is, for messages
    headers: tuple[tuple[str, str], ...] = ()  # a bearer token (identityReference); never shown


# identityReference resourceId -> a bearer token for Blob of that identity (see identity_tokens)
TokenSource = Callable[[str], Awaitable[str]]


def public_url(url: str) -> str:
    """``url`` without its query string (a SAS) and user info: safe to show."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:
        return "(an invalid URL)"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _error(code: str, url: str, target: Path | None, extra: Mapping[str, str] | None = None) -> ResourceFileError:
    details = []
    if target is not None:
        details.append({"name": "FilePath", "value": str(target)})
    details.append({"name": "ResourceUrl", "value": public_url(url)})
    details.extend({"name": k, "value": v} for k, v in (extra or {}).items())
    return ResourceFileError(code, _MESSAGES.get(code, code), details)


def _local_error(code: str, target: Path, exc: OSError) -> ResourceFileError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        code = "DiskFull"
    message = f"{exc.strerror or exc} ({target.name})"
    return ResourceFileError(code, message, [{"name": "FilePath", "value": str(target)}])


def _mode(spec: Mapping[str, Any]) -> int:
    raw = spec.get("fileMode")
    if raw in (None, ""):
        return DEFAULT_MODE
    text = str(raw).strip().lower().removeprefix("0o")
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise ResourceFileError("ResourceFileCreateFailed", f"The fileMode {str(raw)[:32]!r} is not an octal permission")
    return mode


def _target(base: list[str], relative: str) -> list[str]:
    """``base`` + ``relative`` as path components, refused when it would leave the working directory."""
    parts = safefs.split(relative)
    if relative.replace("\\", "/").startswith("/") or ".." in parts or any("\x00" in p for p in parts):
        raise ResourceFileError(
            "ResourceFileCreateFailed",
            f"The file path {relative[:256]!r} is not inside the task's working directory",
            [{"name": "FilePath", "value": relative[:1024]}],
        )
    return [*base, *parts]


def _blob_url(container_url: str, name: str) -> str:
    parts = urlsplit(container_url)
    path = parts.path.rstrip("/") + "/" + quote(name, safe="/~")
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _with_query(url: str, extra: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    added = "&".join(f"{k}={quote(v, safe='')}" for k, v in extra.items())
    query = f"{parts.query}&{added}" if parts.query else added
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


# -- listing a container -----------------------------------------------------------------------


async def _list_page(client: httpx.AsyncClient, container_url: str, prefix: str, marker: str,
                     auth: tuple[tuple[str, str], ...] = ()) -> tuple[list[str], str]:
    query = {"restype": "container", "comp": "list", "maxresults": "5000"}
    if prefix:
        query["prefix"] = prefix
    if marker:
        query["marker"] = marker
    try:
        url = _with_query(container_url, query)
        response = await client.get(url, headers={"x-ms-version": BLOB_API_VERSION, **dict(auth)})
    except httpx.TimeoutException:
        raise _error("ResourceContainerListTimedOut", container_url, None) from None
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        raise _error("ResourceContainerListMiscError", container_url, None, {"Reason": type(exc).__name__}) from None
    if response.status_code != 200:
        code = _LISTING.get(response.status_code, "ResourceContainerListMiscError")
        raise _error(code, container_url, None, {"HttpStatusCode": str(response.status_code)})
    try:
        return _parse_listing(response.content)
    except ElementTree.ParseError:
        raise _error("ResourceContainerListMiscError", container_url, None, {"Reason": "unreadable listing"}) from None


def _parse_listing(body: bytes) -> tuple[list[str], str]:
    root = ElementTree.fromstring(body)
    names = []
    for blob in root.iter("Blob"):
        element = blob.find("Name")
        if element is None or element.text is None:
            continue
        name = unquote(element.text) if element.get("Encoded") == "true" else element.text
        if not name.endswith("/"):  # folder markers of hierarchical tools hold no data
            names.append(name)
    marker = root.findtext("NextMarker") or ""
    return names, marker


async def _list_container(client: httpx.AsyncClient, container_url: str, prefix: str,
                          auth: tuple[tuple[str, str], ...] = ()) -> list[str]:
    names: list[str] = []
    marker = ""
    while True:
        page, marker = await _list_page(client, container_url, prefix, marker, auth)
        names.extend(page)
        if not marker:
            return names


# -- downloading -------------------------------------------------------------------------------


async def _download(client: httpx.AsyncClient, item: _Download, wd: int, owner: Owner | None) -> None:
    if not item.parts:
        raise _local_error("ResourceFileCreateFailed", item.target, IsADirectoryError(errno.EISDIR, "Is a directory"))
    try:
        parent = safefs.walk(wd, item.parts[:-1], create=True, owner=owner)
    except OSError as exc:
        raise _local_error("ResourceDirectoryCreateFailed", item.target, exc) from None
    name = item.parts[-1]
    temp = f".{name[:200]}.{uuid.uuid4().hex[:12]}.part"
    try:
        fd = safefs.create_file(parent, temp, owner, mode=0o600, exclusive=True)
    except OSError as exc:
        os.close(parent)
        raise _local_error("ResourceFileCreateFailed", item.target, exc) from None
    try:
        await _stream_to(client, item, fd)
        os.fchmod(fd, item.mode)
        os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
    except OSError as exc:
        raise _local_error("ResourceFileWriteFailed", item.target, exc) from None
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=parent)  # only still there when something failed
        os.close(parent)


async def _stream_to(client: httpx.AsyncClient, item: _Download, fd: int) -> None:
    try:
        async with client.stream("GET", item.url, headers={"x-ms-version": BLOB_API_VERSION,
                                                           **dict(item.headers)}) as response:
            if response.status_code != 200:
                code = _DOWNLOAD.get(response.status_code, "BlobDownloadMiscError")
                raise _error(code, item.url, item.target, {"HttpStatusCode": str(response.status_code)})
            async for chunk in response.aiter_bytes(CHUNK):
                _write_all(fd, chunk)
    except httpx.TimeoutException:
        raise _error("BlobDownloadTimedOut", item.url, item.target) from None
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        raise _error("BlobDownloadMiscError", item.url, item.target, {"Reason": type(exc).__name__}) from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


# -- the resource file list --------------------------------------------------------------------


def _http_source(spec: Mapping[str, Any]) -> str | None:
    url = spec.get("httpUrl") or spec.get("blobSource")
    return str(url) if url else None


def _file_name_of(url: str) -> str:
    try:
        name = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    except ValueError:
        return "download"
    return name or "download"


async def _auth(spec: Mapping[str, Any], tokens: TokenSource | None) -> tuple[tuple[str, str], ...]:
    """The Authorization header of a resource file with an ``identityReference`` (none without)."""
    reference = spec.get("identityReference")
    if not isinstance(reference, Mapping) or not reference.get("resourceId"):
        return ()
    if tokens is None:
        raise ResourceFileError("BlobAccessDenied", "The node has no managed identity endpoint for the "
                                "resource file's identityReference.", [{"name": "Reason", "value": "NoIdentity"}])
    return (("Authorization", f"Bearer {await tokens(str(reference['resourceId']))}"),)


async def _plan(
    client: httpx.AsyncClient, spec: Mapping[str, Any], working_dir: Path, auto_storage_url: Callable[[str], str],
    tokens: TokenSource | None = None,
) -> list[_Download]:
    mode = _mode(spec)
    file_path = str(spec.get("filePath") or "")
    url = _http_source(spec)
    auth = await _auth(spec, tokens)
    if url is not None:
        parts = _target([], file_path or _file_name_of(url))
        return [_Download(url, parts, mode, working_dir.joinpath(*parts), auth)]
    if spec.get("storageContainerUrl"):
        container_url = str(spec["storageContainerUrl"])
    elif spec.get("autoStorageContainerName"):
        container_url = auto_storage_url(str(spec["autoStorageContainerName"]))
    else:
        raise ResourceFileError("ResourceFileCreateFailed", "The resource file names no source")
    directory = _target([], file_path)
    names = await _list_container(client, container_url, str(spec.get("blobPrefix") or ""), auth)
    downloads = []
    for name in names:
        parts = _target(directory, name)
        downloads.append(_Download(_blob_url(container_url, name), parts, mode, working_dir.joinpath(*parts), auth))
    return downloads


async def fetch_resource_files(
    client: httpx.AsyncClient,
    files: list[dict[str, Any]],
    working_dir: Path,
    *,
    dir_fd: int,
    owner: Owner | None,
    auto_storage_url: Callable[[str], str],
    tokens: TokenSource | None = None,
) -> None:
    """Put every resource file in place under ``working_dir`` (open as ``dir_fd``), handed to
    ``owner``; ResourceFileError on the first failure. ``tokens``: bearer tokens for files with an
    ``identityReference`` (from the node's managed-identity endpoint, :func:`identity_tokens`)."""
    if not files:
        return
    try:
        downloads: list[_Download] = []
        for spec in files:
            downloads.extend(await _plan(client, spec, working_dir, auto_storage_url, tokens))
        await _run_bounded(iter(downloads), lambda item: _download(client, item, dir_fd, owner))
    except ResourceFileError:
        raise
    except Exception as exc:  # a failure of ours, never the caller's crash
        log.exception("resource files failed unexpectedly")
        raise ResourceFileError("BlobDownloadMiscError", _MESSAGES["BlobDownloadMiscError"],
                                [{"name": "Reason", "value": type(exc).__name__}], category="servererror") from None


async def _run_bounded(items: Iterator[_Download], download: Callable[[_Download], Awaitable[None]]) -> None:
    """Download with at most CONCURRENCY transfers at once; the first error cancels the rest."""

    async def worker() -> None:
        for item in items:
            await download(item)

    workers = [asyncio.ensure_future(worker()) for _ in range(CONCURRENCY)]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise


STORAGE_RESOURCE = "https://storage.azure.com"


def identity_tokens(client: httpx.AsyncClient, environment: Iterable[Mapping[str, Any]]) -> TokenSource | None:
    """Tokens for Blob of a pool identity, from the managed-identity endpoint a run's environment names
    (``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER``, as the node gives its tasks); None without one."""
    values = {str(e.get("name")): str(e.get("value") or "") for e in environment}
    endpoint, secret = values.get("IDENTITY_ENDPOINT"), values.get("IDENTITY_HEADER")
    if not endpoint or not secret:
        return None

    async def token(resource_id: str) -> str:
        params = {"api-version": "2019-08-01", "resource": STORAGE_RESOURCE, "mi_res_id": resource_id}
        try:
            response = await client.get(endpoint, params=params, headers={"X-IDENTITY-HEADER": secret})
            if response.status_code == 200:
                return str(response.json()["access_token"])
            reason = f"HttpStatusCode {response.status_code}"
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            reason = type(exc).__name__
        raise ResourceFileError("BlobAccessDenied", "No token could be obtained for the identityReference "
                                "(is the identity one of the pool's?).", [{"name": "Reason", "value": reason}])

    return token
