"""The ComputeProvider protocol: what the engine asks of wherever nodes live.

Providers only do what they are told and report back; all state lives in the store and is
changed by the engine. ``local`` runs nodes as directories + processes on this machine; ``dask``
(later) runs them as Dask workers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

Doc = dict[str, Any]


@dataclass(frozen=True)
class NodeFile:
    """An entry under a node's root (or under a task's directory)."""

    path: str  # relative, '/'-separated
    is_directory: bool
    size: int
    mtime: float
    ctime: float
    mode: int


class FileAccessError(Exception):
    """``code``: FileNotFound, or PathOutsideNode for a path that leaves the node's directory."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class ComputeProvider(Protocol):
    """Where nodes are. The engine calls these; none of them change the store."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    # Files API (the Batch service reads node directories through these).
    def list_files(self, pool_id: str, node_id: str, base: str, recursive: bool) -> list[NodeFile]:
        """Entries under ``base`` (a path relative to the node root), FileAccessError if it does not exist."""
        ...

    def stat_file(self, pool_id: str, node_id: str, path: str) -> NodeFile: ...

    def read_file(self, pool_id: str, node_id: str, path: str, start: int, end: int | None) -> AsyncIterator[bytes]:
        """Bytes ``start`` .. ``end`` (inclusive, None = to the end) of a file, streamed."""
        ...

    def delete_file(self, pool_id: str, node_id: str, path: str, recursive: bool) -> None: ...

    def task_dir(self, job_id: str, task_id: str) -> str:
        """A task's directory relative to the node root (workitems/{job}/job-1/{task})."""
        ...
