"""Multi-instance tasks, driven by azure-batch 15.x against a live server: a real MPI program
(Open MPI from Debian's openmpi-bin, a hello-world built with mpicc) runs on 3 nodes through
``mpirun -host $AZ_BATCH_HOST_LIST`` (openbatch's rsh agent starts the remote ranks in the other
nodes), its binary a commonResourceFile downloaded into AZ_BATCH_TASK_SHARED_DIR on every node; the
subtasks are listed with their nodes and exit codes; a multi-instance task waits in active on a pool
without inter-node communication or with fewer nodes than it asks for."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import socket
import subprocess
from functools import partial
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.batch.models._models import BatchNodeRebootOptions  # not exported by 15.1
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

from tests.helpers.pools import make_pool
from tests.helpers.server import LiveServer
from tests.helpers.waiting import wait_for

HELLO = r"""
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int rank, size; char host[256];
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    gethostname(host, sizeof host);
    const char *node = getenv("AZ_BATCH_NODE_ID");
    printf("rank %d of %d on %s node %s\n", rank, size, host, node ? node : "?");
    fflush(stdout);
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
    return 0;
}
"""
MPIRUN = ("/bin/sh -c 'mpirun -host $AZ_BATCH_HOST_LIST -np 3 --mca btl self,tcp --mca btl_tcp_if_include lo "
          "--mca oob_tcp_if_include lo $AZ_BATCH_TASK_SHARED_DIR/hello'")
AS_ROOT = [m.EnvironmentSetting(name="OMPI_ALLOW_RUN_AS_ROOT", value="1"),
           m.EnvironmentSetting(name="OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", value="1")]
RANK = re.compile(r"^rank (\d+) of (\d+) on (\S+) node (\S+)$", re.M)


@pytest.fixture(scope="module")
def hello_url(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The hello-world, built with mpicc and uploaded to a blob; its read SAS URL."""
    if shutil.which("mpicc") is None or shutil.which("mpirun") is None:
        pytest.skip("Open MPI is not installed (Debian: openmpi-bin libopenmpi-dev; scripts/test.sh installs them "
                    "as root)")
    where: Path = tmp_path_factory.mktemp("mpi")
    (where / "hello.c").write_text(HELLO)
    subprocess.run(["mpicc", "-o", str(where / "hello"), str(where / "hello.c")], check=True, timeout=120)
    blobs = BlobServiceClient.from_connection_string(server.connection_string)
    blobs.create_container("mpi")
    blobs.get_blob_client("mpi", "hello").upload_blob((where / "hello").read_bytes())
    sas = generate_blob_sas(server.account, "mpi", "hello", account_key=server.key,
                            permission=BlobSasPermissions(read=True),
                            expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
    return f"{server.blob_url}/mpi/hello?{sas}"


def _task(task_id: str, url: str, instances: int = 3) -> m.BatchTaskCreateOptions:
    return m.BatchTaskCreateOptions(
        id=task_id, command_line=MPIRUN, environment_settings=AS_ROOT,
        # A hung mpirun ends as a failed task whose stderr says what happened, not as a test timeout.
        constraints=m.BatchTaskConstraints(max_wall_clock_time=dt.timedelta(seconds=60)),
        multi_instance_settings=m.MultiInstanceSettings(
            number_of_instances=instances,
            coordination_command_line="/bin/sh -c 'echo coordinating on $AZ_BATCH_NODE_ID "
                                      "master=$AZ_BATCH_IS_CURRENT_NODE_MASTER; test -x $AZ_BATCH_TASK_SHARED_DIR/hello'",
            common_resource_files=[m.ResourceFile(http_url=url, file_path="hello", file_mode="0755")]))


def _completed(client: BatchClient, job: str, task: str) -> bool:
    return client.get_task(job, task).state == "completed"


def test_mpi_hello_world_on_three_nodes(client: BatchClient, server: LiveServer, hello_url: str) -> None:
    nodes = make_pool(client, "mpi", nodes=3, enable_inter_node_communication=True)
    node_ids = {n.id for n in nodes}
    client.create_job(m.BatchJobCreateOptions(id="mpijob", pool_info=m.BatchPoolInfo(pool_id="mpi")))
    client.create_task("mpijob", _task("hello", hello_url))
    task = wait_for(lambda: (t := client.get_task("mpijob", "hello")).state == "completed" and t,
                    "the MPI task to complete", timeout=150)
    stdout = b"".join(client.download_task_file("mpijob", "hello", "stdout.txt")).decode()
    info = task.execution_info
    stderr = b"".join(client.download_task_file("mpijob", "hello", "stderr.txt")).decode()
    assert info is not None and info.exit_code == 0 and info.result == "success", (info, stdout, stderr)
    ranks = {int(r): (host, node) for r, size, host, node in RANK.findall(stdout) if size == "3"}
    assert sorted(ranks) == [0, 1, 2], stdout
    assert {node for _, node in ranks.values()} == node_ids, stdout  # one rank in each node
    hosts = {host for host, _ in ranks.values()}
    if socket.gethostname() not in hosts:  # isolated nodes (UTS namespaces): each its own host name
        assert len(hosts) == 3, stdout

    primary = task.node_info.node_id if task.node_info else None
    subtasks = list(client.list_subtasks("mpijob", "hello"))
    assert sorted(s.id or 0 for s in subtasks) == [1, 2]
    assert all(s.state == "completed" and s.exit_code == 0 and s.result == "success" for s in subtasks), subtasks
    sub_nodes = {s.node_info.node_id for s in subtasks if s.node_info}
    assert primary is not None and sub_nodes | {primary} == node_ids and primary not in sub_nodes
    # The coordination command ran on every node, in the task directory there.
    for sub in subtasks:
        assert sub.node_info is not None and sub.node_info.node_id
        out = b"".join(client.download_node_file("mpi", sub.node_info.node_id,
                                            f"{sub.node_info.task_root_directory}/stdout.txt")).decode()
        assert f"coordinating on {sub.node_info.node_id} master=false" in out
    assert all(n.state == "idle" for n in client.list_nodes("mpi"))


def test_multi_instance_task_waits_for_a_pool_that_can_run_it(client: BatchClient, hello_url: str) -> None:
    make_pool(client, "nointernode", nodes=2)
    make_pool(client, "small", nodes=2, enable_inter_node_communication=True)
    for pool in ("nointernode", "small"):
        job = f"j{pool}"
        client.create_job(m.BatchJobCreateOptions(id=job, pool_info=m.BatchPoolInfo(pool_id=pool)))
        client.create_task(job, _task("wide", hello_url, instances=3 if pool == "small" else 2))
        client.create_task(job, m.BatchTaskCreateOptions(id="after", command_line="/bin/true"))
        wait_for(partial(_completed, client, job, "after"), "the ordinary task behind it")
        assert client.get_task(job, "wide").state == "active"
    client.begin_resize_pool("small", m.BatchPoolResizeOptions(target_dedicated_nodes=3))
    wait_for(lambda: client.get_task("jsmall", "wide").state == "completed", "the pool grown to run it", timeout=120)


def _sleeper(task_id: str) -> m.BatchTaskCreateOptions:
    return m.BatchTaskCreateOptions(id=task_id, command_line="/bin/sleep 60", multi_instance_settings=m.MultiInstanceSettings(
        number_of_instances=2, coordination_command_line="/bin/true"))


def _running_everywhere(client: BatchClient, job: str, task: str) -> list[m.BatchSubtask] | None:
    if client.get_task(job, task).state != "running":
        return None
    subtasks = list(client.list_subtasks(job, task))
    return subtasks if subtasks and all(s.state == "running" for s in subtasks) else None


def test_terminate_and_node_reboot_end_a_multi_instance_task_on_every_node(client: BatchClient) -> None:
    make_pool(client, "mi2", nodes=2, enable_inter_node_communication=True)
    client.create_job(m.BatchJobCreateOptions(id="mi2job", pool_info=m.BatchPoolInfo(pool_id="mi2")))
    client.create_task("mi2job", _sleeper("long"))
    wait_for(partial(_running_everywhere, client, "mi2job", "long"), "the task running on both nodes")
    assert all(n.state == "running" for n in client.list_nodes("mi2"))
    client.terminate_task("mi2job", "long")
    wait_for(partial(_completed, client, "mi2job", "long"), "the terminated task to complete")
    task = client.get_task("mi2job", "long")
    assert task.execution_info is not None and task.execution_info.failure_info is not None
    assert task.execution_info.failure_info.code == "TaskEnded"
    # As on Azure the primary ends at once, its subtasks in the background.
    wait_for(lambda: all(s.state == "completed" for s in client.list_subtasks("mi2job", "long")),
             "the subtasks to complete")
    wait_for(lambda: all(n.state == "idle" for n in client.list_nodes("mi2")), "both nodes idle again")

    # Rebooting the node of a subtask requeues the whole task, which runs again on both nodes.
    client.create_task("mi2job", _sleeper("again"))
    subtasks = wait_for(partial(_running_everywhere, client, "mi2job", "again"), "the second task running")
    secondary = subtasks[0].node_info.node_id
    client.begin_reboot_node("mi2", secondary, BatchNodeRebootOptions(node_reboot_kind="requeue"))
    wait_for(lambda: (client.get_task("mi2job", "again").execution_info or m.BatchTaskExecutionInfo(
        retry_count=0, requeue_count=0)).requeue_count == 1, "the task requeued")
    wait_for(partial(_running_everywhere, client, "mi2job", "again"), "the requeued task running again", timeout=60)
    client.terminate_task("mi2job", "again")


def test_multi_instance_task_survives_kill_9(fresh_server: LiveServer) -> None:
    """After a kill -9 of the server the running multi-instance task is requeued once and runs again
    on two nodes; the subtasks listed are the new attempt's, never the dead server's."""
    client = BatchClient(fresh_server.batch_url, AzureNamedKeyCredential(fresh_server.account, fresh_server.key))
    make_pool(client, "mik", nodes=2, enable_inter_node_communication=True)
    client.create_job(m.BatchJobCreateOptions(id="mikjob", pool_info=m.BatchPoolInfo(pool_id="mik")))
    client.create_task("mikjob", _sleeper("long"))
    before = wait_for(partial(_running_everywhere, client, "mikjob", "long"), "the task running on both nodes")
    fresh_server.kill()
    fresh_server.start()
    client = BatchClient(fresh_server.batch_url, AzureNamedKeyCredential(fresh_server.account, fresh_server.key))
    after = wait_for(partial(_running_everywhere, client, "mikjob", "long"), "the task running again", timeout=60)
    info = client.get_task("mikjob", "long").execution_info
    assert info is not None and info.requeue_count == 1
    assert after[0].start_time is not None and before[0].start_time is not None
    assert after[0].start_time > before[0].start_time
    client.terminate_task("mikjob", "long")
    wait_for(partial(_completed, client, "mikjob", "long"), "the task to complete")
