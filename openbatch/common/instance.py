"""One server per data dir, and where that server listens: shared by ``serve`` and the client commands.

``serve`` holds ``server.lock`` in the data dir with ``fcntl.flock`` for its whole life (the kernel
drops the lock when the process dies, kill -9 included, so a crash never leaves a stale lock) and
writes ``endpoints.json`` next to it once both endpoints listen. Client commands (``openbatch env``,
``quickstart``, ``pool list`` ...) read the endpoints of a data dir whose lock is held, so a server
on custom ports needs no extra flags. The file carries URLs and the account name, never a key.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = "server.lock"
ENDPOINTS_NAME = "endpoints.json"
ENV_DATA_DIR = "OPENBATCH_DATA_DIR"


def default_data_dir() -> Path:
    """``$OPENBATCH_DATA_DIR`` or ``~/.openbatch``: where ``serve`` keeps its data by default."""
    return Path(os.environ.get(ENV_DATA_DIR) or str(Path.home() / ".openbatch"))


class DataDirInUse(Exception):
    """Another live server holds the data dir."""

    def __init__(self, data_dir: Path, pid: int | None):
        self.data_dir = data_dir
        self.pid = pid
        owner = f"server pid {pid}" if pid else "another server"
        super().__init__(f"data dir {data_dir} is in use by {owner} (one server per data dir; "
                         "stop it or pass another --data-dir)")


class DataDirLock:
    """The exclusive lock of a data dir, held from :meth:`acquire` until :meth:`release` or process exit."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise DataDirInUse(self.data_dir, pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            (self.data_dir / ENDPOINTS_NAME).unlink()
        os.close(self._fd)  # closing drops the flock; the file stays (removing it would race a new server)
        self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def is_locked(data_dir: Path) -> bool:
    """Whether a live server holds ``data_dir`` (a shared lock that cannot be had means yes)."""
    try:
        fd = os.open(data_dir / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@dataclass(frozen=True)
class Endpoints:
    """What a running server tells clients: its two URLs (the blob one without the account) and an account."""

    batch_url: str
    blob_url: str
    account: str
    pid: int


def write_endpoints(data_dir: Path, endpoints: Endpoints) -> None:
    doc = {"batchUrl": endpoints.batch_url, "blobUrl": endpoints.blob_url, "account": endpoints.account,
           "pid": endpoints.pid}
    partial = data_dir / (ENDPOINTS_NAME + ".part")
    partial.write_text(json.dumps(doc, indent=2) + "\n")
    partial.replace(data_dir / ENDPOINTS_NAME)


def running_endpoints(data_dir: Path | None = None) -> Endpoints | None:
    """The endpoints of the server running on ``data_dir`` (default: :func:`default_data_dir`), if any."""
    data_dir = data_dir or default_data_dir()
    if not is_locked(data_dir):
        return None
    try:
        doc = json.loads((data_dir / ENDPOINTS_NAME).read_text())
        return Endpoints(str(doc["batchUrl"]), str(doc["blobUrl"]), str(doc["account"]), int(doc["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
