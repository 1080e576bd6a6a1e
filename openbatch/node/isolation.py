"""Isolated nodes: each node in its own mount, UTS and PID namespaces over an overlay of the host's root.

On Azure every node is a VM. Here, when the server runs as root on Linux, a node gets one
long-lived *namespace init* (started once per node, not per task)::

    unshare --mount --uts --pid --fork --propagation private  python -m openbatch.node.isolation init ...

which, as PID 1 of the node's new PID namespace:

- sets the node's hostname (UTS namespace): the node id, made a valid host name;
- mounts an overlay whose lower layer is the host's ``/`` and whose upper layer (what the node
  writes: packages installed, /etc changed) is ``{nodes root}/.isolated/{node id}/upper``;
- gives it a fresh ``/proc`` (its own PID namespace), the host's ``/dev`` and ``/sys``, a private
  ``/tmp`` and ``/dev/shm``, the host's ``/etc/resolv.conf`` (and ``/etc/hosts``, plus a line for
  its own name);
- hides the directory above the nodes (the server's data dir: the store, the blobs, the other
  nodes) under an empty tmpfs and bind-mounts the node's own directory back at its path, so
  ``AZ_BATCH_NODE_ROOT_DIR`` and every path under it are the same inside and outside;
- ``pivot_root``\\ s into it and then only reaps orphans until it is killed.

Tasks do not go through ``nsenter``: the server's spawner helper for the node (one per node and
account, :mod:`openbatch.node.spawner`) joins the namespaces once (``setns``) when it starts, so a
task still costs one ``vfork`` + ``exec``. Killing the init (SIGKILL) kills every process of the
node: that is a node's reboot; reimage also deletes the upper layer, removing the node deletes
the side directory.

Anything else may enter a node with :func:`enter_argv` (``nsenter`` into the init's namespaces)
or ``python -m openbatch.node.isolation enter HOSTNAME [COMMAND...]``, which finds the node by its
host name: what an ``mpirun`` rsh agent needs to start a process on "another machine".

This is isolation for programs that expect a machine of their own, not a security boundary:
admin tasks are root and can leave the namespace.

Only the standard library is imported here: the init starts in a few tens of milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SIDE_DIR = ".isolated"  # under the nodes root: {root}/.isolated/{node id}/{upper,work,merged,tmp}
INIT_ARG = "init"
_MODULE = "openbatch.node.isolation"
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 1, 2, 4, 4096, 16384, 1 << 18
_MNT_DETACH = 2
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217}
_HOST_FILES = ("/etc/resolv.conf",)
_INIT_ENV = ("PATH", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LANG", "LC_ALL")


class IsolationError(OSError):
    """A node's namespaces could not be set up."""


def hostname_of(node_id: str) -> str:
    """The host name a node has: its id in lower case, characters a host name cannot have as '-'."""
    name = re.sub(r"[^a-z0-9-]", "-", node_id.lower()).strip("-")[:63].strip("-")
    return name or "node"


@dataclass(eq=False)
class NodeNamespace:
    """A running node namespace: ``pid`` is its init's process id on the host (PID 1 inside)."""

    node_id: str
    hostname: str
    side: Path
    pid: int
    proc: subprocess.Popen[bytes]
    ssh_port: int = 0  # an sshd started inside (remote login), 0: none
    lifeline: int = -1  # the write end of a pipe whose closing (the server gone) ends the init
    _fds: list[int] = field(default_factory=list)

    @property
    def key(self) -> int:
        return self.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def fds(self) -> list[int]:
        """Descriptors of the node's PID, UTS and mount namespaces (in that order: the order to join
        them), opened once and kept while the namespace lives."""
        if not self._fds:
            fds = []
            try:
                for kind in ("pid", "uts", "mnt"):
                    fds.append(os.open(f"/proc/{self.pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                for fd in fds:
                    os.close(fd)
                raise
            self._fds = fds
        return self._fds

    def enter_argv(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the node (its namespaces and root): an ``nsenter`` command line."""
        return enter_argv(self.pid, argv)

    def host_path(self, path: str) -> Path:
        """A path of the node's file system as the host reaches it (through the init's root)."""
        return Path(f"/proc/{self.pid}/root") / path.lstrip("/")

    def kill(self) -> None:
        """SIGKILL the init: the kernel kills every process of the node's PID namespace."""
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []
        if self.lifeline >= 0:
            with contextlib.suppress(OSError):
                os.close(self.lifeline)
            self.lifeline = -1
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=10)


def enter_argv(init_pid: int, argv: list[str]) -> list[str]:
    nsenter = shutil.which("nsenter") or "nsenter"
    return [nsenter, f"--target={init_pid}", "--mount", "--uts", "--pid", "--", *argv]


def side_dir(nodes_root: Path, node_id: str) -> Path:
    return nodes_root / SIDE_DIR / node_id


def start_namespace(nodes_root: Path, node_id: str, node_root: Path, hide: Path, timeout: float = 30.0) -> NodeNamespace:
    """Start the node's init (see the module docstring) and wait until its file system is ready.

    ``hide`` is the host directory covered by an empty tmpfs inside (the data dir), ``node_root``
    the node's directory, bound back in at the same path. Blocking: call on a thread."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise IsolationError(0, "util-linux unshare is not installed")
    side = side_dir(nodes_root, node_id)
    for sub in ("upper", "work", "merged", "tmp"):
        (side / sub).mkdir(parents=True, exist_ok=True)
    (side / "tmp").chmod(0o1777)
    hostname = hostname_of(node_id)
    env = {k: v for k, v in os.environ.items() if k in _INIT_ENV}
    env["AZ_BATCH_NODE_ROOT_DIR"] = str(node_root)  # so the sweep at start finds a dead server's inits
    package_parent = str(Path(__file__).resolve().parents[2])  # where this openbatch is imported from
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
    life_r, life_w = os.pipe()  # the init ends when the server does (the write end closes with it)
    argv = [unshare, "--mount", "--uts", "--pid", "--fork", "--propagation", "private", "--",
            sys.executable, "-m", _MODULE, INIT_ARG, hostname, str(side), str(node_root), str(hide), str(life_r)]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, start_new_session=True, cwd="/", pass_fds=[life_r])
    except OSError:
        os.close(life_w)
        raise
    finally:
        os.close(life_r)
    assert proc.stdout is not None and proc.stderr is not None
    line = b""
    try:
        line = _read_line(proc.stdout, timeout)
    finally:
        proc.stdout.close()
    if not line.startswith(b"ready "):
        os.close(life_w)
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(timeout=5)
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.stderr.close()
        raise IsolationError(0, f"the namespace of node {node_id} could not be set up: {err or 'no answer'}")
    proc.stderr.close()
    return NodeNamespace(node_id, hostname, side, int(line.split()[1]), proc, lifeline=life_w)


def _read_line(stream: object, timeout: float) -> bytes:
    fd = stream.fileno()  # type: ignore[attr-defined]
    data = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in data:
            if not sel.select(timeout):
                break
            chunk = os.read(fd, 256)
            if not chunk:
                break
            data += chunk
    return data.split(b"\n", 1)[0]


def wipe(side: Path) -> None:
    """Delete a node's side directory (its upper layer, /tmp ...): reimage and removal."""
    shutil.rmtree(side, ignore_errors=True)


_probe: str | None | bool = False  # False: not probed yet; None: available; str: why not


def unavailable_reason(nodes_root: Path) -> str | None:
    """Why nodes cannot be isolated on this host (None: they can). Probed once, by starting a
    namespace for real in a temporary side directory."""
    global _probe
    if _probe is not False:
        return _probe  # type: ignore[return-value]
    reason: str | None = None
    if not sys.platform.startswith("linux"):
        reason = "node isolation needs Linux namespaces"
    elif os.geteuid() != 0:
        reason = "node isolation needs the server to run as root"
    elif shutil.which("unshare") is None or shutil.which("nsenter") is None:
        reason = "node isolation needs util-linux unshare and nsenter"
    elif platform.machine() not in _PIVOT_ROOT:
        reason = f"node isolation does not know pivot_root on {platform.machine()}"
    else:
        nodes_root.mkdir(parents=True, exist_ok=True)
        probe_root = Path(tempfile.mkdtemp(prefix=".probe-", dir=nodes_root))
        try:
            (probe_root / "probe").mkdir()
            ns = start_namespace(probe_root, "probe", probe_root / "probe", probe_root, timeout=15)
            ns.kill()
        except OSError as exc:
            reason = str(exc)
        finally:
            shutil.rmtree(probe_root, ignore_errors=True)
    _probe = reason
    return reason


# -- finding and entering a node from outside -----------------------------------------------------


def find_inits() -> dict[str, int]:
    """Host name -> init pid of every node namespace on this host (any server's)."""
    found: dict[str, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if len(argv) >= 5 and argv[1:4] == [b"-m", _MODULE.encode(), INIT_ARG.encode()]:
            found[argv[4].decode(errors="replace")] = int(name)
    return found


# -- the init (runs as PID 1 of the node's namespaces) ------------------------------------------


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(libc: ctypes.CDLL, source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, ctypes.c_ulong(flags),
                      data.encode() if data else None), f"mount {target}")


def setns(fd: int) -> None:
    """Join the namespace ``fd`` refers to (the caller must be single-threaded for a mount namespace)."""
    _check(_libc().setns(fd, 0), "setns")


def _init(hostname: str, side: str, node_root: str, hide: str, lifeline: str) -> int:
    with open("/proc/self/stat", "rb") as fh:  # still the host's /proc: the host's pid of this process
        host_pid = int(fh.read().split()[0])
    libc = _libc()
    socket.sethostname(hostname)
    merged = f"{side}/merged"
    _mount(libc, "none", "/", None, _MS_REC | _MS_PRIVATE)
    _mount(libc, "overlay", merged, "overlay", 0, f"lowerdir=/,upperdir={side}/upper,workdir={side}/work")
    _mount(libc, "proc", f"{merged}/proc", "proc", _MS_NOSUID | _MS_NODEV)
    for path in ("/dev", "/sys"):
        _mount(libc, path, merged + path, None, _MS_BIND | _MS_REC)
    with contextlib.suppress(OSError):
        _mount(libc, "tmpfs", f"{merged}/dev/shm", "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=1777")
    _mount(libc, f"{side}/tmp", f"{merged}/tmp", None, _MS_BIND)
    for path in _HOST_FILES:
        if os.path.exists(path) and os.path.exists(merged + path):
            _mount(libc, path, merged + path, None, _MS_BIND)
    _name_self(merged, hostname)
    if hide and hide != "/":
        os.makedirs(merged + hide, exist_ok=True)
        _mount(libc, "tmpfs", merged + hide, "tmpfs", _MS_NOSUID, "mode=755")
    os.makedirs(merged + node_root, exist_ok=True)
    _mount(libc, node_root, merged + node_root, None, _MS_BIND | _MS_REC)
    os.chdir(merged)
    _check(libc.syscall(_PIVOT_ROOT[platform.machine()], b".", b"."), "pivot_root")
    _check(libc.umount2(b".", _MNT_DETACH), "umount the host's root")
    os.chdir("/")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    os.write(1, f"ready {host_pid}\n".encode())
    os.close(1)
    os.close(2)
    fd = os.open("/dev/null", os.O_RDWR)
    for target in (1, 2):
        if fd != target:
            os.dup2(fd, target)
    life = int(lifeline)
    with selectors.DefaultSelector() as sel:
        sel.register(life, selectors.EVENT_READ)
        sel.register(wake_r, selectors.EVENT_READ)
        while True:  # PID 1: reap what is orphaned inside; end (and with it the node) when the server ends
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
            for key, _ in sel.select():
                if key.fd == wake_r:
                    os.read(wake_r, 512)
                elif not os.read(life, 1):
                    os._exit(0)


def _name_self(merged: str, hostname: str) -> None:
    """/etc/hostname, and the host's /etc/hosts with a line for the node's name (written to the
    upper layer; read from the host's view, where /etc/hosts may be a mount of its own)."""
    with contextlib.suppress(OSError), open(f"{merged}/etc/hostname", "w") as fh:
        fh.write(hostname + "\n")
    try:
        with open("/etc/hosts") as fh:
            lines = fh.read()
    except OSError:
        lines = "127.0.0.1\tlocalhost\n"
    if not re.search(rf"\s{re.escape(hostname)}(\s|$)", lines):
        lines += ("" if lines.endswith("\n") or not lines else "\n") + f"127.0.1.1\t{hostname}\n"
    with contextlib.suppress(OSError), open(f"{merged}/etc/hosts", "w") as fh:
        fh.write(lines)


def main(args: list[str]) -> int:
    if args[:1] == [INIT_ARG] and len(args) == 6:
        return _init(*args[1:])
    if args[:1] == ["enter"] and len(args) >= 2:
        pid = find_inits().get(args[1])
        if pid is None:
            print(f"no isolated node named {args[1]} on this host", file=sys.stderr)
            return 2
        argv = enter_argv(pid, args[2:] or [os.environ.get("SHELL", "/bin/sh")])
        os.execv(argv[0], argv)
    if args[:1] == ["list"]:
        for name, pid in sorted(find_inits().items()):
            print(f"{name}\t{pid}")
        return 0
    print("usage: python -m openbatch.node.isolation enter HOSTNAME [COMMAND ...] | list", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
