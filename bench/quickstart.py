"""Wall time of ``openbatch quickstart`` (median of N runs)."""

from __future__ import annotations

import subprocess
import sys
import time

from bench.common import Report, median


def run(repeats: int = 5) -> Report:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "openbatch", "quickstart"], capture_output=True, text=True,
                              timeout=600)
        elapsed = time.perf_counter() - t
        if proc.returncode != 0:
            raise AssertionError(f"quickstart failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        times.append(elapsed)
    report = Report("quickstart", ["figure", "value"])
    report.add(f"openbatch quickstart wall time, median of {repeats} (s)", median(times))
    report.add("fastest (s)", min(times))
    report.add("slowest (s)", max(times))
    report.details = {"times": times}
    return report
