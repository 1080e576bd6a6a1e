"""The dask compute provider through azure-batch 15 against ``openbatch serve --compute dask-local:2``:
nodes are the LocalCluster's workers (their IP from the worker's address), tasks run inside the
worker processes with resource files in and output files out, the Files API reads through the
worker, and a pool wanting more nodes than there are workers scales the cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions

from tests.cli.test_quickstart import EXPECTED, run_quickstart
from tests.dask.helpers import worker_pids
from tests.helpers.pools import make_pool
from tests.helpers.server import LiveServer
from tests.helpers.waiting import wait_for
from tests.sdk.test_batch_compute import (
    ADMIN,
    blob_sas_url,
    completed,
    container_sas_url,
    ex,
    node_of,
    output,
    sh,
)


@pytest.fixture(autouse=True)
def no_pools_left(client: BatchClient) -> Iterator[None]:
    """Each test's pools go when it ends: their workers are free for the next test's."""
    yield
    for pool in client.list_pools():
        if pool.id:
            client.begin_delete_pool(pool.id)
    wait_for(lambda: not list(client.list_pools()), "the pools deleted")


def test_tutorial_runs_in_the_workers(client: BatchClient, service: BlobServiceClient, server: LiveServer) -> None:
    for name in ("application", "input", "output"):
        service.create_container(name)
    program = b"#!/bin/sh\necho \"$(wc -w < \"$1\") words in $1\"\nwc -w < \"$1\" > \"$1.count\"\n"
    service.get_blob_client("application", "count.sh").upload_blob(program)
    texts = {f"taskfile_{i}.txt": " ".join(["word"] * (i + 3)).encode() for i in range(4)}
    for name, data in texts.items():
        service.get_blob_client("input", name).upload_blob(data)
    app_url = container_sas_url(server, "application", ContainerSasPermissions(read=True, list=True))
    out_url = container_sas_url(server, "output", ContainerSasPermissions(write=True))
    start = m.BatchStartTask(
        command_line=sh("cp -p count.sh $AZ_BATCH_NODE_SHARED_DIR && chmod +x $AZ_BATCH_NODE_SHARED_DIR/count.sh"),
        resource_files=[m.ResourceFile(storage_container_url=app_url)], wait_for_success=True, user_identity=ADMIN)
    nodes = make_pool(client, "tutorial", nodes=2, start_task=start)
    assert all(n.state == "idle" for n in nodes)
    assert all(n.ip_address and n.ip_address.count(".") == 3 for n in nodes)  # the worker's address
    client.create_job(m.BatchJobCreateOptions(id="tutorial", pool_info=m.BatchPoolInfo(pool_id="tutorial")))
    tasks = [m.BatchTaskCreateOptions(
        id=f"Task{i}", command_line=sh(f"$AZ_BATCH_NODE_SHARED_DIR/count.sh {name}; echo $PPID > parent"),
        resource_files=[m.ResourceFile(http_url=blob_sas_url(server, "input", name), file_path=name)],
        output_files=[output(f"{name}.count", out_url, f"counts/{name}.count", m.OutputFileUploadCondition.TASK_SUCCESS)])
        for i, name in enumerate(texts)]
    client.create_tasks("tutorial", tasks)
    done = completed(client, "tutorial", *(f"Task{i}" for i in range(4)))
    assert all(ex(t).result == m.BatchTaskExecutionResult.SUCCESS for t in done), [t.execution_info for t in done]
    assert len({node_of(t) for t in done}) == 2
    workers = worker_pids(server)
    for i, (name, data) in enumerate(texts.items()):
        stdout = b"".join(client.download_task_file("tutorial", f"Task{i}", "stdout.txt"))
        assert stdout.decode() == f"{len(data.split())} words in {name}\n"
        blob = service.get_blob_client("output", f"counts/{name}.count").download_blob().readall()
        assert blob.decode().strip() == str(len(data.split()))
        parent = int(b"".join(client.download_task_file("tutorial", f"Task{i}", "wd/parent")))
        assert parent in workers or psutil.Process(parent).ppid() in workers  # started by a worker (or its helper)
    names = {f.name for f in client.list_task_files("tutorial", "Task0", recursive=True)}
    assert {"stdout.txt", "stderr.txt", "wd", "wd/taskfile_0.txt", "wd/taskfile_0.txt.count"} <= names
    props = client.get_task_file_properties("tutorial", "Task0", "stdout.txt")
    assert props.content_length == len("3 words in taskfile_0.txt\n")
    ranged = b"".join(client.download_task_file("tutorial", "Task0", "stdout.txt", ocp_range="bytes=2-6"))
    assert ranged == b"words"
    node_files = {f.name for f in client.list_node_files("tutorial", node_of(done[0]), recursive=True)}
    assert {"startup/stdout.txt", "shared/count.sh"} <= node_files
    client.delete_task_file("tutorial", "Task0", "wd/parent")
    assert "wd/parent" not in {f.name for f in client.list_task_files("tutorial", "Task0", recursive=True)}
    for name in ("application", "input", "output"):
        service.delete_container(name)


def test_a_pool_larger_than_the_cluster_scales_it(client: BatchClient, server: LiveServer) -> None:
    nodes = make_pool(client, "three", nodes=3)
    assert len({n.id for n in nodes}) == 3 and all(n.state == "idle" for n in nodes)
    assert len(worker_pids(server)) >= 3
    client.create_job(m.BatchJobCreateOptions(id="three", pool_info=m.BatchPoolInfo(pool_id="three")))
    client.create_tasks("three", [m.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/true") for i in range(30)])
    done = completed(client, "three", *(f"t{i}" for i in range(30)))
    assert all(ex(t).exit_code == 0 for t in done)
    assert len({node_of(t) for t in done}) == 3


def test_quickstart_against_dask_local(server: LiveServer, tmp_path: Path) -> None:
    proc = run_quickstart("--batch-url", server.batch_url, "--blob-url", server.blob_url, "--account",
                          server.account, "--key", server.key, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name, words in EXPECTED.items():
        assert name in proc.stdout and words in proc.stdout


def test_a_shrinking_pool_retires_the_workers_the_cluster_grew_by(client: BatchClient, server: LiveServer) -> None:
    make_pool(client, "shrink", nodes=3)
    wait_for(lambda: len(worker_pids(server)) == 3, "the LocalCluster grown to 3 workers")
    client.begin_resize_pool("shrink", m.BatchPoolResizeOptions(target_dedicated_nodes=1))
    wait_for(lambda: len(list(client.list_nodes("shrink"))) == 1, "the pool shrunk to one node")
    wait_for(lambda: len(worker_pids(server)) == 2, "the LocalCluster back to its own 2 workers")
    (kept,) = list(client.list_nodes("shrink"))
    client.create_job(m.BatchJobCreateOptions(id="shrink", pool_info=m.BatchPoolInfo(pool_id="shrink")))
    client.create_tasks("shrink", [m.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/true") for i in range(4)])
    done = completed(client, "shrink", *(f"t{i}" for i in range(4)))
    assert all(ex(t).exit_code == 0 and node_of(t) == kept.id for t in done)
    client.begin_resize_pool("shrink", m.BatchPoolResizeOptions(target_dedicated_nodes=2))
    wait_for(lambda: [n for n in client.list_nodes("shrink") if n.state == "idle"][1:], "the second node idle again")
    assert len(worker_pids(server)) == 2  # the free worker taken, no new one started
