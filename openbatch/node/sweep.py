"""Ending what a task left running: the rest of its session, after its process group.

Each task runs in a session of its own whose id is the pid of its first process. When that
process ends, its process group is killed at once (``killpg`` before the process is reaped, so
the id cannot have been reused); processes that moved to another group of the same session
(``set -m`` job control, ``setpgid``) are found by their session id in ``/proc`` and killed here.

The session's first process stays unreaped (a zombie) until its session has been swept: a zombie
keeps its pid, so the session id cannot be taken by a new session meanwhile — once it is reaped
the kernel may give the same pid to any new process, which would then be swept as if it were
the task's (tasks ended with 137 at thousands of tasks a second before this was so). A session
is swept only while its leader is such a zombie, and each process is checked again through a
pidfd before it is signalled, so nothing outside the session is ever hit. Whoever started the
process reaps it when told (``release``).

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
from collections.abc import Callable
from concurrent.futures import Future

log = logging.getLogger(__name__)

DELAY = 0.1  # seconds: ends within this of each other share one scan
ROUNDS = 3  # a process forking while it is killed: scan again while something was found


def _stat(pid: int) -> tuple[bytes, int] | None:
    """(state, session id) of a process, from /proc."""
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
        return fields[0], int(fields[3])  # after the command: state, ppid, pgrp, session
    except (IndexError, ValueError):
        return None


def _session_of(pid: int) -> int | None:
    found = _stat(pid)
    return found[1] if found else None


def _held(session: int) -> bool:
    """Whether the session's first process is an unreaped zombie (so the id is still that session's)."""
    return _stat(session) == (b"Z", session)


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
    """SIGKILL every process whose session id is in ``sessions`` and whose session leader is still
    held unreaped; how many."""
    sessions = {session for session in sessions if _held(session)}
    me = os.getpid()
    killed = 0
    if not sessions:
        return killed
    for _ in range(ROUNDS):
        found = 0
        try:
            pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
        except OSError:
            return killed
        for pid in pids:
            found_stat = _stat(pid) if pid != me else None
            # zombies (the held leaders among them) have ended already
            if found_stat and found_stat[1] in sessions and found_stat[0] != b"Z" and _kill_if_in(pid, sessions):
                found += 1
        killed += found
        if not found:
            break
    return killed


class SessionSweeper:
    """Collects ended sessions and sweeps them in batches on the loop's default executor; each
    session's ``release`` is called on the loop once it has been swept."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._pending: dict[int, Callable[[], None]] = {}
        self._busy = False

    def ended(self, session: int, release: Callable[[], None]) -> None:
        self._pending[session] = release
        if not self._busy:
            self._busy = True
            self.loop.call_later(DELAY, self._sweep)

    def _sweep(self) -> None:
        batch, self._pending = self._pending, {}
        try:
            done = self.loop.run_in_executor(None, kill_sessions, set(batch))
        except RuntimeError:  # the loop is shutting down: the zombies go with the process
            self._busy = False
            return
        done.add_done_callback(lambda future: self._swept(future, batch))

    def _swept(self, done: Future[int] | asyncio.Future[int], batch: dict[int, Callable[[], None]]) -> None:
        if not done.cancelled() and done.exception() is not None:
            log.warning("sweeping ended task sessions failed: %s", done.exception())
        for release in batch.values():
            _release(release)
        if self._pending and not self.loop.is_closed():
            self.loop.call_later(DELAY, self._sweep)
        else:
            self._busy = False


def _release(release: Callable[[], None]) -> None:
    try:
        release()
    except Exception:  # one process's reaping must not keep the others' from happening
        log.exception("reaping a swept session's leader failed")


_sweepers: dict[int, SessionSweeper] = {}


def session_ended(session: int, release: Callable[[], None]) -> None:
    """Kill, shortly, what is left of ``session`` (call from the event loop), then ``release()``
    its leader (reap the zombie that kept the session id from being reused)."""
    if not hasattr(os, "pidfd_open"):
        release()  # no safe way to pin a process before signalling it: the group kill has to do
        return
    loop = asyncio.get_running_loop()
    sweeper = _sweepers.get(id(loop))
    if sweeper is None or sweeper.loop is not loop:
        for key in [k for k, s in _sweepers.items() if s.loop.is_closed()]:
            del _sweepers[key]
        sweeper = _sweepers[id(loop)] = SessionSweeper(loop)
    sweeper.ended(session, release)
