"""Jobs with azure-batch 15.x (BatchClient) against a live server: add with every part, get, list
($filter, $select, paging), update (patch) and replace (put), disable / enable / terminate /
delete with the SDK's pollers, task counts, prep/release status, conditions and Azure's errors.

The pollers of disable / terminate / delete finish when the engine has dealt with the job's
tasks (disabling -> disabled, terminating -> completed, deleting -> gone)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError


def error_code(exc: HttpResponseError) -> str | None:
    return exc.error.code if exc.error is not None else None


def fails(fn: Any, *args: Any, **kwargs: Any) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as info:
        fn(*args, **kwargs)
    return info.value


def new_job(client: BatchClient, job_id: str, **kwargs: Any) -> m.BatchJob:
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id="nopool"), **kwargs))
    return client.get_job(job_id)


def wait_state(client: BatchClient, job_id: str, state: m.BatchJobState, timeout: float = 20) -> m.BatchJob:
    deadline = time.monotonic() + timeout
    job = client.get_job(job_id)
    while job.state != state and time.monotonic() < deadline:
        time.sleep(0.05)
        job = client.get_job(job_id)
    return job


def test_add_job_with_every_part_round_trips(client: BatchClient) -> None:
    client.create_job(m.BatchJobCreateOptions(
        id="Full-Job",
        display_name="everything",
        priority=500,
        max_parallel_tasks=4,
        uses_task_dependencies=True,
        constraints=m.BatchJobConstraints(max_wall_clock_time=dt.timedelta(hours=2), max_task_retry_count=3),
        job_manager_task=m.BatchJobManagerTask(id="manager", command_line="/bin/sh -c 'echo manager'",
                                               kill_job_on_completion=False),
        job_preparation_task=m.BatchJobPreparationTask(command_line="/bin/true"),
        job_release_task=m.BatchJobReleaseTask(command_line="/bin/true"),
        common_environment_settings=[m.EnvironmentSetting(name="COMMON", value="1")],
        pool_info=m.BatchPoolInfo(pool_id="somepool"),
        all_tasks_complete_mode=m.BatchAllTasksCompleteMode.NO_ACTION,
        task_failure_mode=m.BatchTaskFailureMode.PERFORM_EXIT_OPTIONS_JOB_ACTION,
        metadata=[m.BatchMetadataItem(name="owner", value="tests")],
    ))
    job = client.get_job("full-job")
    assert job.id == "Full-Job" and job.display_name == "everything"
    assert job.state == m.BatchJobState.ACTIVE and job.creation_time and job.last_modified and job.etag
    assert job.url and job.url.endswith("/jobs/Full-Job")
    assert job.priority == 500 and job.max_parallel_tasks == 4 and job.uses_task_dependencies is True
    assert job.constraints is not None and job.constraints.max_wall_clock_time == dt.timedelta(hours=2)
    assert job.constraints.max_task_retry_count == 3
    assert job.pool_info.pool_id == "somepool" and job.execution_info is not None
    assert job.execution_info.pool_id == "somepool" and job.execution_info.start_time is not None
    assert job.job_preparation_task is not None and job.job_preparation_task.id == "jobpreparation"
    assert job.job_preparation_task.wait_for_success is True
    assert job.job_release_task is not None and job.job_release_task.id == "jobrelease"
    assert job.job_manager_task is not None and job.job_manager_task.id == "manager"
    assert job.common_environment_settings and job.common_environment_settings[0].name == "COMMON"
    assert job.task_failure_mode == m.BatchTaskFailureMode.PERFORM_EXIT_OPTIONS_JOB_ACTION
    assert [(i.name, i.value) for i in job.metadata or []] == [("owner", "tests")]
    manager = client.get_task("Full-Job", "manager")
    assert manager.command_line == "/bin/sh -c 'echo manager'"
    assert manager.constraints is not None and manager.constraints.max_task_retry_count == 3


@pytest.mark.parametrize(
    "options,code,status",
    [
        ({"id": "bad id!", "pool_info": m.BatchPoolInfo(pool_id="p")}, "InvalidPropertyValue", 400),
        ({"id": "x" * 65, "pool_info": m.BatchPoolInfo(pool_id="p")}, "InvalidPropertyValue", 400),
        ({"id": "prio", "priority": 5000, "pool_info": m.BatchPoolInfo(pool_id="p")}, "OutOfRangePriority", 400),
        ({"id": "nopoolinfo", "pool_info": m.BatchPoolInfo()}, "MissingRequiredProperty", 400),
        ({"id": "autopool", "pool_info": m.BatchPoolInfo(auto_pool_specification=m.BatchAutoPoolSpecification(
            pool_lifetime_option="jobschedule", pool=m.BatchPoolSpecification(vm_size="a1")))},
         "InvalidPropertyValue", 400),
        ({"id": "autopool", "pool_info": m.BatchPoolInfo(auto_pool_specification=m.BatchAutoPoolSpecification(
            pool_lifetime_option="job"))}, "MissingRequiredProperty", 400),
        ({"id": "releaseonly", "pool_info": m.BatchPoolInfo(pool_id="p"),
          "job_release_task": m.BatchJobReleaseTask(command_line="x")}, "InvalidPropertyValue", 400),
    ],
)
def test_invalid_jobs_get_azure_errors(client: BatchClient, options: dict[str, Any], code: str, status: int) -> None:
    exc = fails(client.create_job, m.BatchJobCreateOptions(**options))
    assert exc.status_code == status and error_code(exc) == code


def test_duplicate_and_missing_jobs(client: BatchClient) -> None:
    new_job(client, "dup-job")
    with pytest.raises(ResourceExistsError) as exists:
        client.create_job(m.BatchJobCreateOptions(id="DUP-JOB", pool_info=m.BatchPoolInfo(pool_id="p")))
    assert exists.value.status_code == 409 and error_code(exists.value) == "JobExists"
    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_job("no-such-job")
    assert error_code(missing.value) == "JobNotFound"
    assert error_code(fails(client.update_job, "no-such-job", m.BatchJobUpdateOptions(priority=1))) == "JobNotFound"


def test_list_jobs_filter_select_and_paging(client: BatchClient) -> None:
    for i in range(5):
        new_job(client, f"listed-{i}", priority=i * 10)
    ids = [j.id for j in client.list_jobs(filter="startswith(id, 'listed-')", max_results=2)]
    assert ids == [f"listed-{i}" for i in range(5)]
    high = [j.id for j in client.list_jobs(filter="startswith(id, 'listed-') and priority ge 30")]
    assert high == ["listed-3", "listed-4"]
    selected = list(client.list_jobs(filter="id eq 'listed-1'", select=["id", "state"]))
    assert len(selected) == 1 and selected[0].state == m.BatchJobState.ACTIVE and selected[0].priority is None
    exc = fails(lambda: list(client.list_jobs(filter="state eq")))
    assert exc.status_code == 400 and error_code(exc) == "InvalidQueryParameterValue"


def test_update_merges_and_replace_resets(client: BatchClient) -> None:
    job = new_job(client, "patched", priority=5, max_parallel_tasks=2,
                  metadata=[m.BatchMetadataItem(name="a", value="1")])
    client.update_job("patched", m.BatchJobUpdateOptions(priority=100))
    job = client.get_job("patched")
    assert job.priority == 100 and job.max_parallel_tasks == 2 and job.metadata and job.metadata[0].name == "a"
    replacement = m.BatchJob(pool_info=m.BatchPoolInfo(pool_id="nopool"), priority=7)
    client.replace_job("patched", replacement)
    job = client.get_job("patched")
    assert job.priority == 7 and job.max_parallel_tasks == -1 and not job.metadata
    exc = fails(client.update_job, "patched", m.BatchJobUpdateOptions(priority=-1001))
    assert error_code(exc) == "OutOfRangePriority"


def test_terminatejob_cannot_be_set_back_to_noaction(client: BatchClient) -> None:
    new_job(client, "aiming-to-end", all_tasks_complete_mode=m.BatchAllTasksCompleteMode.TERMINATE_JOB,
            job_manager_task=m.BatchJobManagerTask(id="keepalive", command_line="/bin/sleep 30"))
    exc = fails(client.update_job, "aiming-to-end",
                m.BatchJobUpdateOptions(all_tasks_complete_mode=m.BatchAllTasksCompleteMode.NO_ACTION))
    assert exc.status_code == 400 and error_code(exc) == "InvalidPropertyValue"


def test_conditional_update_with_etag(client: BatchClient) -> None:
    job = new_job(client, "conditional")
    client.update_job("conditional", m.BatchJobUpdateOptions(priority=1), etag=job.etag,
                      match_condition=MatchConditions.IfNotModified)
    exc = fails(client.update_job, "conditional", m.BatchJobUpdateOptions(priority=2), etag=job.etag,
                match_condition=MatchConditions.IfNotModified)
    assert exc.status_code == 412
    assert client.get_job("conditional").priority == 1


def test_task_counts_and_prep_release_status(client: BatchClient) -> None:
    new_job(client, "counted", job_preparation_task=m.BatchJobPreparationTask(command_line="/bin/true"))
    client.create_tasks("counted", [m.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/true",
                                                             required_slots=2) for i in range(3)])
    counts = client.get_job_task_counts("counted")
    assert counts.task_counts.active == 3 and counts.task_counts.completed == 0
    assert counts.task_slot_counts.active == 6
    assert list(client.list_job_preparation_and_release_task_status("counted")) == []
    new_job(client, "no-prep")
    exc = fails(lambda: list(client.list_job_preparation_and_release_task_status("no-prep")))
    assert error_code(exc) == "JobPreparationTaskNotSpecified"


def test_jobs_of_an_unknown_schedule(client: BatchClient) -> None:
    exc = fails(lambda: list(client.list_jobs_from_schedule("no-such-schedule")))
    assert exc.status_code == 404 and error_code(exc) == "JobScheduleNotFound"


def test_disable_and_enable(client: BatchClient) -> None:
    new_job(client, "toggled")
    client.begin_disable_job("toggled", m.BatchJobDisableOptions(disable_tasks=m.DisableBatchJobOption.REQUEUE),
                             polling_interval=1).result(timeout=30)
    job = client.get_job("toggled")
    assert job.state == m.BatchJobState.DISABLED and job.previous_state == m.BatchJobState.DISABLING
    client.create_task("toggled", m.BatchTaskCreateOptions(id="waits", command_line="/bin/true"))
    client.begin_enable_job("toggled", polling_interval=1).result(timeout=30)
    job = client.get_job("toggled")
    assert job.state == m.BatchJobState.ACTIVE and job.previous_state == m.BatchJobState.ENABLING
    exc = fails(client.begin_disable_job, "toggled", m.BatchJobDisableOptions(disable_tasks="sometimes"))
    assert exc.status_code == 400 and error_code(exc) == "InvalidPropertyValue"


def test_terminate_completes_the_job(client: BatchClient) -> None:
    new_job(client, "ended")
    client.create_task("ended", m.BatchTaskCreateOptions(id="queued", command_line="/bin/true"))
    client.begin_terminate_job("ended", m._models.BatchJobTerminateOptions(termination_reason="Enough"),
                               polling_interval=1).result(timeout=30)
    job = wait_state(client, "ended", m.BatchJobState.COMPLETED)
    assert job.state == m.BatchJobState.COMPLETED
    assert job.execution_info is not None and job.execution_info.termination_reason == "Enough"
    assert job.execution_info.end_time is not None
    exc = fails(client.create_task, "ended", m.BatchTaskCreateOptions(id="late", command_line="x"))
    assert exc.status_code == 409 and error_code(exc) == "JobCompleted"
    exc = fails(client.update_job, "ended", m.BatchJobUpdateOptions(priority=3))
    assert error_code(exc) == "JobCompleted"


def test_delete_job_poller_finishes_when_the_job_is_gone(client: BatchClient) -> None:
    new_job(client, "doomed")
    client.create_tasks("doomed", [m.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/true")
                                   for i in range(5)])
    client.begin_delete_job("doomed", polling_interval=1).result(timeout=30)
    with pytest.raises(ResourceNotFoundError):
        client.get_job("doomed")
    assert "doomed" not in [j.id for j in client.list_jobs()]
    new_job(client, "doomed")  # the id is free again, without the old tasks
    assert list(client.list_tasks("doomed")) == []
