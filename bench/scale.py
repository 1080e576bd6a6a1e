"""Scale: many tasks in one job — add rate, listing with $filter and $select, server RSS."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench import batchflow
from bench.common import Report, hwm_mb, openbatch_server, rss_mb, server_pid


@dataclass
class Sizes:
    tasks: int = 100_000


SMOKE = Sizes(tasks=300)


def run(sizes: Sizes) -> Report:
    report = Report("scale", ["figure", "value"])
    with openbatch_server() as server:
        pid = server_pid(server)
        time.sleep(1.0)
        idle = rss_mb(pid)
        client = batchflow.client_for(server)
        batchflow.create_pool(client, "scalepool", 2, 8)
        batchflow.create_job(client, "scalejob", "scalepool")
        add_seconds = batchflow.add_tasks(client, "scalejob", sizes.tasks)
        t = time.perf_counter()
        batchflow.wait_completed(client, "scalejob", sizes.tasks, timeout=max(300, sizes.tasks / 20))
        run_seconds = time.perf_counter() - t + add_seconds
        t = time.perf_counter()
        completed = sum(1 for _ in client.list_tasks("scalejob", filter="state eq 'completed'"))
        filter_seconds = time.perf_counter() - t
        t = time.perf_counter()
        selected = sum(1 for _ in client.list_tasks("scalejob", select=["id", "state"]))
        select_seconds = time.perf_counter() - t
        t = time.perf_counter()
        both = sum(1 for _ in client.list_tasks("scalejob", filter="state eq 'completed'", select=["id", "state"]))
        both_seconds = time.perf_counter() - t
        peak = hwm_mb(pid)
        after = rss_mb(pid)
    if not completed == selected == both == sizes.tasks:
        raise AssertionError(f"listed {completed} completed, {selected} selected, {both} both of {sizes.tasks}")
    report.add("idle server RSS (MB)", idle)
    report.add(f"task adds/s ({sizes.tasks} tasks, create_tasks)", sizes.tasks / add_seconds)
    report.add("tasks/s from first add to all completed", sizes.tasks / run_seconds)
    report.add("list $filter=state eq 'completed' (s)", filter_seconds)
    report.add("  tasks/s listed", sizes.tasks / filter_seconds)
    report.add("list $select=id,state (s)", select_seconds)
    report.add("  tasks/s listed", sizes.tasks / select_seconds)
    report.add("list $filter=state eq 'completed' with $select=id,state (s)", both_seconds)
    report.add("  tasks/s listed", sizes.tasks / both_seconds)
    report.add("server peak RSS (MB)", peak)
    report.add("server RSS at the end (MB)", after)
    report.details = {"sizes": sizes.__dict__}
    return report
