"""Network-free tests of the job, task and file domain rules: a real BatchStore in a temp dir,
hooks that record what the engine would be told, a fake compute provider for files."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from openbatch.batch.domain import errors as e
from openbatch.batch.domain import files, jobs, states, tasks
from openbatch.batch.domain import instructions as ins
from openbatch.batch.domain.common import BatchContext
from openbatch.batch.store import BatchStore
from openbatch.compute.base import FileAccessError, NodeFile

T = TypeVar("T")
A = "acct"
BASE = "http://batch.test"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Hooks:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def pool_changed(self, account: str, pool: dict[str, Any]) -> None:
        self.events.append(("pool", pool["id"]))

    def job_changed(self, account: str, job: dict[str, Any]) -> None:
        self.events.append(("job", job["state"]))

    def tasks_added(self, account: str, job_id: str, docs: list[dict[str, Any]]) -> None:
        self.events.append(("added", [d["id"] for d in docs]))

    def task_changed(self, account: str, job_id: str, task: dict[str, Any]) -> None:
        self.events.append(("task", (task["id"], task["state"], task.get("_deleted", False))))

    def perform(self, account: str, instructions: list[ins.Instruction]) -> None:
        self.events.append(("perform", instructions))

    def performed(self) -> list[ins.Instruction]:
        return [i for kind, batch in self.events if kind == "perform" for i in batch]


class FakeCompute:
    """Files of one node: path (relative to the node root) -> bytes; directories implied."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def task_dir(self, job_id: str, task_id: str) -> str:
        return f"workitems/{job_id}/job-1/{task_id}"

    def _entry(self, path: str) -> NodeFile:
        if path in self.files:
            return NodeFile(path, False, len(self.files[path]), 1_700_000_000.0, 1_700_000_000.0, 0o100644)
        if any(p.startswith(path + "/") for p in self.files):
            return NodeFile(path, True, 0, 1_700_000_000.0, 1_700_000_000.0, 0o40755)
        raise FileAccessError("FileNotFound", path)

    async def list_files(self, pool_id: str, node_id: str, base: str, recursive: bool) -> list[NodeFile]:
        if base and not self._entry(base).is_directory:
            raise FileAccessError("FileNotFound", base)
        prefix = base + "/" if base else ""
        names: set[str] = set()
        for path in self.files:
            if path.startswith(prefix):
                parts = path[len(prefix):].split("/")
                for i in range(1, len(parts) + 1 if recursive else 2):
                    names.add(prefix + "/".join(parts[:i]))
        return [self._entry(n) for n in sorted(names)]

    async def stat_file(self, pool_id: str, node_id: str, path: str) -> NodeFile:
        return self._entry(path)

    async def open_file(self, pool_id: str, node_id: str, path: str) -> _Opened:
        return _Opened(self._entry(path), self.files.get(path, b""))

    async def delete_file(self, pool_id: str, node_id: str, path: str, recursive: bool) -> None:
        doomed = [p for p in self.files if p == path or p.startswith(path + "/")]
        if path not in self.files and doomed and not recursive:
            raise FileAccessError("DirectoryNotEmpty", "the directory is not empty")
        for p in doomed:
            del self.files[p]


class _Opened:
    def __init__(self, info: NodeFile, data: bytes):
        self.info, self.data = info, data

    async def read(self, start: int, end: int | None) -> AsyncIterator[bytes]:
        yield self.data[start: None if end is None else end + 1]

    def close(self) -> None:
        pass


@pytest.fixture
def ctx(tmp_path: Path) -> BatchContext:
    store = BatchStore(tmp_path / "batch.db")
    return BatchContext(settings=None, store=store, hooks=Hooks(), compute=FakeCompute())  # type: ignore[arg-type]


def hooks(ctx: BatchContext) -> Hooks:
    assert isinstance(ctx.hooks, Hooks)
    return ctx.hooks


def add_job(ctx: BatchContext, job_id: str = "job1", **extra: Any) -> dict[str, Any]:
    return run(jobs.add_job(ctx, A, {"id": job_id, "poolInfo": {"poolId": "pool1"}, **extra}, BASE))


def code_of(exc: pytest.ExceptionInfo[e.BatchError]) -> str:
    return exc.value.code


# --- durations and validation ---------------------------------------------------------------------


@pytest.mark.parametrize("text,rendered", [("P1D", "P1D"), ("PT600S", "PT10M"), ("PT1.5S", "PT1.5S"),
                                           ("P1DT2H", "P1DT2H"), ("PT0S", "PT0S"), (tasks.UNLIMITED, tasks.UNLIMITED)])
def test_durations_are_rendered_as_azure_does(text: str, rendered: str) -> None:
    assert tasks.duration_text({"d": text}, "d") == rendered


@pytest.mark.parametrize("text", ["P", "PT", "1D", "P1H", "PT1D", "10 minutes", "-P1D"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(e.BatchError) as exc:
        tasks.duration_text({"d": text}, "d")
    assert code_of(exc) == "InvalidPropertyValue"


def job_doc(**extra: Any) -> dict[str, Any]:
    return {"id": "job1", "constraints": {"maxTaskRetryCount": 2}, "onTaskFailure": "noaction", **extra}


def build(body: dict[str, Any], **job_extra: Any) -> dict[str, Any]:
    return tasks.build_task(body, job_doc(**job_extra), "2024-01-01T00:00:00.000000Z", BASE)


def test_new_task_has_azure_defaults() -> None:
    doc = build({"id": "Task-1", "commandLine": "/bin/true", "unknownProperty": 1})
    assert doc["state"] == "active" and doc["creationTime"] == doc["stateTransitionTime"]
    assert doc["url"] == f"{BASE}/jobs/job1/tasks/Task-1"
    assert doc["executionInfo"] == {"retryCount": 0, "requeueCount": 0}
    assert doc["requiredSlots"] == 1 and doc["eTag"].startswith("0x")
    assert doc["constraints"] == {"maxWallClockTime": tasks.UNLIMITED, "retentionTime": "P7D", "maxTaskRetryCount": 2}
    assert doc["userIdentity"] == {"autoUser": {"scope": "pool", "elevationLevel": "nonadmin"}}


@pytest.mark.parametrize(
    "body,code",
    [
        ({"commandLine": "x"}, "MissingRequiredProperty"),
        ({"id": "a b", "commandLine": "x"}, "InvalidPropertyValue"),
        ({"id": "x" * 65, "commandLine": "x"}, "InvalidPropertyValue"),
        ({"id": "t"}, "MissingRequiredProperty"),
        ({"id": "t", "commandLine": ""}, "MissingRequiredProperty"),
        ({"id": "t", "commandLine": "x", "requiredSlots": 0}, "InvalidPropertyValue"),
        ({"id": "t", "commandLine": "x", "requiredSlots": "2"}, "InvalidRequestBody"),
        ({"id": "t", "commandLine": "x", "resourceFiles": [{"filePath": "a"}]}, "MissingRequiredProperty"),
        ({"id": "t", "commandLine": "x", "resourceFiles": [{"httpUrl": "http://h/a", "autoStorageContainerName": "c",
                                                          "filePath": "a"}]}, "InvalidPropertyValue"),
        ({"id": "t", "commandLine": "x", "resourceFiles": [{"httpUrl": "http://h/a"}]}, "MissingRequiredProperty"),
        ({"id": "t", "commandLine": "x", "resourceFiles": [{"httpUrl": "http://h/a", "filePath": "../up"}]},
         "InvalidPropertyValue"),
        ({"id": "t", "commandLine": "x", "outputFiles": [{"filePattern": "*.txt"}]}, "MissingRequiredProperty"),
        ({"id": "t", "commandLine": "x", "outputFiles": [{"filePattern": "*", "destination": {"container": {
            "containerUrl": "http://c"}}, "uploadOptions": {"uploadCondition": "sometimes"}}]}, "InvalidPropertyValue"),
        ({"id": "t", "commandLine": "x", "constraints": {"maxWallClockTime": "10 minutes"}}, "InvalidPropertyValue"),
        ({"id": "t", "commandLine": "x", "constraints": {"maxTaskRetryCount": -2}}, "InvalidPropertyValue"),
        ({"id": "t", "commandLine": "x", "userIdentity": {"username": "u", "autoUser": {}}}, "InvalidPropertyValue"),
        ({"id": "t", "commandLine": "x", "userIdentity": {"autoUser": {"elevationLevel": "root"}}},
         "InvalidPropertyValue"),
        ({"id": "t", "commandLine": "x", "dependsOn": {"taskIds": ["a"]}}, "TaskDependenciesNotSpecifiedOnJob"),
        ({"id": "t", "commandLine": "x", "exitConditions": {"default": {"jobAction": "terminate"}}},
         "InvalidPropertyValue"),
        ({"id": "t", "commandLine": "x", "environmentSettings": [{"value": "v"}]}, "MissingRequiredProperty"),
        ("not an object", "InvalidRequestBody"),
    ],
)
def test_invalid_tasks_are_refused_as_azure_does(body: Any, code: str) -> None:
    with pytest.raises(e.BatchError) as exc:
        tasks.build_task(body, job_doc(), "2024-01-01T00:00:00Z", BASE)
    assert code_of(exc) == code


def test_valid_task_details_are_kept_and_normalised() -> None:
    doc = build({"id": "t", "commandLine": "x", "requiredSlots": 2,
                 "resourceFiles": [{"storageContainerUrl": "http://c?sas", "blobPrefix": "in/"},
                                   {"httpUrl": "http://h/a", "filePath": "sub/a", "fileMode": "0755"}],
                 "outputFiles": [{"filePattern": "*.txt", "destination": {"container": {"containerUrl": "http://c"}},
                                  "uploadOptions": {"uploadCondition": "TaskSuccess"}}],
                 "constraints": {"maxWallClockTime": "PT10M", "maxTaskRetryCount": -1},
                 "userIdentity": {"autoUser": {"scope": "task", "elevationLevel": "Admin"}},
                 "dependsOn": {"taskIds": ["a"], "taskIdRanges": [{"start": 1, "end": 3}]},
                 "exitConditions": {"default": {"jobAction": "terminate"}}},
                usesTaskDependencies=True, onTaskFailure="performexitoptionsjobaction")
    assert doc["requiredSlots"] == 2
    assert doc["outputFiles"][0]["uploadOptions"]["uploadCondition"] == "tasksuccess"
    assert doc["constraints"]["maxWallClockTime"] == "PT10M" and doc["constraints"]["maxTaskRetryCount"] == -1
    assert doc["userIdentity"]["autoUser"] == {"scope": "task", "elevationLevel": "admin"}
    assert doc["dependsOn"]["taskIdRanges"] == [{"start": 1, "end": 3}]


def test_task_id_equal_to_job_preparation_task_id_is_refused() -> None:
    with pytest.raises(e.BatchError) as exc:
        build({"id": "JobPreparation", "commandLine": "x"}, jobPreparationTask={"id": "jobpreparation"})
    assert code_of(exc) == "TaskIdSameAsJobPreparationTask"


# --- jobs ---------------------------------------------------------------------------------------


def test_add_job_fills_read_only_fields_and_defaults(ctx: BatchContext) -> None:
    job = add_job(ctx, "Job-A", metadata=[{"name": "k", "value": "v"}], onAllTasksComplete="terminateJob")
    assert job["state"] == "active" and job["url"] == f"{BASE}/jobs/Job-A"
    assert job["priority"] == 0 and job["maxParallelTasks"] == -1 and job["allowTaskPreemption"] is False
    assert job["constraints"] == {"maxWallClockTime": tasks.UNLIMITED, "maxTaskRetryCount": 0}
    assert job["executionInfo"]["poolId"] == "pool1" and job["onAllTasksComplete"] == "terminatejob"
    assert job["onTaskFailure"] == "noaction" and job["usesTaskDependencies"] is False
    assert ctx.store.get("job", A, "job-a") is job
    assert hooks(ctx).events == [("job", "active")]


@pytest.mark.parametrize(
    "extra,code",
    [
        ({"priority": 1001}, "OutOfRangePriority"),
        ({"priority": -1001}, "OutOfRangePriority"),
        ({"maxParallelTasks": 0}, "InvalidPropertyValue"),
        ({"constraints": {"maxWallClockTime": "forever"}}, "InvalidPropertyValue"),
        ({"onAllTasksComplete": "explode"}, "InvalidPropertyValue"),
        ({"poolInfo": {}}, "MissingRequiredProperty"),
        ({"poolInfo": None}, "MissingRequiredProperty"),
        ({"poolInfo": {"autoPoolSpecification": {"poolLifetimeOption": "job"}}}, "MissingRequiredProperty"),
        ({"poolInfo": {"autoPoolSpecification": {"poolLifetimeOption": "jobschedule", "pool": {}}}},
         "InvalidPropertyValue"),
        ({"poolInfo": {"poolId": "p", "autoPoolSpecification": {"poolLifetimeOption": "job", "pool": {}}}},
         "InvalidPropertyValue"),
        ({"poolInfo": {"autoPoolSpecification": {"poolLifetimeOption": "job", "autoPoolIdPrefix": "x" * 21,
                                                 "pool": {}}}}, "InvalidPropertyValue"),
        ({"jobReleaseTask": {"commandLine": "x"}}, "InvalidPropertyValue"),
        ({"jobPreparationTask": {"id": "same", "commandLine": "x"}, "jobReleaseTask": {"id": "same", "commandLine": "y"}},
         "InvalidPropertyValue"),
        ({"jobPreparationTask": {"commandLine": "x"}, "jobReleaseTask": {"commandLine": "y", "maxWallClockTime": "PT1H"}},
         "InvalidPropertyValue"),
        ({"jobManagerTask": {"commandLine": "x"}}, "MissingRequiredProperty"),
        ({"metadata": [{"name": "k"}]}, "MissingRequiredProperty"),
    ],
)
def test_invalid_jobs_are_refused(ctx: BatchContext, extra: dict[str, Any], code: str) -> None:
    with pytest.raises(e.BatchError) as exc:
        add_job(ctx, **extra)
    assert code_of(exc) == code
    assert ctx.store.get("job", A, "job1") is None


def test_job_ids_are_unique_case_insensitively(ctx: BatchContext) -> None:
    add_job(ctx, "Job1")
    with pytest.raises(e.BatchError) as exc:
        add_job(ctx, "JOB1")
    assert code_of(exc) == "JobExists"


def test_job_manager_task_becomes_a_task_of_the_job(ctx: BatchContext) -> None:
    add_job(ctx, jobManagerTask={"id": "manager", "commandLine": "/bin/true", "killJobOnCompletion": False})
    task = ctx.store.get_task(A, "job1", "manager")
    assert task is not None and task["state"] == "active" and task["commandLine"] == "/bin/true"
    assert task["_jobManager"] == {"killJobOnCompletion": False, "runExclusive": True}
    assert hooks(ctx).events == [("added", ["manager"]), ("job", "active")]  # never a job without its manager


def test_list_jobs_pages_by_id(ctx: BatchContext) -> None:
    for name in ("b", "A", "c"):
        add_job(ctx, name)
    page, token = jobs.list_jobs(ctx, A, match=None, after="", limit=2)
    assert [d["id"] for d in page] == ["A", "b"] and token == "b"
    page, token = jobs.list_jobs(ctx, A, match=None, after=token, limit=2)
    assert [d["id"] for d in page] == ["c"] and token is None


def test_patch_merges_and_update_replaces(ctx: BatchContext) -> None:
    add_job(ctx, priority=5, metadata=[{"name": "a", "value": "1"}], maxParallelTasks=3)
    job = run(jobs.patch_job(ctx, A, "job1", {"priority": 7}))
    assert job["priority"] == 7 and job["maxParallelTasks"] == 3 and job["metadata"] == [{"name": "a", "value": "1"}]
    etag = job["eTag"]
    job = run(jobs.update_job(ctx, A, "job1", {"poolInfo": {"poolId": "pool1"}}))
    assert job["priority"] == 0 and job["maxParallelTasks"] == -1 and "metadata" not in job
    assert job["eTag"] != etag


def test_on_all_tasks_complete_cannot_go_back_to_noaction(ctx: BatchContext) -> None:
    add_job(ctx, onAllTasksComplete="terminatejob")
    with pytest.raises(e.BatchError) as exc:
        run(jobs.patch_job(ctx, A, "job1", {"onAllTasksComplete": "noaction"}))
    assert code_of(exc) == "InvalidPropertyValue"


def test_pool_changes_only_while_disabled(ctx: BatchContext) -> None:
    add_job(ctx)
    with pytest.raises(e.BatchError) as exc:
        run(jobs.patch_job(ctx, A, "job1", {"poolInfo": {"poolId": "other"}}))
    assert code_of(exc) == "JobNotDisabled"
    job = ctx.store.get("job", A, "job1")
    assert job is not None
    job["state"] = "disabled"
    job = run(jobs.patch_job(ctx, A, "job1", {"poolInfo": {"poolId": "other"}}))
    assert job["poolInfo"] == {"poolId": "other"} and job["executionInfo"]["poolId"] == "other"


def test_disable_enable_terminate_go_through_the_table(ctx: BatchContext) -> None:
    add_job(ctx)
    job = run(jobs.disable_job(ctx, A, "job1", {"disableTasks": "requeue"}))
    assert job["state"] == "disabling" and job["previousState"] == "active"
    assert hooks(ctx).performed() == [ins.DisableJobTasks(job_id="job1", option="requeue")]
    job["state"] = "disabled"  # what the engine does once the running tasks are requeued
    job = run(jobs.enable_job(ctx, A, "job1"))
    assert job["state"] == "active" and job["previousState"] == "enabling"
    job = run(jobs.terminate_job(ctx, A, "job1", {"terminateReason": "MyReason"}))
    assert job["state"] == "terminating" and job["executionInfo"]["terminateReason"] == "MyReason"
    assert ins.StopJobTasks(job_id="job1", reason="MyReason") in hooks(ctx).performed()
    states.JOB.apply(job, states.JobState.COMPLETED, states.Context("2024-01-01T00:00:00Z"))  # the engine's part
    with pytest.raises(e.BatchError) as exc:
        run(tasks.add_task(ctx, A, "job1", {"id": "late", "commandLine": "x"}, BASE))
    assert code_of(exc) == "JobCompleted"
    with pytest.raises(e.BatchError) as exc:
        run(jobs.disable_job(ctx, A, "job1", {"disableTasks": "wait"}))
    assert code_of(exc) == "JobCompleted"


def test_disable_needs_an_option(ctx: BatchContext) -> None:
    add_job(ctx)
    for body, code in (({}, "MissingRequiredProperty"), ({"disableTasks": "later"}, "InvalidPropertyValue")):
        with pytest.raises(e.BatchError) as exc:
            run(jobs.disable_job(ctx, A, "job1", body))
        assert code_of(exc) == code


def test_delete_marks_deleting_and_asks_the_engine_to_purge(ctx: BatchContext) -> None:
    add_job(ctx)
    run(tasks.add_task(ctx, A, "job1", {"id": "t1", "commandLine": "x"}, BASE))
    job = run(jobs.delete_job(ctx, A, "job1"))
    assert job["state"] == "deleting"
    assert ins.PurgeJob(job_id="job1") in hooks(ctx).performed()
    for call in (lambda: jobs.patch_job(ctx, A, "job1", {"priority": 1}),
                 lambda: jobs.delete_job(ctx, A, "job1"),
                 lambda: jobs.terminate_job(ctx, A, "job1"),
                 lambda: tasks.add_task(ctx, A, "job1", {"id": "t2", "commandLine": "x"}, BASE)):
        with pytest.raises(e.BatchError) as exc:
            run(call())
        assert code_of(exc) == "JobBeingDeleted"
    assert jobs.get_job(ctx, A, "job1")["state"] == "deleting"
    with pytest.raises(e.BatchError) as exc:
        add_job(ctx, "JOB1")
    assert code_of(exc) == "JobBeingDeleted"


def test_prep_release_status_lists_engine_records(ctx: BatchContext) -> None:
    add_job(ctx, "plain")
    with pytest.raises(e.BatchError) as exc:
        jobs.prep_release_status(ctx, A, "plain", match=None, after="", limit=10)
    assert code_of(exc) == "JobPreparationTaskNotSpecified"
    job = add_job(ctx, jobPreparationTask={"commandLine": "x"})
    job["_prepRelease"] = {node: {"poolId": "pool1", "nodeId": node,
                                  "jobPreparationTaskExecutionInfo": {"state": "completed"}} for node in ("n2", "n1")}
    page, token = jobs.prep_release_status(ctx, A, "job1", match=None, after="", limit=1)
    assert page == [{"poolId": "pool1", "nodeId": "n1", "jobPreparationTaskExecutionInfo": {"state": "completed"}}]
    assert token == "n1"


# --- tasks --------------------------------------------------------------------------------------


def bodies(n: int, prefix: str = "t") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i}", "commandLine": "/bin/true"} for i in range(n)]


def test_collection_keeps_valid_tasks_and_reports_the_others(ctx: BatchContext) -> None:
    add_job(ctx)
    run(tasks.add_task(ctx, A, "job1", {"id": "exists", "commandLine": "x"}, BASE))
    batch = [*bodies(3), {"id": "EXISTS", "commandLine": "x"}, {"id": "t1", "commandLine": "dup"},
             {"id": "bad id", "commandLine": "x"}, {"id": "nocmd"}]
    results = run(tasks.add_task_collection(ctx, A, "job1", batch, BASE))
    by_id = {r["taskId"]: r for r in results}
    assert [by_id[f"t{i}"]["status"] for i in range(3)] == ["success"] * 3
    assert by_id["t0"]["location"] == f"{BASE}/jobs/job1/tasks/t0" and by_id["t0"]["eTag"]
    assert by_id["EXISTS"]["error"]["code"] == "TaskExists"
    assert by_id["bad id"]["error"]["code"] == "InvalidPropertyValue"
    assert by_id["nocmd"]["error"]["code"] == "MissingRequiredProperty"
    assert by_id["nocmd"]["error"]["values"] == [{"key": "PropertyName", "value": "commandLine"}]
    assert sum(1 for r in results if r["taskId"] == "t1" and r["status"] == "clienterror") == 1
    assert len(results) == len(batch)
    assert hooks(ctx).events[-1] == ("added", ["t0", "t1", "t2"])
    assert ctx.store.task_state_counts(A, "job1") == {"active": 4}


def test_collection_limits(ctx: BatchContext) -> None:
    add_job(ctx)
    with pytest.raises(e.BatchError) as exc:
        run(tasks.add_task_collection(ctx, A, "job1", bodies(101), BASE))
    assert code_of(exc) == "RequestBodyTooLarge"
    with pytest.raises(e.BatchError) as exc:
        run(tasks.add_task_collection(ctx, A, "job1", None, BASE))
    assert code_of(exc) == "MissingRequiredProperty"
    with pytest.raises(e.BatchError) as exc:
        run(tasks.add_task_collection(ctx, A, "nojob", bodies(1), BASE))
    assert code_of(exc) == "JobNotFound"


def test_single_add_refuses_duplicates(ctx: BatchContext) -> None:
    add_job(ctx)
    run(tasks.add_task(ctx, A, "job1", {"id": "T", "commandLine": "x"}, BASE))
    with pytest.raises(e.BatchError) as exc:
        run(tasks.add_task(ctx, A, "job1", {"id": "t", "commandLine": "x"}, BASE))
    assert code_of(exc) == "TaskExists"


def test_list_pages_in_submission_order_with_state_prefilter(ctx: BatchContext) -> None:
    add_job(ctx)
    run(tasks.add_task_collection(ctx, A, "job1", bodies(25), BASE))
    run(tasks.terminate_task(ctx, A, "job1", "t3"))
    seen: list[str] = []
    after: int | None = 0
    while after is not None:
        page, after = tasks.list_tasks(ctx, A, "job1", match=None, state="active", after=after, limit=10)
        seen += [d["id"] for d in page]
    assert seen == [f"t{i}" for i in range(25) if i != 3]
    odd = tasks.list_tasks(ctx, A, "job1", match=lambda d: int(d["id"][1:]) % 2 == 1, state=None, after=0,
                           limit=5)
    assert [d["id"] for d in odd[0]] == ["t1", "t3", "t5", "t7", "t9"] and odd[1] is not None
    assert tasks.list_tasks(ctx, A, "job1", match=lambda d: False, state=None, after=0, limit=5) == ([], None)


def test_a_rare_match_over_a_big_job_gives_a_short_page_with_a_next_link(ctx: BatchContext) -> None:
    add_job(ctx)
    for chunk in range(12):
        run(tasks.add_task_collection(ctx, A, "job1", bodies(100, f"c{chunk}-"), BASE))
    page, token = tasks.list_tasks(ctx, A, "job1", match=lambda d: d["id"] == "c11-99", state=None, after=0,
                                   limit=5, scan_budget=1)
    assert page == [] and token is not None
    page, token = tasks.list_tasks(ctx, A, "job1", match=lambda d: d["id"] == "c11-99", state=None, after=token,
                                   limit=5, scan_budget=1)
    assert [d["id"] for d in page] == ["c11-99"] and token is None


def test_terminate_and_reactivate(ctx: BatchContext) -> None:
    add_job(ctx)
    run(tasks.add_task_collection(ctx, A, "job1", bodies(2), BASE))
    task = run(tasks.terminate_task(ctx, A, "job1", "t0"))
    assert task["state"] == "completed" and task["previousState"] == "active"
    assert task["executionInfo"]["result"] == "failure"
    assert task["executionInfo"]["failureInfo"]["code"] == "TaskEnded"
    with pytest.raises(e.BatchError) as exc:
        run(tasks.terminate_task(ctx, A, "job1", "t0"))
    assert code_of(exc) == "TaskCompleted"
    with pytest.raises(e.BatchError) as exc:
        run(tasks.reactivate_task(ctx, A, "job1", "t1"))
    assert code_of(exc) == "TaskNotCompleted"
    task = run(tasks.reactivate_task(ctx, A, "job1", "t0"))
    assert task["state"] == "active" and task["executionInfo"] == {"retryCount": 0, "requeueCount": 0}
    stored = ctx.store.get_task(A, "job1", "t0")
    assert stored is not None and stored["state"] == "active"
    assert ("task", ("t0", "active", False)) in hooks(ctx).events


def test_reactivating_a_succeeded_task_is_refused(ctx: BatchContext) -> None:
    add_job(ctx)
    run(tasks.add_task(ctx, A, "job1", {"id": "ok", "commandLine": "x"}, BASE))
    task = ctx.store.get_task(A, "job1", "ok")
    assert task is not None
    task.update(state="completed", executionInfo={"result": "success", "exitCode": 0, "retryCount": 0,
                                                  "requeueCount": 0})
    ctx.store.update_task(A, "job1", task)
    with pytest.raises(e.BatchError) as exc:
        run(tasks.reactivate_task(ctx, A, "job1", "ok"))
    assert code_of(exc) == "OperationInvalidForCurrentState"


def test_terminating_or_deleting_a_running_task_asks_the_engine_to_kill_it(ctx: BatchContext) -> None:
    add_job(ctx)
    run(tasks.add_task_collection(ctx, A, "job1", bodies(2), BASE))
    for task_id in ("t0", "t1"):
        task = ctx.store.get_task(A, "job1", task_id)
        assert task is not None
        task.update(state="running", nodeInfo={"poolId": "pool1", "nodeId": "node1"})
        ctx.store.update_task(A, "job1", task)
    run(tasks.terminate_task(ctx, A, "job1", "t0"))
    run(tasks.delete_task(ctx, A, "job1", "t1"))
    assert hooks(ctx).performed() == [ins.KillTask(job_id="job1", task_id="t0", node_id="node1"),
                                      ins.KillTask(job_id="job1", task_id="t1", node_id="node1")]
    assert ("task", ("t1", "completed", True)) in hooks(ctx).events
    assert ctx.store.get_task(A, "job1", "t1") is None


def test_update_replaces_constraints(ctx: BatchContext) -> None:
    add_job(ctx, constraints={"maxTaskRetryCount": 3})
    run(tasks.add_task(ctx, A, "job1", {"id": "t", "commandLine": "x", "constraints": {"maxWallClockTime": "PT1H"}},
                       BASE))
    task = run(tasks.update_task(ctx, A, "job1", "t", {"constraints": {"retentionTime": "PT1H"}}))
    assert task["constraints"] == {"maxWallClockTime": tasks.UNLIMITED, "retentionTime": "PT1H",
                                   "maxTaskRetryCount": 3}


def test_task_counts(ctx: BatchContext) -> None:
    add_job(ctx)
    run(tasks.add_task_collection(ctx, A, "job1", [*bodies(3), {"id": "big", "commandLine": "x",
                                                                 "requiredSlots": 4}], BASE))
    run(tasks.terminate_task(ctx, A, "job1", "t0"))
    task = ctx.store.get_task(A, "job1", "t1")
    assert task is not None
    task.update(state="completed", executionInfo={"result": "success", "exitCode": 0})
    ctx.store.update_task(A, "job1", task)
    counts = jobs.task_counts(ctx, A, "job1")
    assert counts["taskCounts"] == {"active": 2, "running": 0, "completed": 2, "succeeded": 1, "failed": 1}
    assert counts["taskSlotCounts"] == {"active": 5, "running": 0, "completed": 2, "succeeded": 1, "failed": 1}


# --- files --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/etc/passwd", "a\\..\\..\\b"])
def test_file_paths_that_leave_the_directory_are_refused(path: str) -> None:
    with pytest.raises(e.BatchError) as exc:
        files.clean_path(path)
    assert code_of(exc) == "InvalidUri"


def test_clean_paths() -> None:
    assert files.clean_path("wd//./out\\x.txt") == "wd/out/x.txt"


def test_task_files_are_listed_relative_to_the_task_dir(ctx: BatchContext) -> None:
    add_job(ctx)
    run(tasks.add_task(ctx, A, "job1", {"id": "t", "commandLine": "x"}, BASE))
    with pytest.raises(e.BatchError) as exc:
        files.task_location(ctx, A, "job1", "t", BASE)
    assert code_of(exc) == "FileNotFound"  # never ran
    task = ctx.store.get_task(A, "job1", "t")
    assert task is not None
    task["nodeInfo"] = {"poolId": "pool1", "nodeId": "node1"}
    ctx.store.update_task(A, "job1", task)
    compute = ctx.compute
    assert isinstance(compute, FakeCompute)
    compute.files.update({"workitems/job1/job-1/t/stdout.txt": b"hello", "workitems/job1/job-1/t/wd/out/a.txt": b"a",
                          "shared/x": b""})
    loc = files.task_location(ctx, A, "job1", "t", BASE)
    page, token = run(files.list_files(ctx, loc, recursive=False, match=None, after=0, limit=100))
    assert [d["name"] for d in page] == ["stdout.txt", "wd"] and token is None
    assert page[0]["url"] == f"{BASE}/jobs/job1/tasks/t/files/stdout.txt"
    assert page[0]["properties"]["contentLength"] == 5 and page[0]["properties"]["fileMode"] == "0644"
    page, token = run(files.list_files(ctx, loc, recursive=True, match=None, after=0, limit=2))
    assert [d["name"] for d in page] == ["stdout.txt", "wd"] and token == 2
    page, token = run(files.list_files(ctx, loc, recursive=True, match=None, after=2, limit=2))
    assert [d["name"] for d in page] == ["wd/out", "wd/out/a.txt"] and token is None
    opened = run(files.open_file(ctx, loc, "stdout.txt"))
    assert opened.info.size == 5

    async def read_all() -> bytes:
        return b"".join([c async for c in files.read(opened, "stdout.txt", 1, 3)])

    assert run(read_all()) == b"ell"
    with pytest.raises(e.BatchError) as exc:
        run(files.delete(ctx, loc, "wd", recursive=False))
    assert code_of(exc) == "OperationInvalidForCurrentState"
    run(files.delete(ctx, loc, "wd", recursive=True))
    with pytest.raises(e.BatchError) as exc:
        run(files.open_file(ctx, loc, "wd/out/a.txt"))
    assert code_of(exc) == "FileNotFound"


def test_node_files_need_the_pool_and_node(ctx: BatchContext) -> None:
    with pytest.raises(e.BatchError) as exc:
        files.node_location(ctx, A, "nopool", "n", BASE)
    assert code_of(exc) == "PoolNotFound"
    ctx.store.put("pool", A, {"id": "Pool1"})
    with pytest.raises(e.BatchError) as exc:
        files.node_location(ctx, A, "pool1", "n", BASE)
    assert code_of(exc) == "NodeNotFound"
    ctx.store.put("node", A, {"id": "n"}, parent="pool1")
    loc = files.node_location(ctx, A, "pool1", "n", BASE)
    assert loc.base == "" and loc.file_url("shared/a b") == f"{BASE}/pools/Pool1/nodes/n/files/shared/a%20b"
