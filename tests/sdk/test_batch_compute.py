"""Tasks really running, driven by azure-batch 15.x against a live server: the tutorial workflow
(elevated start task copying the program into the shared dir, inputs through blob SAS URLs,
outputs through a container SAS, stdout.txt through the Files API), output upload conditions,
resource file and program failures, retries, wall-clock timeout, terminate, job preparation and
release status, pack vs spread and requiredSlots, reboot / resize with requeue, job ends."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import psutil
import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.batch.models._models import (  # not exported by 15.1
    BatchJobTerminateOptions,
    BatchNodeRebootOptions,
)
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)

from tests.helpers.pools import make_pool
from tests.helpers.server import LiveServer
from tests.helpers.venvs import run_script
from tests.helpers.waiting import wait_for

ADMIN = m.UserIdentity(auto_user=m.AutoUserSpecification(scope=m.AutoUserScope.POOL,
                                                         elevation_level=m.ElevationLevel.ADMIN))
POLL: Any = 0.2  # seconds; the pollers sleep any number though typed int


@pytest.fixture(scope="module")
def blobs(server: LiveServer) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(server.connection_string)


def ex(task: m.BatchTask) -> m.BatchTaskExecutionInfo:
    assert task.execution_info is not None
    return task.execution_info


def failure(task: m.BatchTask) -> m.BatchTaskFailureInfo:
    info = ex(task).failure_info
    assert info is not None, ex(task)
    return info


def node_of(task: m.BatchTask) -> str:
    assert task.node_info is not None and task.node_info.node_id
    return task.node_info.node_id


def sh(script: str) -> str:
    return f"/bin/sh -c '{script}'"


def completed(client: BatchClient, job_id: str, *task_ids: str) -> list[m.BatchTask]:
    def check() -> list[m.BatchTask] | None:
        found = [client.get_task(job_id, t) for t in task_ids]
        return found if all(t.state == m.BatchTaskState.COMPLETED for t in found) else None

    return list(wait_for(check, f"{job_id}: {task_ids} to complete"))


def container_sas_url(server: LiveServer, name: str, perm: ContainerSasPermissions) -> str:
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    sas = generate_container_sas(server.account, name, account_key=server.key, permission=perm, expiry=expiry)
    return f"{server.blob_url}/{name}?{sas}"


def blob_sas_url(server: LiveServer, container: str, blob: str) -> str:
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    sas = generate_blob_sas(server.account, container, blob, account_key=server.key,
                            permission=BlobSasPermissions(read=True), expiry=expiry)
    return f"{server.blob_url}/{container}/{blob}?{sas}"


def output(pattern: str, url: str, path: str, condition: m.OutputFileUploadCondition) -> m.OutputFile:
    return m.OutputFile(file_pattern=pattern,
                        destination=m.OutputFileDestination(container=m.OutputFileBlobContainerDestination(
                            container_url=url, path=path)),
                        upload_options=m.OutputFileUploadConfiguration(upload_condition=condition))


def test_tutorial_workflow(client: BatchClient, blobs: BlobServiceClient, server: LiveServer) -> None:
    for name in ("application", "input", "output"):
        blobs.create_container(name)
    program = b"#!/bin/sh\necho \"$(wc -w < \"$1\") words in $1\"\nwc -w < \"$1\" > \"$1.count\"\n"
    blobs.get_blob_client("application", "count.sh").upload_blob(program)
    texts = {f"taskfile_{i}.txt": " ".join(["word"] * (i + 3)).encode() for i in range(3)}
    for name, data in texts.items():
        blobs.get_blob_client("input", name).upload_blob(data)
    app_url = container_sas_url(server, "application", ContainerSasPermissions(read=True, list=True))
    out_url = container_sas_url(server, "output", ContainerSasPermissions(write=True))
    start = m.BatchStartTask(
        command_line=sh("cp -p count.sh $AZ_BATCH_NODE_SHARED_DIR && chmod +x $AZ_BATCH_NODE_SHARED_DIR/count.sh"),
        resource_files=[m.ResourceFile(storage_container_url=app_url)], wait_for_success=True, user_identity=ADMIN)
    nodes = make_pool(client, "tutorial", nodes=3, start_task=start)
    assert all(n.state == "idle" and n.start_task_info and n.start_task_info.result == m.BatchTaskExecutionResult.SUCCESS
               for n in nodes)
    client.create_job(m.BatchJobCreateOptions(id="tutorial", pool_info=m.BatchPoolInfo(pool_id="tutorial")))
    tasks = [m.BatchTaskCreateOptions(
        id=f"Task{i}", command_line=sh(f"$AZ_BATCH_NODE_SHARED_DIR/count.sh {name}"),
        resource_files=[m.ResourceFile(http_url=blob_sas_url(server, "input", name), file_path=name)],
        output_files=[output(f"{name}.count", out_url, f"counts/{name}.count", m.OutputFileUploadCondition.TASK_SUCCESS)])
        for i, name in enumerate(texts)]
    result = client.create_tasks("tutorial", tasks)
    assert all(r.status == m.BatchTaskAddStatus.SUCCESS for r in result.result_values or [])
    done = completed(client, "tutorial", *(f"Task{i}" for i in range(3)))
    assert all(ex(t).result == m.BatchTaskExecutionResult.SUCCESS for t in done), [t.execution_info for t in done]
    assert len({node_of(t) for t in done}) == 3  # spread over the pool
    for i, (name, data) in enumerate(texts.items()):
        stdout = b"".join(client.download_task_file("tutorial", f"Task{i}", "stdout.txt"))
        assert stdout.decode() == f"{len(data.split())} words in {name}\n"
        blob = blobs.get_blob_client("output", f"counts/{name}.count").download_blob().readall()
        assert blob.decode().strip() == str(len(data.split()))
    names = {f.name for f in client.list_task_files("tutorial", "Task0", recursive=True)}
    assert {"stdout.txt", "stderr.txt", "wd", "wd/taskfile_0.txt", "wd/taskfile_0.txt.count"} <= names
    props = client.get_task_file_properties("tutorial", "Task0", "stdout.txt")
    assert props.content_length == len("3 words in taskfile_0.txt\n")
    node_files = {f.name for f in client.list_node_files("tutorial", node_of(done[0]), recursive=True)}
    assert {"startup/stdout.txt", "shared/count.sh"} <= node_files
    client.begin_delete_job("tutorial", polling_interval=POLL).result()
    client.begin_delete_pool("tutorial", polling_interval=POLL).result()
    with pytest.raises(ResourceNotFoundError):
        client.get_pool("tutorial")


def test_output_files_follow_their_upload_condition(client: BatchClient, blobs: BlobServiceClient,
                                                    server: LiveServer) -> None:
    blobs.create_container("conditions")
    url = container_sas_url(server, "conditions", ContainerSasPermissions(write=True, create=True))
    make_pool(client, "outputs", slots=2)
    client.create_job(m.BatchJobCreateOptions(id="outputs", pool_info=m.BatchPoolInfo(pool_id="outputs")))
    conditions = {"ok": m.OutputFileUploadCondition.TASK_SUCCESS, "bad": m.OutputFileUploadCondition.TASK_FAILURE,
                  "any": m.OutputFileUploadCondition.TASK_COMPLETION}
    for task, code in (("good", 0), ("failing", 1)):
        client.create_task("outputs", m.BatchTaskCreateOptions(
            id=task, command_line=sh(f"echo {task} > result.txt; exit {code}"),
            output_files=[output("result.txt", url, f"{task}/{label}.txt", cond) for label, cond in conditions.items()]
            + [output("../std*.txt", url, f"{task}/logs", m.OutputFileUploadCondition.TASK_COMPLETION)]))
    ran = completed(client, "outputs", "good", "failing")
    names = {b.name for b in blobs.get_container_client("conditions").list_blobs()}
    assert ex(ran[0]).exit_code == 0 and ex(ran[1]).exit_code == 1, [t.execution_info for t in ran]
    assert names == {"good/ok.txt", "good/any.txt", "good/logs/stdout.txt", "good/logs/stderr.txt",
                     "failing/bad.txt", "failing/any.txt", "failing/logs/stdout.txt", "failing/logs/stderr.txt"}
    assert blobs.get_blob_client("conditions", "failing/bad.txt").download_blob().readall() == b"failing\n"
    client.create_task("outputs", m.BatchTaskCreateOptions(
        id="denied", command_line=sh("echo x > result.txt"),
        output_files=[output("result.txt", f"{server.blob_url}/conditions", "denied.txt",
                             m.OutputFileUploadCondition.TASK_COMPLETION)]))
    (denied,) = completed(client, "outputs", "denied")
    assert ex(denied).result == m.BatchTaskExecutionResult.FAILURE
    assert (failure(denied).code or "").startswith("FileUpload")
    assert ex(denied).exit_code == 0


def test_resource_file_and_program_failures(client: BatchClient, server: LiveServer, blobs: BlobServiceClient) -> None:
    blobs.create_container("sparse")
    make_pool(client, "failures", slots=3)
    client.create_job(m.BatchJobCreateOptions(id="failures", pool_info=m.BatchPoolInfo(pool_id="failures")))
    client.create_tasks("failures", [
        m.BatchTaskCreateOptions(id="noblob", command_line="/bin/true", resource_files=[
            m.ResourceFile(http_url=blob_sas_url(server, "sparse", "missing.txt"), file_path="missing.txt")]),
        m.BatchTaskCreateOptions(id="noprogram", command_line="/definitely/not/here arg"),
        m.BatchTaskCreateOptions(id="denied", command_line="/bin/true", resource_files=[
            m.ResourceFile(http_url=f"{server.blob_url}/sparse/secret.txt", file_path="secret.txt")]),
    ])
    noblob, noprogram, denied = completed(client, "failures", "noblob", "noprogram", "denied")
    assert failure(noblob).code == "BlobNotFound"
    assert failure(noblob).category == m.BatchErrorSourceCategory.USER_ERROR
    assert ex(noblob).exit_code is None
    assert failure(noprogram).code == "CommandProgramNotFound"
    assert failure(denied).code in ("BlobAccessDenied", "BlobNotFound")
    for t in (noblob, noprogram, denied):
        assert ex(t).result == m.BatchTaskExecutionResult.FAILURE


def test_retries_timeout_and_terminate(client: BatchClient) -> None:
    make_pool(client, "limits", slots=3)
    client.create_job(m.BatchJobCreateOptions(id="limits", pool_info=m.BatchPoolInfo(pool_id="limits")))
    client.create_tasks("limits", [
        m.BatchTaskCreateOptions(id="retried", command_line=sh("exit 5"),
                                 constraints=m.BatchTaskConstraints(max_task_retry_count=2)),
        m.BatchTaskCreateOptions(id="timeout", command_line=sh("sleep 60"),
                                 constraints=m.BatchTaskConstraints(max_wall_clock_time=dt.timedelta(seconds=1))),
        m.BatchTaskCreateOptions(id="terminated", command_line=sh("sleep 60 & wait")),
    ])
    wait_for(lambda: client.get_task("limits", "terminated").state == m.BatchTaskState.RUNNING, "terminated running")
    client.terminate_task("limits", "terminated")
    retried, timeout, terminated = completed(client, "limits", "retried", "timeout", "terminated")
    assert ex(retried).retry_count == 2 and ex(retried).exit_code == 5
    assert ex(retried).last_retry_time is not None
    assert failure(timeout).code == "TaskEnded"
    assert ex(timeout).result == m.BatchTaskExecutionResult.FAILURE
    assert failure(terminated).code == "TaskEnded"
    wait_for(lambda: client.get_node("limits", node_of(terminated)).running_tasks_count == 0, "node freed")


def test_job_preparation_and_release_status(client: BatchClient) -> None:
    make_pool(client, "prep", nodes=2)
    client.create_job(m.BatchJobCreateOptions(
        id="prep", pool_info=m.BatchPoolInfo(pool_id="prep"),
        job_preparation_task=m.BatchJobPreparationTask(command_line=sh("echo prep > $AZ_BATCH_NODE_SHARED_DIR/prep")),
        job_release_task=m.BatchJobReleaseTask(command_line=sh("echo release"))))
    client.create_tasks("prep", [m.BatchTaskCreateOptions(id=f"t{i}", command_line=sh("cat $AZ_BATCH_NODE_SHARED_DIR/prep"))
                                 for i in range(2)])
    done = completed(client, "prep", "t0", "t1")
    assert {node_of(t) for t in done} == {n.id for n in client.list_nodes("prep")}
    # 15.1 cannot send a terminate without options (it serializes a None content type)
    client.begin_terminate_job("prep", BatchJobTerminateOptions(termination_reason="Done"), polling_interval=POLL).result()
    job = client.get_job("prep")
    assert job.state == m.BatchJobState.COMPLETED and job.execution_info
    assert job.execution_info.termination_reason == "Done"
    statuses = list(client.list_job_preparation_and_release_task_status("prep"))
    assert len(statuses) == 2
    for status in statuses:
        prep = status.job_preparation_task_execution_info
        release = status.job_release_task_execution_info
        assert prep and release and status.node_id
        assert prep.state == m.BatchJobPreparationTaskState.COMPLETED and prep.exit_code == 0
        assert release.state == m.BatchJobReleaseTaskState.COMPLETED and release.exit_code == 0
        assert status.pool_id == "prep"
        out = b"".join(client.download_node_file("prep", status.node_id, "workitems/prep/job-1/jobrelease/stdout.txt"))
        assert out == b"release\n"


def test_pack_spread_and_required_slots(client: BatchClient, server: LiveServer) -> None:
    make_pool(client, "packed", nodes=2, slots=4,
              task_scheduling_policy=m.BatchTaskSchedulingPolicy(node_fill_type=m.BatchNodeFillType.PACK))
    client.create_job(m.BatchJobCreateOptions(id="packed", pool_info=m.BatchPoolInfo(pool_id="packed")))
    gate = server.data_dir.parent / "pack-gate"
    hold = sh(f"while [ ! -e {gate} ]; do sleep 0.05; done")
    client.create_tasks("packed", [m.BatchTaskCreateOptions(id=f"t{i}", command_line=hold) for i in range(3)])
    wait_for(lambda: all(client.get_task("packed", f"t{i}").state == "running" for i in range(3)), "packed running")
    assert len({node_of(client.get_task("packed", f"t{i}")) for i in range(3)}) == 1
    client.create_task("packed", m.BatchTaskCreateOptions(id="wide", command_line=hold, required_slots=3))
    wait_for(lambda: client.get_task("packed", "wide").state == "running", "the 3-slot task running")
    used = {n.id: n.running_task_slots_count or 0 for n in client.list_nodes("packed")}
    assert sorted(used.values()) == [3, 3]
    client.create_task("packed", m.BatchTaskCreateOptions(id="toowide", command_line=hold, required_slots=2))
    time.sleep(0.3)
    assert client.get_task("packed", "toowide").state == "active"
    gate.touch()
    completed(client, "packed", "t0", "t1", "t2", "wide", "toowide")


def test_reboot_and_resize_requeue_running_tasks(client: BatchClient, server: LiveServer) -> None:
    make_pool(client, "requeue", nodes=2)
    client.create_job(m.BatchJobCreateOptions(id="requeue", pool_info=m.BatchPoolInfo(pool_id="requeue")))
    gate = server.data_dir.parent / "requeue-gate"
    hold = sh(f"while [ ! -e {gate} ]; do sleep 0.05; done")
    client.create_tasks("requeue", [m.BatchTaskCreateOptions(id=f"t{i}", command_line=hold) for i in range(2)])
    wait_for(lambda: all(client.get_task("requeue", f"t{i}").state == "running" for i in range(2)), "both running")
    victim = node_of(client.get_task("requeue", "t0"))
    client.begin_reboot_node("requeue", victim, BatchNodeRebootOptions(node_reboot_kind="requeue"),
                             polling_interval=POLL).result()
    wait_for(lambda: ex(client.get_task("requeue", "t0")).requeue_count == 1, "t0 requeued")
    wait_for(lambda: client.get_task("requeue", "t0").state == "running", "t0 running again")
    client.begin_resize_pool("requeue", m.BatchPoolResizeOptions(
        target_dedicated_nodes=1, node_deallocation_option=m.BatchNodeDeallocationOption.REQUEUE),
        polling_interval=POLL).result()
    pool = client.get_pool("requeue")
    assert pool.allocation_state == m.AllocationState.STEADY and pool.current_dedicated_nodes == 1
    gate.touch()
    done = completed(client, "requeue", "t0", "t1")
    assert sum(ex(t).requeue_count for t in done) >= 2
    assert all(ex(t).result == m.BatchTaskExecutionResult.SUCCESS for t in done), [t.execution_info for t in done]


def test_all_tasks_complete_ends_the_job_and_delete_removes_it(client: BatchClient) -> None:
    make_pool(client, "ending", slots=2)
    client.create_job(m.BatchJobCreateOptions(id="ending", pool_info=m.BatchPoolInfo(pool_id="ending")))
    client.create_tasks("ending", [m.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/true") for i in range(4)])
    completed(client, "ending", *(f"t{i}" for i in range(4)))
    client.update_job("ending", m.BatchJobUpdateOptions(all_tasks_complete_mode=m.BatchAllTasksCompleteMode.TERMINATE_JOB))
    wait_for(lambda: client.get_job("ending").state == m.BatchJobState.COMPLETED, "the job to complete")
    info = client.get_job("ending").execution_info
    assert info and info.termination_reason == "AllTasksComplete"
    client.begin_delete_job("ending", polling_interval=POLL).result()
    with pytest.raises(ResourceNotFoundError):
        client.get_job("ending")


def test_a_task_writing_a_lot_costs_the_server_no_memory(client: BatchClient, server: LiveServer) -> None:
    assert server.proc is not None
    proc = psutil.Process(server.proc.pid)
    make_pool(client, "loud")
    client.create_job(m.BatchJobCreateOptions(id="loud", pool_info=m.BatchPoolInfo(pool_id="loud")))
    before = proc.memory_info().rss
    size = 100_000_000
    client.create_task("loud", m.BatchTaskCreateOptions(id="loud", command_line=f"/usr/bin/head -c {size} /dev/zero"))
    (task,) = completed(client, "loud", "loud")
    assert ex(task).result == m.BatchTaskExecutionResult.SUCCESS
    assert proc.memory_info().rss - before < 30_000_000
    assert client.get_task_file_properties("loud", "loud", "stdout.txt").content_length == size
    assert b"".join(client.download_task_file("loud", "loud", "stdout.txt", ocp_range="bytes=10-19")) == b"\0" * 10
    client.delete_task_file("loud", "loud", "stdout.txt")
    with pytest.raises(ResourceNotFoundError):
        client.get_task_file_properties("loud", "loud", "stdout.txt")


LEGACY_TUTORIAL = """
import json, os, time
import azure.batch.batch_service_client as batch
import azure.batch.batch_auth as batchauth
import azure.batch.models as bm

client = batch.BatchServiceClient(batchauth.SharedKeyCredentials(os.environ["OB_ACCOUNT"], os.environ["OB_KEY"]),
                                  base_url=os.environ["OB_BATCH_URL"])
urls = json.loads(os.environ["OB_URLS"])
sku = list(client.account.list_node_agent_skus())[0]
start = bm.StartTask(command_line="/bin/sh -c 'cp -p count.sh $AZ_BATCH_NODE_SHARED_DIR'", run_elevated=True,
                     wait_for_success=True, resource_files=[bm.ResourceFile(blob_source=urls["program"],
                                                                            file_path="count.sh")])
client.pool.add(bm.PoolAddParameter(
    id="legacy", vm_size="STANDARD_A1", target_dedicated=2, start_task=start,
    virtual_machine_configuration=bm.VirtualMachineConfiguration(
        image_reference=sku.verified_image_references[0], node_agent_sku_id=sku.id)))
client.job.add(bm.JobAddParameter(id="legacy", pool_info=bm.PoolInformation(pool_id="legacy")))
client.task.add_collection("legacy", [
    bm.TaskAddParameter(id=f"task{i}", command_line=f"/bin/sh -c '$AZ_BATCH_NODE_SHARED_DIR/count.sh {name}'",
                        resource_files=[bm.ResourceFile(blob_source=url, file_path=name)])
    for i, (name, url) in enumerate(sorted(urls["inputs"].items()))])
deadline = time.time() + 60
while time.time() < deadline:
    tasks = list(client.task.list("legacy"))
    if tasks and all(t.state == bm.TaskState.completed for t in tasks):
        break
    time.sleep(0.1)
out = {t.id: {"exit": t.execution_info.exit_code, "node": t.node_info.node_id,
              "stdout": b"".join(client.file.get_from_task("legacy", t.id, "stdout.txt")).decode()} for t in tasks}
nodes = [n.state.value for n in client.compute_node.list("legacy")]
print(json.dumps({"tasks": out, "nodes": nodes, "dedicated": client.pool.get("legacy").current_dedicated}))
"""


def test_tutorial_with_the_2016_sdk(server: LiveServer, blobs: BlobServiceClient) -> None:
    """The original tutorial's generation: targetDedicated, runElevated start task, blobSource files."""
    blobs.create_container("legacy")
    blobs.get_blob_client("legacy", "count.sh").upload_blob(b"#!/bin/sh\nwc -w < \"$1\"\n")
    inputs = {}
    for i in range(2):
        name = f"in{i}.txt"
        blobs.get_blob_client("legacy", name).upload_blob(" ".join(["w"] * (i + 2)).encode())
        inputs[name] = blob_sas_url(server, "legacy", name)
    urls = {"program": blob_sas_url(server, "legacy", "count.sh"), "inputs": inputs}
    env = {"OB_ACCOUNT": server.account, "OB_KEY": server.key, "OB_BATCH_URL": server.batch_url,
           "OB_URLS": json.dumps(urls)}
    out = run_script("legacy", LEGACY_TUTORIAL, env)
    assert out["dedicated"] == 2 and sorted(out["nodes"]) == ["idle", "idle"]
    assert out["tasks"]["task0"] == {"exit": 0, "node": out["tasks"]["task0"]["node"], "stdout": "2\n"}
    assert out["tasks"]["task1"]["stdout"] == "3\n" and out["tasks"]["task1"]["exit"] == 0
    assert out["tasks"]["task0"]["node"] != out["tasks"]["task1"]["node"]
