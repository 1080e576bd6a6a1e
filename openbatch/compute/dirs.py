"""Task directories made on a helper thread, in batches, while the event loop keeps spawning.

Making a task's directory is a dozen system calls (``mkdir``, opening each level without following
links, ``fchown`` for a task running as another account, creating stdout/stderr): on overlay file
systems that is a good part of what a short task costs the server. The loop hands the requests
of one iteration to a single helper thread as one batch and gets all the answers back with one
wake-up, so the file system work runs on another core.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from openbatch.node import safefs
from openbatch.node.layout import STDERR, STDOUT, WORKING_DIR, NodeLayout
from openbatch.node.safefs import Owner

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | safefs.FILE_FLAGS


@dataclass(eq=False)
class TaskDirs:
    """A task's directory made ready: its working directory and fresh stdout/stderr descriptors
    (the caller's to close)."""

    wd: Path
    stdout: int
    stderr: int

    def close(self) -> None:
        for fd in (self.stdout, self.stderr):
            if fd >= 0:
                os.close(fd)
        self.stdout = self.stderr = -1


@dataclass(eq=False)
class _Request:
    task_dir: Path
    layout: NodeLayout
    owner: Owner | None  # hand the directory to this account (None: keep the server's)
    future: asyncio.Future[TaskDirs]


def make_task_dir(task_dir: Path, layout: NodeLayout, owner: Owner | None) -> TaskDirs:
    """task_dir/wd and new stdout.txt/stderr.txt, owned by ``owner`` when given.

    The task directory sits in a directory of the server's. Made now, nothing but the server can
    write in it until it is handed over (last), so it is filled by path: as few system calls as
    before. Made earlier (a retry, a start task run again), it belongs to the task, which may have
    left links or anything else in it: it is then checked and filled from descriptors with
    :mod:`openbatch.node.safefs`, never following a link. Never recreates a node directory that
    vanished: FileNotFoundError.
    """
    try:
        os.mkdir(task_dir, 0o755)
    except FileNotFoundError:
        if not layout.exists():
            raise
        os.makedirs(task_dir.parent, exist_ok=True)  # the job's directory: the server's, not writable by tasks
        os.mkdir(task_dir, 0o755)
    except FileExistsError:
        return _reuse_task_dir(task_dir, owner)
    return _fill_new_task_dir(task_dir, owner)


def _fill_new_task_dir(task_dir: Path, owner: Owner | None) -> TaskDirs:
    wd = task_dir / WORKING_DIR
    os.mkdir(wd, 0o755)
    out = os.open(task_dir / STDOUT, _NEW_FILE, 0o644)
    try:
        err = os.open(task_dir / STDERR, _NEW_FILE, 0o644)
    except BaseException:
        os.close(out)
        raise
    dirs = TaskDirs(wd, out, err)
    if owner is not None:
        try:
            for fd in (out, err):
                os.fchown(fd, owner.uid, owner.gid)
            os.chown(wd, owner.uid, owner.gid, follow_symlinks=False)
            os.chown(task_dir, owner.uid, owner.gid, follow_symlinks=False)  # last: from now on the task's
        except BaseException:
            dirs.close()
            raise
    return dirs


def _reuse_task_dir(task_dir: Path, owner: Owner | None) -> TaskDirs:
    with (safefs.closing(safefs.open_dir(task_dir.parent)) as parent,
          safefs.closing(_take_task_dir(parent, task_dir.name, owner)) as tdir):
        os.close(safefs.ensure_dir(tdir, WORKING_DIR, owner))
        out = safefs.create_file(tdir, STDOUT, owner)
        try:
            err = safefs.create_file(tdir, STDERR, owner)
        except BaseException:
            os.close(out)
            raise
    return TaskDirs(task_dir / WORKING_DIR, out, err)


def _take_task_dir(parent: int, name: str, owner: Owner | None) -> int:
    """The existing task directory ``name`` (never a link), handed over whole when it changes
    hands (a start task whose elevation changed)."""
    fd = safefs.walk(parent, [name])
    if owner is None:
        return fd
    try:
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) != (owner.uid, owner.gid):
            os.fchown(fd, owner.uid, owner.gid)
            safefs.chown_tree(fd, owner)
    except BaseException:
        os.close(fd)
        raise
    return fd


class DirMaker:
    """Batches ``make_task_dir`` calls onto one helper thread; ``await make(...)`` for the result."""

    def __init__(self) -> None:
        self._pending: list[_Request] = []
        self._scheduled = False
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def make(self, task_dir: Path, layout: NodeLayout, owner: Owner | None) -> asyncio.Future[TaskDirs]:
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
        results: list[TaskDirs | BaseException] = []
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


def _deliver(batch: list[_Request], results: list[TaskDirs | BaseException]) -> None:
    for request, result in zip(batch, results, strict=True):
        if request.future.done():  # nobody waits any more (cancelled)
            if isinstance(result, TaskDirs):
                result.close()
            continue
        if isinstance(result, BaseException):
            request.future.set_exception(result)
        else:
            request.future.set_result(result)
