"""Driving a server with azure-batch 15 the way the task benchmarks need: a pool, a job, many tasks."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential

from openbatch.testing import LiveServer


def client_for(server: LiveServer) -> BatchClient:
    return BatchClient(server.batch_url, AzureNamedKeyCredential(server.account, server.key))


def create_pool(client: BatchClient, pool_id: str, nodes: int, slots: int, timeout: float = 60) -> None:
    image = next(iter(client.list_supported_images()))
    client.create_pool(m.BatchPoolCreateOptions(
        id=pool_id,
        vm_size="standard_d2s_v3",
        virtual_machine_configuration=m.VirtualMachineConfiguration(
            image_reference=image.image_reference, node_agent_sku_id=image.node_agent_sku_id),
        target_dedicated_nodes=nodes,
        task_slots_per_node=slots,
    ))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [n.state for n in client.list_nodes(pool_id)]
        if len(states) == nodes and all(s == m.BatchNodeState.IDLE for s in states):
            return
        time.sleep(0.02)
    raise TimeoutError(f"pool {pool_id} did not reach {nodes} idle nodes")


def create_job(client: BatchClient, job_id: str, pool_id: str) -> None:
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool_id)))


def add_tasks(client: BatchClient, job_id: str, count: int, command: str = "/bin/true") -> float:
    """Adds ``count`` tasks with create_tasks (100 per call, 4 threads); returns the wall time taken."""
    tasks = [m.BatchTaskCreateOptions(id=f"t{i:06d}", command_line=command) for i in range(count)]
    start = time.perf_counter()
    client.create_tasks(job_id, tasks, max_concurrency=4)
    return time.perf_counter() - start


def wait_completed(client: BatchClient, job_id: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = client.get_job_task_counts(job_id).task_counts
        if counts.completed >= count:
            if counts.failed:
                failed = [f"{t.id}: {t.execution_info.as_dict() if t.execution_info else None}"
                          for t in client.list_tasks(job_id, select=["id", "executionInfo"])
                          if t.execution_info and t.execution_info.result == "failure"]
                raise AssertionError(f"{counts.failed} tasks failed: " + "; ".join(failed[:5]))
            return
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} did not complete {count} tasks in {timeout}s")


def task_times(client: BatchClient, job_id: str) -> list[dict[str, Any]]:
    """creation/start/end of every task, as the server recorded them (seconds since the epoch)."""
    out = []
    for task in client.list_tasks(job_id, select=["id", "creationTime", "executionInfo"]):
        info = task.execution_info
        out.append({
            "created": _ts(task.creation_time),
            "started": _ts(info.start_time) if info else None,
            "ended": _ts(info.end_time) if info else None,
        })
    return out


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value else None


def idle_latencies(client: BatchClient, job_id: str, count: int) -> list[float]:
    """Add -> running (ms, server clock) of tasks added one at a time to an idle pool."""
    out = []
    for i in range(count):
        task_id = f"idle{i:04d}"
        client.create_task(job_id, m.BatchTaskCreateOptions(id=task_id, command_line="/bin/true"))
        while True:
            task = client.get_task(job_id, task_id, select=["id", "state", "creationTime", "executionInfo"])
            if task.state == m.BatchTaskState.COMPLETED:
                break
            time.sleep(0.005)
        assert task.execution_info is not None and task.execution_info.start_time is not None
        out.append((task.execution_info.start_time - task.creation_time).total_seconds() * 1000)
    return out
