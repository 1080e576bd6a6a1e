"""Ending what a task left running: the rest of its session, after its process group.

Each task runs in a session of its own whose id is the pid of its first process. When that
process ends, its process group is killed at once (``killpg`` before the process is reaped, so
the id cannot have been reused); processes that moved to another group of the same session
(``set -m`` job control, ``setpgid``) are found by their session id in ``/proc`` and killed here.
A session id stays reserved while any process holds it, and each process is checked again
through a pidfd before it is signalled, so nothing outside the session is ever hit.

Scanning ``/proc`` costs about a millisecond (more on a busy machine), so ended sessions are
collected and swept in batches on a helper thread, at most ten times a second: at thousands of
tasks a second that keeps the sweep near 1% of a core. The group kill, which covers the common
``cmd &``, is immediate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from concurrent.futures import Future

log = logging.getLogger(__name__)

DELAY = 0.1  # seconds: ends within this of each other share one scan
ROUNDS = 3  # a process forking while it is killed: scan again while something was found


def _session_of(pid: int) -> int | None:
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 1024)
    except OSError:
        return None
    finally:
        os.close(fd)
    fields = data.rpartition(b")")[2].split()
    try:
        return int(fields[3])  # after the command: state, ppid, pgrp, session
    except (IndexError, ValueError):
        return None


def _kill_if_in(pid: int, sessions: set[int]) -> bool:
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if _session_of(pid) not in sessions:  # checked again on the pinned process
            return False
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            return True
        return False
    finally:
        os.close(pidfd)


def kill_sessions(sessions: set[int]) -> int:
    """SIGKILL every process whose session id is in ``sessions``; how many."""
    me = os.getpid()
    killed = 0
    for _ in range(ROUNDS):
        found = 0
        try:
            pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
        except OSError:
            return killed
        for pid in pids:
            if pid != me and _session_of(pid) in sessions and _kill_if_in(pid, sessions):
                found += 1
        killed += found
        if not found:
            break
    return killed


class SessionSweeper:
    """Collects ended sessions and sweeps them in batches on the loop's default executor."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._pending: set[int] = set()
        self._busy = False

    def ended(self, session: int) -> None:
        self._pending.add(session)
        if not self._busy:
            self._busy = True
            self.loop.call_later(DELAY, self._sweep)

    def _sweep(self) -> None:
        sessions, self._pending = self._pending, set()
        try:
            done = self.loop.run_in_executor(None, kill_sessions, sessions)
        except RuntimeError:  # the loop is shutting down
            self._busy = False
            return
        done.add_done_callback(self._swept)

    def _swept(self, done: Future[int] | asyncio.Future[int]) -> None:
        if not done.cancelled() and done.exception() is not None:
            log.warning("sweeping ended task sessions failed: %s", done.exception())
        if self._pending and not self.loop.is_closed():
            self.loop.call_later(DELAY, self._sweep)
        else:
            self._busy = False


_sweepers: dict[int, SessionSweeper] = {}


def session_ended(session: int) -> None:
    """Kill, shortly, what is left of ``session`` (call from the event loop)."""
    if not hasattr(os, "pidfd_open"):
        return  # no safe way to pin a process before signalling it: the group kill has to do
    loop = asyncio.get_running_loop()
    sweeper = _sweepers.get(id(loop))
    if sweeper is None or sweeper.loop is not loop:
        for key in [k for k, s in _sweepers.items() if s.loop.is_closed()]:
            del _sweepers[key]
        sweeper = _sweepers[id(loop)] = SessionSweeper(loop)
    sweeper.ended(session)
