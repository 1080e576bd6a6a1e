"""Auto pools (``poolInfo.autoPoolSpecification``) of jobs with azure-batch 15.x against a live server:
the pool is made when the job is added (id ``{prefix}_{GUID}``, shown in ``executionInfo.poolId``),
the job's tasks run on its nodes, and the pool goes when the job completes or is deleted unless
``keepAlive``; a pool that cannot be made completes the job with Azure's scheduling error."""

from __future__ import annotations

import re
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.batch.models._models import BatchJobTerminateOptions  # not exported by 15.1
from azure.core.exceptions import ResourceNotFoundError

from tests.helpers.pools import IMAGE
from tests.helpers.waiting import wait_for
from tests.sdk.test_batch_jobs import error_code, fails

POLL: Any = 0.2  # seconds; the pollers sleep any number though typed int
GUID = r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}"


def auto(prefix: str | None = "ap", keep_alive: bool | None = None, **pool: Any) -> m.BatchPoolInfo:
    spec = m.BatchPoolSpecification(**{"vm_size": "standard_d2s_v3", "virtual_machine_configuration": IMAGE,
                                        "target_dedicated_nodes": 1, **pool})
    return m.BatchPoolInfo(auto_pool_specification=m.BatchAutoPoolSpecification(
        auto_pool_id_prefix=prefix, pool_lifetime_option=m.BatchPoolLifetimeOption.JOB, keep_alive=keep_alive,
        pool=spec))


def pool_of(client: BatchClient, job_id: str) -> str:
    job = client.get_job(job_id)
    assert job.execution_info is not None and job.execution_info.pool_id
    return job.execution_info.pool_id


def gone(client: BatchClient, pool_id: str) -> bool:
    try:
        client.get_pool(pool_id)
    except ResourceNotFoundError:
        return True
    return False


def run_task(client: BatchClient, job_id: str, command: str) -> m.BatchTask:
    client.create_task(job_id, m.BatchTaskCreateOptions(id="t1", command_line=command))
    return wait_for(lambda: (t := client.get_task(job_id, "t1")).state == m.BatchTaskState.COMPLETED and t,
                    f"the task of {job_id}")


def test_the_job_runs_on_its_auto_pool_which_goes_when_the_job_completes(client: BatchClient) -> None:
    client.create_job(m.BatchJobCreateOptions(id="on-auto", pool_info=auto(
        "ap", start_task=m.BatchStartTask(command_line="/bin/true"), metadata=[m.BatchMetadataItem(name="k",
                                                                                                  value="v")])))
    job = client.get_job("on-auto")
    assert job.state == m.BatchJobState.ACTIVE and job.pool_info.pool_id is None
    spec = job.pool_info.auto_pool_specification
    assert spec is not None and spec.auto_pool_id_prefix == "ap" and spec.keep_alive is False
    assert spec.pool_lifetime_option == m.BatchPoolLifetimeOption.JOB and spec.pool is not None
    pool_id = pool_of(client, "on-auto")
    assert re.fullmatch(f"ap_{GUID}", pool_id), pool_id
    pool = client.get_pool(pool_id)
    assert pool.vm_size == "standard_d2s_v3" and pool.target_dedicated_nodes == 1
    assert [(i.name, i.value) for i in pool.metadata or []] == [("k", "v")]
    task = run_task(client, "on-auto", "/bin/sh -c 'echo on the auto pool'")
    assert task.execution_info is not None and task.execution_info.exit_code == 0
    assert task.node_info is not None and task.node_info.pool_id == pool_id
    assert b"".join(client.download_task_file("on-auto", "t1", "stdout.txt")) == b"on the auto pool\n"
    client.begin_terminate_job("on-auto", BatchJobTerminateOptions(termination_reason="done"),
                               polling_interval=POLL).result(timeout=30)
    wait_for(lambda: gone(client, pool_id), "the auto pool to be deleted with its job")
    assert pool_of(client, "on-auto") == pool_id  # the job still names the pool it ran on


def test_keep_alive_keeps_the_pool_after_the_job(client: BatchClient) -> None:
    client.create_job(m.BatchJobCreateOptions(id="kept", pool_info=auto(None, keep_alive=True)))
    pool_id = pool_of(client, "kept")
    assert re.fullmatch(GUID, pool_id), pool_id  # no prefix: the GUID alone
    client.begin_terminate_job("kept", BatchJobTerminateOptions(termination_reason="done"),
                               polling_interval=POLL).result(timeout=30)
    assert client.get_job("kept").state == m.BatchJobState.COMPLETED
    assert client.get_pool(pool_id).state == m.BatchPoolState.ACTIVE
    client.begin_delete_pool(pool_id, polling_interval=POLL).result(timeout=30)


def test_deleting_the_job_deletes_its_auto_pool(client: BatchClient) -> None:
    client.create_job(m.BatchJobCreateOptions(id="deleted-with-pool", pool_info=auto("del")))
    pool_id = pool_of(client, "deleted-with-pool")
    wait_for(lambda: [n for n in client.list_nodes(pool_id) if n.state == m.BatchNodeState.IDLE], "a node")
    client.begin_delete_job("deleted-with-pool", polling_interval=POLL).result(timeout=60)
    wait_for(lambda: gone(client, pool_id), "the auto pool to be deleted with its job")


def test_a_job_manager_ends_the_job_and_its_pool(client: BatchClient) -> None:
    client.create_job(m.BatchJobCreateOptions(
        id="managed-auto", pool_info=auto("jm"),
        job_manager_task=m.BatchJobManagerTask(id="manager", command_line="/bin/sh -c 'echo managing'")))
    pool_id = pool_of(client, "managed-auto")
    job = wait_for(lambda: (j := client.get_job("managed-auto")).state == m.BatchJobState.COMPLETED and j,
                   "the job manager to end the job")
    assert job.execution_info is not None and job.execution_info.termination_reason == "JMComplete"
    wait_for(lambda: gone(client, pool_id), "the auto pool to be deleted with its job")


@pytest.mark.parametrize(
    "pool,code,prop",
    [
        ({"target_dedicated_nodes": 5000}, "InvalidAutoPoolSettings", "targetDedicatedNodes"),
        ({"vm_size": None}, "InvalidAutoPoolSettings", "vmSize"),
        ({"target_dedicated_nodes": None, "enable_auto_scale": True}, "InvalidAutoScaleFormulaInAutoPool",
         "autoScaleFormula"),
    ],
)
def test_a_pool_that_cannot_be_made_completes_the_job_with_a_scheduling_error(
        client: BatchClient, pool: dict[str, Any], code: str, prop: str) -> None:
    job_id = f"unmakeable-{code.lower()}-{prop.lower()}"
    before = {p.id for p in client.list_pools()}
    client.create_job(m.BatchJobCreateOptions(
        id=job_id, pool_info=auto("bad", **pool),
        job_manager_task=m.BatchJobManagerTask(id="manager", command_line="/bin/true")))
    job = client.get_job(job_id)
    assert job.state == m.BatchJobState.COMPLETED and job.execution_info is not None
    error = job.execution_info.scheduling_error
    assert error is not None and error.code == code and error.category == m.BatchErrorSourceCategory.USER_ERROR
    assert error.message and {d.name: d.value for d in error.details or []}.get("PropertyName") == prop
    assert job.execution_info.pool_id is None and job.execution_info.end_time is not None
    assert {p.id for p in client.list_pools()} == before  # no pool was made
    assert list(client.list_tasks(job_id)) == []  # nor a Job Manager task


def test_an_autoscale_auto_pool_is_sized_by_its_formula_at_once(client: BatchClient) -> None:
    client.create_job(m.BatchJobCreateOptions(id="scaled-auto", pool_info=auto(
        "as", target_dedicated_nodes=None, enable_auto_scale=True,
        auto_scale_formula="$TargetDedicatedNodes = 2;")))
    pool = client.get_pool(pool_of(client, "scaled-auto"))
    assert pool.enable_auto_scale is True and pool.auto_scale_run is not None
    assert pool.auto_scale_run.error is None and pool.target_dedicated_nodes == 2
    wait_for(lambda: len(list(client.list_nodes(pool.id or ""))) == 2, "the two nodes the formula asks for")
    client.begin_delete_job("scaled-auto", polling_interval=POLL).result(timeout=60)


def test_the_job_schedule_lifetime_is_refused_on_a_job(client: BatchClient) -> None:
    info = auto("x")
    assert info.auto_pool_specification is not None
    info.auto_pool_specification.pool_lifetime_option = m.BatchPoolLifetimeOption.JOB_SCHEDULE
    exc = fails(client.create_job, m.BatchJobCreateOptions(id="wrong-lifetime", pool_info=info))
    assert exc.status_code == 400 and error_code(exc) == "InvalidPropertyValue"


def test_only_keep_alive_of_a_jobs_auto_pool_can_change(client: BatchClient) -> None:
    client.create_job(m.BatchJobCreateOptions(id="changing-auto", pool_info=auto("chg")))
    pool_id = pool_of(client, "changing-auto")
    client.update_job("changing-auto", m.BatchJobUpdateOptions(pool_info=auto("chg", keep_alive=True)))
    job = client.get_job("changing-auto")
    assert job.pool_info.auto_pool_specification is not None
    assert job.pool_info.auto_pool_specification.keep_alive is True
    exc = fails(client.update_job, "changing-auto", m.BatchJobUpdateOptions(pool_info=auto("other")))
    assert exc.status_code == 400 and error_code(exc) == "InvalidPropertyValue"
    client.begin_terminate_job("changing-auto", BatchJobTerminateOptions(termination_reason="done"),
                               polling_interval=POLL).result(timeout=30)
    assert client.get_pool(pool_id).state == m.BatchPoolState.ACTIVE  # kept alive by the update
    client.begin_delete_pool(pool_id, polling_interval=POLL).result(timeout=30)
