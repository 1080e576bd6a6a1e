"""Scale: many tasks in one job — add rate, listing with $filter and $select, Get Task Counts
sampled all along, job delete, server RSS (``python -m bench scale --tasks N``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from azure.batch import BatchClient
from azure.core.exceptions import ResourceNotFoundError

from bench import batchflow
from bench.common import Report, hwm_mb, openbatch_server, percentile, rss_mb, server_pid


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
        with _sampled_counts(batchflow.client_for(server), "scalejob") as counts_ms:
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
        delete_seconds = _delete_job(client, "scalejob")
        time.sleep(1.0)
        after_delete = rss_mb(pid)
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
    report.add(f"Get Task Counts p50 (ms; {len(counts_ms)} calls while adding and running)", percentile(counts_ms, 50))
    report.add("Get Task Counts max (ms)", max(counts_ms, default=0.0))
    report.add("job delete until gone (s)", delete_seconds)
    report.add("server peak RSS (MB)", peak)
    report.add("server RSS before the job's delete (MB)", after)
    report.add("server RSS after the job's delete (MB)", after_delete)
    report.details = {"sizes": sizes.__dict__, "task_counts_ms": counts_ms}
    return report


@contextmanager
def _sampled_counts(client: BatchClient, job_id: str, every: float = 0.2) -> Iterator[list[float]]:
    """Get Task Counts of the job timed every ``every`` seconds (on a client of its own) while the body runs."""
    times: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every):
            t = time.perf_counter()
            client.get_job_task_counts(job_id)
            times.append((time.perf_counter() - t) * 1000)

    thread = threading.Thread(target=sample, name="task-counts", daemon=True)
    thread.start()
    try:
        yield times
    finally:
        stop.set()
        thread.join()


def _delete_job(client: BatchClient, job_id: str) -> float:
    """Seconds from Delete Job until the job is gone."""
    t = time.perf_counter()
    client.begin_delete_job(job_id, polling_interval=0.05).result()  # type: ignore[arg-type]
    while True:
        try:
            client.get_job(job_id)
        except ResourceNotFoundError:
            return time.perf_counter() - t
        time.sleep(0.05)
