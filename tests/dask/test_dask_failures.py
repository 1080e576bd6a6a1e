"""Exactly once through failures with the dask provider: kill -9 of a worker mid-task, of the Dask
scheduler, and of the openbatch server each leave every task completed once or requeued
(requeueCount + 1) and run again; the store stays the only truth.

Slow tasks note their start in ``runs`` and their pid in ``pids``, then wait for ``gate``: a task
counted twice in ``runs`` ran twice, which only a requeued task may do."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential

from openbatch.testing import free_port
from tests.dask.conftest import DASK_LOCAL
from tests.dask.helpers import worker_pids
from tests.helpers.pools import make_pool
from tests.helpers.server import LiveServer
from tests.helpers.waiting import alive, wait_for


@pytest.fixture
def top() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="openbatch-dask-"))
    scratch = root / "scratch"
    scratch.mkdir()
    scratch.chmod(0o1777)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def connect(server: LiveServer) -> BatchClient:
    return BatchClient(server.batch_url, AzureNamedKeyCredential(server.account, server.key))


def tasks_of(client: BatchClient, job_id: str) -> dict[str, m.BatchTask]:
    return {t.id: t for t in client.list_tasks(job_id) if t.id}


def requeues(task: m.BatchTask) -> int:
    assert task.execution_info is not None
    return task.execution_info.requeue_count or 0


class Slow:
    """A job of slow tasks on a pool of two nodes x two slots."""

    def __init__(self, client: BatchClient, scratch: Path, count: int = 6):
        self.client, self.count = client, count
        self.gate, self.runs, self.pids = scratch / "gate", scratch / "runs", scratch / "pids"
        make_pool(client, "p", nodes=2, slots=2)
        client.create_job(m.BatchJobCreateOptions(id="j", pool_info=m.BatchPoolInfo(pool_id="p")))
        slow = (f"/bin/sh -c 'echo $AZ_BATCH_TASK_ID >> {self.runs}; echo $$ $AZ_BATCH_NODE_ID >> {self.pids}; "
                f"while [ ! -e {self.gate} ]; do sleep 0.05; done'")
        client.create_tasks("j", [m.BatchTaskCreateOptions(id=f"s{i}", command_line=slow) for i in range(count)])
        wait_for(lambda: self.pids.exists() and len(self.pids.read_text().splitlines()) == 4, "four tasks running")
        self.running = {t for t, v in tasks_of(client, "j").items() if v.state == m.BatchTaskState.RUNNING}
        assert len(self.running) == 4

    def pids_on(self, node_id: str = "") -> list[int]:
        return [int(line.split()[0]) for line in self.pids.read_text().splitlines()
                if not node_id or line.split()[1] == node_id]

    def finish(self, requeued: set[str] | None) -> None:
        """Open the gate; every task completes once, the ``requeued`` ones after a second start
        (None: each start that did not complete was a requeue, whichever tasks those were)."""
        self.gate.touch()
        wait_for(lambda: all(t.state == m.BatchTaskState.COMPLETED for t in tasks_of(self.client, "j").values()),
                 "every task to complete", timeout=90)
        final = tasks_of(self.client, "j")
        assert len(final) == self.count
        lines = self.runs.read_text().split()
        for task_id, task in final.items():
            assert task.execution_info is not None and task.execution_info.exit_code == 0, task.execution_info
            if requeued is not None:
                assert requeues(task) == (1 if task_id in requeued else 0), task_id
            assert 1 <= lines.count(task_id) <= requeues(task) + 1, (task_id, lines)
            assert requeued is None or lines.count(task_id) == requeues(task) + 1, (task_id, lines)


def test_a_worker_killed_mid_task_requeues_its_tasks_once(top: Path) -> None:
    server = LiveServer(top / "data", extra_args=DASK_LOCAL).start(timeout=60)
    client = connect(server)
    try:
        job = Slow(client, top / "scratch")
        victim = next(iter(worker_pids(server)))
        on_victim = {p.pid for p in psutil.Process(victim).children(recursive=True)}
        node = next(line.split()[1] for line in job.pids.read_text().splitlines() if int(line.split()[0]) in on_victim)
        lost = {t for t, v in tasks_of(client, "j").items() if v.node_info and v.node_info.node_id == node
                and t in job.running}
        assert len(lost) == 2
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: all(requeues(tasks_of(client, "j")[t]) == 1 for t in lost), "the lost tasks requeued")
        # the LocalCluster's nanny starts the worker again: the node reboots on it, and what the
        # killed worker's tasks left running on that host is killed when it does
        wait_for(lambda: {n.state for n in client.list_nodes("p")} <= {"idle", "running"}, "the node back")
        wait_for(lambda: not any(alive(p) for p in job.pids_on(node)[:2]), "the killed worker's tasks gone")
        job.finish(lost)
    finally:
        client.close()
        server.stop()


def test_the_server_killed_mid_task_requeues_running_tasks_once(top: Path) -> None:
    server = LiveServer(top / "data", extra_args=DASK_LOCAL).start(timeout=60)
    client = connect(server)
    try:
        job = Slow(client, top / "scratch")
        server.kill()
        server.start(timeout=60)
        client.close()
        client = job.client = connect(server)
        wait_for(lambda: not any(alive(p) for p in job.pids_on()[:4]), "the killed server's task processes gone")
        wait_for(lambda: len(job.pids.read_text().splitlines()) == 8, "four tasks running again")
        job.finish(job.running)
    finally:
        client.close()
        server.stop()


def _dask(*args: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "distributed.cli." + args[0], *args[1:]], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _cluster(port: int, log: Path) -> list[subprocess.Popen[bytes]]:
    """A Dask scheduler on ``port`` (first) and two workers named w0, w1 with slots=2."""
    procs = [_dask("dask_scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0",
                   log=log)]
    return procs + [_dask("dask_worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1", "--name", f"w{i}",
                          "--no-dashboard", "--resources", "slots=2", log=log) for i in range(2)]


@dataclass
class _Attached:
    """A Dask cluster of its own (``_cluster``) and a server attached to it with ``dask://``."""

    port: int
    log: Path
    procs: list[subprocess.Popen[bytes]]
    server: LiveServer
    client: BatchClient | None = None


@contextlib.contextmanager
def _attached(top: Path) -> Iterator[_Attached]:
    """The cluster and the server, with a client once the server is up; all of it gone afterwards."""
    port = free_port()
    log = top / "dask.log"
    procs = _cluster(port, log)
    server = LiveServer(top / "data", extra_args=["--compute", f"dask://127.0.0.1:{port}",
                                                  "--dask-node-root", str(top / "nodes")])
    attached = _Attached(port, log, procs, server)
    try:
        server.start(timeout=60)
        attached.client = connect(server)
        yield attached
    finally:
        if attached.client is not None:
            attached.client.close()
        server.stop()
        for proc in attached.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_the_scheduler_killed_mid_task_loses_nothing(top: Path) -> None:
    with _attached(top) as cluster:
        assert cluster.client is not None
        job = Slow(cluster.client, top / "scratch")
        cluster.procs[0].kill()
        cluster.procs[0].wait()
        job.gate.touch()
        # Runs go straight to the workers: what was running ends and is reported, or (a worker that
        # gave up on its scheduler) is requeued; nothing stays running and nothing is lost.
        wait_for(lambda: all(t.state != m.BatchTaskState.RUNNING for t in tasks_of(job.client, "j").values()),
                 "no task left running", timeout=90)
        after = tasks_of(job.client, "j")
        lines = job.runs.read_text().split()
        assert len(after) == job.count
        for task_id, task in after.items():  # each start completed or was requeued (a run sent to a
            done = task.state == m.BatchTaskState.COMPLETED  # closing worker may be requeued unstarted)
            assert done or task.state == m.BatchTaskState.ACTIVE, task_id
            assert done <= lines.count(task_id) <= requeues(task) + done, (task_id, lines)
            assert not done or (task.execution_info is not None and task.execution_info.exit_code == 0)
        assert all(requeues(after[t]) >= 1 or after[t].state == m.BatchTaskState.COMPLETED for t in job.running)
        # The cluster comes back (a new scheduler at the same address, new workers) and so does
        # openbatch: what was requeued runs again, once.
        cluster.procs += _cluster(cluster.port, cluster.log)
        cluster.client.close()
        cluster.server.restart()
        cluster.client = job.client = connect(cluster.server)
        job.finish(None)


# Dask's Client reconnects by itself to a scheduler back at the same address, within a second:
# the provider now takes a changed connection as a lost one (compute/dask_cluster.py _watch),
# else it stayed without worker events and agent plugin on the new scheduler whenever its
# once-a-second look missed the reconnection (this test's old flake).
def test_a_restarted_scheduler_is_attached_again_by_the_running_server(top: Path) -> None:
    with _attached(top) as cluster:
        client = cluster.client
        assert client is not None
        make_pool(client, "p", nodes=2, slots=2)
        for proc in cluster.procs:  # the whole cluster goes: scheduler and workers
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        cluster.procs += _cluster(cluster.port, cluster.log)  # back at the same address, openbatch running on
        client.create_job(m.BatchJobCreateOptions(id="j", pool_info=m.BatchPoolInfo(pool_id="p")))
        ids = [f"t{i}" for i in range(8)]
        client.create_tasks("j", [m.BatchTaskCreateOptions(id=t, command_line="/bin/true") for t in ids])
        wait_for(lambda: all(t.state == m.BatchTaskState.COMPLETED for t in tasks_of(client, "j").values()),
                 "every task completed on the new cluster's workers", timeout=120)
        after = tasks_of(client, "j")
        assert all(t.execution_info is not None and t.execution_info.exit_code == 0 for t in after.values())
        wait_for(lambda: [n for n in client.list_nodes("p") if n.state == "idle"][1:], "both nodes idle again")
        assert cluster.server.proc is not None and cluster.server.proc.poll() is None
