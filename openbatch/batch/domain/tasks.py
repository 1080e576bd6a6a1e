"""Tasks: validation as the real service does it, add (one or a collection), list, get, update,
delete, terminate, reactivate.

A task document is a dict in the modern wire shape (``CloudTask``) plus internal keys:
``_seq`` (submission order, from ``store.next_seq()``; also the list skiptoken) and, for a job's
Job Manager task, ``_jobManager`` (``{"killJobOnCompletion": bool, "runExclusive": bool}``).
Task states change only through ``states.TASK``; the engine hears about changes through
``ctx.hooks`` (``tasks_added`` for new tasks, ``task_changed`` for API changes — a deleted task
is reported once with ``"_deleted": True``, and the engine removes its directory).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from openbatch.batch.domain import errors as e
from openbatch.batch.domain import execution as ex
from openbatch.batch.domain import states
from openbatch.batch.domain.common import BatchContext, Doc, check_id, new_etag, now_iso, touch
from openbatch.batch.wire import models as m

UNLIMITED = m.UNBOUNDED_DURATION  # TimeSpan.MaxValue: what Azure reports for "no limit"
DEFAULT_RETENTION = "P7D"
MAX_COLLECTION = 100
TERMINATED = ex.ended(ex.ENDED_BY_USER)


def duration_text(body: Doc, key: str, prop: str | None = None) -> str | None:
    """An ISO 8601 duration property (not negative), as Azure renders it back (PT600S -> PT10M)."""
    value = m.duration(body, key, prop=prop, lo=timedelta(0))
    return None if value is None else m.format_duration(value)


# --- task specifications (tasks, job manager / preparation / release tasks) -----------------------


def check_output_files(body: Doc) -> None:
    for of in m.objects(body, "outputFiles") or []:
        m.string(of, "filePattern", required=True, prop="outputFiles.filePattern")
        destination = m.obj(of, "destination", required=True, prop="outputFiles.destination") or {}
        container = m.obj(destination, "container", required=True, prop="outputFiles.destination.container") or {}
        m.string(container, "containerUrl", required=True, prop="outputFiles.destination.container.containerUrl")
        m.string(container, "path", prop="outputFiles.destination.container.path")
        m.name_value_pairs(container, "uploadHeaders", prop="uploadHeaders", value_required=False, unique=False)
        options = m.obj(of, "uploadOptions", required=True, prop="outputFiles.uploadOptions") or {}
        options["uploadCondition"] = m.enum(options, "uploadCondition", ("tasksuccess", "taskfailure",
                                                                          "taskcompletion"),
                                            required=True, prop="outputFiles.uploadOptions.uploadCondition")


DEFAULT_IDENTITY = {"autoUser": {"scope": "pool", "elevationLevel": "nonadmin"}}


def check_user_identity(body: Doc) -> Doc:
    """The validated ``userIdentity`` (wire name ``username``), with Azure's defaults filled in."""
    identity = m.user_identity(body) or {}
    auto = identity.get("autoUser")
    if m.string(identity, "username", prop="userIdentity.username") is not None and auto is not None:
        raise m.invalid("userIdentity.username", identity["username"], "username and autoUser are mutually exclusive.")
    if auto is not None:
        return {**identity, "autoUser": {"scope": "pool", "elevationLevel": "nonadmin", **auto}}
    return identity if identity.get("username") or identity.get("userName") else dict(DEFAULT_IDENTITY)


def check_command_line(body: Doc, prop: str = "commandLine") -> str:
    """A required command line; NUL cannot be passed to a process, so it is refused here (400)
    rather than failing the task when it starts."""
    text = m.string(body, "commandLine", required=True, prop=prop)
    assert text is not None
    if "\x00" in text:
        raise m.invalid(prop, text, "A command line cannot contain NUL characters.")
    return text


def check_environment(body: Doc, key: str, prop: str | None = None, *, unique: bool = False) -> list[Doc] | None:
    """Environment settings (``[{"name", "value"}]``) that can become a process environment: names
    without '=' or NUL, values without NUL. Refused at add time (400), not when a task starts."""
    name = prop or key
    env = m.name_value_pairs(body, key, prop=name, value_required=False, unique=unique)
    for item in env or []:
        if "=" in item["name"] or "\x00" in item["name"]:
            raise m.invalid(f"{name}.name", item["name"],
                            "An environment variable name cannot contain '=' or NUL characters.")
        if "\x00" in item.get("value", ""):
            raise m.invalid(f"{name}.value", item["value"], "An environment variable value cannot contain NUL "
                                                            "characters.")
    return env


def check_task_spec(body: Doc) -> None:
    """The fields every kind of task shares: command line, files, environment, identity, container.
    Normalised values (identity defaults, environment settings) are written back into ``body``."""
    check_command_line(body)
    m.string(body, "displayName", max_len=1024)
    m.resource_files(body)
    env = check_environment(body, "environmentSettings")
    if env is not None:
        body["environmentSettings"] = env
    if body.get("userIdentity") is not None:
        body["userIdentity"] = check_user_identity(body)
    container = m.obj(body, "containerSettings")
    if container is not None:
        m.string(container, "imageName", required=True, prop="containerSettings.imageName")
    for ref in m.objects(body, "applicationPackageReferences") or []:
        m.string(ref, "applicationId", required=True, prop="applicationPackageReferences.applicationId")


def task_constraints(given: Doc | None, job: Doc) -> Doc:
    """A task's constraints with Azure's defaults (the retry count inherited from the job)."""
    given = given or {}
    retries = m.integer(given, "maxTaskRetryCount", lo=-1, prop="constraints.maxTaskRetryCount")
    if retries is None:
        retries = int((job.get("constraints") or {}).get("maxTaskRetryCount", 0))
    return {
        "maxWallClockTime": duration_text(given, "maxWallClockTime", "constraints.maxWallClockTime") or UNLIMITED,
        "retentionTime": duration_text(given, "retentionTime", "constraints.retentionTime") or DEFAULT_RETENTION,
        "maxTaskRetryCount": retries,
    }


def _check_dependencies(deps: Doc, job: Doc) -> None:
    if not job.get("usesTaskDependencies"):
        raise e.TaskDependenciesNotSpecifiedOnJob(
            "The task specifies dependencies but the job does not have usesTaskDependencies set to true.",
            {"JobId": str(job["id"])},
        )
    ids = m.strings(deps, "taskIds", prop="dependsOn.taskIds") or []
    if sum(len(i) for i in ids) > 64000:
        raise e.TaskDependencyListTooLong("The task's dependency list is too long.", {"JobId": str(job["id"])})
    for r in m.objects(deps, "taskIdRanges", prop="dependsOn.taskIdRanges") or []:
        start = m.integer(r, "start", required=True, lo=0, prop="dependsOn.taskIdRanges.start")
        end = m.integer(r, "end", required=True, lo=0, prop="dependsOn.taskIdRanges.end")
        if start is not None and end is not None and start > end:
            raise m.invalid("dependsOn.taskIdRanges", f"{start}-{end}", "The start of a range must not exceed its end.")


def _check_exit_conditions(conditions: Doc, job: Doc) -> None:
    options = [m.obj(conditions, k, prop=f"exitConditions.{k}") for k in ("preProcessingError", "fileUploadError",
                                                                           "default")]
    mappings = (m.objects(conditions, "exitCodes", prop="exitConditions.exitCodes") or []) + (
        m.objects(conditions, "exitCodeRanges", prop="exitConditions.exitCodeRanges") or [])
    options += [m.obj(mapping, "exitOptions", required=True, prop="exitConditions.exitOptions")
                for mapping in mappings]
    for option in options:
        if option is None:
            continue
        action = m.enum(option, "jobAction", ("none", "disable", "terminate"), prop="exitOptions.jobAction")
        m.enum(option, "dependencyAction", ("satisfy", "block"), prop="exitOptions.dependencyAction")
        if action not in (None, "none") and job.get("onTaskFailure") != "performexitoptionsjobaction":
            raise m.invalid("exitOptions.jobAction", action, "A job action other than none requires the job's "
                                                             "onTaskFailure to be performexitoptionsjobaction.")


def _reserved_ids(job: Doc) -> dict[str, type[e.BatchError]]:
    reserved: dict[str, type[e.BatchError]] = {}
    prep, release = job.get("jobPreparationTask"), job.get("jobReleaseTask")
    if prep:
        reserved[str(prep.get("id", "jobpreparation")).lower()] = e.TaskIdSameAsJobPreparationTask
    if release:
        reserved[str(release.get("id", "jobrelease")).lower()] = e.TaskIdSameAsJobReleaseTask
    return reserved


_READ_ONLY = ("url", "eTag", "lastModified", "creationTime", "state", "stateTransitionTime", "previousState",
              "previousStateTransitionTime", "executionInfo", "nodeInfo", "stats")


def _check_task_extras(body: Doc, job: Doc) -> None:
    check_output_files(body)
    if body.get("dependsOn") is not None:
        _check_dependencies(m.obj(body, "dependsOn") or {}, job)
    if body.get("exitConditions") is not None:
        _check_exit_conditions(m.obj(body, "exitConditions") or {}, job)
    if body.get("affinityInfo") is not None:
        m.string(m.obj(body, "affinityInfo") or {}, "affinityId", required=True, prop="affinityInfo.affinityId")
    multi = m.obj(body, "multiInstanceSettings")
    if multi is not None:
        m.integer(multi, "numberOfInstances", lo=1, prop="multiInstanceSettings.numberOfInstances")
        m.string(multi, "coordinationCommandLine", required=True, prop="multiInstanceSettings.coordinationCommandLine")
        m.resource_files(multi, "commonResourceFiles", prop="multiInstanceSettings.commonResourceFiles")


def build_task(body: Any, job: Doc, now: str, base_url: str) -> Doc:
    """A new task document from a request body (modern shape), or the BatchError Azure answers."""
    if not isinstance(body, dict):
        raise e.InvalidRequestBody("Each task must be a JSON object.")
    task_id = check_id(body.get("id"))
    if "jobPreparationTask" in job or "jobReleaseTask" in job:
        reserved = _reserved_ids(job).get(task_id.lower())
        if reserved is not None:
            raise reserved("The task id is the same as the id of the job's preparation or release task.",
                           {"TaskId": task_id})
    doc = {k: v for k, v in body.items() if v is not None and k[:1] != "_" and not k.startswith("odata.")
           and k not in _READ_ONLY}
    check_task_spec(doc)
    slots = m.integer(doc, "requiredSlots", lo=1)
    _check_task_extras(doc, job)
    doc.update(
        url=f"{base_url}/jobs/{job['id']}/tasks/{task_id}",
        eTag=new_etag(),
        lastModified=now,
        creationTime=now,
        state=states.TaskState.ACTIVE.value,
        stateTransitionTime=now,
        constraints=task_constraints(m.obj(doc, "constraints"), job),
        requiredSlots=slots or 1,
        executionInfo={"retryCount": 0, "requeueCount": 0},
    )
    if "userIdentity" not in doc:
        doc["userIdentity"] = dict(DEFAULT_IDENTITY)
    return doc


# --- the job a task operation works on ------------------------------------------------------------


def job_of(ctx: BatchContext, account: str, job_id: str) -> Doc:
    job = ctx.store.get("job", account, job_id)
    if job is None:
        raise e.JobNotFound("The specified job does not exist.", {"JobId": job_id})
    return job


def writable_job(ctx: BatchContext, account: str, job_id: str) -> Doc:
    """The job, when new tasks may be added to it (not completed, terminating or being deleted)."""
    job = job_of(ctx, account, job_id)
    state = job["state"]
    if state == states.JobState.DELETING.value:
        raise e.JobBeingDeleted("The specified job has been marked for deletion and is being garbage collected.",
                                {"JobId": job["id"]})
    if state == states.JobState.COMPLETED.value:
        raise e.JobCompleted("The specified job is already in a completed state.", {"JobId": job["id"]})
    if state == states.JobState.TERMINATING.value:
        raise e.JobBeingTerminated("The specified job is being terminated.", {"JobId": job["id"]})
    return job


def task_of(ctx: BatchContext, account: str, job_id: str, task_id: str) -> Doc:
    job_of(ctx, account, job_id)
    task = ctx.store.get_task(account, job_id, task_id)
    if task is None:
        raise e.TaskNotFound("The specified task does not exist.", {"TaskId": task_id})
    return task


# --- add ------------------------------------------------------------------------------------------


def _exists_error(task_id: str) -> e.BatchError:
    return e.TaskExists("The specified task already exists.", {"TaskId": task_id})


async def store_new_tasks(ctx: BatchContext, account: str, job: Doc, docs: list[Doc]) -> None:
    """Number, insert and commit new task documents, then tell the engine (one statement, one commit)."""
    for doc in docs:
        doc["_seq"] = ctx.store.next_seq()
    ctx.store.insert_tasks(account, str(job["id"]), docs)
    await ctx.store.flush()
    ctx.hooks.tasks_added(account, str(job["id"]), docs)


async def add_task(ctx: BatchContext, account: str, job_id: str, body: Doc, base_url: str) -> Doc:
    job = writable_job(ctx, account, job_id)
    doc = build_task(body, job, now_iso(), base_url)
    if ctx.store.existing_task_keys(account, job_id, [doc["id"]]):
        raise _exists_error(doc["id"])
    await store_new_tasks(ctx, account, job, [doc])
    return doc


def _error_result(task_id: str, error: e.BatchError) -> Doc:
    err: Doc = {"code": error.code, "message": {"lang": "en-US", "value": error.message}}
    if error.values:
        err["values"] = [{"key": k, "value": v} for k, v in error.values.items()]
    return {"status": "clienterror", "taskId": task_id, "error": err}


async def add_task_collection(ctx: BatchContext, account: str, job_id: str, bodies: Any,
                              base_url: str) -> list[Doc]:
    """Add up to 100 tasks; a per-task result for each (success or clienterror), valid ones are kept."""
    job = writable_job(ctx, account, job_id)
    if not isinstance(bodies, list):
        raise m.missing("value") if bodies is None else m.wrong_type("value", "Collection")
    if len(bodies) > MAX_COLLECTION:
        raise e.RequestBodyTooLarge(
            f"The number of tasks in the collection exceeds the maximum of {MAX_COLLECTION}.",
            {"MaxTaskCount": str(MAX_COLLECTION)},
        )
    now = now_iso()
    results: list[Doc] = []
    docs: list[Doc] = []
    seen: set[str] = set()
    for body in bodies:
        raw_id = body.get("id") if isinstance(body, dict) else None
        task_id = raw_id if isinstance(raw_id, str) else ""
        try:
            doc = build_task(body, job, now, base_url)
        except e.BatchError as exc:
            results.append(_error_result(task_id, exc))
            continue
        key = task_id.lower()
        if key in seen:
            results.append(_error_result(task_id, _exists_error(task_id)))
            continue
        seen.add(key)
        docs.append(doc)
    existing = ctx.store.existing_task_keys(account, job_id, seen) if seen else set()
    fresh = [d for d in docs if d["id"].lower() not in existing]
    results.extend(_error_result(d["id"], _exists_error(d["id"])) for d in docs if d["id"].lower() in existing)
    if fresh:
        await store_new_tasks(ctx, account, job, fresh)
    results.extend({"status": "success", "taskId": d["id"], "eTag": d["eTag"], "lastModified": d["lastModified"],
                    "location": d["url"]} for d in fresh)
    return results


# --- read -----------------------------------------------------------------------------------------


def list_tasks(ctx: BatchContext, account: str, job_id: str, *, match: Callable[[Doc], bool] | None,
               state: str | None, after: int, limit: int, scan_budget: int = 20_000,
               result: str | None = None) -> tuple[list[Doc], int | None]:
    """A page of the job's tasks in submission order and the skiptoken (a ``_seq``) of the next page.

    ``state`` pre-filters on the store's state index (``result`` too, with a state); ``match`` is
    the rest of the $filter. At
    most ``scan_budget`` tasks are examined per page, so a rare match over a huge job returns a
    short (even empty) page with a next link rather than holding the server.
    """
    job_of(ctx, account, job_id)
    found: list[Doc] = []
    scanned = 0
    while scanned < scan_budget:
        want = limit if match is None else max(limit, 1000)
        batch = ctx.store.page_tasks(account, job_id, after_seq=after, state=state, limit=want, result=result)
        for doc in batch:
            after = int(doc["_seq"])
            if match is None or match(doc):
                found.append(doc)
                if len(found) == limit:
                    return found, after
        if len(batch) < want:
            return found, None
        scanned += len(batch)
    return found, after


def get_task(ctx: BatchContext, account: str, job_id: str, task_id: str) -> Doc:
    return task_of(ctx, account, job_id, task_id)


def list_subtasks(ctx: BatchContext, account: str, job_id: str, task_id: str) -> list[Doc]:
    """The subtasks of a multi-instance task as the engine last recorded them (ids 1..n-1, one per
    node other than the primary's); none for an ordinary task or one that has not run yet."""
    subtasks = task_of(ctx, account, job_id, task_id).get("_subtasks")
    return [dict(s) for s in subtasks if isinstance(s, dict)] if isinstance(subtasks, list) else []


# --- change ---------------------------------------------------------------------------------------

Guard = Callable[[Doc], None]


def _no_guard(doc: Doc) -> None:
    return None


async def _save(ctx: BatchContext, account: str, job_id: str, task: Doc) -> None:
    ctx.store.update_task(account, job_id, task)
    await ctx.store.flush()
    ctx.hooks.task_changed(account, job_id, task)


async def update_task(ctx: BatchContext, account: str, job_id: str, task_id: str, body: Doc,
                      guard: Guard = _no_guard) -> Doc:
    """Replace the task's constraints (omitted: the defaults)."""
    job = job_of(ctx, account, job_id)
    task = task_of(ctx, account, job_id, task_id)
    guard(task)
    if task["state"] == states.TaskState.COMPLETED.value:
        raise e.TaskCompleted("The specified task is already in a completed state.", {"TaskId": task["id"]})
    task["constraints"] = task_constraints(m.obj(body, "constraints"), job)
    touch(task, now_iso())
    await _save(ctx, account, job_id, task)
    return task


def _job_context(task: Doc, job_id: str, reason: str) -> states.Context:
    return states.Context(now=now_iso(), reason=reason, details={"jobId": job_id})


async def delete_task(ctx: BatchContext, account: str, job_id: str, task_id: str, guard: Guard = _no_guard) -> None:
    """Delete the task; a running one is killed first (the engine also removes its directory)."""
    task = task_of(ctx, account, job_id, task_id)
    guard(task)
    instructions = []
    if task["state"] in (states.TaskState.RUNNING.value, states.TaskState.PREPARING.value):
        instructions = states.TASK.apply(task, states.TaskState.COMPLETED, _job_context(task, job_id, "terminate"))
    ctx.store.delete_task(account, job_id, task_id)
    await ctx.store.flush()
    states.TASK.forget(str(task["id"]))
    task["_deleted"] = True
    ctx.hooks.task_changed(account, job_id, task)  # first: the engine then knows the kill is for a delete
    if instructions:
        ctx.hooks.perform(account, instructions)


async def terminate_task(ctx: BatchContext, account: str, job_id: str, task_id: str,
                         guard: Guard = _no_guard) -> Doc:
    """Complete the task as failed (TaskEnded); a running task's processes are killed by the engine."""
    task = task_of(ctx, account, job_id, task_id)
    guard(task)
    if task["state"] == states.TaskState.COMPLETED.value:
        raise e.TaskCompleted("The specified task is already in a completed state.", {"TaskId": task["id"]})
    context = _job_context(task, job_id, "terminate")
    instructions = states.TASK.apply(task, states.TaskState.COMPLETED, context)
    info = task.setdefault("executionInfo", {"retryCount": 0, "requeueCount": 0})
    info.update(endTime=context.now, result="failure", failureInfo=dict(TERMINATED))
    touch(task, context.now)
    await _save(ctx, account, job_id, task)
    if instructions:
        ctx.hooks.perform(account, instructions)
    return task


async def reactivate_task(ctx: BatchContext, account: str, job_id: str, task_id: str,
                          guard: Guard = _no_guard) -> Doc:
    """Make a failed task active again with its retry count reset (exit code and failure dropped)."""
    job = writable_job(ctx, account, job_id)
    task = task_of(ctx, account, job_id, task_id)
    guard(task)
    if task["state"] != states.TaskState.COMPLETED.value:
        raise e.TaskNotCompleted("The specified task is not in completed state.", {"TaskId": task["id"]})
    info = task.get("executionInfo") or {}
    if info.get("result") != "failure":
        raise e.OperationInvalidForCurrentState(
            "The task cannot be reactivated: it completed successfully.", {"TaskId": task["id"]}
        )
    context = _job_context(task, str(job["id"]), "reactivate")
    states.TASK.apply(task, states.TaskState.ACTIVE, context)
    task["executionInfo"] = {"retryCount": 0, "requeueCount": int(info.get("requeueCount", 0))}
    task.pop("nodeInfo", None)
    touch(task, context.now)
    await _save(ctx, account, job_id, task)
    return task
