"""Task throughput end to end through the REST API, against this machine's raw spawn rate in the same run."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bench import batchflow
from bench.common import Report, openbatch_server, percentile, server_cpu
from bench.spawn import spawn_cpu, spawn_rate


@dataclass
class Sizes:
    tasks: int = 5000
    nodes: int = 2
    slots: int = 8
    spawn_count: int = 3000
    idle_tasks: int = 50


SMOKE = Sizes(tasks=40, spawn_count=100, idle_tasks=5)


def run(sizes: Sizes, computes: list[str] | None = None) -> Report:
    """The local provider, then each of ``computes`` (``--compute`` values, e.g. dask-local:2), in one run."""
    raw_before = spawn_rate(sizes.spawn_count)
    spawn_cpus = [spawn_cpu(sizes.spawn_count)]
    measured = {name: _measure(sizes, name) for name in ["local", *(c for c in computes or [] if c != "local")]}
    raw_after = spawn_rate(sizes.spawn_count)
    spawn_cpus.append(spawn_cpu(sizes.spawn_count))
    per_spawn = min(spawn_cpus)
    raw = max([*raw_before.values(), *raw_after.values()])
    report = Report("tasks", ["figure", "value"])
    for name, figures in measured.items():
        label = "" if name == "local" else f" ({name})"
        throughput = figures["throughput"]
        report.add(f"tasks/s end to end ({sizes.tasks} x /bin/true, {sizes.nodes} nodes x {sizes.slots} slots){label}",
                   throughput)
        if name == "local":
            report.add("raw spawns/s (best of asyncio/uvloop, before and after)", raw)
        report.add(f"ratio tasks/s : raw spawns/s{label}", throughput / raw)
        if name == "local":
            report.add("server CPU per task (us; server + spawner helpers, from /proc)", figures["cpu_per_task"] * 1e6)
            report.add("CPU per raw spawn (us; the least of before and after)", per_spawn * 1e6)
            report.add("ratio server CPU per task : CPU per raw spawn", figures["cpu_per_task"] / per_spawn)
        else:
            report.add(f"ratio tasks/s{label} : tasks/s (local)", throughput / measured["local"]["throughput"])
            report.add(f"server CPU per task (us; the server process alone, its workers not counted){label}",
                       figures["cpu_per_task"] * 1e6)
        report.add(f"task adds/s (create_tasks, 100 per call, 4 threads){label}", sizes.tasks / figures["add_seconds"])
        report.add(f"idle pool: add -> running p50 (ms, {sizes.idle_tasks} tasks one at a time){label}",
                   percentile(figures["idle"], 50))
        report.add(f"idle pool: add -> running p99 (ms){label}", percentile(figures["idle"], 99))
        report.add(f"add -> running p50 (ms){label}", percentile(figures["to_running"], 50))
        report.add(f"add -> running p99 (ms){label}", percentile(figures["to_running"], 99))
        report.add(f"add -> completed p50 (ms){label}", percentile(figures["to_done"], 50))
        report.add(f"add -> completed p99 (ms){label}", percentile(figures["to_done"], 99))
    local = measured["local"]
    report.details = {"sizes": sizes.__dict__, "raw_before": raw_before, "raw_after": raw_after,
                      "throughput": local["throughput"], "add_seconds": local["add_seconds"],
                      "cpu_per_task": local["cpu_per_task"], "spawn_cpus": spawn_cpus,
                      "idle_latencies_ms": local["idle"],
                      "computes": {n: {k: f[k] for k in ("throughput", "add_seconds", "idle", "cpu_per_task")} for n, f in measured.items()}}
    return report


def _measure(sizes: Sizes, compute: str) -> dict[str, Any]:
    # "local", a --compute value (dask-local:2), or serve options for the local provider ("--node-isolation off")
    args = [] if compute == "local" else compute.split() if compute.startswith("--") else ["--compute", compute]
    with openbatch_server(args) as server:
        client = batchflow.client_for(server)
        batchflow.create_pool(client, "benchpool", sizes.nodes, sizes.slots)
        batchflow.create_job(client, "benchjob", "benchpool")
        batchflow.create_job(client, "idlejob", "benchpool")
        idle = batchflow.idle_latencies(client, "idlejob", sizes.idle_tasks)
        t0, cpu0 = time.time(), server_cpu(server)
        add_seconds = batchflow.add_tasks(client, "benchjob", sizes.tasks)
        batchflow.wait_completed(client, "benchjob", sizes.tasks, timeout=max(120, sizes.tasks / 20))
        cpu = server_cpu(server) - cpu0
        times = batchflow.task_times(client, "benchjob")
    last_end = max(t["ended"] for t in times if t["ended"])
    return {
        "throughput": sizes.tasks / (last_end - t0), "add_seconds": add_seconds, "idle": idle,
        "cpu_per_task": cpu / sizes.tasks,
        "to_running": [(t["started"] - t["created"]) * 1000 for t in times if t["started"]],
        "to_done": [(t["ended"] - t["created"]) * 1000 for t in times if t["ended"]],
    }
