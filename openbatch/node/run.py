"""Run a task's command line as a process: no shell, own session, output straight to files.

As on Azure Batch's Linux nodes the command line is split like a POSIX shell would split it
(quotes, backslashes) but not run by one: users write ``/bin/sh -c '...'`` for shell features.

Speed matters here (thousands of short tasks a second), so:

- processes are started with :class:`subprocess.Popen`, which uses ``vfork`` when nothing needs
  to run in the child; ``asyncio.create_subprocess_exec`` under uvloop goes through libuv's
  ``fork`` and slows down with the server's memory, and it has no ``user=``/``process_group``;
- the end of a process is noticed through a pidfd registered with the running loop (uvloop or
  asyncio alike), so there is no thread or child watcher per process;
- each process gets its own session (``start_new_session``): its id is its process group, and a
  timeout, terminate or kill sends SIGKILL to the whole group, children and grandchildren;
- stdout/stderr are the task's files, passed as descriptors: output never passes through the
  server, so a task writing gigabytes costs the server nothing.

When a non-admin task must run as another account (server running as root) it is started by a
helper that already runs as that account (:mod:`openbatch.node.spawner`), with the same ``vfork``
path. Should the helper be unavailable, the program runs under ``setpriv`` (util-linux), which
drops to the account and execs it (one more exec per task), or else ``Popen(user=...)`` (a full
``fork`` of the server). The program is looked up by the server first in that case, so a missing
program is still CommandProgramNotFound.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from openbatch.node.failure import TaskFailure
from openbatch.node.identity import UserSpec, needs_switch
from openbatch.node.spawner import Spawner, SpawnerGone, SpawnFailed

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
_POLL_MAX = 0.1  # seconds between waitpid polls where pidfds are not available
# Without quotes or backslashes, shlex's splitting is splitting on its whitespace characters.
_NEEDS_SHLEX = re.compile(r"[\"'\\]")
_SHLEX_SPACE = re.compile(r"[ \t\r\n]+")


class CommandError(TaskFailure):
    """The command line cannot be started: ``code`` is the task failureInfo code."""

    def __init__(self, code: str, message: str):
        super().__init__(code, message)


@dataclass
class ProcessResult:
    """How a process ended. ``exit_code`` is 128+N for a process ended by signal N (as a shell reports it)."""

    exit_code: int | None
    timed_out: bool
    killed: bool
    started: float  # time.time()
    ended: float
    signal: int | None = None


class RunningProcess:
    """A started task process; ``wait()`` for its end, ``kill()`` it and everything it started."""

    def __init__(self, pid: int, started: float, exited: asyncio.Future[int | None]):
        self.pid = pid
        self._started = started
        self._loop = asyncio.get_running_loop()
        self._exited = exited
        self._timed_out = False
        self._killed = False
        self._ended = 0.0
        exited.add_done_callback(self._on_exit)

    def _on_exit(self, _: asyncio.Future[int | None]) -> None:
        self._ended = time.time()

    @property
    def done(self) -> bool:
        return self._exited.done()

    async def wait(self, timeout: float | None = None) -> ProcessResult:
        """Wait for the end; after ``timeout`` seconds (maxWallClockTime) kill the whole group.

        ``exit_code`` is None when the end could not be observed (the helper starting it died).
        """
        timer = None
        if timeout is not None and not self._exited.done():
            timer = self._loop.call_later(max(timeout, 0.0), self._on_timeout)
        try:
            code = await asyncio.shield(self._exited)
        finally:
            if timer is not None:
                timer.cancel()
        sig = -code if code is not None and code < 0 else None
        return ProcessResult(
            exit_code=128 + sig if sig is not None else code,
            timed_out=self._timed_out,
            killed=self._killed,
            started=self._started,
            ended=self._ended,
            signal=sig,
        )

    def _on_timeout(self) -> None:
        if not self._exited.done():
            self._timed_out = True
            self._kill_group()

    def kill(self) -> None:
        """SIGKILL the process group (the process and all it started). No-op once it has ended."""
        if self._exited.done():
            return
        self._killed = True
        self._kill_group()

    def _kill_group(self) -> None:
        raise NotImplementedError


class _LocalProcess(RunningProcess):
    """A child of the server: its end is noticed through a pidfd (or waitpid polling)."""

    def __init__(self, popen: subprocess.Popen[bytes], started: float):
        loop = asyncio.get_running_loop()
        super().__init__(popen.pid, started, loop.create_future())
        self._popen = popen
        self._pidfd = -1
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # no pidfd support: poll (old kernels, other systems)
            loop.call_soon(self._poll, 0.001)
            return
        loop.add_reader(self._pidfd, self._on_pidfd)

    def _on_pidfd(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        self._reap(0)

    def _poll(self, delay: float) -> None:
        if not self._reap(os.WNOHANG):
            self._loop.call_later(delay, self._poll, min(delay * 2, _POLL_MAX))

    def _reap(self, flags: int) -> bool:
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:  # reaped elsewhere: the status is lost
            pid, status = self.pid, 255 << 8
        if pid == 0:
            return False
        code = os.waitstatus_to_exitcode(status)
        self._popen.returncode = code
        if not self._exited.done():
            self._exited.set_result(code)
        return True

    def _kill_group(self) -> None:
        # While the leader is unreaped its pid cannot be reused, so the group id is still ours.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


class _HelperProcess(RunningProcess):
    """A process a spawner helper started as another account: kills are requests to the helper."""

    def __init__(self, spawner: Spawner, request: int, pid: int, started: float, exited: asyncio.Future[int | None]):
        super().__init__(pid, started, exited)
        self._spawner = spawner
        self._request = request

    def _kill_group(self) -> None:
        self._spawner.kill(self._request)


@cache
def _devnull() -> int:
    return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


@cache
def _setpriv() -> str | None:
    return shutil.which("setpriv")


def split_command_line(command_line: str) -> list[str]:
    """POSIX-shell word splitting without a shell; CommandError for empty or unbalanced input."""
    if not _NEEDS_SHLEX.search(command_line):
        argv = [word for word in _SHLEX_SPACE.split(command_line) if word]
        if argv:
            return argv
        raise CommandError("CommandLaunchFailed", "The command line is empty")
    try:
        argv = shlex.split(command_line)
    except ValueError as exc:
        raise CommandError("CommandLaunchFailed", f"The command line cannot be parsed: {exc}") from None
    if not argv:
        raise CommandError("CommandLaunchFailed", "The command line is empty")
    return argv


def find_program(program: str, cwd: Path, env: Mapping[str, str]) -> str:
    """The file ``program`` names: relative to ``cwd`` when it has a '/', else searched in env PATH."""
    if "/" in program:
        candidates = [program if program.startswith("/") else os.path.join(cwd, program)]
    else:
        dirs = env.get("PATH", os.defpath).split(os.pathsep)
        candidates = [os.path.join(d if d.startswith("/") else os.path.join(cwd, d or "."), program) for d in dirs]
    for candidate in candidates:
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            if not os.access(candidate, os.X_OK):
                raise CommandError("CommandLaunchFailed", f"The program {program!r} is not executable")
            return candidate
    raise CommandError("CommandProgramNotFound", f"The program {program!r} was not found")


def _open_output(path: Path, append: bool) -> int:
    return os.open(path, _OPEN_FLAGS | (os.O_APPEND if append else os.O_TRUNC), 0o644)


def _spawn_error(exc: OSError, argv: list[str], cwd: Path) -> CommandError:
    in_cwd = exc.in_cwd if isinstance(exc, SpawnFailed) else (
        exc.filename is not None and os.fspath(exc.filename) == os.fspath(cwd))
    if in_cwd:
        return CommandError("CommandLaunchFailed", f"The working directory is not usable: {exc.strerror}")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return CommandError("CommandProgramNotFound", f"The program {argv[0]!r} was not found")
    return CommandError("CommandLaunchFailed", f"The program {argv[0]!r} cannot be started: {exc.strerror}")


# Helpers starting processes as other accounts, one per (event loop, uid, gid).
_spawners: dict[tuple[int, int, int], Spawner] = {}
_broken: set[tuple[int, int]] = set()
USE_SPAWNER = hasattr(os, "pidfd_open")


def _spawner_for(user: UserSpec) -> Spawner | None:
    if not USE_SPAWNER or (user.uid, user.gid) in _broken:
        return None
    loop = asyncio.get_running_loop()
    key = (id(loop), user.uid, user.gid)
    spawner = _spawners.get(key)
    if spawner is not None and spawner.alive and spawner.loop is loop:
        return spawner
    for other_key, other in list(_spawners.items()):  # helpers of loops that are gone, or dead ones
        if other.loop.is_closed() or not other.alive or other_key == key:
            del _spawners[other_key]
            other.close()
    if spawner is not None and not spawner.ever_spawned:  # died before doing anything: do not retry
        _broken.add((user.uid, user.gid))
        return None
    try:
        _spawners[key] = spawner = Spawner(user.uid, user.gid)
    except OSError:
        _broken.add((user.uid, user.gid))
        return None
    return spawner


def close_spawners() -> None:
    """Stop every helper (each kills what it started). For a server shutting down."""
    for spawner in _spawners.values():
        spawner.close()
    _spawners.clear()


async def _start_via_spawner(
    user: UserSpec, argv: list[str], cwd: Path, env: Mapping[str, str], out: int, err: int
) -> RunningProcess | None:
    spawner = _spawner_for(user)
    if spawner is None:
        return None
    started = time.time()
    try:
        request, pid, exited = await spawner.spawn(argv, str(cwd), env, out, err)
    except SpawnerGone:
        return None
    except SpawnFailed as exc:
        raise _spawn_error(exc, argv, cwd) from None
    return _HelperProcess(spawner, request, pid, started, exited)


async def start_process(
    command_line: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdout_path: Path,
    stderr_path: Path,
    user: UserSpec | None,
    append: bool = False,
) -> RunningProcess:
    """Start ``command_line`` in ``cwd`` with exactly ``env``; CommandError if it cannot start.

    stdout/stderr are truncated (``append=True`` keeps what earlier attempts wrote).
    """
    argv = split_command_line(command_line)
    switch = user if needs_switch(user) else None
    if switch is not None:
        argv[0] = find_program(argv[0], cwd, env)
    out = _open_output(stdout_path, append)
    try:
        err = _open_output(stderr_path, append)
    except BaseException:
        os.close(out)
        raise
    try:
        if switch is not None:
            os.fchown(out, switch.uid, switch.gid)
            os.fchown(err, switch.uid, switch.gid)
            helped = await _start_via_spawner(switch, argv, cwd, env, out, err)
            if helped is not None:
                return helped
        started = time.time()
        popen = _popen(argv, cwd, env, out, err, switch)
    except OSError as exc:
        raise _spawn_error(exc, argv, cwd) from None
    finally:
        os.close(out)
        os.close(err)
    return _LocalProcess(popen, started)


def _popen(
    argv: list[str], cwd: Path, env: Mapping[str, str], out: int, err: int, user: UserSpec | None
) -> subprocess.Popen[bytes]:
    if user is not None:
        setpriv = _setpriv()
        if setpriv is not None:
            argv = [setpriv, f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--", *argv]
        else:
            return subprocess.Popen(
                argv, stdin=_devnull(), stdout=out, stderr=err, cwd=cwd, env=env, start_new_session=True,
                user=user.uid, group=user.gid, extra_groups=[],
            )
    return subprocess.Popen(argv, stdin=_devnull(), stdout=out, stderr=err, cwd=cwd, env=env, start_new_session=True)
