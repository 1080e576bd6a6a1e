"""The Files API: list, read, stat and delete files of a task or of a node, through the compute
provider (``ctx.compute``: list_files / stat_file / open_file / delete_file / task_dir). A file is
opened once and served from that: its properties and its bytes are of the same file.

A task's files live on the node in its ``nodeInfo`` (poolId, nodeId), under
``nodeInfo.taskRootDirectory`` or else ``compute.task_dir(job, task)``; names in a task listing
are relative to that directory, names in a node listing relative to the node's root. Paths from
requests are data: they are split on ``/`` and ``\\``, and ``..`` or an absolute path is refused
(InvalidUri) before the provider sees them — the provider refuses escapes too (PathOutsideNode).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

from openbatch.batch.domain import errors as e
from openbatch.batch.domain import tasks as t
from openbatch.batch.domain.common import BatchContext, Doc
from openbatch.compute.base import FileAccessError, NodeFile, OpenedFile

CONTENT_TYPE = "application/octet-stream"
R = TypeVar("R")


@dataclass(frozen=True)
class Location:
    """Where a set of files is: a node, a directory on it (``base``, '' = the node root) and the
    URL the files' own URLs start with."""

    pool_id: str
    node_id: str
    base: str
    url: str

    def path(self, relative: str) -> str:
        rel = clean_path(relative)
        return f"{self.base}/{rel}" if self.base and rel else (self.base or rel)

    def name_of(self, path: str) -> str:
        """A provider path (relative to the node root) as a name relative to ``base``."""
        path = path.replace("\\", "/").strip("/")
        if self.base and path.startswith(self.base + "/"):
            return path[len(self.base) + 1 :]
        return path

    def file_url(self, name: str) -> str:
        return f"{self.url}/files/{quote(name, safe='/')}"


def clean_path(path: str) -> str:
    """A relative '/'-separated path without empty or '.' segments; InvalidUri for '..' or absolute."""
    if path.startswith(("/", "\\")) and path.strip("/\\"):
        raise e.InvalidUri("The file path must be relative to the task or node directory.", {"FilePath": path})
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts or any("\x00" in p for p in parts):
        raise e.InvalidUri("The file path must not leave the task or node directory.", {"FilePath": path})
    return "/".join(parts)


async def _call(fn: Callable[..., Awaitable[R]], *args: Any, path: str = "") -> R:
    try:
        return await fn(*args)
    except FileAccessError as exc:
        raise translate(exc, path) from None


def translate(exc: FileAccessError, path: str) -> e.BatchError:
    if exc.code == "FileNotFound":
        return e.FileNotFound("The specified file does not exist.", {"FilePath": path})
    if exc.code == "PathOutsideNode":
        return e.InvalidUri("The file path must not leave the task or node directory.", {"FilePath": path})
    return e.OperationInvalidForCurrentState(exc.message, {"FilePath": path})


# --- where ----------------------------------------------------------------------------------------


def node_location(ctx: BatchContext, account: str, pool_id: str, node_id: str, base_url: str) -> Location:
    pool = ctx.store.get("pool", account, pool_id)
    if pool is None:
        raise e.PoolNotFound("The specified pool does not exist.", {"PoolId": pool_id})
    node = ctx.store.get("node", account, node_id, parent=pool_id)
    if node is None:
        raise e.NodeNotFound("The specified node does not exist.", {"NodeId": node_id})
    return Location(str(pool["id"]), str(node["id"]), "", f"{base_url}/pools/{pool['id']}/nodes/{node['id']}")


def task_location(ctx: BatchContext, account: str, job_id: str, task_id: str, base_url: str) -> Location:
    job = t.job_of(ctx, account, job_id)
    task = t.task_of(ctx, account, job_id, task_id)
    info = task.get("nodeInfo") or {}
    if not info.get("nodeId") or not info.get("poolId"):
        raise e.FileNotFound("The task has not run on a node, so it has no files.", {"TaskId": str(task["id"])})
    root = info.get("taskRootDirectory") or ctx.compute.task_dir(str(job["id"]), str(task["id"]))
    base = str(root).replace("\\", "/").strip("/")
    return Location(str(info["poolId"]), str(info["nodeId"]), base,
                    f"{base_url}/jobs/{job['id']}/tasks/{task['id']}")


# --- what -----------------------------------------------------------------------------------------


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def file_mode(f: NodeFile) -> str:
    return f"0{f.mode & 0o7777:o}"


def file_etag(f: NodeFile) -> str:
    return f"0x{int(f.mtime * 10_000_000) ^ (f.size << 8):X}"


def file_doc(loc: Location, name: str, f: NodeFile) -> Doc:
    """A ``NodeFile`` entry of a listing, in the wire shape."""
    return {
        "name": name,
        "url": loc.file_url(name),
        "isDirectory": f.is_directory,
        "properties": {
            "creationTime": iso(f.ctime),
            "lastModified": iso(f.mtime),
            "contentLength": 0 if f.is_directory else f.size,
            "contentType": CONTENT_TYPE,
            "fileMode": file_mode(f),
        },
    }


async def list_files(ctx: BatchContext, loc: Location, *, recursive: bool, match: Callable[[Any], bool] | None,
                     after: int, limit: int) -> tuple[list[Doc], int | None]:
    """A page of the entries under the location, ordered by name; skiptoken = entries consumed."""
    entries = await _call(ctx.compute.list_files, loc.pool_id, loc.node_id, loc.base, recursive, path=loc.base)
    docs = sorted((file_doc(loc, loc.name_of(f.path), f) for f in entries), key=lambda d: str(d["name"]))
    docs = [d for d in docs if d["name"]]
    page: list[Doc] = []
    for index in range(after, len(docs)):
        if match is None or match(docs[index]):
            page.append(docs[index])
            if len(page) == limit:
                return page, index + 1 if index + 1 < len(docs) else None
    return page, None


async def open_file(ctx: BatchContext, loc: Location, relative: str) -> OpenedFile:
    """A file of the location, opened once: properties from ``.info``, bytes from ``read``."""
    path = loc.path(relative)
    if not path:
        raise e.InvalidUri("A file path is required.", {"FilePath": relative})
    return await _call(ctx.compute.open_file, loc.pool_id, loc.node_id, path, path=relative)


async def read(opened: OpenedFile, relative: str, start: int, end: int | None) -> AsyncIterator[bytes]:
    """The bytes ``start``..``end`` (inclusive) of an opened file, streamed."""
    try:
        async for chunk in opened.read(start, end):
            yield chunk
    except FileAccessError as exc:
        raise translate(exc, relative) from None


async def delete(ctx: BatchContext, loc: Location, relative: str, recursive: bool) -> None:
    path = loc.path(relative)
    if not path:
        raise e.InvalidUri("A file path is required.", {"FilePath": relative})
    await _call(ctx.compute.stat_file, loc.pool_id, loc.node_id, path, path=relative)
    await _call(ctx.compute.delete_file, loc.pool_id, loc.node_id, path, recursive, path=relative)
