"""Task directories made on a helper thread, in batches, while the event loop keeps spawning.

Making a task's directory is two ``mkdir`` calls (plus two ``chown`` for a task running as
another account): on overlay file systems that is a good part of what a short task costs the
server. The loop hands the requests of one iteration to a single helper thread as one batch and
gets all the answers back with one wake-up, so the file system work runs on another core.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from openbatch.node.identity import UserSpec, prepare_dir_for
from openbatch.node.layout import WORKING_DIR, NodeLayout


@dataclass(eq=False)
class _Request:
    task_dir: Path
    layout: NodeLayout
    owner: UserSpec | None  # hand the directory to this account (None: keep the server's)
    future: asyncio.Future[Path]


def make_task_dir(task_dir: Path, layout: NodeLayout, owner: UserSpec | None) -> Path:
    """task_dir/wd, creating what is missing (two mkdirs for a new task in a known job), owned by
    ``owner`` when given. Never recreates a node directory that vanished: FileNotFoundError."""
    fresh = True
    try:
        os.mkdir(task_dir)
    except FileNotFoundError:
        if not layout.exists():
            raise
        os.makedirs(task_dir, exist_ok=True)
    except FileExistsError:
        fresh = False
    wd = task_dir / WORKING_DIR
    try:
        os.mkdir(wd)
    except FileExistsError:
        fresh = False
    if owner is not None:
        if fresh:  # just made, nothing in it yet: no need to walk it
            os.chown(task_dir, owner.uid, owner.gid)
            os.chown(wd, owner.uid, owner.gid)
        else:
            prepare_dir_for(owner, task_dir)
    return wd


class DirMaker:
    """Batches ``make_task_dir`` calls onto one helper thread; ``await make(...)`` for the result."""

    def __init__(self) -> None:
        self._pending: list[_Request] = []
        self._scheduled = False
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def make(self, task_dir: Path, layout: NodeLayout, owner: UserSpec | None) -> asyncio.Future[Path]:
        loop = asyncio.get_running_loop()
        request = _Request(task_dir, layout, owner, loop.create_future())
        self._pending.append(request)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush, loop)
        return request.future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._pending = self._pending, []
        self._scheduled = False
        if not batch:
            return
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="openbatch-dirs")
            executor = self._executor
        executor.submit(self._work, loop, batch)

    def _work(self, loop: asyncio.AbstractEventLoop, batch: list[_Request]) -> None:
        results: list[Path | BaseException] = []
        for request in batch:
            try:
                results.append(make_task_dir(request.task_dir, request.layout, request.owner))
            except OSError as exc:
                results.append(exc)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_deliver, batch, results)

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def _deliver(batch: list[_Request], results: list[Path | BaseException]) -> None:
    for request, result in zip(batch, results, strict=True):
        if request.future.done():
            continue
        if isinstance(result, BaseException):
            request.future.set_exception(result)
        else:
            request.future.set_result(result)
