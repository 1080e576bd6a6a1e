"""The resource metrics of this machine, where the local compute provider's nodes run.

Read from Linux's ``/proc`` (no extra dependency): ``$CPUPercent`` is the share of CPU time not
idle since the previous reading (0-100); ``$MemoryBytes`` the memory in use (MemTotal minus
MemAvailable) in megabytes and ``$DiskBytes`` the space used on the data dir's file system in
gigabytes, as the documentation describes them ("the average number of megabytes used", "...of
gigabytes used on the local disks"); the disk and network counters (``$DiskReadBytes``,
``$DiskWriteBytes``, ``$DiskReadOps``, ``$DiskWriteOps``, ``$NetworkInBytes``,
``$NetworkOutBytes``) are the amounts of one 30 s sample period, from the rates measured between
readings on the real (monotonic) clock. On a system without ``/proc`` they read 0.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from openbatch.batch.domain.autoscale.samples import PERIOD

_SECTOR = 512
_COUNTERS = ("$DiskReadBytes", "$DiskWriteBytes", "$DiskReadOps", "$DiskWriteOps", "$NetworkInBytes",
             "$NetworkOutBytes")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpu_times(text: str) -> tuple[float, float]:
    """(busy, total) jiffies of the ``cpu`` line of /proc/stat."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            fields = [float(x) for x in line.split()[1:]]
            idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
            return sum(fields[:8]) - idle, sum(fields[:8])
    return 0.0, 0.0


def memory_used_mb(text: str) -> float:
    info = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            info[name] = float(parts[0])  # kB
    if "MemTotal" not in info:
        return 0.0
    return (info["MemTotal"] - info.get("MemAvailable", info.get("MemFree", 0.0))) / 1024


def disk_counters(text: str, disks: set[str]) -> tuple[float, float, float, float]:
    """(bytes read, bytes written, reads, writes) of the whole disks in /proc/diskstats."""
    read = written = reads = writes = 0.0
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10 or (disks and fields[2] not in disks):
            continue
        reads += float(fields[3])
        read += float(fields[5]) * _SECTOR
        writes += float(fields[7])
        written += float(fields[9]) * _SECTOR
    return read, written, reads, writes


def network_counters(text: str) -> tuple[float, float]:
    """(bytes in, bytes out) of every interface but loopback in /proc/net/dev."""
    received = sent = 0.0
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        fields = rest.split()
        if name.strip() == "lo" or len(fields) < 9:
            continue
        received += float(fields[0])
        sent += float(fields[8])
    return received, sent


def _whole_disks() -> set[str]:
    try:
        return {d for d in os.listdir("/sys/block") if not d.startswith(("loop", "ram", "zram"))}
    except OSError:
        return set()


class Machine:
    """Readings of this machine; each :meth:`read` gives the values since the previous one."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.disks = _whole_disks()
        self._last: tuple[float, tuple[float, float], tuple[float, ...]] | None = None
        self._values: dict[str, float] = {}

    def _counters(self) -> tuple[float, ...]:
        return (*disk_counters(_read("/proc/diskstats"), self.disks), *network_counters(_read("/proc/net/dev")))

    def _disk_used_gb(self) -> float:
        try:
            st = os.statvfs(self.data_dir)
        except OSError:
            return 0.0
        return (st.f_blocks - st.f_bfree) * st.f_frsize / 1024**3

    def read(self) -> dict[str, float]:
        """The current values; readings closer than a second apart give the previous values again."""
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < 1.0:
            return dict(self._values)
        cpu = cpu_times(_read("/proc/stat"))
        counters = self._counters()
        values = {"$MemoryBytes": memory_used_mb(_read("/proc/meminfo")), "$DiskBytes": self._disk_used_gb(),
                  "$CPUPercent": 0.0, **dict.fromkeys(_COUNTERS, 0.0)}
        if self._last is not None:
            elapsed, (busy, total), before = now - self._last[0], self._last[1], self._last[2]
            if cpu[1] > total:
                values["$CPUPercent"] = 100.0 * max(0.0, cpu[0] - busy) / (cpu[1] - total)
            for name, new, old in zip(_COUNTERS, counters, before, strict=True):
                values[name] = max(0.0, new - old) / elapsed * PERIOD
        self._last = (now, cpu, counters)
        self._values = values
        return dict(values)
