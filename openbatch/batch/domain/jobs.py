"""Jobs: add, get, list, patch, update, disable, enable, terminate, delete, task counts, and the
job preparation / release task status.

A job document is a dict in the modern wire shape (``CloudJob``). State changes go through
``states.JOB``; the instructions they return go to ``ctx.hooks.perform``, and the engine
(batch/engine_jobs.py) finishes what they start: disabling -> disabled once the running tasks
are dealt with (``DisableJobTasks``), terminating -> completed (``executionInfo.endTime``) and
deleting -> gone (tasks purged) once ``StopJobTasks`` / ``RunJobRelease`` / ``PurgeJob`` are done.
``enabling`` is passed straight through to ``active`` here: nothing has to happen in between.

The Job Manager task is added as an ordinary task of the job (same id) when the job is added,
with ``_jobManager: {"killJobOnCompletion", "runExclusive"}`` on the task document. A job with
``poolInfo.autoPoolSpecification`` gets its pool when it is added (domain/autopools.py); jobs a
job schedule creates carry ``_jobScheduleId`` (domain/schedules.py, batch/engine_schedules.py).

Job preparation / release status is kept by the engine in the job document under
``_prepRelease``: ``{node_id: {"poolId", "nodeId", "nodeUrl", "jobPreparationTaskExecutionInfo":
{...}, "jobReleaseTaskExecutionInfo": {...}}}`` — one wire-shaped status entry per node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openbatch.batch.domain import autopools, states
from openbatch.batch.domain import errors as e
from openbatch.batch.domain import tasks as t
from openbatch.batch.domain.common import BatchContext, Doc, check_id, new_etag, now_iso, touch
from openbatch.batch.domain.events import EngineHooks
from openbatch.batch.wire import models as m

ON_ALL_TASKS_COMPLETE = ("noaction", "terminatejob")
ON_TASK_FAILURE = ("noaction", "performexitoptionsjobaction")
DISABLE_OPTIONS = ("requeue", "terminate", "wait")
RELEASE_MAX_WALL_CLOCK = "PT15M"

_J = states.JobState
Guard = Callable[[Doc], None]
Match = Callable[[Any], bool]


def _no_guard(doc: Doc) -> None:
    return None


# --- validation ---------------------------------------------------------------------------------


def check_priority(obj: Doc) -> int | None:
    value = obj.get("priority")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise m.invalid("priority", value, "The value must be an integer.")
    if not -1000 <= value <= 1000:
        raise e.OutOfRangePriority(
            "The specified priority is outside the allowed range of -1000 to 1000.",
            {"PropertyName": "priority", "PropertyValue": str(value)},
        )
    return value


def _max_parallel(obj: Doc) -> int | None:
    value = m.integer(obj, "maxParallelTasks", lo=-1)
    if value == 0:
        raise m.invalid("maxParallelTasks", value, "The value must be -1 (no limit) or at least 1.")
    return value


def job_constraints(given: Doc | None) -> Doc:
    given = given or {}
    retries = m.integer(given, "maxTaskRetryCount", lo=-1, prop="constraints.maxTaskRetryCount")
    return {
        "maxWallClockTime": t.duration_text(given, "maxWallClockTime", "constraints.maxWallClockTime") or t.UNLIMITED,
        "maxTaskRetryCount": 0 if retries is None else retries,
    }


def pool_info(obj: Doc, *, schedule: bool = False) -> Doc:
    """The validated poolInfo (required): an existing pool's id, or an auto pool specification
    (``schedule``: of a job schedule's job specification, which may ask for the jobschedule lifetime)."""
    info = m.obj(obj, "poolInfo", required=True) or {}
    auto = m.obj(info, "autoPoolSpecification", prop="poolInfo.autoPoolSpecification")
    pool_id = info.get("poolId")
    if auto is not None:
        if pool_id not in (None, ""):
            raise m.invalid("poolInfo.poolId", pool_id,
                            "Specify either poolId or autoPoolSpecification in poolInfo, not both.")
        return {"autoPoolSpecification": autopools.check_spec(auto, schedule=schedule)}
    if pool_id is None or pool_id == "":
        raise m.missing("poolId")
    check_id(pool_id, "poolId")
    return {"poolId": pool_id}


def _metadata(obj: Doc) -> list[Doc] | None:
    return m.name_value_pairs(obj, "metadata", unique=False)


def _job_manager(spec: Doc) -> Doc:
    check_id(spec.get("id"), "id")
    t.check_task_spec(spec)
    t.check_output_files(spec)
    m.integer(spec, "requiredSlots", lo=1, prop="jobManagerTask.requiredSlots")
    for key in ("killJobOnCompletion", "runExclusive", "allowLowPriorityNode"):
        m.boolean(spec, key)
    if spec.get("constraints") is not None:
        t.task_constraints(m.obj(spec, "constraints"), {})
    return spec


def _job_preparation(spec: Doc) -> Doc:
    spec = {"id": "jobpreparation", **{k: v for k, v in spec.items() if v is not None}}
    check_id(spec["id"], "id")
    t.check_task_spec(spec)
    for key in ("waitForSuccess", "rerunOnNodeRebootAfterSuccess"):
        spec[key] = True if m.boolean(spec, key) is None else spec[key]
    spec["constraints"] = t.task_constraints(m.obj(spec, "constraints"), {})
    return spec


def _job_release(spec: Doc) -> Doc:
    spec = {"id": "jobrelease", **{k: v for k, v in spec.items() if v is not None}}
    check_id(spec["id"], "id")
    t.check_task_spec(spec)
    limit = t.duration_text(spec, "maxWallClockTime", "jobReleaseTask.maxWallClockTime") or RELEASE_MAX_WALL_CLOCK
    wall = m.parse_duration(limit)
    if wall is None or wall.total_seconds() > 15 * 60:
        raise m.invalid("maxWallClockTime", limit, "The job release task may not run for longer than 15 minutes.")
    spec["maxWallClockTime"] = limit
    spec["retentionTime"] = t.duration_text(spec, "retentionTime", "jobReleaseTask.retentionTime") or t.DEFAULT_RETENTION
    return spec


def _check_job_tasks(body: Doc, doc: Doc) -> None:
    prep, release = m.obj(body, "jobPreparationTask"), m.obj(body, "jobReleaseTask")
    if prep is not None:
        doc["jobPreparationTask"] = _job_preparation(prep)
    if release is not None:
        if prep is None:
            raise m.invalid("jobReleaseTask", "jobReleaseTask",
                            "A job release task cannot be specified without a job preparation task.")
        doc["jobReleaseTask"] = _job_release(release)
        if doc["jobReleaseTask"]["id"].lower() == doc["jobPreparationTask"]["id"].lower():
            raise m.invalid("id", doc["jobReleaseTask"]["id"],
                            "The job preparation and job release tasks must have different ids.")
    manager = m.obj(body, "jobManagerTask")
    if manager is not None:
        doc["jobManagerTask"] = _job_manager(manager)


_READ_ONLY = ("url", "eTag", "lastModified", "creationTime", "state", "stateTransitionTime", "previousState",
              "previousStateTransitionTime", "executionInfo", "stats")


def build_job(body: Doc, now: str, base_url: str, *, schedule: bool = False) -> Doc:
    """A new job document from an add-job body (modern shape), or the BatchError Azure answers
    (``schedule``: the body is a job schedule's job specification with a placeholder id)."""
    job_id = check_id(body.get("id"))
    m.string(body, "displayName", max_len=1024)
    doc: Doc = {k: v for k, v in body.items() if v is not None and not k.startswith(("_", "odata."))
                and k not in _READ_ONLY}
    info = pool_info(body, schedule=schedule)
    priority, parallel = check_priority(body), _max_parallel(body)
    env = t.check_environment(body, "commonEnvironmentSettings")
    if env is not None:
        doc["commonEnvironmentSettings"] = env
    if (metadata := _metadata(body)) is not None:
        doc["metadata"] = metadata
    _check_job_tasks(body, doc)
    doc.update(
        id=job_id,
        url=f"{base_url}/jobs/{job_id}",
        eTag=new_etag(),
        lastModified=now,
        creationTime=now,
        state=_J.ACTIVE.value,
        stateTransitionTime=now,
        priority=priority or 0,
        maxParallelTasks=-1 if parallel is None else parallel,
        allowTaskPreemption=bool(m.boolean(body, "allowTaskPreemption")),
        usesTaskDependencies=bool(m.boolean(body, "usesTaskDependencies")),
        constraints=job_constraints(m.obj(body, "constraints")),
        poolInfo=info,
        onAllTasksComplete=m.enum(body, "onAllTasksComplete", ON_ALL_TASKS_COMPLETE) or "noaction",
        onTaskFailure=m.enum(body, "onTaskFailure", ON_TASK_FAILURE) or "noaction",
        executionInfo={"startTime": now, **({"poolId": info["poolId"]} if "poolId" in info else {})},
    )
    return doc


_MANAGER_FIELDS = ("id", "displayName", "commandLine", "containerSettings", "resourceFiles", "outputFiles",
                   "environmentSettings", "constraints", "requiredSlots", "userIdentity",
                   "applicationPackageReferences", "authenticationTokenSettings")


def manager_task(job: Doc, now: str, base_url: str) -> Doc:
    """The Job Manager task as an ordinary task of the job (run by the engine like any other)."""
    spec = job["jobManagerTask"]
    doc = t.build_task({k: spec[k] for k in _MANAGER_FIELDS if k in spec}, job, now, base_url)
    doc["_jobManager"] = {
        "killJobOnCompletion": spec.get("killJobOnCompletion", True) is not False,
        "runExclusive": spec.get("runExclusive", True) is not False,
    }
    return doc


# --- lookups ------------------------------------------------------------------------------------


def get_job(ctx: BatchContext, account: str, job_id: str) -> Doc:
    return t.job_of(ctx, account, job_id)


def _changeable(ctx: BatchContext, account: str, job_id: str, guard: Guard) -> Doc:
    """The job, unless it is being deleted (JobBeingDeleted); after the caller's conditions."""
    job = t.job_of(ctx, account, job_id)
    guard(job)
    if job["state"] == _J.DELETING.value:
        raise e.JobBeingDeleted("The specified job has been marked for deletion and is being garbage collected.",
                                {"JobId": job["id"]})
    return job


def _not_completed(job: Doc) -> None:
    if job["state"] == _J.COMPLETED.value:
        raise e.JobCompleted("The specified job is already in a completed state.", {"JobId": job["id"]})


def list_jobs(ctx: BatchContext, account: str, *, match: Match | None, after: str, limit: int,
              schedule_id: str | None = None) -> tuple[list[Doc], str | None]:
    """A page of jobs ordered by id (case-insensitively); the skiptoken is the last id, lower-cased."""
    if schedule_id is not None and ctx.store.get("jobschedule", account, schedule_id) is None:
        raise e.JobScheduleNotFound("The specified job schedule does not exist.", {"JobScheduleId": schedule_id})
    docs = sorted(ctx.store.all("job", account), key=lambda d: str(d["id"]).lower())
    page: list[Doc] = []
    for doc in docs:
        key = str(doc["id"]).lower()
        if key <= after:
            continue
        if schedule_id is not None and str(doc.get("_jobScheduleId", "")).lower() != schedule_id.lower():
            continue
        if match is None or match(doc):
            page.append(doc)
            if len(page) == limit:
                return page, key
    return page, None


# --- add and change -----------------------------------------------------------------------------


async def _save(ctx: BatchContext, account: str, job: Doc) -> None:
    ctx.store.put("job", account, job)
    await ctx.store.flush()
    ctx.hooks.job_changed(account, job)


def store_new_job(ctx: BatchContext, account: str, job: Doc, base_url: str, now: str,
                  schedule: Doc | None = None) -> tuple[Doc | None, Doc | None]:
    """Store a new job (not committed) with its auto pool, if it asks for one (``schedule``: the job
    schedule that made it), and its Job Manager task. Returns (the pool created, the manager task)."""
    store = ctx.store
    pool = autopools.provide(ctx, account, job, base_url, now, schedule)
    manager = None
    if "jobManagerTask" in job and job["state"] == _J.ACTIVE.value:  # not when its auto pool failed
        manager = manager_task(job, now, base_url)
        manager["_seq"] = store.next_seq()
    store.put("job", account, job)
    if manager is not None:
        store.insert_tasks(account, job["id"], [manager])
    return pool, manager


def announce_new_job(hooks: EngineHooks, account: str, job: Doc, pool: Doc | None, manager: Doc | None) -> None:
    """Tell the engine about a job ``store_new_job`` stored, once it is committed."""
    if pool is not None:
        hooks.pool_changed(account, pool)
    if manager is not None:  # first, so the job is never seen without its manager task
        hooks.tasks_added(account, job["id"], [manager])
    hooks.job_changed(account, job)


async def add_job(ctx: BatchContext, account: str, body: Doc, base_url: str) -> Doc:
    now = now_iso()
    job = build_job(body, now, base_url)
    existing = ctx.store.get("job", account, job["id"])
    if existing is not None:
        if existing["state"] == _J.DELETING.value:
            raise e.JobBeingDeleted("A job with this id is being deleted.", {"JobId": existing["id"]})
        raise e.JobExists("The specified job already exists.", {"JobId": existing["id"]})
    if ctx.store.get("jobschedule", account, job["id"]) is not None:
        raise e.JobScheduleWithSameIdExists("A job schedule with the specified job id exists. Job and job "
                                            "schedule cannot have the same id.", {"JobId": job["id"]})
    pool, manager = store_new_job(ctx, account, job, base_url, now)
    await ctx.store.flush()
    announce_new_job(ctx.hooks, account, job, pool, manager)
    return job


def _check_on_all_complete(job: Doc, value: str | None) -> None:
    if job.get("onAllTasksComplete") == "terminatejob" and value == "noaction":
        raise m.invalid("onAllTasksComplete", value,
                        "The completion behavior of a job cannot be changed from terminatejob to noaction.")


def _check_pool_change(job: Doc, info: Doc) -> None:
    old_auto, new_auto = autopools.spec_of(job), info.get("autoPoolSpecification")
    if old_auto is not None or new_auto is not None:
        if old_auto is None or new_auto is None or _fixed(old_auto) != _fixed(new_auto):
            raise m.invalid("poolInfo.autoPoolSpecification", "autoPoolSpecification",
                            "Of a job's auto pool specification only keepAlive can be changed; moving a job "
                            "between an auto pool and another pool is not supported by openbatch.")
        return
    current = str((job.get("poolInfo") or {}).get("poolId", ""))
    if info["poolId"].lower() != current.lower() and job["state"] != _J.DISABLED.value:
        raise e.JobNotDisabled("The pool of a job can only be changed while the job is disabled.",
                               {"JobId": job["id"]})


def _fixed(spec: Doc) -> Doc:
    return {k: v for k, v in spec.items() if k != "keepAlive"}


async def patch_job(ctx: BatchContext, account: str, job_id: str, body: Doc, guard: Guard = _no_guard) -> Doc:
    """Change the properties given; the others keep their values."""
    job = _changeable(ctx, account, job_id, guard)
    _not_completed(job)
    changes: Doc = {}
    if (priority := check_priority(body)) is not None:
        changes["priority"] = priority
    if (parallel := _max_parallel(body)) is not None:
        changes["maxParallelTasks"] = parallel
    if (preempt := m.boolean(body, "allowTaskPreemption")) is not None:
        changes["allowTaskPreemption"] = preempt
    if (on_all := m.enum(body, "onAllTasksComplete", ON_ALL_TASKS_COMPLETE)) is not None:
        _check_on_all_complete(job, on_all)
        changes["onAllTasksComplete"] = on_all
    if body.get("constraints") is not None:
        changes["constraints"] = job_constraints(m.obj(body, "constraints"))
    if body.get("poolInfo") is not None:
        changes["poolInfo"] = pool_info(body, schedule="_jobScheduleId" in job)
        _check_pool_change(job, changes["poolInfo"])
    if (metadata := _metadata(body)) is not None:
        changes["metadata"] = metadata
    return await _apply(ctx, account, job, changes)


async def update_job(ctx: BatchContext, account: str, job_id: str, body: Doc, guard: Guard = _no_guard) -> Doc:
    """Replace the updatable properties; omitted ones return to their defaults."""
    job = _changeable(ctx, account, job_id, guard)
    _not_completed(job)
    info = pool_info(body, schedule="_jobScheduleId" in job)
    _check_pool_change(job, info)
    on_all = m.enum(body, "onAllTasksComplete", ON_ALL_TASKS_COMPLETE) or "noaction"
    _check_on_all_complete(job, on_all)
    parallel = _max_parallel(body)
    changes: Doc = {
        "priority": check_priority(body) or 0,
        "maxParallelTasks": -1 if parallel is None else parallel,
        "allowTaskPreemption": bool(m.boolean(body, "allowTaskPreemption")),
        "constraints": job_constraints(m.obj(body, "constraints")),
        "poolInfo": info,
        "onAllTasksComplete": on_all,
        "metadata": _metadata(body) or None,
    }
    return await _apply(ctx, account, job, changes)


async def _apply(ctx: BatchContext, account: str, job: Doc, changes: Doc) -> Doc:
    for key, value in changes.items():
        if value is None:
            job.pop(key, None)
        else:
            job[key] = value
    if "poolId" in (changes.get("poolInfo") or {}):
        job.setdefault("executionInfo", {})["poolId"] = changes["poolInfo"]["poolId"]
    touch(job, now_iso())
    await _save(ctx, account, job)
    return job


# --- state changes ------------------------------------------------------------------------------


async def _transition(ctx: BatchContext, account: str, job: Doc, to: states.JobState,
                      context: states.Context) -> None:
    instructions = states.JOB.apply(job, to, context)
    touch(job, context.now)
    await _save(ctx, account, job)
    if instructions:
        ctx.hooks.perform(account, instructions)


async def disable_job(ctx: BatchContext, account: str, job_id: str, body: Doc, guard: Guard = _no_guard) -> Doc:
    job = _changeable(ctx, account, job_id, guard)
    option = m.enum(body, "disableTasks", DISABLE_OPTIONS)
    if option is None:
        raise m.missing("disableTasks")
    state = job["state"]
    if state in (_J.DISABLING.value, _J.DISABLED.value):
        return job
    if state != _J.ACTIVE.value:
        _not_completed(job)
        raise e.JobNotActive(f"The job cannot be disabled in its current state ({state}).", {"JobId": job["id"]})
    await _transition(ctx, account, job, _J.DISABLING, states.Context(now_iso(), details={"disableTasks": option}))
    return job


async def enable_job(ctx: BatchContext, account: str, job_id: str, guard: Guard = _no_guard) -> Doc:
    job = _changeable(ctx, account, job_id, guard)
    state = job["state"]
    if state in (_J.ACTIVE.value, _J.ENABLING.value):
        return job
    if state != _J.DISABLED.value:
        _not_completed(job)
        raise e.JobNotDisabled(f"The job cannot be enabled in its current state ({state}).", {"JobId": job["id"]})
    now = now_iso()
    states.JOB.apply(job, _J.ENABLING, states.Context(now))
    await _transition(ctx, account, job, _J.ACTIVE, states.Context(now))
    return job


async def terminate_job(ctx: BatchContext, account: str, job_id: str, body: Doc | None = None,
                        guard: Guard = _no_guard) -> Doc:
    """Move the job to terminating (its tasks are stopped and release tasks run by the engine)."""
    reason = m.string(body or {}, "terminateReason")
    job = _changeable(ctx, account, job_id, guard)
    if job["state"] == _J.TERMINATING.value:
        return job
    _not_completed(job)
    reason = reason or "UserTerminate"
    job.setdefault("executionInfo", {})["terminateReason"] = reason
    await _transition(ctx, account, job, _J.TERMINATING, states.Context(now_iso(), reason=reason))
    return job


async def delete_job(ctx: BatchContext, account: str, job_id: str, guard: Guard = _no_guard) -> Doc:
    """Move the job to deleting; the engine stops its tasks, runs release tasks, then purges it."""
    job = _changeable(ctx, account, job_id, guard)
    await _transition(ctx, account, job, _J.DELETING, states.Context(now_iso(), reason="JobDeleted"))
    return job


# --- task counts and prep/release status ---------------------------------------------------------

def task_counts(ctx: BatchContext, account: str, job_id: str) -> Doc:
    """``{taskCounts, taskSlotCounts}``, exact, from one aggregate query over the job's tasks."""
    t.job_of(ctx, account, job_id)
    names = ("active", "running", "completed", "succeeded", "failed")
    counts, slots = dict.fromkeys(names, 0), dict.fromkeys(names, 0)
    for state, result, number, need in ctx.store.task_count_rows(account, job_id):
        kinds = ["running" if state in ("running", "preparing") else state]
        if state == "completed":
            kinds.append("succeeded" if result == "success" else "failed")
        for kind in kinds:
            counts[kind] += number
            slots[kind] += need
    return {"taskCounts": counts, "taskSlotCounts": slots}


def prep_release_status(ctx: BatchContext, account: str, job_id: str, *, match: Match | None, after: str,
                        limit: int) -> tuple[list[Doc], str | None]:
    """Per-node job preparation / release task status, ordered by node id; skiptoken = last node id."""
    job = t.job_of(ctx, account, job_id)
    if not job.get("jobPreparationTask") and not job.get("jobReleaseTask"):
        raise e.JobPreparationTaskNotSpecified("The specified job does not have a job preparation task.",
                                               {"JobId": job["id"]})
    records = job.get("_prepRelease") or {}
    page: list[Doc] = []
    for key in sorted(records, key=str.lower):
        if key.lower() <= after:
            continue
        if match is None or match(records[key]):
            page.append(dict(records[key]))
            if len(page) == limit:
                return page, key.lower()
    return page, None


def lifetime_statistics(url: str, start: str, now: str) -> Doc:
    """``/lifetimejobstats`` (api-versions before 2023): every measure zero, as the pools' (nothing is metered)."""
    return {"url": url, "startTime": start, "lastUpdateTime": now, "userCPUTime": "PT0S", "kernelCPUTime": "PT0S",
            "wallClockTime": "PT0S", "readIOps": 0, "writeIOps": 0, "readIOGiB": 0.0, "writeIOGiB": 0.0,
            "numSucceededTasks": 0, "numFailedTasks": 0, "numTaskRetries": 0, "waitTime": "PT0S"}
