"""Job schedules: add, get, list, patch, update, disable, enable, terminate, delete, statistics.

A job schedule document is a dict in the modern wire shape (``CloudJobSchedule``) plus internal
keys: ``_jobCount`` (jobs created so far: their ids are ``{schedule}:job-1``, ``:job-2`` ...),
``_lastDue`` (the due time of the last run a job was created for) and ``_autoPoolId`` (the pool
its jobs share under an auto pool specification with the jobschedule lifetime). States change
only through ``states.JOB_SCHEDULE``; when jobs are made is decided by ``recurrence.plan`` and done by
the engine (batch/engine_schedules.py), which hears of every change here through
``hooks.schedule_changed`` and carries out terminate / delete (``EndScheduleJobs``): the jobs
are terminated (reason ``TerminateJobSchedule``) or deleted, then the schedule becomes completed
or disappears.

The job specification is validated as a job is (domain/jobs.py) and stored with the defaults
Azure reports (priority 0, maxParallelTasks -1, onAllTasksComplete / onTaskFailure noaction,
unlimited constraints ...); each job made from it is a job like any other, with
``_jobScheduleId`` naming its schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

from openbatch.batch.domain import errors as e
from openbatch.batch.domain import jobs, pools, states
from openbatch.batch.domain.common import BatchContext, Doc, check_id, iso, now_iso, touch
from openbatch.batch.store import BatchStore
from openbatch.batch.wire import models as m

MIN_INTERVAL = timedelta(minutes=1)
SPEC_KEYS = ("priority", "allowTaskPreemption", "maxParallelTasks", "displayName", "usesTaskDependencies",
             "onAllTasksComplete", "onTaskFailure", "networkConfiguration", "constraints", "jobManagerTask",
             "jobPreparationTask", "jobReleaseTask", "commonEnvironmentSettings", "poolInfo", "metadata")
_SPEC_PLACEHOLDER = "jobschedulejob"

_S = states.JobScheduleState
Guard = Callable[[Doc], None]


def _no_guard(doc: Doc) -> None:
    return None


# --- validation ---------------------------------------------------------------------------------


def _time(body: Doc, key: str) -> str | None:
    value = m.date_time(body, key, prop=f"schedule.{key}")
    return None if value is None else iso(value.astimezone(UTC))


def _interval(body: Doc, key: str) -> str | None:
    value = m.duration(body, key, prop=f"schedule.{key}", lo=MIN_INTERVAL)
    return None if value is None else m.format_duration(value)


def check_schedule(body: Doc | None) -> Doc:
    """``schedule``: doNotRunUntil / doNotRunAfter (date-times), startWindow / recurrenceInterval
    (durations of at least a minute, as Azure requires)."""
    body = body or {}
    out = {"doNotRunUntil": _time(body, "doNotRunUntil"), "doNotRunAfter": _time(body, "doNotRunAfter"),
           "startWindow": _interval(body, "startWindow"), "recurrenceInterval": _interval(body, "recurrenceInterval")}
    return {k: v for k, v in out.items() if v is not None}


def _spec_job(spec: Doc, now: str, base_url: str) -> Doc:
    """A job of the job specification, under a placeholder id (built, and validated, as an added job is)."""
    return jobs.build_job({**spec, "id": _SPEC_PLACEHOLDER}, now, base_url, schedule=True)


def check_job_specification(spec: Doc, now: str, base_url: str) -> Doc:
    """The job specification, validated as an added job is, with the defaults Azure reports."""
    job = _spec_job(spec, now, base_url)
    if "jobManagerTask" in job:
        jobs.manager_task(job, now, base_url)  # what a task added to the job would be refused for
    return {k: job[k] for k in SPEC_KEYS if k in job}


def run_job(schedule: Doc, number: int, now: str, base_url: str) -> Doc:
    """The job a schedule makes for its run number ``number``: id ``{schedule}:job-N``, from the
    job specification as it is now (a job already made keeps the one it was made from)."""
    job_id = f"{schedule['id']}:job-{number}"
    job = _spec_job(schedule.get("jobSpecification") or {}, now, base_url)
    job.update(id=job_id, url=f"{base_url}/jobs/{job_id}", _jobScheduleId=schedule["id"])
    return job


def _check_common(body: Doc, out: Doc, now: str, base_url: str, *, required: bool) -> None:
    """schedule, jobSpecification and metadata of an add / patch / update body, into ``out``."""
    schedule = m.obj(body, "schedule")
    if schedule is not None or required:
        out["schedule"] = check_schedule(schedule)
    spec = m.obj(body, "jobSpecification", required=required)
    if spec is not None:
        out["jobSpecification"] = check_job_specification(spec, now, base_url)
    metadata = m.name_value_pairs(body, "metadata", unique=False)
    if metadata is not None or required:
        out["metadata"] = metadata or None


def build_schedule(body: Doc, now: str, base_url: str) -> Doc:
    """A new job schedule document from an add body (modern shape), or the BatchError Azure answers."""
    schedule_id = check_id(body.get("id"))
    display = m.string(body, "displayName", max_len=1024)
    m.obj(body, "schedule", required=True)
    doc: Doc = {
        "id": schedule_id, "url": f"{base_url}/jobschedules/{schedule_id}", "creationTime": now,
        "state": _S.ACTIVE.value, "stateTransitionTime": now, "executionInfo": {}, "_jobCount": 0,
    }
    if display is not None:
        doc["displayName"] = display
    changes: Doc = {}
    _check_common(body, changes, now, base_url, required=True)
    doc.update({k: v for k, v in changes.items() if v is not None})
    touch(doc, now)
    return doc


# --- lookups ------------------------------------------------------------------------------------


def get_schedule(ctx: BatchContext, account: str, schedule_id: str) -> Doc:
    doc = ctx.store.get("jobschedule", account, schedule_id)
    if doc is None:
        raise e.JobScheduleNotFound("The specified job schedule does not exist.", {"JobScheduleId": schedule_id})
    return doc


def list_schedules(ctx: BatchContext, account: str, accept: Any, after: str | None,
                   limit: int) -> tuple[list[Doc], str | None]:
    """Job schedules ``accept`` (a compiled $filter) takes, one page at a time, ordered by id."""
    return pools.page([d for d in ctx.store.all("jobschedule", account) if accept(d)], after, limit)


def jobs_of(store: BatchStore, account: str, schedule_id: str) -> list[Doc]:
    """Every job (still) stored that the schedule created."""
    key = schedule_id.lower()
    return [j for j in store.all("job", account) if str(j.get("_jobScheduleId", "")).lower() == key]


def statistics(ctx: BatchContext, account: str, doc: Doc, now: str) -> Doc:
    """``JobScheduleStatistics``: task outcomes counted over the schedule's jobs; CPU, I/O, wall
    clock, wait time and retries are not metered by openbatch (zero)."""
    succeeded = failed = 0
    for job in jobs_of(ctx.store, account, str(doc["id"])):
        for state, result, number, _ in ctx.store.task_count_rows(account, str(job["id"])):
            if state == states.TaskState.COMPLETED.value:
                if result == "success":
                    succeeded += number
                else:
                    failed += number
    return {"url": f"{doc['url']}/stats", "startTime": doc["creationTime"], "lastUpdateTime": now,
            "userCPUTime": "PT0S", "kernelCPUTime": "PT0S", "wallClockTime": "PT0S", "readIOps": 0, "writeIOps": 0,
            "readIOGiB": 0.0, "writeIOGiB": 0.0, "numSucceededTasks": succeeded, "numFailedTasks": failed,
            "numTaskRetries": 0, "waitTime": "PT0S"}


def _changeable(ctx: BatchContext, account: str, schedule_id: str, guard: Guard) -> Doc:
    """The schedule, unless it is being deleted (JobScheduleBeingDeleted); after the caller's conditions."""
    doc = get_schedule(ctx, account, schedule_id)
    guard(doc)
    if doc["state"] == _S.DELETING.value:
        raise e.JobScheduleBeingDeleted("The specified job schedule has been marked for deletion and is being "
                                        "reclaimed.", {"JobScheduleId": doc["id"]})
    return doc


def _running(doc: Doc) -> None:
    """Refuse changes to a schedule that is terminating or completed, as Azure does."""
    if doc["state"] == _S.COMPLETED.value:
        raise e.JobScheduleCompleted("The specified job schedule is already in completed state.",
                                     {"JobScheduleId": doc["id"]})
    if doc["state"] == _S.TERMINATING.value:
        raise e.JobScheduleBeingTerminated("The specified job schedule is being terminated.",
                                           {"JobScheduleId": doc["id"]})


# --- add and change -----------------------------------------------------------------------------


async def _save(ctx: BatchContext, account: str, doc: Doc, now: str) -> Doc:
    touch(doc, now)
    ctx.store.put("jobschedule", account, doc)
    await ctx.store.flush()
    ctx.hooks.schedule_changed(account, doc)
    return doc


async def add_schedule(ctx: BatchContext, account: str, body: Doc, base_url: str) -> Doc:
    now = now_iso()
    doc = build_schedule(body, now, base_url)
    existing = ctx.store.get("jobschedule", account, doc["id"])
    if existing is not None:
        if existing["state"] == _S.DELETING.value:
            raise e.JobScheduleBeingDeleted("A job schedule with this id is being deleted.",
                                            {"JobScheduleId": existing["id"]})
        raise e.JobScheduleExists("The specified job schedule already exists.", {"JobScheduleId": existing["id"]})
    if ctx.store.get("job", account, doc["id"]) is not None:
        raise e.JobWithSameIdExists("A job with the specified job schedule id exists. Job and job schedule cannot "
                                    "have the same id.", {"JobScheduleId": doc["id"]})
    return await _save(ctx, account, doc, now)


async def patch_schedule(ctx: BatchContext, account: str, schedule_id: str, body: Doc, base_url: str,
                         guard: Guard = _no_guard) -> Doc:
    """Replace schedule, jobSpecification and metadata where given; the rest keeps its value."""
    return await _replace(ctx, account, schedule_id, body, base_url, guard, required=False)


async def update_schedule(ctx: BatchContext, account: str, schedule_id: str, body: Doc, base_url: str,
                          guard: Guard = _no_guard) -> Doc:
    """Replace schedule (absent: one job, now), jobSpecification (required) and metadata (absent: none)."""
    return await _replace(ctx, account, schedule_id, body, base_url, guard, required=True)


async def _replace(ctx: BatchContext, account: str, schedule_id: str, body: Doc, base_url: str, guard: Guard, *,
                   required: bool) -> Doc:
    doc = _changeable(ctx, account, schedule_id, guard)
    _running(doc)
    now = now_iso()
    changes: Doc = {}
    _check_common(body, changes, now, base_url, required=required)
    return await _apply(ctx, account, doc, changes, now)


async def _apply(ctx: BatchContext, account: str, doc: Doc, changes: Doc, now: str) -> Doc:
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return await _save(ctx, account, doc, now)


# --- state changes ------------------------------------------------------------------------------


async def _transition(ctx: BatchContext, account: str, doc: Doc, to: states.JobScheduleState) -> Doc:
    now = now_iso()
    instructions = states.JOB_SCHEDULE.apply(doc, to, states.Context(now))
    touch(doc, now)
    ctx.store.put("jobschedule", account, doc)
    await ctx.store.flush()
    ctx.hooks.schedule_changed(account, doc)
    if instructions:
        ctx.hooks.perform(account, instructions)
    return doc


async def _switch(ctx: BatchContext, account: str, schedule_id: str, guard: Guard,
                  to: states.JobScheduleState) -> Doc:
    """active <-> disabled; nothing to do when the schedule already is."""
    doc = _changeable(ctx, account, schedule_id, guard)
    _running(doc)
    if doc["state"] == to.value:
        return doc
    return await _transition(ctx, account, doc, to)


async def disable_schedule(ctx: BatchContext, account: str, schedule_id: str, guard: Guard = _no_guard) -> Doc:
    """No job is created while disabled; a job already running goes on."""
    return await _switch(ctx, account, schedule_id, guard, _S.DISABLED)


async def enable_schedule(ctx: BatchContext, account: str, schedule_id: str, guard: Guard = _no_guard) -> Doc:
    return await _switch(ctx, account, schedule_id, guard, _S.ACTIVE)


async def terminate_schedule(ctx: BatchContext, account: str, schedule_id: str, guard: Guard = _no_guard) -> Doc:
    """terminating: the engine terminates its unfinished jobs, then the schedule is completed."""
    doc = _changeable(ctx, account, schedule_id, guard)
    if doc["state"] == _S.TERMINATING.value:
        return doc
    _running(doc)
    return await _transition(ctx, account, doc, _S.TERMINATING)


async def delete_schedule(ctx: BatchContext, account: str, schedule_id: str, guard: Guard = _no_guard) -> Doc:
    """deleting: the engine deletes every job of the schedule, then the schedule."""
    doc = _changeable(ctx, account, schedule_id, guard)
    return await _transition(ctx, account, doc, _S.DELETING)
