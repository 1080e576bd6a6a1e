"""What every benchmark shares: result tables and JSON files, medians, RSS, a server to measure."""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from openbatch.testing import LiveServer

RESULTS_DIR = Path(__file__).resolve().parent / "results"
console = Console()


@dataclass
class Report:
    """One benchmark's figures: rows of (figure, values...) plus free-form details for the JSON file."""

    name: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, *row: Any) -> None:
        self.rows.append(list(row))

    def show(self) -> None:
        table = Table(title=f"bench {self.name}")
        for column in self.columns:
            table.add_column(column)
        for row in self.rows:
            table.add_row(*(_fmt(v) for v in row))
        console.print(table)

    def save(self, out_dir: Path | None = None) -> Path:
        out_dir = out_dir or RESULTS_DIR
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{self.name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
        payload = {
            "name": self.name,
            "machine": machine(),
            "columns": self.columns,
            "rows": self.rows,
            "details": self.details,
        }
        path.write_text(json.dumps(payload, indent=2, default=str))
        return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def machine() -> dict[str, Any]:
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def _status_mb(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (from /proc)."""
    return _status_mb(pid, "VmRSS:")


def hwm_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) in MB."""
    return _status_mb(pid, "VmHWM:")


_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used itself, not counting its reaped children."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def server_cpu(server: LiveServer) -> float:
    """CPU seconds of the server and its spawner helpers (not of the tasks they start)."""
    pid = server_pid(server)
    total = process_cpu(pid)
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for cpid in child.read_text().split():
            with suppress(OSError):
                if b"openbatch.node.spawner" in Path(f"/proc/{cpid}/cmdline").read_bytes():
                    total += process_cpu(int(cpid))
    return total


@contextmanager
def openbatch_server(extra_args: list[str] | None = None) -> Iterator[LiveServer]:
    """A fresh server on free ports with a temp data dir (``serve`` given ``extra_args``), stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="openbatch-bench-") as tmp:
        server = LiveServer(Path(tmp) / "data", extra_args=extra_args).start(timeout=60)
        try:
            yield server
        finally:
            server.stop()


def server_pid(server: LiveServer) -> int:
    assert server.proc is not None
    return server.proc.pid
