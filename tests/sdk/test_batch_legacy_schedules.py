"""Job schedules and auto pools through azure-batch 1.0.0 (api-version 2016-07-01.3.1:
``targetDedicated``, ``runElevated``, ``noAction``/``terminateJob``) and 14.2.0 (2024-02-01.19.0),
each in its cached venv, against a live server on the test clock.

Each generation runs two scripts: the first adds a recurring schedule whose jobs get their own
auto pool and a Job Manager task (job-1 runs on its pool, ends the job, and the pool goes with
it) and a plain job on an auto pool; the test then moves the service's clock an hour on, and the
second script finds job-2 and drives disable / enable / patch / update / terminate / delete."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.server import LiveServer
from tests.helpers.venvs import run_script
from tests.sdk.test_batch_legacy_jobs import COMMON, env

LEGACY_CLIENT = """import json, os, time, datetime
import azure.batch.batch_service_client as batch
import azure.batch.batch_auth as batchauth
import azure.batch.models as bm

client = batch.BatchServiceClient(batchauth.SharedKeyCredentials(os.environ["OB_ACCOUNT"], os.environ["OB_KEY"]),
                                  base_url=os.environ["OB_BATCH_URL"])
sku = [s for s in client.account.list_node_agent_skus() if s.id == "batch.node.ubuntu 22.04"][0]
VM = bm.VirtualMachineConfiguration(image_reference=sku.verified_image_references[0], node_agent_sku_id=sku.id)

def pool_spec():
    return bm.PoolSpecification(vm_size="STANDARD_A1", target_dedicated=1, virtual_machine_configuration=VM)

def pool_exists(pool_id):
    return client.pool.exists(pool_id)
"""

V14_CLIENT = """import json, os, time, datetime
from azure.batch import BatchServiceClient
from azure.batch.batch_auth import SharedKeyCredentials
import azure.batch.models as bm

client = BatchServiceClient(SharedKeyCredentials(os.environ["OB_ACCOUNT"], os.environ["OB_KEY"]),
                            batch_url=os.environ["OB_BATCH_URL"])
VM = bm.VirtualMachineConfiguration(
    image_reference=bm.ImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts"),
    node_agent_sku_id="batch.node.ubuntu 22.04")

def pool_spec():
    return bm.PoolSpecification(vm_size="STANDARD_D2S_V3", target_dedicated_nodes=1, task_slots_per_node=2,
                                virtual_machine_configuration=VM)

def pool_exists(pool_id):
    return client.pool.exists(pool_id)
"""

FIRST = """
out = {}
auto = bm.PoolInformation(auto_pool_specification=bm.AutoPoolSpecification(
    pool_lifetime_option="job", auto_pool_id_prefix="gen", pool=pool_spec()))
client.job_schedule.add(bm.JobScheduleAddParameter(
    id="gen-sched", display_name="generation",
    schedule=bm.Schedule(recurrence_interval=datetime.timedelta(hours=1), start_window=datetime.timedelta(minutes=30)),
    job_specification=bm.JobSpecification(
        pool_info=auto, priority=5, display_name="scheduled",
        job_manager_task=bm.JobManagerTask(id="jm", command_line="/bin/sh -c 'echo $AZ_BATCH_JOB_ID'",
                                           kill_job_on_completion=False),
        metadata=[bm.MetadataItem(name="spec", value="1")]),
    metadata=[bm.MetadataItem(name="owner", value="gen")]))
out["exists"] = [client.job_schedule.exists("gen-sched"), client.job_schedule.exists("no-such-schedule")]
s = client.job_schedule.get("gen-sched")
out["schedule"] = {"id": s.id, "state": state(s), "display": s.display_name,
                   "every": str(s.schedule.recurrence_interval), "window": str(s.schedule.start_window),
                   "recent": s.execution_info.recent_job.id,
                   "next_after_creation": str(s.execution_info.next_run_time - s.creation_time),
                   "spec_priority": s.job_specification.priority,
                   "prefix": s.job_specification.pool_info.auto_pool_specification.auto_pool_id_prefix,
                   "metadata": [[i.name, i.value] for i in s.metadata]}
wait(lambda: state(client.task.get("gen-sched:job-1", "jm")) == "completed")
out["jm_stdout"] = b"".join(client.file.get_from_task("gen-sched:job-1", "jm", "stdout.txt")).decode()
client.job.terminate("gen-sched:job-1")
job = wait(lambda: (lambda j: j if state(j) == "completed" else None)(client.job.get("gen-sched:job-1")))
out["job1"] = {"id": job.id, "reason": job.execution_info.terminate_reason, "priority": job.priority,
               "display": job.display_name, "pool": job.execution_info.pool_id,
               "pool_info_id": job.pool_info.pool_id, "metadata": [[i.name, i.value] for i in job.metadata]}
wait(lambda: not pool_exists(job.execution_info.pool_id))
out["listed"] = [j.id for j in client.job.list_from_job_schedule("gen-sched")]
out["schedules"] = [x.id for x in client.job_schedule.list(
    job_schedule_list_options=bm.JobScheduleListOptions(filter="state eq 'active'"))]

client.job.add(bm.JobAddParameter(id="gen-auto-job", pool_info=auto))
auto_job = client.job.get("gen-auto-job")
client.task.add("gen-auto-job", bm.TaskAddParameter(id="t", command_line="/bin/sh -c 'echo auto'"))
wait(lambda: state(client.task.get("gen-auto-job", "t")) == "completed")
out["auto_job"] = {"pool": auto_job.execution_info.pool_id, "pool_info_id": auto_job.pool_info.pool_id,
                   "stdout": b"".join(client.file.get_from_task("gen-auto-job", "t", "stdout.txt")).decode(),
                   "node_pool": client.task.get("gen-auto-job", "t").node_info.pool_id}
client.job.delete("gen-auto-job")
wait(lambda: not pool_exists(auto_job.execution_info.pool_id))
wait(lambda: error_of(client.job.get, "gen-auto-job"))
uncertain = pool_spec()
uncertain.certificate_references = [bm.CertificateReference(thumbprint="0" * 40, thumbprint_algorithm="sha1")]
client.job.add(bm.JobAddParameter(id="gen-no-cert", pool_info=bm.PoolInformation(
    auto_pool_specification=bm.AutoPoolSpecification(pool_lifetime_option="job", pool=uncertain))))
failed = client.job.get("gen-no-cert")
out["no_cert"] = {"state": state(failed), "code": failed.execution_info.scheduling_error.code,
                  "category": getattr(failed.execution_info.scheduling_error.category, "value",
                                      failed.execution_info.scheduling_error.category)}
client.job.delete("gen-no-cert")
out["bad_lifetime"] = error_of(client.job.add, bm.JobAddParameter(id="bad", pool_info=bm.PoolInformation(
    auto_pool_specification=bm.AutoPoolSpecification(pool_lifetime_option="jobschedule", pool=pool_spec()))))
dump(out)
"""

SECOND = """
out = {}
job = wait(lambda: (lambda ids: "gen-sched:job-2" in ids and client.job.get("gen-sched:job-2"))(
    [j.id for j in client.job.list_from_job_schedule("gen-sched")]))
out["job2_pool"] = job.execution_info.pool_id
client.job_schedule.disable("gen-sched")
out["disabled"] = state(client.job_schedule.get("gen-sched"))
client.job_schedule.enable("gen-sched")
out["enabled"] = state(client.job_schedule.get("gen-sched"))
client.job_schedule.patch("gen-sched", bm.JobSchedulePatchParameter(metadata=[bm.MetadataItem(name="n", value="2")]))
out["patched"] = [[i.name, i.value] for i in client.job_schedule.get("gen-sched").metadata]
client.job_schedule.update("gen-sched", bm.JobScheduleUpdateParameter(
    schedule=bm.Schedule(recurrence_interval=datetime.timedelta(hours=2)),
    job_specification=bm.JobSpecification(pool_info=bm.PoolInformation(pool_id="elsewhere"), priority=1)))
s = client.job_schedule.get("gen-sched")
out["updated"] = {"every": str(s.schedule.recurrence_interval), "pool": s.job_specification.pool_info.pool_id,
                  "metadata": s.metadata}
client.job_schedule.terminate("gen-sched")
s = wait(lambda: (lambda x: x if state(x) == "completed" else None)(client.job_schedule.get("gen-sched")))
out["terminated"] = {"state": state(s), "ended": s.execution_info.end_time is not None}
out["after_terminate"] = error_of(client.job_schedule.disable, "gen-sched")
client.job_schedule.delete("gen-sched")
wait(lambda: not client.job_schedule.exists("gen-sched"))
out["jobs_left"] = [j.id for j in client.job.list() if j.id.startswith("gen-sched:")]
out["missing"] = error_of(client.job_schedule.get, "gen-sched")
dump(out)
"""


TEST_CLOCK = True  # the module's server (tests/conftest.py) runs on the test clock


def script(generation: str, client: str, body: str) -> str:
    """The script of one generation, its schedule and job named after it (gen-sched -> legacy-sched)."""
    return COMMON.replace("import json, os, time", client) + body.replace('"gen-', f'"{generation}-')


def check_first(out: Any, name: str) -> None:
    assert out["exists"] == [True, False]
    schedule = out["schedule"]
    assert schedule["id"] == f"{name}-sched" and schedule["state"] == "active" and schedule["display"] == "generation"
    assert schedule["every"] == "1:00:00" and schedule["window"] == "0:30:00"
    assert schedule["recent"] == f"{name}-sched:job-1" and schedule["next_after_creation"] == "1:00:00"
    assert schedule["spec_priority"] == 5 and schedule["prefix"] == "gen"
    assert schedule["metadata"] == [["owner", "gen"]]
    job = out["job1"]
    assert job["reason"] == "UserTerminate" and job["priority"] == 5 and job["display"] == "scheduled"
    assert job["pool"].startswith("gen_") and job["pool_info_id"] is None and job["metadata"] == [["spec", "1"]]
    assert out["jm_stdout"] == f"{name}-sched:job-1\n"
    assert out["listed"] == [f"{name}-sched:job-1"] and f"{name}-sched" in out["schedules"]
    auto = out["auto_job"]
    assert auto["pool"].startswith("gen_") and auto["pool"] != job["pool"] and auto["pool_info_id"] is None
    assert auto["stdout"] == "auto\n" and auto["node_pool"] == auto["pool"]
    assert out["no_cert"] == {"state": "completed", "code": "InvalidCertificatesInAutoPool", "category": "usererror"}
    assert out["bad_lifetime"]["status"] == 400 and out["bad_lifetime"]["code"] == "InvalidPropertyValue"


def check_second(out: Any, first: Any) -> None:
    assert out["job2_pool"].startswith("gen_") and out["job2_pool"] != first["job1"]["pool"]
    assert out["disabled"] == "disabled" and out["enabled"] == "active"
    assert out["patched"] == [["n", "2"]]
    assert out["updated"] == {"every": "2:00:00", "pool": "elsewhere", "metadata": None}
    assert out["terminated"] == {"state": "completed", "ended": True}
    assert out["after_terminate"]["status"] == 409 and out["after_terminate"]["code"] == "JobScheduleCompleted"
    assert out["jobs_left"] == [] and out["missing"]["code"] == "JobScheduleNotFound"


@pytest.mark.parametrize("generation,client", [("legacy", LEGACY_CLIENT), ("batch14", V14_CLIENT)])
def test_schedules_and_auto_pools(server: LiveServer, generation: str, client: str) -> None:
    first: Any = run_script(generation, script(generation, client, FIRST), env(server))
    check_first(first, generation)
    server.advance_clock(3600)
    second: Any = run_script(generation, script(generation, client, SECOND), env(server))
    check_second(second, first)
