"""What the kill -9 suites share: a server that can be killed and restarted at random moments, the
spawner helpers a killed server leaves behind, and the byte-level view of the blob store."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openbatch.node.spawner import HELPER_MODULE
from openbatch.testing import LiveServer
from tests.helpers.waiting import alive


def seed() -> int:
    """The run's random seed: ``OPENBATCH_CRASH_SEED`` to replay a run, else a fresh one (reported)."""
    return int(os.environ.get("OPENBATCH_CRASH_SEED") or random.SystemRandom().randrange(1 << 31))


@contextmanager
def crash_server() -> Iterator[LiveServer]:
    """A server of the test's own, outside pytest's tmp tree (tasks run as another account)."""
    root = Path(tempfile.mkdtemp(prefix="openbatch-crash-"))
    root.chmod(0o755)
    server = LiveServer(root / "data").start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def server_log(server: LiveServer) -> str:
    """The server's whole log (every start of it)."""
    try:
        return server.log_path.read_text(errors="replace")
    except OSError:
        return ""


def tracebacks(server: LiveServer) -> tuple[list[str], list[str]]:
    """The unhandled errors in the server's log (bugs, not client mistakes), split in two: the
    server's own, and those of spawner helpers (they share the server's stderr) dying with it."""
    server_errors: list[str] = []
    helper_errors: list[str] = []
    block: list[str] = []
    for line in [*server_log(server).splitlines(), ""]:
        if block and not line.startswith((" ", "Traceback")):
            text = "\n".join([*block, line])
            (helper_errors if "in helper_main" in text else server_errors).append(text)
            block = []
        if line.startswith("Traceback") or (block and line.startswith(" ")):
            block.append(line)
        elif "unhandled error" in line:
            server_errors.append(line)
    return server_errors, helper_errors


def helpers_of(server_pid: int) -> list[int]:
    """Pids of the spawner helpers started by the server ``server_pid`` (its pid is their argv[6])."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 6 and argv[1:3] == [b"-m", HELPER_MODULE.encode()] and argv[6] == str(server_pid).encode():
            found.append(int(name))
    return found


def processes_under(root: Path, exclude: int) -> list[int]:
    """Pids of processes working in a directory under ``root`` (task processes of its nodes)."""
    found = []
    prefix = str(root.resolve()) + "/"
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == exclude:
            continue
        try:
            cwd = os.readlink(f"/proc/{name}/cwd")
        except OSError:
            continue
        if cwd.startswith(prefix):
            found.append(int(name))
    return found


@dataclass
class Crasher:
    """Kills and restarts ``server``; ``up`` is set while it is serving. Records what each kill
    left: the spawner helpers alive 5 s after the kill and after the restart."""

    server: LiveServer
    up: threading.Event = field(default_factory=threading.Event)
    kills: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.up.set()

    def kill_and_restart(self, where: str, down_for: float = 0.0) -> None:
        assert self.server.proc is not None
        pid = self.server.proc.pid
        helpers = helpers_of(pid)
        self.up.clear()
        tasks = processes_under(self.server.data_dir / "nodes", pid)
        killed_at = time.monotonic()
        self.server.kill()
        deadline = time.monotonic() + 5
        while any(alive(h) for h in helpers) and time.monotonic() < deadline:
            time.sleep(0.05)
        outlived = [h for h in helpers if alive(h)]
        time.sleep(down_for)
        self.server.start(timeout=60)
        restarted_in = round(time.monotonic() - killed_at, 2)
        self.up.set()
        left = _still_alive(helpers)
        left_tasks = _still_alive(tasks)
        self.kills.append({"where": where, "helpers": len(helpers), "helpers_outlived_kill_5s": len(outlived),
                           "helpers_left_after_restart": len(left), "task_processes": len(tasks),
                           "task_processes_left_after_restart": len(left_tasks), "restarted_in_s": restarted_in})


def _still_alive(pids: list[int], within: float = 30) -> list[int]:
    """Those of ``pids`` still alive after waiting up to ``within`` seconds for them all to go."""
    deadline = time.monotonic() + within
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


# --- the blob store on disk ---------------------------------------------------------------------


def extent_files(data_dir: Path) -> dict[str, int]:
    """Every file under the blob data directory: name -> size."""
    return {p.name: p.stat().st_size for p in (data_dir / "blob" / "data").rglob("*") if p.is_file()}


def referenced_extents(data_dir: Path) -> dict[str, int]:
    """Extents the metadata references (committed parts and staged blocks): id -> bytes needed."""
    db = sqlite3.connect(f"file:{data_dir / 'blob' / 'meta.db'}?mode=ro", uri=True)
    try:
        needed: dict[str, int] = {}
        rows = db.execute("SELECT extent, MAX(ext_offset + length) FROM parts WHERE extent <> '' GROUP BY extent "
                          "UNION ALL SELECT extent, MAX(size) FROM staged WHERE extent <> '' GROUP BY extent")
        for extent, size in rows:
            needed[extent] = max(needed.get(extent, 0), int(size))
        return needed
    finally:
        db.close()
