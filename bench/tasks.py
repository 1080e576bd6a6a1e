"""Task throughput end to end through the REST API, against this machine's raw spawn rate in the same run."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench import batchflow
from bench.common import Report, openbatch_server, percentile
from bench.spawn import spawn_rate


@dataclass
class Sizes:
    tasks: int = 5000
    nodes: int = 2
    slots: int = 8
    spawn_count: int = 3000
    idle_tasks: int = 50


SMOKE = Sizes(tasks=40, spawn_count=100, idle_tasks=5)


def run(sizes: Sizes) -> Report:
    raw_before = spawn_rate(sizes.spawn_count)
    with openbatch_server() as server:
        client = batchflow.client_for(server)
        batchflow.create_pool(client, "benchpool", sizes.nodes, sizes.slots)
        batchflow.create_job(client, "benchjob", "benchpool")
        batchflow.create_job(client, "idlejob", "benchpool")
        idle = batchflow.idle_latencies(client, "idlejob", sizes.idle_tasks)
        t0 = time.time()
        add_seconds = batchflow.add_tasks(client, "benchjob", sizes.tasks)
        batchflow.wait_completed(client, "benchjob", sizes.tasks, timeout=max(120, sizes.tasks / 20))
        times = batchflow.task_times(client, "benchjob")
    raw_after = spawn_rate(sizes.spawn_count)
    last_end = max(t["ended"] for t in times if t["ended"])
    throughput = sizes.tasks / (last_end - t0)
    raw = max([*raw_before.values(), *raw_after.values()])
    to_running = [(t["started"] - t["created"]) * 1000 for t in times if t["started"]]
    to_done = [(t["ended"] - t["created"]) * 1000 for t in times if t["ended"]]
    report = Report("tasks", ["figure", "value"])
    report.add(f"tasks/s end to end ({sizes.tasks} x /bin/true, {sizes.nodes} nodes x {sizes.slots} slots)",
               throughput)
    report.add("raw spawns/s (best of asyncio/uvloop, before and after)", raw)
    report.add("ratio tasks/s : raw spawns/s", throughput / raw)
    report.add("task adds/s (create_tasks, 100 per call, 4 threads)", sizes.tasks / add_seconds)
    report.add(f"idle pool: add -> running p50 (ms, {sizes.idle_tasks} tasks one at a time)", percentile(idle, 50))
    report.add("idle pool: add -> running p99 (ms)", percentile(idle, 99))
    report.add("add -> running p50 (ms)", percentile(to_running, 50))
    report.add("add -> running p99 (ms)", percentile(to_running, 99))
    report.add("add -> completed p50 (ms)", percentile(to_done, 50))
    report.add("add -> completed p99 (ms)", percentile(to_done, 99))
    report.details = {"sizes": sizes.__dict__, "raw_before": raw_before, "raw_after": raw_after,
                      "throughput": throughput, "add_seconds": add_seconds, "idle_latencies_ms": idle}
    return report
