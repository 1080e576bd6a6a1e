"""A helper process that starts task processes as another account, for a server running as root.

Starting a process as another user from the server itself either costs a full ``fork`` of the
server (``Popen(user=...)``, slow in proportion to the server's memory) or one more ``exec`` per
task (``setpriv``). Instead one small helper per account is started once: it loads, drops to the
account (``setresgid``/``setresuid``, no supplementary groups) and from then on starts that
account's processes with ``vfork`` exactly as the server would start its own, reporting pids and
exit statuses back.

Server and helper talk over a ``SOCK_SEQPACKET`` socket pair: one JSON message per request or
event, stdout/stderr descriptors passed along with spawn requests (``SCM_RIGHTS``). The helper
runs as the task account, so the server treats what it says as untrusted: messages are parsed as
JSON and checked, and the server never signals a pid the helper reports; kills are requests to
the helper, which can only signal that account's processes. When the server goes away the helper
kills what it started and exits.

Only the standard library is imported here: the helper starts in a few tens of milliseconds.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import ctypes
import itertools
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

MAX_MESSAGE = 1 << 17  # a request bigger than this (a huge environment) is started the slow way
_FDS = socket.CMSG_SPACE(2 * array.array("i").itemsize)
_PR_SET_PDEATHSIG = 1
HELPER_MODULE = "openbatch.node.spawner"
# What the helper needs to find Python and this package; never the server's settings or keys (the
# helper runs as the task account; it also becomes non-dumpable when it drops to it).
_HELPER_ENV = ("PATH", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LANG", "LC_ALL", "LC_CTYPE")


class SpawnerGone(Exception):
    """The helper is not running (it could not start, or died)."""


class SpawnFailed(OSError):
    """The helper could not start the process: ``errno``, and ``in_cwd`` when the directory was the problem."""

    def __init__(self, err: int, message: str, in_cwd: bool):
        super().__init__(err, message)
        self.in_cwd = in_cwd


class Spawner:
    """The server's side: one helper for one account, bound to the running event loop."""

    def __init__(self, uid: int, gid: int, namespaces: Sequence[int] = ()):
        """``namespaces``: descriptors of namespaces the helper joins (``setns``, in that order) before it
        drops to the account, so that what it starts runs in them (an isolated node, node/isolation.py)."""
        self.uid = uid
        self.gid = gid
        self.loop = self._loop = asyncio.get_running_loop()
        self.ever_spawned = False
        self._ids = itertools.count(1)
        self._started: dict[int, asyncio.Future[int]] = {}
        self._exits: dict[int, asyncio.Future[int | None]] = {}
        self._pids: dict[int, int] = {}  # request -> pid the helper reported (untrusted)
        self._sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", HELPER_MODULE, str(uid), str(gid), str(child.fileno()), str(os.getpid()),
                 *(str(fd) for fd in namespaces)],
                pass_fds=[child.fileno(), *namespaces], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
                env={k: v for k, v in os.environ.items() if k in _HELPER_ENV},
            )
        finally:
            child.close()
        self._sock.setblocking(False)
        self._loop.add_reader(self._sock.fileno(), self._on_readable)
        self.alive = True

    # -- requests ------------------------------------------------------------------------------

    async def spawn(
        self, argv: list[str], cwd: str, env: Mapping[str, str], out: int, err: int, end_group: bool = False
    ) -> tuple[int, int, asyncio.Future[int | None]]:
        """Start a process; (request id, pid, future of its exit code). SpawnFailed / SpawnerGone.

        ``end_group``: when the process ends, the helper kills what is left of its process group
        before reaping it."""
        if not self.alive:
            raise SpawnerGone("the spawner is not running")
        req = next(self._ids)
        message = {"op": "spawn", "id": req, "argv": argv, "cwd": cwd, "env": dict(env), "group": end_group}
        payload = json.dumps(message).encode()
        if len(payload) > MAX_MESSAGE:
            raise SpawnerGone("request too large for the spawner")
        started: asyncio.Future[int] = self._loop.create_future()
        exited: asyncio.Future[int | None] = self._loop.create_future()
        self._started[req] = started
        self._exits[req] = exited  # the exit may be reported before this coroutine resumes
        try:
            await self._send(payload, [out, err])
            pid = await started
        except BaseException:
            self._started.pop(req, None)
            self._exits.pop(req, None)
            raise
        return req, pid, exited

    def release(self, req: int) -> None:
        """Let the helper reap the ended session leader of request ``req`` (``end_group``), which it
        keeps unreaped until then so that the session id is not reused while it is swept."""
        if self.alive:
            with contextlib.suppress(OSError):
                self._sock.send(json.dumps({"op": "reap", "id": req}).encode())

    def kill(self, req: int) -> None:
        """Ask the helper to SIGKILL the process group of request ``req``."""
        if self.alive and req in self._exits and not self._exits[req].done():
            with contextlib.suppress(OSError):
                self._sock.send(json.dumps({"op": "kill", "id": req}).encode())

    async def _send(self, payload: bytes, fds: list[int]) -> None:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
        while True:
            try:
                self._sock.sendmsg([payload], ancillary)
                return
            except BlockingIOError:
                await self._writable()
            except OSError as exc:
                self._die()
                raise SpawnerGone(f"the spawner is gone: {exc}") from None

    async def _writable(self) -> None:
        ready: asyncio.Future[None] = self._loop.create_future()
        fd = self._sock.fileno()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        self._loop.add_writer(fd, wake)
        try:
            await ready
        finally:
            self._loop.remove_writer(fd)

    # -- events --------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        while True:
            try:
                data = self._sock.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._die()
                return
            self._event(data)

    def _event(self, data: bytes) -> None:
        try:
            msg = json.loads(data)
            req = msg["id"]
        except (ValueError, TypeError, KeyError):
            return
        if not isinstance(req, int) or isinstance(req, bool):
            return
        self.ever_spawned = True  # the helper is up and answering
        if "pid" in msg:
            started = self._started.pop(req, None)
            if started is not None and not started.done() and isinstance(msg["pid"], int):
                self._pids[req] = msg["pid"]
                started.set_result(msg["pid"])
        elif "errno" in msg:
            started = self._started.pop(req, None)
            self._exits.pop(req, None)
            if started is not None and not started.done():
                started.set_exception(SpawnFailed(int(msg["errno"]), str(msg.get("error", "")), bool(msg.get("cwd"))))
        elif "exit" in msg:
            self._pids.pop(req, None)
            done = self._exits.pop(req, None)
            if done is not None and not done.done() and isinstance(msg["exit"], int):
                done.set_result(msg["exit"])

    def _die(self) -> None:
        if not self.alive:
            return
        self.alive = False
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        for started in self._started.values():
            if not started.done():
                started.set_exception(SpawnerGone("the spawner died"))
        for done in self._exits.values():
            if not done.done():
                done.set_result(None)
        for pid in self._pids.values():  # orphans of a helper that died: end them as it would have
            _kill_orphan(pid, self.uid)
        self._started.clear()
        self._exits.clear()
        self._pids.clear()
        self._proc.poll()

    def close(self) -> None:
        """Stop the helper (it kills the processes it started)."""
        self._die()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)


def _kill_orphan(pid: int, uid: int) -> None:
    """SIGKILL the group led by ``pid`` if it still is a group leader of the account ``uid``.

    The pid came from the helper, so it is checked before root acts on it: only a session of
    the task account is ever signalled, never anything of root's or of another account.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        owner = os.stat(f"/proc/{pid}").st_uid
    except (OSError, IndexError):
        return
    if len(fields) > 3 and int(fields[2]) == pid and owner == uid and uid != 0:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)


def kill_orphaned_helpers() -> int:
    """SIGKILL helpers whose server is gone (a server killed before the parent-death signal
    could reach them, or on a system without one); how many.

    A helper is started with its server's pid as its last argument: one whose parent is no longer
    that process has lost its server. The helpers of other live servers are left alone, and so are
    a live helper's children between fork and exec (they still show the helper's command line: taken
    for orphans, they were tasks killed before they ran, exit code 137, whenever any server or Dask
    worker on the machine started at that instant).
    """
    killed = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        server = _helper_server(pid)
        if server is None:
            continue
        parent = _parent(pid)
        if parent != server and _helper_server(parent) is None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _helper_server(pid: int) -> int | None:
    """The server pid a helper process was started for (None: the process is not a helper)."""
    argv = _read(f"/proc/{pid}/cmdline").split(b"\0")
    if len(argv) < 7 or argv[1:3] != [b"-m", HELPER_MODULE.encode()] or not argv[6].isdigit():
        return None
    return int(argv[6])


def _parent(pid: int) -> int:
    fields = _read(f"/proc/{pid}/stat").rpartition(b")")[2].split()
    return int(fields[1]) if len(fields) > 1 else 0


# -- the helper ---------------------------------------------------------------------------------


class _ServerGone(Exception):
    """The server's end of the socket is closed: the helper's work is over."""


class _Helper:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sel = selectors.DefaultSelector()
        self.sel.register(sock, selectors.EVENT_READ, None)
        self.running: dict[int, tuple[int, int, bool]] = {}  # request id -> (pid, pidfd, kill its group at the end)
        self.held: dict[int, int] = {}  # request id -> pid of an ended session leader kept unreaped
        self.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    def reply(self, **msg: Any) -> None:
        try:
            self.sock.send(json.dumps(msg).encode())
        except OSError:  # the server is gone (killed mid-spawn, say)
            raise _ServerGone from None

    def serve(self) -> None:
        with contextlib.suppress(_ServerGone):
            while True:
                for key, _ in self.sel.select():
                    if key.data is None:
                        if not self.request():
                            return
                    else:
                        self.reap(key.data)

    def request(self) -> bool:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(MAX_MESSAGE + 1024, _FDS)
        except OSError:  # the server is gone
            return False
        fds = array.array("i")
        for level, kind, blob in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(blob[: len(blob) - len(blob) % fds.itemsize])
        try:
            if not data:
                return False
            msg = json.loads(data)
            if msg["op"] == "spawn" and len(fds) == 2:
                self.spawn(msg, fds[0], fds[1])
            elif msg["op"] == "kill" and msg["id"] in self.running:
                with contextlib.suppress(OSError):
                    os.killpg(self.running[msg["id"]][0], signal.SIGKILL)
            elif msg["op"] == "reap" and msg["id"] in self.held:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(self.held.pop(msg["id"]), 0)
        finally:
            for fd in fds:
                os.close(fd)
        return True

    def spawn(self, msg: dict[str, Any], out: int, err: int) -> None:
        req = msg["id"]
        try:
            proc = subprocess.Popen(msg["argv"], stdin=self.devnull, stdout=out, stderr=err, cwd=msg["cwd"],
                                    env=msg["env"], start_new_session=True)
        except OSError as exc:
            in_cwd = exc.filename is not None and os.fspath(exc.filename) == msg["cwd"]
            self.reply(id=req, errno=exc.errno or 0, error=exc.strerror or str(exc), cwd=in_cwd)
            return
        pidfd = os.pidfd_open(proc.pid)
        self.running[req] = (proc.pid, pidfd, bool(msg.get("group")))
        self.sel.register(pidfd, selectors.EVENT_READ, req)
        proc.returncode = 0  # reaped by reap(), not by Popen
        self.reply(id=req, pid=proc.pid)

    def reap(self, req: int) -> None:
        pid, pidfd, end_group = self.running.pop(req)
        self.sel.unregister(pidfd)
        os.close(pidfd)
        if end_group:
            # Not reaped yet: the group id is still this process's own. It stays unreaped until the
            # server has swept its session and says "reap", so the session id is not reused.
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            self.held[req] = pid
            code = held_exit_code(pid)
        else:
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
        self.reply(id=req, exit=code)

    def kill_all(self) -> None:
        """Kill what it started and reap it, and what it holds unreaped, before the helper exits:
        an orphaned zombie is left to whatever runs as pid 1, which in containers and light VMs
        often never reaps (its pid would stay taken)."""
        pids = [pid for pid, _, _ in self.running.values()]
        for pid in pids:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        for pid in self.held.values():  # zombies already
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.held.clear()
        deadline = time.monotonic() + 1.0  # a setuid child may not be ours to kill: never wait on it for long
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if not _reaped(pid)]
            if pids:
                time.sleep(0.01)


def _reaped(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        return True


def held_exit_code(pid: int) -> int:
    """The exit code of an ended child left unreaped (``-signal`` when a signal ended it)."""
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    if info is None:  # not ended after all (never, without WNOHANG)
        raise ChildProcessError(pid)
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


def _end_with_server(server: int) -> None:
    """SIGTERM when the server dies, even by kill -9 (Linux), so the helper kills what it started
    and exits rather than outliving it. Set after the switch of account, which clears it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def helper_main(args: list[str]) -> int:
    uid, gid, fd, server, *namespaces = (int(a) for a in args)
    sock = socket.socket(fileno=fd)
    for ns in namespaces:  # still root, still one thread: join the node's namespaces
        _setns(ns)
        os.close(ns)
    if namespaces:
        os.chdir("/")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server's Ctrl-C is for the server
    helper = _Helper(sock)

    def terminate(signum: int, frame: object) -> None:
        # Its server is gone. Kill and exit from here: the handler may interrupt anything,
        # kill_all included, and must not leave it half done.
        helper.kill_all()
        os._exit(0)

    signal.signal(signal.SIGTERM, terminate)
    _end_with_server(server)
    if os.getppid() != server:  # the server died before the parent-death signal was set
        return 0
    try:
        helper.serve()
    finally:
        helper.kill_all()
    return 0


if __name__ == "__main__":
    sys.exit(helper_main(sys.argv[1:]))
