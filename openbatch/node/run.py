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
  timeout, terminate or kill sends SIGKILL to the whole group, children and grandchildren; when
  a task's process ends, what it left running in its group and session is killed
  (:mod:`openbatch.node.sweep`), as a node does;
- stdout/stderr are the task's files, passed as descriptors: output never passes through the
  server, so a task writing gigabytes costs the server nothing.

When a non-admin task must run as another account (server running as root) it is started by a
helper that already runs as that account (:mod:`openbatch.node.spawner`), with the same ``vfork``
path. Should the helper be unavailable, the program runs under ``setpriv`` (util-linux), which
drops to the account and execs it (one more exec per task), or else ``Popen(user=...)`` (a full
``fork`` of the server). A bare program name is looked up on PATH by exec, as the task's account:
a directory or file that account may not use is skipped, as on a real node. Under ``setpriv``
the server looks it up first, with that account's permissions, so a missing program is still
CommandProgramNotFound.
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
from typing import Protocol

from openbatch.node.failure import TaskFailure
from openbatch.node.identity import UserSpec, needs_switch
from openbatch.node.spawner import Spawner, SpawnerGone, SpawnFailed, held_exit_code
from openbatch.node.sweep import session_ended

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

    def __init__(self, pid: int, started: float, exited: asyncio.Future[int | None], end_session: bool = False):
        self.pid = pid
        self._end_session = end_session
        self._started = started
        self._loop = asyncio.get_running_loop()
        self._exited = exited
        self._timed_out = False
        self._killed = False
        self._ended = 0.0
        exited.add_done_callback(self._on_exit)

    def _on_exit(self, _: asyncio.Future[int | None]) -> None:
        self._ended = time.time()
        if self._end_session:
            session_ended(self.pid, self._release)

    def _release(self) -> None:
        """Reap the session leader that was kept unreaped while its session was swept."""
        raise NotImplementedError

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
    """A child of the server: its end is noticed through a pidfd (or waitpid polling). With
    ``end_session`` what is left of its process group is killed when it ends, before it is reaped
    (while unreaped its pid, the group id, cannot be reused), and the rest of its session soon after."""

    def __init__(self, popen: subprocess.Popen[bytes], started: float, end_session: bool):
        loop = asyncio.get_running_loop()
        super().__init__(popen.pid, started, loop.create_future(), end_session)
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
        code: int | None = None
        if self._end_session:  # the leader stays unreaped until its session is swept (_release)
            try:
                if os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT | flags) is None:
                    return False  # still running
                self._kill_group()
                code = held_exit_code(self.pid)
            except ChildProcessError:  # reaped elsewhere: the status is lost
                code = 255
        else:
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

    def _release(self) -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)

    def _kill_group(self) -> None:
        # While the leader is unreaped its pid cannot be reused, so the group id is still ours.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


class _HelperProcess(RunningProcess):
    """A process a spawner helper started as another account: kills are requests to the helper."""

    def __init__(self, spawner: Spawner, request: int, pid: int, started: float, exited: asyncio.Future[int | None],
                 end_session: bool):
        super().__init__(pid, started, exited, end_session)
        self._spawner = spawner
        self._request = request

    def _kill_group(self) -> None:
        self._spawner.kill(self._request)

    def _release(self) -> None:
        self._spawner.release(self._request)


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


def find_program(program: str, cwd: Path, env: Mapping[str, str], user: UserSpec) -> str:
    """The file ``program`` names as ``user`` would find it: relative to ``cwd`` when it has a '/',
    else the first file on the env's PATH that the account may reach and run (as exec does)."""
    denied = False
    for candidate in _candidates(program, cwd, env):
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            if _may(user, st, 1) and _may_reach(user, candidate):
                return candidate
            denied = True
    if denied:
        raise CommandError("CommandLaunchFailed", f"The program {program!r} is not executable by the task's user")
    raise CommandError("CommandProgramNotFound", f"The program {program!r} was not found")


def _candidates(program: str, cwd: Path, env: Mapping[str, str]) -> list[str]:
    """The files exec tries for ``program``: itself when it has a '/', else each PATH entry's."""
    if "/" in program:
        return [program if program.startswith("/") else os.path.join(cwd, program)]
    dirs = env.get("PATH", os.defpath).split(os.pathsep)
    return [os.path.join(d if d.startswith("/") else os.path.join(cwd, d or "."), program) for d in dirs]


def _may(user: UserSpec, st: os.stat_result, bit: int) -> bool:
    """Whether ``user`` (no supplementary groups, as tasks run) has permission ``bit`` (1 = x) on ``st``."""
    if user.uid == 0:
        return bit != 1 or bool(st.st_mode & 0o111) or stat.S_ISDIR(st.st_mode)
    if st.st_uid == user.uid:
        return bool(st.st_mode & (bit << 6))
    if st.st_gid == user.gid:
        return bool(st.st_mode & (bit << 3))
    return bool(st.st_mode & bit)


def _may_reach(user: UserSpec, path: str) -> bool:
    """Whether ``user`` may search every directory above ``path``."""
    for parent in Path(path).parents:
        try:
            if not _may(user, os.stat(parent), 1):
                return False
        except OSError:
            return False
    return True


def _spawn_error(exc: OSError, argv: list[str], cwd: Path, env: Mapping[str, str]) -> CommandError:
    in_cwd = exc.in_cwd if isinstance(exc, SpawnFailed) else (
        exc.filename is not None and os.fspath(exc.filename) == os.fspath(cwd))
    if in_cwd:
        return CommandError("CommandLaunchFailed", f"The working directory is not usable: {exc.strerror}")
    # exec reports EACCES when a PATH directory was not searchable even if the program is nowhere.
    missing = exc.errno == errno.EACCES and not any(os.path.isfile(c) for c in _candidates(argv[0], cwd, env))
    if exc.errno in (errno.ENOENT, errno.ENOTDIR) or missing:
        return CommandError("CommandProgramNotFound", f"The program {argv[0]!r} was not found")
    return CommandError("CommandLaunchFailed", f"The program {argv[0]!r} cannot be started: {exc.strerror}")


class Namespace(Protocol):
    """An isolated node's namespaces (node/isolation.py's NodeNamespace): where its processes start."""

    @property
    def key(self) -> int: ...

    def fds(self) -> list[int]: ...

    def enter_argv(self, argv: list[str]) -> list[str]: ...


# Helpers starting processes as other accounts, one per (event loop, uid, gid, node namespace or 0).
_spawners: dict[tuple[int, int, int, int], Spawner] = {}
_broken: set[tuple[int, int, int]] = set()
USE_SPAWNER = hasattr(os, "pidfd_open")


def _spawner_for(user: UserSpec, namespace: Namespace | None = None) -> Spawner | None:
    ns_key = namespace.key if namespace is not None else 0
    if not USE_SPAWNER or (user.uid, user.gid, ns_key) in _broken:
        return None
    loop = asyncio.get_running_loop()
    key = (id(loop), user.uid, user.gid, ns_key)
    spawner = _spawners.get(key)
    if spawner is not None and spawner.alive and spawner.loop is loop:
        return spawner
    for other_key, other in list(_spawners.items()):  # helpers of loops that are gone, or dead ones
        if other.loop.is_closed() or not other.alive or other_key == key:
            del _spawners[other_key]
            other.close()
    if spawner is not None and not spawner.ever_spawned:  # died before doing anything: do not retry
        _broken.add((user.uid, user.gid, ns_key))
        return None
    try:
        _spawners[key] = spawner = Spawner(user.uid, user.gid, namespace.fds() if namespace is not None else ())
    except OSError:
        _broken.add((user.uid, user.gid, ns_key))
        return None
    return spawner


def close_spawners(namespace: int | None = None, uid: int | None = None) -> None:
    """Stop every helper (each kills what it started), for a server shutting down; or (``namespace``)
    the helpers inside one node namespace, for a node whose namespace is gone; or (``uid``) those of
    an account about to be deleted."""
    for key, spawner in list(_spawners.items()):
        if (namespace is None or key[3] == namespace) and (uid is None or key[1] == uid):
            del _spawners[key]
            spawner.close()


async def _start_via_spawner(
    user: UserSpec, argv: list[str], cwd: Path, env: Mapping[str, str], out: int, err: int, end_session: bool,
    namespace: Namespace | None = None,
) -> RunningProcess | None:
    spawner = _spawner_for(user, namespace)
    if spawner is None:
        return None
    started = time.time()
    try:
        request, pid, exited = await spawner.spawn(argv, str(cwd), env, out, err, end_group=end_session)
    except SpawnerGone:
        return None
    except SpawnFailed as exc:
        raise _spawn_error(exc, argv, cwd, env) from None
    return _HelperProcess(spawner, request, pid, started, exited, end_session)


async def start_process(
    command_line: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdout: int,
    stderr: int,
    user: UserSpec | None,
    end_session: bool = False,
    namespace: Namespace | None = None,
) -> RunningProcess:
    """Start ``command_line`` in ``cwd`` with exactly ``env``; CommandError if it cannot start.

    ``stdout``/``stderr`` are descriptors of the task's files (the caller's to close). With
    ``end_session`` whatever the process leaves running in its group and session is killed when
    it ends. A bare program name is looked up on PATH by exec as the account running it.
    ``namespace``: the process starts inside an isolated node's namespaces (by its spawner helper,
    else under ``nsenter``), as ``user`` or else as the server's own account.
    """
    argv = split_command_line(command_line)
    switch = user if needs_switch(user) else None
    try:
        if namespace is not None:
            account = user or UserSpec(name="", uid=os.geteuid(), gid=os.getegid(), is_admin=False)
            helped = await _start_via_spawner(account, argv, cwd, env, stdout, stderr, end_session, namespace)
            if helped is not None:
                return helped
            argv = namespace.enter_argv(_switched(argv, switch) if switch is not None else argv)
            switch = None
        elif switch is not None:
            helped = await _start_via_spawner(switch, argv, cwd, env, stdout, stderr, end_session)
            if helped is not None:
                return helped
            if _setpriv() is not None:  # setpriv reports a missing program only as an exit code
                argv[0] = find_program(argv[0], cwd, env, switch)
        started = time.time()
        popen = _popen(argv, cwd, env, stdout, stderr, switch)
    except OSError as exc:
        raise _spawn_error(exc, argv, cwd, env) from None
    return _LocalProcess(popen, started, end_session)


def _switched(argv: list[str], user: UserSpec) -> list[str]:
    """``argv`` run as ``user`` under setpriv (dropping to the account, then exec)."""
    return [_setpriv() or "setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--", *argv]


def _popen(
    argv: list[str], cwd: Path, env: Mapping[str, str], out: int, err: int, user: UserSpec | None
) -> subprocess.Popen[bytes]:
    if user is not None:
        if _setpriv() is not None:
            argv = _switched(argv, user)
        else:
            return subprocess.Popen(
                argv, stdin=_devnull(), stdout=out, stderr=err, cwd=cwd, env=env, start_new_session=True,
                user=user.uid, group=user.gid, extra_groups=[],
            )
    return subprocess.Popen(argv, stdin=_devnull(), stdout=out, stderr=err, cwd=cwd, env=env, start_new_session=True)
