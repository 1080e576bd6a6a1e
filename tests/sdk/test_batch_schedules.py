"""Job schedules with azure-batch 15.x (BatchClient) against a live server on the test clock: add
with every part, get / exists / list ($filter, $select, $expand=stats), jobs made on time
(``{schedule}:job-N``, one active job at a time, start windows, doNotRunUntil / doNotRunAfter),
patch / replace, disable / enable, terminate and delete with the SDK's pollers, Azure's errors.

The server runs with ``--test-clock``: the tests move the service's clock forward instead of
sleeping, and each test places its schedule relative to the server's "now"."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from tests.helpers.pools import IMAGE
from tests.helpers.server import LiveServer
from tests.helpers.waiting import wait_for
from tests.sdk.test_batch_jobs import error_code, fails

POLL: Any = 0.1  # seconds; the pollers sleep any number though typed int
HOUR = dt.timedelta(hours=1)


TEST_CLOCK = True  # the module's server (tests/conftest.py) runs on the test clock


def service_now(server: LiveServer) -> dt.datetime:
    return dt.datetime.fromisoformat(str(server.advance_clock(0)["now"]).replace("Z", "+00:00"))


def spec(pool_id: str = "nopool", **kwargs: Any) -> m.BatchJobSpecification:
    return m.BatchJobSpecification(pool_info=m.BatchPoolInfo(pool_id=pool_id), **kwargs)


def add(client: BatchClient, schedule_id: str, job_spec: m.BatchJobSpecification | None = None,
        **schedule: Any) -> m.BatchJobSchedule:
    client.create_job_schedule(m.BatchJobScheduleCreateOptions(
        id=schedule_id, schedule=m.BatchJobScheduleConfiguration(**schedule), job_specification=job_spec or spec()))
    return client.get_job_schedule(schedule_id)


def job_ids(client: BatchClient, schedule_id: str) -> list[str]:
    return sorted(j.id or "" for j in client.list_jobs_from_schedule(schedule_id))


def wait_jobs(client: BatchClient, schedule_id: str, count: int) -> list[str]:
    return wait_for(lambda: (ids := job_ids(client, schedule_id)) and len(ids) == count and ids,
                    f"{count} jobs of {schedule_id} (have {job_ids(client, schedule_id)})", timeout=20)


def end_job(client: BatchClient, job_id: str) -> None:
    client.begin_terminate_job(job_id, m._models.BatchJobTerminateOptions(termination_reason="done"),
                               polling_interval=POLL).result(timeout=30)


def test_add_with_every_part_round_trips(client: BatchClient, server: LiveServer) -> None:
    start = service_now(server) + dt.timedelta(days=1)
    schedule = add(
        client, "Full-Schedule",
        spec(display_name="nightly", priority=100, max_parallel_tasks=2, uses_task_dependencies=True,
             all_tasks_complete_mode=m.BatchAllTasksCompleteMode.TERMINATE_JOB,
             constraints=m.BatchJobConstraints(max_wall_clock_time=HOUR, max_task_retry_count=2),
             job_manager_task=m.BatchJobManagerTask(id="manager", command_line="/bin/true"),
             job_preparation_task=m.BatchJobPreparationTask(command_line="/bin/true"),
             job_release_task=m.BatchJobReleaseTask(command_line="/bin/true"),
             common_environment_settings=[m.EnvironmentSetting(name="COMMON", value="1")],
             metadata=[m.BatchMetadataItem(name="job", value="meta")]),
        do_not_run_until=start, do_not_run_after=start + dt.timedelta(days=7),
        start_window=dt.timedelta(minutes=30), recurrence_interval=dt.timedelta(days=1))
    assert schedule.id == "Full-Schedule" and schedule.state == m.BatchJobScheduleState.ACTIVE
    assert schedule.url and schedule.url.endswith("/jobschedules/Full-Schedule")
    assert schedule.etag and schedule.last_modified and schedule.creation_time and schedule.state_transition_time
    assert schedule.schedule is not None and schedule.schedule.do_not_run_until == start
    assert schedule.schedule.recurrence_interval == dt.timedelta(days=1)
    assert schedule.schedule.start_window == dt.timedelta(minutes=30)
    job_spec = schedule.job_specification
    assert job_spec.display_name == "nightly" and job_spec.priority == 100 and job_spec.max_parallel_tasks == 2
    assert job_spec.constraints is not None and job_spec.constraints.max_task_retry_count == 2
    assert job_spec.job_manager_task is not None and job_spec.job_manager_task.id == "manager"
    assert job_spec.job_preparation_task is not None and job_spec.job_preparation_task.id == "jobpreparation"
    assert job_spec.task_failure_mode == m.BatchTaskFailureMode.NO_ACTION
    assert [(i.name, i.value) for i in job_spec.metadata or []] == [("job", "meta")]
    # not due yet: no job, the next run at doNotRunUntil
    assert schedule.execution_info.next_run_time == start and schedule.execution_info.recent_job is None
    assert job_ids(client, "Full-Schedule") == []
    assert client.job_schedule_exists("full-schedule") is True
    with pytest.raises(ResourceNotFoundError):  # 404: this SDK generation raises rather than answer False
        client.job_schedule_exists("no-such-schedule")


def test_defaults_are_reported_as_azure_reports_them(client: BatchClient) -> None:
    schedule = add(client, "defaults", recurrence_interval=dt.timedelta(days=1))
    job_spec = schedule.job_specification
    assert job_spec.priority == 0 and job_spec.max_parallel_tasks == -1 and job_spec.allow_task_preemption is False
    assert job_spec.uses_task_dependencies is False
    assert job_spec.all_tasks_complete_mode == m.BatchAllTasksCompleteMode.NO_ACTION
    assert job_spec.constraints is not None and job_spec.constraints.max_task_retry_count == 0
    assert job_spec.constraints.max_wall_clock_time is not None and job_spec.constraints.max_wall_clock_time.days > 10**6


def test_first_job_at_once_then_one_per_interval_and_one_active_at_a_time(
        client: BatchClient, server: LiveServer) -> None:
    schedule = add(client, "hourly", spec("hourly-pool", priority=7, display_name="hourly job",
                                          metadata=[m.BatchMetadataItem(name="k", value="v")]),
                   recurrence_interval=HOUR)
    assert schedule.execution_info.recent_job is not None
    assert schedule.execution_info.recent_job.id == "hourly:job-1"
    assert schedule.execution_info.recent_job.url == f"{server.batch_url}/jobs/hourly:job-1"
    assert schedule.execution_info.next_run_time == schedule.creation_time + HOUR
    job = client.get_job("hourly:job-1")
    assert job.state == m.BatchJobState.ACTIVE and job.priority == 7 and job.display_name == "hourly job"
    assert job.pool_info.pool_id == "hourly-pool" and job.execution_info is not None
    assert job.execution_info.pool_id == "hourly-pool"
    assert [(i.name, i.value) for i in job.metadata or []] == [("k", "v")]
    # the next run falls due while job-1 is still active: it waits for job-1
    server.advance_clock(HOUR.total_seconds() + 60)
    assert job_ids(client, "hourly") == ["hourly:job-1"]
    end_job(client, "hourly:job-1")
    assert wait_jobs(client, "hourly", 2) == ["hourly:job-1", "hourly:job-2"]
    schedule = client.get_job_schedule("hourly")
    assert schedule.execution_info.recent_job is not None and schedule.execution_info.recent_job.id == "hourly:job-2"
    assert schedule.execution_info.next_run_time == schedule.creation_time + 2 * HOUR
    # on time, a run starts by itself
    end_job(client, "hourly:job-2")
    server.advance_clock(HOUR.total_seconds())
    assert wait_jobs(client, "hourly", 3)[-1] == "hourly:job-3"
    assert [j.id for j in client.list_jobs_from_schedule("hourly", filter="state eq 'active'")] == ["hourly:job-3"]
    assert [j.id for j in client.list_jobs_from_schedule("hourly", select=["id"])] == [
        "hourly:job-1", "hourly:job-2", "hourly:job-3"]


def test_urls_name_the_host_the_schedule_was_added_through(server: LiveServer) -> None:
    from azure.core.credentials import AzureNamedKeyCredential

    endpoint = server.batch_url.replace("127.0.0.1", "localhost")
    with BatchClient(endpoint, AzureNamedKeyCredential(server.account, server.key)) as other:
        schedule = add(other, "by-name", recurrence_interval=HOUR)
    assert schedule.url == f"{endpoint}/jobschedules/by-name"
    assert schedule.execution_info.recent_job is not None
    assert schedule.execution_info.recent_job.url == f"{endpoint}/jobs/by-name:job-1"


def test_a_run_that_cannot_start_within_its_window_is_lost(client: BatchClient, server: LiveServer) -> None:
    add(client, "windowed", recurrence_interval=HOUR, start_window=dt.timedelta(minutes=10))
    server.advance_clock((HOUR + dt.timedelta(minutes=15)).total_seconds())
    end_job(client, "windowed:job-1")  # too late for the second run
    assert job_ids(client, "windowed") == ["windowed:job-1"]
    wait_for(lambda: (s := client.get_job_schedule("windowed")).execution_info.next_run_time
                        == s.creation_time + 2 * HOUR and s, "the third run planned")
    server.advance_clock((dt.timedelta(minutes=45) + dt.timedelta(seconds=30)).total_seconds())
    assert wait_jobs(client, "windowed", 2) == ["windowed:job-1", "windowed:job-2"]


def test_do_not_run_until_and_after(client: BatchClient, server: LiveServer) -> None:
    start = service_now(server) + dt.timedelta(minutes=30)
    add(client, "bounded", do_not_run_until=start, do_not_run_after=start + dt.timedelta(minutes=90),
        recurrence_interval=HOUR)
    assert job_ids(client, "bounded") == []
    server.advance_clock(31 * 60)
    wait_jobs(client, "bounded", 1)
    end_job(client, "bounded:job-1")
    server.advance_clock(HOUR.total_seconds())
    wait_jobs(client, "bounded", 2)
    end_job(client, "bounded:job-2")
    schedule = client.get_job_schedule("bounded")
    assert schedule.state == m.BatchJobScheduleState.ACTIVE  # doNotRunAfter is not past yet
    assert schedule.execution_info.next_run_time is None
    server.advance_clock(HOUR.total_seconds())
    schedule = wait_for(lambda: (s := client.get_job_schedule("bounded")).state
                        == m.BatchJobScheduleState.COMPLETED and s, "bounded completed")
    assert schedule.execution_info.end_time is not None and job_ids(client, "bounded") == [
        "bounded:job-1", "bounded:job-2"]


def test_a_schedule_without_recurrence_completes_with_its_job(client: BatchClient) -> None:
    add(client, "once", spec(all_tasks_complete_mode=m.BatchAllTasksCompleteMode.TERMINATE_JOB))
    schedule = wait_for(lambda: (s := client.get_job_schedule("once")).state
                        == m.BatchJobScheduleState.COMPLETED and s, "once completed")
    assert schedule.previous_state == m.BatchJobScheduleState.ACTIVE and schedule.execution_info.end_time
    job = client.get_job("once:job-1")
    assert job.state == m.BatchJobState.COMPLETED and job.execution_info is not None
    assert job.execution_info.termination_reason == "AllTasksComplete"


def test_max_wall_clock_time_of_a_job_runs_on_the_service_clock(client: BatchClient, server: LiveServer) -> None:
    add(client, "walled", spec(constraints=m.BatchJobConstraints(max_wall_clock_time=dt.timedelta(minutes=30))),
        recurrence_interval=HOUR)
    server.advance_clock(31 * 60)
    job = wait_for(lambda: (j := client.get_job("walled:job-1")).state == m.BatchJobState.COMPLETED and j,
                   "job-1 to reach its maxWallClockTime")
    assert job.execution_info is not None and job.execution_info.termination_reason == "MaxWallClockTimeExpiry"
    server.advance_clock(30 * 60)
    assert wait_jobs(client, "walled", 2) == ["walled:job-1", "walled:job-2"]


def test_disable_enable_update_and_replace(client: BatchClient, server: LiveServer) -> None:
    add(client, "changing", recurrence_interval=HOUR)
    end_job(client, "changing:job-1")
    client.disable_job_schedule("changing")
    client.disable_job_schedule("changing")  # again: nothing to do
    assert client.get_job_schedule("changing").state == m.BatchJobScheduleState.DISABLED
    server.advance_clock(HOUR.total_seconds() + 60)
    assert job_ids(client, "changing") == ["changing:job-1"]  # disabled: no job
    client.enable_job_schedule("changing")
    assert wait_jobs(client, "changing", 2)[-1] == "changing:job-2"  # due and in its window: at once
    client.update_job_schedule("changing", m.BatchJobScheduleUpdateOptions(
        schedule=m.BatchJobScheduleConfiguration(recurrence_interval=dt.timedelta(hours=5)),
        metadata=[m.BatchMetadataItem(name="a", value="1")]))
    schedule = client.get_job_schedule("changing")
    assert schedule.schedule is not None and schedule.schedule.recurrence_interval == dt.timedelta(hours=5)
    assert schedule.job_specification.pool_info.pool_id == "nopool"  # not given: kept
    assert [(i.name, i.value) for i in schedule.metadata or []] == [("a", "1")]
    client.replace_job_schedule("changing", m.BatchJobSchedule(
        job_specification=spec("other-pool", priority=9),
        schedule=m.BatchJobScheduleConfiguration(recurrence_interval=dt.timedelta(hours=2))))
    schedule = client.get_job_schedule("changing")
    assert schedule.job_specification.pool_info.pool_id == "other-pool" and schedule.metadata is None
    assert client.get_job("changing:job-2").pool_info.pool_id == "nopool"  # a running job keeps its spec
    end_job(client, "changing:job-2")
    server.advance_clock(2 * HOUR.total_seconds())
    wait_jobs(client, "changing", 3)
    job = client.get_job("changing:job-3")
    assert job.pool_info.pool_id == "other-pool" and job.priority == 9


def test_terminate_terminates_the_active_job_then_completes(client: BatchClient) -> None:
    add(client, "ending", recurrence_interval=HOUR)
    client.begin_terminate_job_schedule("ending", polling_interval=POLL).result(timeout=30)
    schedule = client.get_job_schedule("ending")
    assert schedule.state == m.BatchJobScheduleState.COMPLETED and schedule.execution_info.end_time
    assert schedule.execution_info.next_run_time is None
    job = client.get_job("ending:job-1")
    assert job.state == m.BatchJobState.COMPLETED and job.execution_info is not None
    assert job.execution_info.termination_reason == "TerminateJobSchedule"
    # a completed schedule takes no changes
    for call in (lambda: client.disable_job_schedule("ending"), lambda: client.enable_job_schedule("ending"),
                 lambda: client.update_job_schedule("ending", m.BatchJobScheduleUpdateOptions(metadata=[]))):
        exc = fails(call)
        assert exc.status_code == 409 and error_code(exc) == "JobScheduleCompleted"


def test_delete_removes_the_schedule_and_its_jobs(client: BatchClient) -> None:
    add(client, "doomed", recurrence_interval=HOUR)
    end_job(client, "doomed:job-1")
    client.begin_delete_job_schedule("doomed", polling_interval=POLL).result(timeout=30)
    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_job_schedule("doomed")
    assert error_code(missing.value) == "JobScheduleNotFound"
    assert error_code(fails(client.get_job, "doomed:job-1")) == "JobNotFound"
    assert error_code(fails(lambda: list(client.list_jobs_from_schedule("doomed")))) == "JobScheduleNotFound"


def test_list_filter_select_expand_and_paging(client: BatchClient, server: LiveServer) -> None:
    later = service_now(server) + dt.timedelta(days=30)
    for i in range(4):
        add(client, f"listed-{i}", do_not_run_until=later)
    client.disable_job_schedule("listed-2")
    ids = [s.id for s in client.list_job_schedules(filter="startswith(id, 'listed-')", max_results=3)]
    assert ids == [f"listed-{i}" for i in range(4)]
    disabled = [s.id for s in client.list_job_schedules(filter="startswith(id, 'listed-') and state eq 'disabled'")]
    assert disabled == ["listed-2"]
    selected = list(client.list_job_schedules(filter="id eq 'listed-1'", select=["id", "state"]))
    assert len(selected) == 1 and selected[0].id == "listed-1" and selected[0].url is None
    stats = client.get_job_schedule("listed-0", expand=["stats"]).job_schedule_statistics
    assert stats is not None and stats.succeeded_tasks_count == 0 and stats.failed_tasks_count == 0
    listed = list(client.list_job_schedules(filter="id eq 'listed-0'", expand=["stats"]))
    assert listed[0].job_schedule_statistics is not None


@pytest.mark.parametrize(
    "schedule,code",
    [
        (m.BatchJobScheduleConfiguration(recurrence_interval=dt.timedelta(seconds=30)), "InvalidPropertyValue"),
        (m.BatchJobScheduleConfiguration(start_window=dt.timedelta(seconds=59)), "InvalidPropertyValue"),
    ],
)
def test_invalid_schedules_get_azure_errors(client: BatchClient, schedule: m.BatchJobScheduleConfiguration,
                                           code: str) -> None:
    exc = fails(client.create_job_schedule, m.BatchJobScheduleCreateOptions(
        id="invalid", schedule=schedule, job_specification=spec()))
    assert exc.status_code == 400 and error_code(exc) == code
    with pytest.raises(ResourceNotFoundError):
        client.get_job_schedule("invalid")


def test_invalid_job_specifications_and_clashing_ids(client: BatchClient) -> None:
    exc = fails(client.create_job_schedule, m.BatchJobScheduleCreateOptions(
        id="badspec", schedule=m.BatchJobScheduleConfiguration(), job_specification=spec(priority=5000)))
    assert exc.status_code == 400 and error_code(exc) == "OutOfRangePriority"
    exc = fails(client.create_job_schedule, m.BatchJobScheduleCreateOptions(
        id="badspec", schedule=m.BatchJobScheduleConfiguration(),
        job_specification=m.BatchJobSpecification(pool_info=m.BatchPoolInfo())))
    assert exc.status_code == 400 and error_code(exc) == "MissingRequiredProperty"
    add(client, "taken", do_not_run_until=dt.datetime(2100, 1, 1, tzinfo=dt.UTC))
    with pytest.raises(ResourceExistsError) as exists:
        add(client, "TAKEN")
    assert exists.value.status_code == 409 and error_code(exists.value) == "JobScheduleExists"
    exc = fails(client.create_job, m.BatchJobCreateOptions(id="taken", pool_info=m.BatchPoolInfo(pool_id="p")))
    assert exc.status_code == 409 and error_code(exc) == "JobScheduleWithSameIdExists"
    client.create_job(m.BatchJobCreateOptions(id="plain-job", pool_info=m.BatchPoolInfo(pool_id="p")))
    exc = fails(add, client, "plain-job")
    assert exc.status_code == 409 and error_code(exc) == "JobWithSameIdExists"
    for call in (lambda: client.get_job_schedule("nope"), lambda: client.disable_job_schedule("nope"),
                 lambda: client.update_job_schedule("nope", m.BatchJobScheduleUpdateOptions(metadata=[]))):
        exc = fails(call)
        assert exc.status_code == 404 and error_code(exc) == "JobScheduleNotFound"


# --- auto pools of job schedules --------------------------------------------------------------


def auto_spec(lifetime: m.BatchPoolLifetimeOption, **kwargs: Any) -> m.BatchJobSpecification:
    pool = m.BatchPoolSpecification(vm_size="standard_d2s_v3", virtual_machine_configuration=IMAGE,
                                    target_dedicated_nodes=1)
    return m.BatchJobSpecification(pool_info=m.BatchPoolInfo(auto_pool_specification=m.BatchAutoPoolSpecification(
        auto_pool_id_prefix="sched", pool_lifetime_option=lifetime, pool=pool)), **kwargs)


def pool_of(client: BatchClient, job_id: str) -> str:
    job = client.get_job(job_id)
    assert job.execution_info is not None and job.execution_info.pool_id
    return job.execution_info.pool_id


def gone(client: BatchClient, pool_id: str) -> bool:
    return pool_id not in {p.id for p in client.list_pools()}


def test_jobschedule_lifetime_shares_one_pool_until_the_schedule_ends(client: BatchClient,
                                                                        server: LiveServer) -> None:
    add(client, "shared", auto_spec(
        m.BatchPoolLifetimeOption.JOB_SCHEDULE, common_environment_settings=[m.EnvironmentSetting(name="COMMON",
                                                                                                  value="from spec")],
        job_preparation_task=m.BatchJobPreparationTask(command_line="/bin/sh -c 'echo prepared'")),
        recurrence_interval=HOUR)
    first = pool_of(client, "shared:job-1")
    assert first.startswith("sched_")
    client.create_task("shared:job-1", m.BatchTaskCreateOptions(
        id="t", command_line="/bin/sh -c 'echo $AZ_BATCH_JOB_ID $COMMON'"))
    task = wait_for(lambda: (t := client.get_task("shared:job-1", "t")).state == m.BatchTaskState.COMPLETED and t,
                    "the task of shared:job-1")
    assert task.node_info is not None and task.node_info.pool_id == first
    assert task.node_info.task_root_directory == "workitems/shared/job-1/t"  # a schedule's run, as on Azure
    assert b"".join(client.download_task_file("shared:job-1", "t", "stdout.txt")) == b"shared:job-1 from spec\n"
    prep = list(client.list_job_preparation_and_release_task_status("shared:job-1"))
    assert len(prep) == 1 and prep[0].job_preparation_task_execution_info is not None
    assert prep[0].job_preparation_task_execution_info.exit_code == 0
    end_job(client, "shared:job-1")
    assert not gone(client, first)  # the pool outlives the job: it is the schedule's
    server.advance_clock(HOUR.total_seconds())
    wait_jobs(client, "shared", 2)
    assert pool_of(client, "shared:job-2") == first
    client.begin_terminate_job_schedule("shared", polling_interval=POLL).result(timeout=30)
    wait_for(lambda: gone(client, first), "the schedule's auto pool to be deleted with it")


def test_job_lifetime_gives_each_job_of_a_schedule_its_own_pool(client: BatchClient, server: LiveServer) -> None:
    add(client, "own-pools", auto_spec(m.BatchPoolLifetimeOption.JOB), recurrence_interval=HOUR)
    first = pool_of(client, "own-pools:job-1")
    end_job(client, "own-pools:job-1")
    wait_for(lambda: gone(client, first), "job-1's auto pool to be deleted with it")
    server.advance_clock(HOUR.total_seconds())
    wait_jobs(client, "own-pools", 2)
    second = pool_of(client, "own-pools:job-2")
    assert second != first and second.startswith("sched_")
    client.begin_delete_job_schedule("own-pools", polling_interval=POLL).result(timeout=60)
    wait_for(lambda: gone(client, second), "job-2's auto pool to be deleted with the schedule")


# --- restarts -------------------------------------------------------------------------------


def connect(server: LiveServer) -> BatchClient:
    from azure.core.credentials import AzureNamedKeyCredential

    return BatchClient(server.batch_url, AzureNamedKeyCredential(server.account, server.key))


def down_for(server: LiveServer, seconds: float) -> None:
    """Kill the server (-9) and let ``seconds`` of service time pass before it starts again (the
    test clock's offset lives in the data dir)."""
    server.kill()
    server.advance_stopped_clock(seconds)
    server.start()


@pytest.mark.parametrize("down,runs", [(60, True), (20 * 60, False)])
def test_a_run_missed_while_the_server_was_down(fresh_server: LiveServer, down: float, runs: bool) -> None:
    client = connect(fresh_server)
    created = add(client, "survivor", recurrence_interval=HOUR, start_window=dt.timedelta(minutes=10)).creation_time
    end_job(client, "survivor:job-1")
    fresh_server.advance_clock(HOUR.total_seconds() - 30)  # the next run is due in 30 seconds
    down_for(fresh_server, down)  # due while the server is down, and still in its window (or not)
    client = connect(fresh_server)
    if runs:
        assert wait_jobs(client, "survivor", 2) == ["survivor:job-1", "survivor:job-2"]
        schedule = client.get_job_schedule("survivor")
        assert schedule.execution_info.next_run_time == created + 2 * HOUR
    else:
        schedule = wait_for(lambda: (s := client.get_job_schedule("survivor")).execution_info.next_run_time
                            == created + 2 * HOUR and s, "the lost run to be skipped")
        assert job_ids(client, "survivor") == ["survivor:job-1"]
        fresh_server.advance_clock(2 * HOUR.total_seconds() - (HOUR.total_seconds() - 30 + down) + 30)  # 30 s past run 3
        assert wait_jobs(client, "survivor", 2) == ["survivor:job-1", "survivor:job-2"]
    assert schedule.state == m.BatchJobScheduleState.ACTIVE


def test_a_schedule_carries_on_after_kill_9(fresh_server: LiveServer) -> None:
    client = connect(fresh_server)
    add(client, "durable", spec(metadata=[m.BatchMetadataItem(name="k", value="v")]),
        recurrence_interval=HOUR)
    client.disable_job_schedule("durable")
    add(client, "ending", recurrence_interval=HOUR)
    client.begin_terminate_job_schedule("ending", polling_interval=POLL).result(timeout=30)
    down_for(fresh_server, 0)
    client = connect(fresh_server)
    schedule = client.get_job_schedule("durable")
    assert schedule.state == m.BatchJobScheduleState.DISABLED
    assert [(i.name, i.value) for i in schedule.job_specification.metadata or []] == [("k", "v")]
    assert client.get_job_schedule("ending").state == m.BatchJobScheduleState.COMPLETED
    client.enable_job_schedule("durable")
    end_job(client, "durable:job-1")
    fresh_server.advance_clock(HOUR.total_seconds())
    # numbering goes on where it was: never a second job-1
    assert wait_jobs(client, "durable", 2) == ["durable:job-1", "durable:job-2"]
