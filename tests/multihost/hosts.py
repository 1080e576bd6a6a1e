"""Several "hosts" on one machine: network namespaces joined by veth pairs to a bridge.

``Network.create(3)`` makes namespaces ``obmh-{pid}-{tag}-h1`` .. ``-h3`` with addresses
10.231.0.1/24 .. .3 on ``eth0`` and their loopback, each wired by a veth pair to a bridge in a
hub namespace of its own. Nothing touches the machine's real network: every interface lives in
a namespace this run created, and deleting the namespaces removes them all. A process runs "on"
a host through ``ip netns exec`` and, in a UTS namespace of its own (``unshare --uts``), under
the host's name, so ``socket.gethostname()`` tells the hosts apart too.

``Host.call(fn)`` runs a function of this test process on a host: in a thread that entered the
host's network namespace (setns), so SDK clients created and used inside reach the others at
their addresses; only the network is the host's there, not the hostname.

Names carry the creating process's id: ``Network.create`` first removes namespaces of runs whose
process is gone (an aborted run), with whatever still runs inside them, and never touches those
of a live run.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

PREFIX = "obmh"
SUBNET = "10.231.0"
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_NAME = re.compile(rf"{PREFIX}-(\d+)-[0-9a-f]+-\w+")
# Sets the UTS hostname (the process is alone in a new UTS namespace) and becomes the command.
_AS_HOST = "import os, socket, sys; socket.sethostname(sys.argv[1]); os.execvp(sys.argv[2], sys.argv[2:])"

T = TypeVar("T")


class NamespacesUnavailable(RuntimeError):
    """This machine cannot make the hosts; the message says why (the suite skips with it)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None when they can (tried, not guessed)."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); run as root"
    for tool, package in (("ip", "iproute2"), ("unshare", "util-linux")):
        if shutil.which(tool) is None:
            return f"`{tool}` not found: install {package}"
    probe = f"{PREFIX}-{os.getpid()}-0-probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed (no CAP_NET_ADMIN in this container?): {made.stderr.strip()}"
    try:
        for args in (["ip", "link", "add", "p0", "type", "veth", "peer", "name", "p1"],
                     ["unshare", "--uts", "true"]):
            proc = subprocess.run(["ip", "netns", "exec", probe, *args], capture_output=True, text=True, timeout=30)
            if proc.returncode != 0:
                return f"`{' '.join(args[:2])}` in a namespace failed: {proc.stderr.strip()}"
    finally:
        _ip("netns", "del", probe, check=False)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_inside(netns: str) -> None:
    """SIGKILL every process still in namespace ``netns`` (all of them started by a run of this harness)."""
    pids = _ip("netns", "pids", netns, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def remove_stale() -> list[str]:
    """Delete the namespaces of harness runs whose process is gone; returns their names."""
    removed = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NAME.fullmatch(name)
        if match and not _alive(int(match.group(1))):
            _kill_inside(name)
            _ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


@dataclass
class Proc:
    """A process started on a host: its own process group, output in ``log_path``."""

    host: Host
    args: Sequence[str]
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole process group (the command and its children) and reap it."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(15)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL whatever of the group is left."""
        self.kill(signal.SIGTERM)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)


@dataclass
class Host:
    """One namespace host: ``name`` (its hostname), ``address`` (on eth0), processes started on it."""

    name: str
    netns: str
    address: str
    logs: Path
    procs: list[Proc] = field(default_factory=list)

    def command(self, args: Sequence[str]) -> list[str]:
        """``args`` as a command line that runs on this host (its network, its hostname)."""
        return ["ip", "netns", "exec", self.netns, "unshare", "--uts", "--",
                sys.executable, "-c", _AS_HOST, self.name, *args]

    def popen(self, args: Sequence[str], label: str, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> Proc:
        """Start ``args`` on this host in its own process group; output goes to ``{label}.log``."""
        log_path = self.logs / f"{self.name}-{label}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(self.command(args), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
        proc = Proc(self, list(args), popen, log_path)
        self.procs.append(proc)
        return proc

    def run(self, args: Sequence[str], timeout: float = 120, env: dict[str, str] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``args`` on this host to the end; returns its output (never raises on a failure exit)."""
        return subprocess.run(self.command(args), capture_output=True, text=True, timeout=timeout, input=input,
                              env={**os.environ, **(env or {})})

    def python(self, code: str, *args: str, timeout: float = 120,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run Python ``code`` (``sys.argv[1:]`` = ``args``) on this host with this interpreter."""
        return self.run([sys.executable, "-c", code, *args], timeout=timeout, env=env)

    def call(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` in a thread of this process inside this host's network namespace."""
        result: list[T] = []
        error: list[BaseException] = []

        def inside() -> None:
            try:
                enter_netns(self.netns)
                result.append(fn(*args))
            except BaseException as exc:  # handed to the caller's thread
                error.append(exc)

        thread = threading.Thread(target=inside, name=f"on-{self.name}", daemon=True)
        thread.start()
        thread.join()
        if error:
            raise error[0]
        return result[0]

    def listening(self, port: int, address: str | None = None) -> bool:
        def probe() -> bool:
            with socket.socket() as s:
                s.settimeout(0.5)
                return s.connect_ex((address or self.address, port)) == 0

        return self.call(probe)

    def wait_listening(self, port: int, proc: Proc | None = None, timeout: float = 60, address: str | None = None) -> None:
        """Until something listens on ``port`` of this host (fails early when ``proc`` exits)."""
        deadline = time.monotonic() + timeout
        while not self.listening(port, address):
            if proc is not None and not proc.alive():
                raise RuntimeError(f"{proc.args[0]} on {self.name} exited with {proc.popen.returncode}:\n{proc.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {self.name}:{port} after {timeout}s"
                                   + (f":\n{proc.log()}" if proc else ""))
            time.sleep(0.1)

    def pids(self) -> list[int]:
        """The processes running on this host (in its network namespace)."""
        return [int(pid) for pid in _ip("netns", "pids", self.netns, check=False).stdout.split()]

    def crash(self) -> None:
        """The machine dies: every process on this host stops at once, none telling anyone about
        another's end (all are frozen with SIGSTOP before any is killed), then all are SIGKILLed."""
        frozen: set[str] = set()
        while new := set(_ip("netns", "pids", self.netns, check=False).stdout.split()) - frozen:
            for pid in new:  # until no process forked meanwhile is left running
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGSTOP)
            frozen |= new
        _kill_inside(self.netns)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(15)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()


def enter_netns(netns: str) -> None:
    """Move the calling thread (only it, and threads it starts later) into namespace ``netns``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_DIR / netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {netns}: {os.strerror(err)}")
    finally:
        os.close(fd)


@dataclass
class Network:
    """Hosts ``host1`` .. ``hostN`` at 10.231.0.1 .. .N on one bridge; ``close()`` removes everything."""

    tag: str
    hosts: list[Host]
    hub: str
    logs: Path

    @classmethod
    def create(cls, count: int, logs: Path) -> Network:
        reason = unavailable_reason()
        if reason is not None:
            raise NamespacesUnavailable(reason)
        remove_stale()
        tag = f"{PREFIX}-{os.getpid()}-{secrets.token_hex(3)}"
        net = cls(tag=tag, hosts=[], hub=f"{tag}-hub", logs=logs)
        try:
            _ip("netns", "add", net.hub)
            _ip("-n", net.hub, "link", "add", "br0", "type", "bridge")
            _ip("-n", net.hub, "link", "set", "br0", "up")
            for i in range(1, count + 1):
                net.hosts.append(net._add_host(i))
        except BaseException:
            net.close()
            raise
        return net

    def _add_host(self, i: int) -> Host:
        host = Host(name=f"host{i}", netns=f"{self.tag}-h{i}", address=f"{SUBNET}.{i}", logs=self.logs)
        _ip("netns", "add", host.netns)
        _ip("-n", self.hub, "link", "add", f"h{i}", "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        _ip("-n", self.hub, "link", "set", f"h{i}", "master", "br0", "up")
        _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", host.netns, "link", "set", "eth0", "up")
        _ip("-n", host.netns, "link", "set", "lo", "up")
        return host

    def namespaces(self) -> list[str]:
        """This network's namespaces, those a failed ``create`` made half-way included."""
        listed = (line.split()[0] for line in _ip("netns", "list", check=False).stdout.splitlines() if line.split())
        return [name for name in listed if name.startswith(f"{self.tag}-")]

    def close(self) -> None:
        """Stop every process started on the hosts, kill any left inside, delete the namespaces."""
        for host in self.hosts:
            with contextlib.suppress(Exception):
                host.stop_all()
        for netns in self.namespaces():
            _kill_inside(netns)
            _ip("netns", "del", netns, check=False)
