"""The dask compute provider across hosts: openbatch and a Dask scheduler on host1, one Dask worker
(one node) on host2 and one on host3, the client on host2. The seed tutorial (``openbatch
quickstart``, unchanged), a 1,000-task job and the loss of host3 during a job; tasks report the
hostname and address of the host they ran on, and record each completed run in a directory all
hosts share (one filesystem under the namespaces), so "exactly once" is counted, not inferred."""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.exceptions import ResourceNotFoundError

from tests.helpers.pools import make_pool
from tests.helpers.waiting import alive, wait_for
from tests.multihost.hosts import Host, Network, Proc
from tests.multihost.servers import (
    Openbatch,
    completed_tasks,
    start_openbatch,
    start_scheduler,
    start_worker,
    stdout_of,
)

SLOTS = 4
# What a task prints about where it runs: its host's name and the address on eth0.
WHERE = "cat /proc/sys/kernel/hostname; ip -4 -o addr show dev eth0"
INET = re.compile(r"inet (\d+\.\d+\.\d+\.\d+)/")
POLL: Any = 0.2  # seconds between polls of a deletion (the SDK's default is 30; typed int, takes any number)


@dataclass
class Cluster:
    server: Openbatch
    scheduler: str
    workers: dict[str, Proc]
    marks_root: Path
    scratch: Path

    def serve(self, host: Host) -> None:
        """(Re)start openbatch on ``host`` with the module's data dir, attached to the scheduler."""
        self.server = start_openbatch(host, self.scratch / "data", "--host", host.address,
                                      "--compute", self.scheduler.replace("tcp://", "dask://"))

    def marks(self, name: str) -> Path:
        """A directory every task account may write, for one test's records of completed runs."""
        path = self.marks_root / name
        path.mkdir(mode=0o777)
        path.chmod(0o1777)
        return path


@pytest.fixture(scope="module")
def cluster(network: Network, module_scratch: Path) -> Iterator[Cluster]:
    host1, host2, host3 = network.hosts
    module_scratch.chmod(0o755)  # the task accounts reach the marks below it
    marks = module_scratch / "marks"
    marks.mkdir(mode=0o755)
    try:
        scheduler = start_scheduler(host1)
        workers = {h.name: start_worker(h, scheduler, module_scratch, slots=SLOTS) for h in (host2, host3)}
        cluster = Cluster(cast(Openbatch, None), scheduler, workers, marks, module_scratch)
        cluster.serve(host1)
        yield cluster
    finally:
        for host in reversed(network.hosts):
            host.stop_all()


@pytest.fixture(autouse=True)
def clean_account(network: Network, cluster: Cluster) -> Iterator[None]:
    """Whatever a test leaves (when it fails half-way) is deleted, so the workers are free for the next."""
    yield

    def clean(client: BatchClient) -> None:
        for job in list(client.list_jobs()):
            client.begin_delete_job(str(job.id), polling_interval=POLL).result()
        for pool in list(client.list_pools()):
            delete_pool(client, str(pool.id))

    with cluster.server.batch() as client:
        network.hosts[1].call(clean, client)


def where(stdout: str) -> tuple[str, str]:
    """(hostname, address) from a task's output of ``WHERE``."""
    lines = stdout.splitlines()
    found = INET.search(stdout)
    assert lines and found, stdout
    return lines[0], found.group(1)


def delete_pool(client: BatchClient, pool_id: str) -> None:
    """Delete a pool and wait until it is gone (its workers are free for the next pool)."""
    client.begin_delete_pool(pool_id, polling_interval=POLL).result()

    def gone() -> bool:
        try:
            client.get_pool(pool_id)
        except ResourceNotFoundError:
            return True
        return False

    wait_for(gone, f"pool {pool_id} to be deleted", 120)


def runs(marks: Path) -> dict[str, list[str]]:
    """Task id -> the hostnames of its completed runs, from the marks directory."""
    return {p.name: p.read_text().split() for p in marks.iterdir()}


def test_seed_tutorial_runs_on_the_worker_hosts(network: Network, cluster: Cluster) -> None:
    host1, host2, host3 = network.hosts
    server = cluster.server
    proc = host2.run([sys.executable, "-m", "openbatch", "quickstart", "--batch-url", server.batch_url,
                      "--blob-url", server.blob_url, "--nodes", "2", "--keep", "--pool-id", "tutorial",
                      "--job-id", "tutorial"], timeout=240)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{server.proc.log()}"

    def check(client: BatchClient) -> tuple[dict[str, str], list[m.BatchTask], dict[str, str]]:
        ips = {str(n.id): str(n.ip_address) for n in client.list_nodes("tutorial")}
        tasks = list(client.list_tasks("tutorial"))
        outputs = {t.id: stdout_of(client, "tutorial", t.id) for t in tasks}  # read through the workers
        client.create_job(m.BatchJobCreateOptions(id="probe", pool_info=m.BatchPoolInfo(pool_id="tutorial")))
        client.create_tasks("probe", [m.BatchTaskCreateOptions(id=f"p{i}", command_line=f"/bin/sh -c '{WHERE}'")
                                      for i in range(8)])
        probes = completed_tasks(client, "probe", 8)
        seen = {t.id: stdout_of(client, "probe", t.id) for t in probes}
        assert all(t.execution_info and t.execution_info.exit_code == 0 for t in probes), seen
        seen |= {f"{t.id}@": ips[str(t.node_info.node_id)] for t in probes if t.node_info}
        return ips, tasks, {**outputs, **seen}

    with server.batch() as client:
        ips, tasks, out = host2.call(check, client)
    workers = {h.address: h.name for h in (host2, host3)}
    assert sorted(ips.values()) == sorted(workers), ips  # one node per worker host, none of host1
    assert len(tasks) == 3 and all(t.state == m.BatchTaskState.COMPLETED and t.execution_info
                                   and t.execution_info.exit_code == 0 for t in tasks)
    assert {ips[str(t.node_info.node_id)] for t in tasks if t.node_info} <= set(workers)
    assert all("Uploading file" in out[t.id] for t in tasks), out
    probes = {k: where(v) for k, v in out.items() if k.startswith("p") and not k.endswith("@")}
    for task_id, (hostname, address) in probes.items():
        assert workers.get(address) == hostname, probes  # ran on a worker host, under its name
        assert out[f"{task_id}@"] == address  # the node the API names is the host the task saw
    assert {h for h, _ in probes.values()} == {host2.name, host3.name}
    assert host1.name not in {h for h, _ in probes.values()}


def test_thousand_tasks_across_two_hosts(network: Network, cluster: Cluster) -> None:
    _, host2, host3 = network.hosts
    marks = cluster.marks("thousand")
    count = 1000

    def job(client: BatchClient) -> list[m.BatchTask]:
        make_pool(client, "big", nodes=2, slots=SLOTS, timeout=120)
        client.create_job(m.BatchJobCreateOptions(
            id="big", pool_info=m.BatchPoolInfo(pool_id="big"),
            common_environment_settings=[m.EnvironmentSetting(name="MARKS", value=str(marks))]))
        record = "cat /proc/sys/kernel/hostname >> $MARKS/$AZ_BATCH_TASK_ID"
        for start in range(0, count, 100):
            client.create_tasks("big", [m.BatchTaskCreateOptions(id=f"t{i:04}", command_line=f"/bin/sh -c '{record}'")
                                        for i in range(start, start + 100)])
        done = completed_tasks(client, "big", count, timeout=240)
        return done

    with cluster.server.batch() as client:
        done = host2.call(job, client)
    failed = {t.id: t.execution_info for t in done if not (t.execution_info and t.execution_info.exit_code == 0)}
    assert not failed, list(failed.items())[:5]
    seen = runs(marks)
    assert sorted(seen) == [f"t{i:04}" for i in range(count)]
    assert all(len(hosts) == 1 for hosts in seen.values()), {k: v for k, v in seen.items() if len(v) != 1}
    per_host = Counter(hosts[0] for hosts in seen.values())
    assert set(per_host) == {host2.name, host3.name}, per_host
    starts = [t.execution_info.start_time for t in done if t.execution_info and t.execution_info.start_time]
    ends = [t.execution_info.end_time for t in done if t.execution_info and t.execution_info.end_time]
    span = (max(ends) - min(starts)).total_seconds()
    print(f"{count} tasks in {span:.1f} s ({count / span:.0f}/s) on {dict(per_host)}")  # a figure (-s), not a check


def test_server_killed_mid_job_requeues_its_running_tasks_once(network: Network, cluster: Cluster) -> None:
    host1, host2, _ = network.hosts
    marks, starts = cluster.marks("restart"), cluster.marks("restart-starts")
    gate = cluster.marks_root / "restart-gate"
    count = 8
    task = (f"echo $$ >> {starts}/$AZ_BATCH_TASK_ID; while [ ! -e {gate} ]; do sleep 0.05; done; "
            "cat /proc/sys/kernel/hostname >> $MARKS/$AZ_BATCH_TASK_ID")

    def start(client: BatchClient) -> None:
        make_pool(client, "restart", nodes=2, slots=2, timeout=120)
        client.create_job(m.BatchJobCreateOptions(
            id="restart", pool_info=m.BatchPoolInfo(pool_id="restart"),
            common_environment_settings=[m.EnvironmentSetting(name="MARKS", value=str(marks))]))
        client.create_tasks("restart", [m.BatchTaskCreateOptions(id=f"t{i}", command_line=f"/bin/sh -c '{task}'")
                                        for i in range(count)])

    def started() -> dict[str, list[int]]:
        return {p.name: [int(pid) for pid in p.read_text().split()] for p in starts.iterdir()}

    with cluster.server.batch() as client:
        host2.call(start, client)
    first = wait_for(lambda: (found := started()) and sum(map(len, found.values())) == 4 and found,
                     "four tasks waiting at the gate on the worker hosts", 120)
    cluster.server.proc.kill()  # kill -9 of the openbatch server, its workers and their runs untouched
    cluster.serve(host1)
    wait_for(lambda: sum(map(len, started().values())) == 8, "four tasks started again after the restart", 120)
    # what ran for the dead server was killed before anything ran again (an ended task's first
    # process may still be an unreaped zombie while its session is swept: dead all the same)
    left = [pid for pids in first.values() for pid in pids if alive(pid)]
    assert not left, left
    gate.touch()
    with cluster.server.batch() as client:
        done = host2.call(completed_tasks, client, "restart", count, 120.0)
    failed = {t.id: t.execution_info for t in done if not (t.execution_info and t.execution_info.exit_code == 0)}
    assert not failed, failed
    assert all(len(hosts) == 1 for hosts in runs(marks).values()) and len(runs(marks)) == count, runs(marks)
    requeues = {str(t.id): t.execution_info.requeue_count if t.execution_info else None for t in done}
    assert requeues == {f"t{i}": 1 if f"t{i}" in first else 0 for i in range(count)}
    assert {k: len(v) for k, v in started().items()} == {f"t{i}": 2 if f"t{i}" in first else 1 for i in range(count)}


def test_losing_a_host_mid_job_requeues_its_tasks(network: Network, cluster: Cluster) -> None:
    _, host2, host3 = network.hosts
    marks = cluster.marks("loss")
    count = 16

    def start(client: BatchClient) -> dict[str, str]:
        nodes = make_pool(client, "loss", nodes=2, slots=2, timeout=120)
        client.create_job(m.BatchJobCreateOptions(
            id="loss", pool_info=m.BatchPoolInfo(pool_id="loss"),
            common_environment_settings=[m.EnvironmentSetting(name="MARKS", value=str(marks))]))
        record = "sleep 1; cat /proc/sys/kernel/hostname >> $MARKS/$AZ_BATCH_TASK_ID"
        client.create_tasks("loss", [m.BatchTaskCreateOptions(id=f"t{i:02}", command_line=f"/bin/sh -c '{record}'")
                                     for i in range(count)])
        return {str(n.id): str(n.ip_address) for n in nodes}

    def running_on(client: BatchClient, node_id: str) -> list[str]:
        return [t.id for t in client.list_tasks("loss")
                if t.state == m.BatchTaskState.RUNNING and t.node_info and t.node_info.node_id == node_id]

    with cluster.server.batch() as client:
        ips = host2.call(start, client)
        lost = next(node for node, ip in ips.items() if ip == host3.address)
        doomed = wait_for(lambda: host2.call(running_on, client, lost), "tasks running on host3's node", 120)
        host3.crash()  # the machine is gone: worker, nanny and the tasks it ran
        done = host2.call(completed_tasks, client, "loss", count, 180.0)
    failed = {t.id: t.execution_info for t in done if not (t.execution_info and t.execution_info.exit_code == 0)}
    assert not failed, (doomed, failed)
    seen = runs(marks)
    assert sorted(seen) == [f"t{i:02}" for i in range(count)]
    assert all(len(hosts) == 1 for hosts in seen.values()), seen  # every task completed exactly once
    assert all(seen[t] == [host2.name] for t in doomed), {t: seen[t] for t in doomed}
    requeued = {t.id: t.execution_info.requeue_count for t in done if t.id in doomed and t.execution_info}
    assert all(n and n >= 1 for n in requeued.values()), requeued
    assert not os.path.exists(f"/proc/{cluster.workers[host3.name].pid}")

