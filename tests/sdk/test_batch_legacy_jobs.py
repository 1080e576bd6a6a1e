"""Jobs, tasks and files through azure-batch 1.0.0 (api-version 2016-07-01.3.1: ``runElevated``,
``blobSource``, ``schedulingError``) and 14.2.0 (2024-02-01.19.0: msrest models with the modern
names, ``add_collection`` chunking with threads, task counts), each in its cached venv.

Each script runs one generation's whole workflow against one live server and prints what it saw;
the assertions are here. Tasks really run, on a one-node pool."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.server import LiveServer
from tests.helpers.venvs import run_script

COMMON = """
import json, os, time

def dump(doc):
    print(json.dumps(doc, default=lambda o: getattr(o, "value", str(o))))

def error_of(fn, *args, **kwargs):
    try:
        result = fn(*args, **kwargs)
        if hasattr(result, "__next__"):
            list(result)
    except bm.BatchErrorException as exc:
        values = {v.key: v.value for v in (exc.error.values or [])}
        return {"status": exc.response.status_code, "code": exc.error.code, "values": values}
    return None

def wait(predicate, timeout=60, describe=None):
    import inspect
    where = inspect.stack()[1].lineno
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit("timed out waiting at script line %d: %s" % (where, describe() if describe else ""))

def state(obj):
    value = obj.state
    return getattr(value, "value", value)
"""

LEGACY = COMMON.replace("import json, os, time", """import json, os, time
import azure.batch.batch_service_client as batch
import azure.batch.batch_auth as batchauth
import azure.batch.models as bm

client = batch.BatchServiceClient(batchauth.SharedKeyCredentials(os.environ["OB_ACCOUNT"], os.environ["OB_KEY"]),
                                  base_url=os.environ["OB_BATCH_URL"])""") + """
out = {}
sku = [s for s in client.account.list_node_agent_skus() if s.id == "batch.node.ubuntu 22.04"][0]
image = sku.verified_image_references[0]
client.pool.add(bm.PoolAddParameter(
    id="legacy-pool", vm_size="STANDARD_A1", target_dedicated=1,
    virtual_machine_configuration=bm.VirtualMachineConfiguration(image_reference=image, node_agent_sku_id=sku.id)))
wait(lambda: [n for n in client.compute_node.list("legacy-pool") if state(n) == "idle"])

client.job.add(bm.JobAddParameter(id="legacy-job", pool_info=bm.PoolInformation(pool_id="legacy-pool"),
                                  priority=10, metadata=[bm.MetadataItem("k", "v")]))
job = client.job.get("legacy-job")
out["job"] = {"id": job.id, "state": state(job), "priority": job.priority, "pool": job.pool_info.pool_id}
out["job_errors"] = {
    "exists": error_of(client.job.add, bm.JobAddParameter(id="LEGACY-JOB", pool_info=bm.PoolInformation(pool_id="p"))),
    "priority": error_of(client.job.add, bm.JobAddParameter(id="p2", priority=2000,
                                                            pool_info=bm.PoolInformation(pool_id="p"))),
    "missing": error_of(client.job.get, "no-such-job"),
}
client.job.patch("legacy-job", bm.JobPatchParameter(priority=20))
out["patched_priority"] = client.job.get("legacy-job").priority

tasks = [bm.TaskAddParameter(id="t%d" % i, command_line="/bin/sh -c 'echo task %d'" % i, run_elevated=(i == 0))
         for i in range(3)]
tasks.append(bm.TaskAddParameter(id="t0", command_line="/bin/true"))
tasks.append(bm.TaskAddParameter(id="bad id", command_line="/bin/true"))
result = client.task.add_collection("legacy-job", tasks)
out["add_results"] = sorted([r.task_id, getattr(r.status, "value", r.status), r.error.code if r.error else None]
                            for r in result.value)
client.task.add("legacy-job", bm.TaskAddParameter(
    id="fetcher", command_line="/bin/sh -c 'cat data.txt'",
    resource_files=[bm.ResourceFile(blob_source=os.environ["OB_DATA_URL"], file_path="data.txt")]))
client.task.add("legacy-job", bm.TaskAddParameter(id="missing-program", command_line="/no/such/program"))

def all_done():
    listed = list(client.task.list("legacy-job"))
    return len(listed) == 5 and all(state(t) == "completed" for t in listed) and listed
listed = wait(all_done)
out["tasks"] = {t.id: {"exit": t.execution_info.exit_code,
                       "scheduling_error": t.execution_info.scheduling_error.code
                       if t.execution_info.scheduling_error else None,
                       "run_elevated": t.run_elevated} for t in listed}
filtered = client.task.list("legacy-job", task_list_options=bm.TaskListOptions(filter="state eq 'completed'",
                                                                                 max_results=2))
out["filtered_count"] = len(list(filtered))
out["stdout"] = b"".join(client.file.get_from_task("legacy-job", "t1", "stdout.txt")).decode()
t1 = client.task.get("legacy-job", "t1")
out["t1"] = {"retries": t1.execution_info.retry_count, "requeues": t1.execution_info.requeue_count,
             "start": str(t1.execution_info.start_time), "end": str(t1.execution_info.end_time),
             "stderr": b"".join(client.file.get_from_task("legacy-job", "t1", "stderr.txt")).decode()}
out["fetched"] = b"".join(client.file.get_from_task("legacy-job", "fetcher", "stdout.txt")).decode()
out["files"] = sorted(f.name for f in client.file.list_from_task("legacy-job", "t1", recursive=True))
props = client.file.get_node_file_properties_from_task("legacy-job", "t1", "stdout.txt", raw=True)
out["props"] = {k.lower(): v for k, v in props.headers.items() if k.lower().startswith("ocp-batch-file")}
out["file_missing"] = error_of(client.file.get_from_task, "legacy-job", "t1", "nope.txt")

out["update_completed"] = error_of(client.task.update, "legacy-job", "t2",
                                   constraints=bm.TaskConstraints(max_task_retry_count=3))
client.task.delete("legacy-job", "t2")
out["deleted"] = error_of(client.task.get, "legacy-job", "t2")
out["subtasks"] = list(client.task.list_subtasks("legacy-job", "t1").value or [])

client.job.terminate("legacy-job")
out["terminated"] = state(wait(lambda: (lambda j: j if state(j) == "completed" else None)(
    client.job.get("legacy-job"))))
out["late_add"] = error_of(client.task.add, "legacy-job", bm.TaskAddParameter(id="late", command_line="x"))
client.job.delete("legacy-job")
wait(lambda: error_of(client.job.get, "legacy-job"))
out["jobs_after_delete"] = [j.id for j in client.job.list()]
dump(out)
"""

V14 = COMMON.replace("import json, os, time", """import json, os, time
from azure.batch import BatchServiceClient
from azure.batch.batch_auth import SharedKeyCredentials
import azure.batch.models as bm

client = BatchServiceClient(SharedKeyCredentials(os.environ["OB_ACCOUNT"], os.environ["OB_KEY"]),
                            batch_url=os.environ["OB_BATCH_URL"])""") + """
out = {}
client.pool.add(bm.PoolAddParameter(
    id="v14-pool", vm_size="STANDARD_D2S_V3", target_dedicated_nodes=1, task_slots_per_node=4,
    virtual_machine_configuration=bm.VirtualMachineConfiguration(
        image_reference=bm.ImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy",
                                          sku="22_04-lts"),
        node_agent_sku_id="batch.node.ubuntu 22.04")))
node = wait(lambda: [n for n in client.compute_node.list("v14-pool") if state(n) == "idle"])[0]

client.job.add(bm.JobAddParameter(
    id="v14-job", pool_info=bm.PoolInformation(pool_id="v14-pool"),
    job_preparation_task=bm.JobPreparationTask(command_line="/bin/sh -c 'echo prep'"),
    job_release_task=bm.JobReleaseTask(command_line="/bin/sh -c 'echo release'"),
    constraints=bm.JobConstraints(max_task_retry_count=1)))
result = client.task.add_collection("v14-job", [
    bm.TaskAddParameter(id="t%03d" % i, command_line="/bin/sh -c 'exit %d'" % (1 if i == 0 else 0),
                        required_slots=1 + (i % 2))
    for i in range(150)], threads=2)
out["added"] = len(result.value)
out["add_statuses"] = sorted({getattr(r.status, "value", r.status) for r in result.value})
wait(lambda: all(state(t) == "completed" for t in client.task.list("v14-job")), timeout=120,
     describe=lambda: [(t.id, state(t), t.execution_info.retry_count, t.execution_info.requeue_count)
                       for t in client.task.list("v14-job") if state(t) != "completed"])
counts = client.job.get_task_counts("v14-job")
out["failures"] = [(t.id, t.execution_info.exit_code, t.execution_info.failure_info.code, t.execution_info.failure_info.message)
                   for t in client.task.list("v14-job", task_list_options=bm.TaskListOptions(
                       filter="executionInfo/result eq 'failure'"))]
out["counts"] = {"completed": counts.task_counts.completed, "succeeded": counts.task_counts.succeeded,
                 "failed": counts.task_counts.failed, "slots_completed": counts.task_slot_counts.completed}
failed = client.task.get("v14-job", "t000")
out["failed"] = {"exit": failed.execution_info.exit_code, "retries": failed.execution_info.retry_count,
                 "result": getattr(failed.execution_info.result, "value", failed.execution_info.result)}
client.task.reactivate("v14-job", "t000")
out["reactivated"] = state(client.task.get("v14-job", "t000"))
out["reactivate_succeeded"] = error_of(client.task.reactivate, "v14-job", "t001")
wait(lambda: state(client.task.get("v14-job", "t000")) == "completed")
page = client.task.list("v14-job", task_list_options=bm.TaskListOptions(
    filter="executionInfo/exitCode eq 1", select="id,executionInfo"))
out["exit1"] = sorted(t.id for t in page)
statuses = list(client.job.list_preparation_and_release_task_status("v14-job"))
out["prep"] = [(s.node_id, getattr(s.job_preparation_task_execution_info.state, "value", None))
               for s in statuses]
out["node_id"] = node.id
out["node_files"] = sorted(f.name for f in client.file.list_from_compute_node("v14-pool", node.id))
out["task_file"] = b"".join(client.file.get_from_task("v14-job", "t001", "stdout.txt")).decode()
client.job.disable("v14-job", "requeue")
out["disabled"] = state(wait(lambda: (lambda j: j if state(j) == "disabled" else None)(client.job.get("v14-job"))))
client.job.enable("v14-job")
out["enabled"] = state(client.job.get("v14-job"))
client.job.update("v14-job", bm.JobUpdateParameter(pool_info=bm.PoolInformation(pool_id="v14-pool"), priority=5))
job = client.job.get("v14-job")
out["updated"] = {"priority": job.priority, "retries": job.constraints.max_task_retry_count}
client.job.delete("v14-job")
wait(lambda: error_of(client.job.get, "v14-job"))
out["gone"] = error_of(client.job.get, "v14-job")
dump(out)
"""


def env(server: LiveServer, **extra: str) -> dict[str, str]:
    return {"OB_ACCOUNT": server.account, "OB_KEY": server.key, "OB_BATCH_URL": server.batch_url, **extra}


@pytest.fixture(scope="module")
def data_url(server: LiveServer) -> str:
    """A blob with a read SAS for the 1.0.0 resource file (``blobSource``)."""
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

    service = BlobServiceClient.from_connection_string(server.connection_string)
    container = service.create_container("legacy-jobs-input")
    container.upload_blob("data.txt", b"from the blob store\n")
    sas = generate_blob_sas(server.account, "legacy-jobs-input", "data.txt", account_key=server.key,
                            permission=BlobSasPermissions(read=True), expiry=datetime.now(UTC) + timedelta(hours=1))
    return f"{server.blob_url}/legacy-jobs-input/data.txt?{sas}"


def test_azure_batch_1_0_0_workflow(server: LiveServer, data_url: str) -> None:
    out: Any = run_script("legacy", LEGACY, env(server, OB_DATA_URL=data_url))
    assert out["job"] == {"id": "legacy-job", "state": "active", "priority": 10, "pool": "legacy-pool"}
    assert out["job_errors"]["exists"]["code"] == "JobExists" and out["job_errors"]["exists"]["status"] == 409
    assert out["job_errors"]["priority"]["code"] == "OutOfRangePriority"
    assert out["job_errors"]["missing"]["status"] == 404 and out["job_errors"]["missing"]["code"] == "JobNotFound"
    assert out["patched_priority"] == 20
    assert out["add_results"] == [
        ["bad id", "clienterror", "InvalidPropertyValue"], ["t0", "clienterror", "TaskExists"],
        ["t0", "success", None], ["t1", "success", None], ["t2", "success", None],
    ]
    assert out["tasks"]["t0"] == {"exit": 0, "scheduling_error": None, "run_elevated": True}
    assert out["tasks"]["t1"]["run_elevated"] is False
    assert out["tasks"]["missing-program"]["exit"] is None
    assert out["tasks"]["missing-program"]["scheduling_error"] == "CommandProgramNotFound"
    assert out["filtered_count"] == 5
    assert out["stdout"] == "task 1\n", out["t1"]
    assert out["fetched"] == "from the blob store\n"
    assert {"stdout.txt", "stderr.txt", "wd"} <= set(out["files"])
    assert out["props"]["ocp-batch-file-isdirectory"] is False
    assert out["file_missing"]["status"] == 404 and out["file_missing"]["code"] == "FileNotFound"
    assert out["update_completed"]["code"] == "TaskCompleted"
    assert out["deleted"]["code"] == "TaskNotFound" and out["subtasks"] == []
    assert out["terminated"] == "completed"
    assert out["late_add"]["status"] == 409 and out["late_add"]["code"] == "JobCompleted"
    assert "legacy-job" not in out["jobs_after_delete"]


def test_azure_batch_14_workflow(server: LiveServer) -> None:
    out: Any = run_script("batch14", V14, env(server))
    assert out["added"] == 150 and out["add_statuses"] == ["success"]
    assert out["counts"] == {"completed": 150, "succeeded": 149, "failed": 1, "slots_completed": 225}, out["failures"]
    assert out["failed"] == {"exit": 1, "retries": 1, "result": "failure"}
    assert out["reactivated"] in ("active", "running", "completed")
    assert out["reactivate_succeeded"]["status"] == 409
    assert out["reactivate_succeeded"]["code"] == "OperationInvalidForCurrentState"
    assert out["exit1"] == ["t000"]
    assert out["prep"] == [[out["node_id"], "completed"]]
    assert {"shared", "startup", "workitems"} <= set(out["node_files"])
    assert out["task_file"] == ""
    assert out["disabled"] == "disabled" and out["enabled"] == "active"
    assert out["updated"] == {"priority": 5, "retries": 0}
    assert out["gone"]["code"] == "JobNotFound"
