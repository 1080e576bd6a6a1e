"""Tasks with azure-batch 15.x (BatchClient) against a live server: add one and collections
(create_tasks chunking with concurrency, per-task results, the 100-task limit), list ($filter on
state and more, $select, paging), get, replace (constraints), terminate, reactivate, delete,
subtasks, and the errors Azure answers. The jobs use a pool that does not exist, so no task runs."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError


def make_job(client: BatchClient, job_id: str, **kwargs: Any) -> str:
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id="idle-pool"), **kwargs))
    return job_id


def error_code(exc: HttpResponseError) -> str | None:
    return exc.error.code if exc.error is not None else None


def fails(fn: Any, *args: Any, **kwargs: Any) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as info:
        fn(*args, **kwargs)
    return info.value


def simple(task_id: str, **kwargs: Any) -> m.BatchTaskCreateOptions:
    return m.BatchTaskCreateOptions(id=task_id, command_line="/bin/sh -c 'echo hi'", **kwargs)


def test_add_one_task_with_every_part(client: BatchClient) -> None:
    job = make_job(client, "one-task", uses_task_dependencies=True,
                   constraints=m.BatchJobConstraints(max_task_retry_count=2))
    client.create_task(job, m.BatchTaskCreateOptions(
        id="Full",
        display_name="full task",
        command_line="/bin/sh -c 'cat input.txt'",
        resource_files=[m.ResourceFile(http_url="http://127.0.0.1:1/x/input.txt", file_path="input.txt"),
                        m.ResourceFile(storage_container_url="http://127.0.0.1:1/c?sv=x", blob_prefix="in/")],
        output_files=[m.OutputFile(
            file_pattern="*.txt",
            destination=m.OutputFileDestination(container=m.OutputFileBlobContainerDestination(
                container_url="http://127.0.0.1:1/out?sv=x", path="results")),
            upload_options=m.OutputFileUploadConfiguration(upload_condition=m.OutputFileUploadCondition.TASK_SUCCESS),
        )],
        environment_settings=[m.EnvironmentSetting(name="A", value="1")],
        constraints=m.BatchTaskConstraints(max_wall_clock_time=dt.timedelta(minutes=10)),
        required_slots=2,
        user_identity=m.UserIdentity(auto_user=m.AutoUserSpecification(
            scope=m.AutoUserScope.TASK, elevation_level=m.ElevationLevel.ADMIN)),
        depends_on=m.BatchTaskDependencies(task_ids=["a"], task_id_ranges=[m.BatchTaskIdRange(start=1, end=5)]),
    ))
    task = client.get_task(job, "full")
    assert task.id == "Full" and task.display_name == "full task" and task.state == m.BatchTaskState.ACTIVE
    assert task.url and task.url.endswith("/jobs/one-task/tasks/Full") and task.etag and task.creation_time
    assert task.required_slots == 2 and task.environment_settings and task.environment_settings[0].value == "1"
    assert task.resource_files and task.resource_files[0].file_path == "input.txt"
    assert task.resource_files[1].blob_prefix == "in/"
    assert task.output_files
    assert task.output_files[0].upload_options.upload_condition == m.OutputFileUploadCondition.TASK_SUCCESS
    assert task.constraints and task.constraints.max_wall_clock_time == dt.timedelta(minutes=10)
    assert task.constraints.retention_time == dt.timedelta(days=7) and task.constraints.max_task_retry_count == 2
    assert task.user_identity and task.user_identity.auto_user
    assert task.user_identity.auto_user.elevation_level == m.ElevationLevel.ADMIN
    assert task.depends_on and task.depends_on.task_id_ranges and task.depends_on.task_id_ranges[0].end == 5
    assert task.execution_info and task.execution_info.retry_count == 0 and task.execution_info.requeue_count == 0
    assert list(client.list_subtasks(job, "Full")) == []


@pytest.mark.parametrize(
    "options,code",
    [
        ({"id": "bad id", "command_line": "x"}, "InvalidPropertyValue"),
        ({"id": "noslots", "command_line": "x", "required_slots": 0}, "InvalidPropertyValue"),
        ({"id": "tworsrc", "command_line": "x", "resource_files": [m.ResourceFile(
            http_url="http://h/a", auto_storage_container_name="c", file_path="a")]}, "InvalidPropertyValue"),
        ({"id": "nosrc", "command_line": "x", "resource_files": [m.ResourceFile(file_path="a")]},
         "MissingRequiredProperty"),
        ({"id": "deps", "command_line": "x", "depends_on": m.BatchTaskDependencies(task_ids=["a"])},
         "TaskDependenciesNotSpecifiedOnJob"),
        ({"id": "badout", "command_line": "x", "output_files": [m.OutputFile({"filePattern": "*"})]},
         "MissingRequiredProperty"),
    ],
)
def test_invalid_tasks_are_refused(client: BatchClient, options: dict[str, Any], code: str) -> None:
    job = "invalid-tasks"
    if not any(j.id == job for j in client.list_jobs(filter=f"id eq '{job}'")):
        make_job(client, job)
    exc = fails(client.create_task, job, m.BatchTaskCreateOptions(**options))
    assert exc.status_code == 400 and error_code(exc) == code


def test_missing_command_line_is_a_missing_property(client: BatchClient) -> None:
    job = make_job(client, "no-command")
    exc = fails(client.create_task, job, {"id": "t"})
    assert exc.status_code == 400 and error_code(exc) == "MissingRequiredProperty"
    response: Any = exc.response
    assert response.json()["values"] == [{"key": "PropertyName", "value": "commandLine"}]


def test_duplicates_and_missing_parents(client: BatchClient) -> None:
    job = make_job(client, "dups")
    client.create_task(job, simple("Same"))
    with pytest.raises(ResourceExistsError) as exists:
        client.create_task(job, simple("SAME"))
    assert exists.value.status_code == 409 and error_code(exists.value) == "TaskExists"
    with pytest.raises(ResourceNotFoundError) as nojob:
        client.create_task("no-such-job", simple("t"))
    assert error_code(nojob.value) == "JobNotFound"
    with pytest.raises(ResourceNotFoundError) as notask:
        client.get_task(job, "no-such-task")
    assert error_code(notask.value) == "TaskNotFound"


def test_create_tasks_chunks_and_adds_everything(client: BatchClient) -> None:
    job = make_job(client, "many")
    result = client.create_tasks(job, [simple(f"t{i:04d}") for i in range(450)], max_concurrency=4)
    assert result.result_values and len(result.result_values) == 450
    assert {r.status for r in result.result_values} == {m.BatchTaskAddStatus.SUCCESS}
    counts = client.get_job_task_counts(job)
    assert counts.task_counts.active == 450
    again = client.create_tasks(job, [simple("t0000"), simple("new-one")])  # TaskExists counts as added
    assert {r.task_id for r in again.result_values or []} == {"t0000", "new-one"}


def test_collection_reports_each_task(client: BatchClient) -> None:
    job = make_job(client, "mixed")
    client.create_task(job, simple("there"))
    result = client.create_task_collection(job, m.BatchTaskGroup(task_values=[
        simple("ok1"), simple("there"), m.BatchTaskCreateOptions(id="bad", command_line="x", required_slots=-1),
        simple("ok2"),
    ]))
    by_id = {r.task_id: r for r in result.result_values or []}
    ok, there, bad = by_id["ok1"], by_id["there"], by_id["bad"]
    assert ok.status == m.BatchTaskAddStatus.SUCCESS and ok.location and ok.location.endswith("/tasks/ok1")
    assert ok.etag and ok.last_modified
    assert there.status == m.BatchTaskAddStatus.CLIENT_ERROR and there.error and there.error.code == "TaskExists"
    assert bad.status == m.BatchTaskAddStatus.CLIENT_ERROR
    assert bad.error and bad.error.code == "InvalidPropertyValue"
    assert sorted(t.id for t in client.list_tasks(job)) == ["ok1", "ok2", "there"]
    with pytest.raises(m.CreateTasksError) as failed:
        client.create_tasks(job, [simple("ok3"), m.BatchTaskCreateOptions(id="bad", command_line="")])
    assert [f.task_id for f in failed.value.failure_tasks] == ["bad"]


def test_more_than_100_tasks_in_one_request_is_too_large(client: BatchClient) -> None:
    job = make_job(client, "too-many")
    exc = fails(client.create_task_collection, job,
                m.BatchTaskGroup(task_values=[simple(f"t{i}") for i in range(101)]))
    assert exc.status_code == 413 and error_code(exc) == "RequestBodyTooLarge"
    assert list(client.list_tasks(job)) == []


def test_list_filters_selects_and_pages(client: BatchClient) -> None:
    job = make_job(client, "listing")
    client.create_tasks(job, [simple(f"t{i:03d}", required_slots=1 + i % 2) for i in range(120)])
    client.terminate_task(job, "t005")
    client.terminate_task(job, "t006")
    everything = list(client.list_tasks(job, max_results=25))
    assert sorted(t.id for t in everything) == [f"t{i:03d}" for i in range(120)]
    active = [t.id for t in client.list_tasks(job, filter="state eq 'active'", max_results=7)]
    assert len(active) == 118 and "t005" not in active
    done = list(client.list_tasks(job, filter="state eq 'completed' and executionInfo/result eq 'failure'"))
    assert sorted(t.id for t in done) == ["t005", "t006"]
    assert sorted(t.id for t in client.list_tasks(job, filter="startswith(id, 't11')")) == [
        f"t11{i}" for i in range(10)]
    assert len(list(client.list_tasks(job, filter="state eq 'running'"))) == 0
    picked = list(client.list_tasks(job, filter="id eq 't001'", select=["id", "state"]))
    assert len(picked) == 1 and picked[0].state == m.BatchTaskState.ACTIVE and picked[0].command_line is None
    exc = fails(lambda: list(client.list_tasks(job, filter="nonsense eq 1")))
    assert exc.status_code == 400 and error_code(exc) == "InvalidQueryParameterValue"
    exc = fails(lambda: list(client.list_tasks(job, max_results=5000)))
    assert exc.status_code == 400


def test_replace_task_constraints(client: BatchClient) -> None:
    job = make_job(client, "constrained", constraints=m.BatchJobConstraints(max_task_retry_count=4))
    client.create_task(job, simple("t"))
    client.replace_task(job, "t", m.BatchTask(constraints=m.BatchTaskConstraints(
        max_wall_clock_time=dt.timedelta(hours=1), retention_time=dt.timedelta(hours=2), max_task_retry_count=1)))
    task = client.get_task(job, "t")
    assert task.constraints and task.constraints.max_wall_clock_time == dt.timedelta(hours=1)
    assert task.constraints.retention_time == dt.timedelta(hours=2) and task.constraints.max_task_retry_count == 1
    client.terminate_task(job, "t")
    exc = fails(client.replace_task, job, "t", m.BatchTask(constraints=m.BatchTaskConstraints(max_task_retry_count=2)))
    assert exc.status_code == 409 and error_code(exc) == "TaskCompleted"


def test_terminate_reactivate_delete(client: BatchClient) -> None:
    job = make_job(client, "lifecycle")
    client.create_tasks(job, [simple("a"), simple("b")])
    client.terminate_task(job, "a")
    task = client.get_task(job, "a")
    assert task.state == m.BatchTaskState.COMPLETED and task.previous_state == m.BatchTaskState.ACTIVE
    info = task.execution_info
    assert info and info.result == m.BatchTaskExecutionResult.FAILURE and info.end_time is not None
    assert info.failure_info and info.failure_info.code == "TaskEnded"
    exc = fails(client.terminate_task, job, "a")
    assert exc.status_code == 409 and error_code(exc) == "TaskCompleted"
    exc = fails(client.reactivate_task, job, "b")
    assert exc.status_code == 409 and error_code(exc) == "TaskNotCompleted"
    client.reactivate_task(job, "a")
    task = client.get_task(job, "a")
    assert task.state == m.BatchTaskState.ACTIVE and task.execution_info
    assert task.execution_info.failure_info is None and task.execution_info.retry_count == 0
    client.delete_task(job, "a")
    with pytest.raises(ResourceNotFoundError):
        client.get_task(job, "a")
    with pytest.raises(ResourceNotFoundError):
        client.delete_task(job, "a")
    assert [t.id for t in client.list_tasks(job)] == ["b"]
