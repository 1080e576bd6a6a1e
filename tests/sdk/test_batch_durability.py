"""kill -9 and restart: every acknowledged pool, job and task is still there with its state; tasks
that were running are requeued exactly once (requeueCount 1) and run again; completed tasks are
never run or reported again; processes left behind by the killed server are killed."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential

from tests.helpers.pools import IMAGE
from tests.helpers.server import LiveServer
from tests.helpers.waiting import alive, wait_for


@pytest.fixture
def server() -> Iterator[LiveServer]:
    top = Path(tempfile.mkdtemp(prefix="openbatch-durability-"))
    srv = LiveServer(top / "data").start()
    yield srv
    srv.stop()
    shutil.rmtree(top, ignore_errors=True)


def connect(server: LiveServer) -> BatchClient:
    return BatchClient(server.batch_url, AzureNamedKeyCredential(server.account, server.key))


def tasks_of(client: BatchClient, job_id: str) -> dict[str, m.BatchTask]:
    return {t.id: t for t in client.list_tasks(job_id) if t.id}


def info(task: m.BatchTask) -> m.BatchTaskExecutionInfo:
    assert task.execution_info is not None
    return task.execution_info


def test_kill_9_and_restart_keeps_everything_and_requeues_running_tasks_once(server: LiveServer) -> None:
    scratch = server.data_dir.parent / "scratch"
    scratch.mkdir()
    scratch.chmod(0o1777)
    gate, runs, pids = scratch / "gate", scratch / "runs", scratch / "pids"
    client = connect(server)
    client.create_pool(m.BatchPoolCreateOptions(id="dur", vm_size="standard_d2s_v3", virtual_machine_configuration=IMAGE,
                                                target_dedicated_nodes=1, task_slots_per_node=3))
    client.create_job(m.BatchJobCreateOptions(id="dur", pool_info=m.BatchPoolInfo(pool_id="dur")))
    client.create_tasks("dur", [m.BatchTaskCreateOptions(id=f"quick{i}", command_line=f"/bin/sh -c 'echo quick{i} >> {runs}'")
                                for i in range(3)])
    wait_for(lambda: all(t.state == m.BatchTaskState.COMPLETED for t in tasks_of(client, "dur").values()), "quick tasks")
    slow = (f"/bin/sh -c 'echo $AZ_BATCH_TASK_ID >> {runs}; echo $$ >> {pids}; "
            f"while [ ! -e {gate} ]; do sleep 0.05; done'")
    client.create_tasks("dur", [m.BatchTaskCreateOptions(id=f"slow{i}", command_line=slow) for i in range(5)])
    wait_for(lambda: sum(t.state == m.BatchTaskState.RUNNING for t in tasks_of(client, "dur").values()) == 3,
             "three slow tasks running")
    wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 3, "their pids")
    # acknowledged just before the crash: must survive it
    client.create_job(m.BatchJobCreateOptions(id="burst", pool_info=m.BatchPoolInfo(pool_id="nowhere")))
    client.create_tasks("burst", [m.BatchTaskCreateOptions(id=f"b{i}", command_line="/bin/true") for i in range(250)])
    before = tasks_of(client, "dur")
    running = {t.id for t in before.values() if t.state == m.BatchTaskState.RUNNING}
    client.close()

    server.kill()
    server.start()
    client = connect(server)
    try:
        first_pids = [int(p) for p in pids.read_text().split()]
        wait_for(lambda: not any(alive(p) for p in first_pids), "the killed server's task processes to be gone")
        pool = client.get_pool("dur")
        assert pool.target_dedicated_nodes == 1 and pool.task_slots_per_node == 3
        wait_for(lambda: [n.state for n in client.list_nodes("dur")] in (["idle"], ["running"]), "the node back")
        assert len(tasks_of(client, "burst")) == 250
        assert all(t.state == m.BatchTaskState.ACTIVE for t in tasks_of(client, "burst").values())
        after = tasks_of(client, "dur")
        assert set(after) == set(before)
        for i in range(3):
            old, new = before[f"quick{i}"], after[f"quick{i}"]
            assert new.state == m.BatchTaskState.COMPLETED and info(new).end_time == info(old).end_time
            assert info(new).requeue_count == 0
        for task_id in (f"slow{i}" for i in range(5)):
            assert info(after[task_id]).requeue_count == (1 if task_id in running else 0), task_id
        gate.touch()
        wait_for(lambda: all(t.state == m.BatchTaskState.COMPLETED for t in tasks_of(client, "dur").values()),
                 "every task to complete")
        final = tasks_of(client, "dur")
        assert all(info(t).result == m.BatchTaskExecutionResult.SUCCESS for t in final.values())
        for task_id in (f"slow{i}" for i in range(5)):
            assert info(final[task_id]).requeue_count == (1 if task_id in running else 0), task_id
        lines = runs.read_text().split()
        assert all(lines.count(f"quick{i}") == 1 for i in range(3))
        for task_id in (f"slow{i}" for i in range(5)):
            assert lines.count(task_id) == (2 if task_id in running else 1), (task_id, lines)
    finally:
        client.close()


def test_a_clean_restart_also_keeps_state(server: LiveServer) -> None:
    client = connect(server)
    client.create_pool(m.BatchPoolCreateOptions(id="calm", vm_size="standard_d2s_v3", virtual_machine_configuration=IMAGE,
                                                target_dedicated_nodes=2))
    client.create_job(m.BatchJobCreateOptions(id="calm", pool_info=m.BatchPoolInfo(pool_id="calm")))
    client.create_tasks("calm", [m.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/true") for i in range(4)])
    wait_for(lambda: all(t.state == m.BatchTaskState.COMPLETED for t in tasks_of(client, "calm").values()), "tasks")
    nodes = sorted(n.id for n in client.list_nodes("calm") if n.id)
    client.close()
    server.restart()
    client = connect(server)
    try:
        wait_for(lambda: [n.state for n in client.list_nodes("calm")] == ["idle", "idle"], "nodes idle again")
        assert sorted(n.id for n in client.list_nodes("calm") if n.id) == nodes
        assert all(info(t).requeue_count == 0 and info(t).result == m.BatchTaskExecutionResult.SUCCESS
                   for t in tasks_of(client, "calm").values())
        client.create_task("calm", m.BatchTaskCreateOptions(id="after", command_line="/bin/true"))
        wait_for(lambda: client.get_task("calm", "after").state == m.BatchTaskState.COMPLETED, "a new task")
        assert os.path.isdir(server.data_dir / "nodes" / nodes[0])
    finally:
        client.close()
