"""Dashboard pages at scale: ``python -m bench.ui [--tasks 100000] [--smoke] [--out FILE]``.

A live server gets one job of N tasks (added with azure-batch 15, 100 per request) that run to
completion on a local pool (one in 50 exits 1, so "failed only" has sparse matches to find), then
every page of the job's task table is fetched by following its "next page" links (keyset paging):
unfiltered, ``state=completed``, ``state=failed`` and ``exit=1``; plus the job page with its counts
and the account overview. Reported: milliseconds per page (median, p95, max), client-measured over
loopback. The budget is < 200 ms for every page.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential

from openbatch.testing import LiveServer

IMAGE = m.VirtualMachineConfiguration(
    image_reference=m.BatchVmImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy",
                                            sku="22_04-lts"),
    node_agent_sku_id="batch.node.ubuntu 22.04")
NEXT = re.compile(r'id="next-page" href="\?([^"]*)"')
BUDGET_MS = 200.0


def _fill(server: LiveServer, count: int) -> float:
    """Add ``count`` tasks to job "big" on a 2-node pool and wait for all to complete; seconds taken."""
    c = BatchClient(server.batch_url, AzureNamedKeyCredential(server.account, server.key))
    c.create_pool(m.BatchPoolCreateOptions(id="bench", vm_size="standard_d2_v3", target_dedicated_nodes=2,
                                           task_slots_per_node=8, virtual_machine_configuration=IMAGE))
    c.create_job(m.BatchJobCreateOptions(id="big", pool_info=m.BatchPoolInfo(pool_id="bench")))
    started = time.monotonic()

    def add(start: int) -> None:
        c.create_tasks("big", [m.BatchTaskCreateOptions(id=f"t{i:06d}",
                                                        command_line="/bin/false" if i % 50 == 7 else "/bin/true")
                               for i in range(start, min(start + 100, count))])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(add, range(0, count, 100)))
    while c.get_job_task_counts("big").task_counts.completed < count:
        time.sleep(1)
    c.close()
    return time.monotonic() - started


def _walk(http: httpx.Client, base: str, query: str, limit: int) -> list[float]:
    """Follow the task table's next-page links from the first page; milliseconds per page."""
    times: list[float] = []
    url = f"{base}?part=tasks&{query}" if query else f"{base}?part=tasks"
    while url and len(times) < limit:
        t0 = time.perf_counter()
        r = http.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
        found = NEXT.search(r.text)
        url = f"{base}?part=tasks&{found.group(1).replace('&amp;', '&')}" if found else ""
    return times


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"pages": len(times), "median_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1), "max_ms": round(ordered[-1], 1)}


def _repeat(http: httpx.Client, url: str, n: int = 20) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        http.get(url).raise_for_status()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def run(count: int) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="openbatch-bench-ui-"))
    server = LiveServer(root / "data").start()
    try:
        fill_s = _fill(server, count)
        base = f"{server.batch_url}/ui/{server.account}"
        job = f"{base}/jobs/big"
        results: dict[str, object] = {"tasks": count, "fill_seconds": round(fill_s, 1)}
        with httpx.Client(timeout=60) as http:
            http.get(job).raise_for_status()  # warm up
            for name, query in (("all", ""), ("completed", "state=completed"), ("failed only", "state=failed"),
                                ("exit code 1", "exit=1")):
                results[f"task pages: {name}"] = _summary(_walk(http, job, query, 100_000))
            results["job page (counts + first page)"] = _summary(_repeat(http, job))
            results["job counts fragment"] = _summary(_repeat(http, job + "?part=counts"))
            results["account overview"] = _summary(_repeat(http, base + "/"))
        return results
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ui", description=__doc__)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--smoke", action="store_true", help="500 tasks: checks the benchmark works")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    results = run(500 if args.smoke else args.tasks)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    worst = max(v["max_ms"] for v in results.values() if isinstance(v, dict))
    print(f"slowest page {worst} ms (budget {BUDGET_MS:.0f} ms)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
