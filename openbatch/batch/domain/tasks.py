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

import re
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from openbatch.batch.domain import errors as e
from openbatch.batch.domain import states
from openbatch.batch.domain.common import BatchContext, Doc, check_id, new_etag, now_iso, touch

# --- generic request validation -----------------------------------------------------------------

UNLIMITED = "P10675199DT2H48M5.4775807S"  # TimeSpan.MaxValue, what Azure reports for "no limit"
DEFAULT_RETENTION = "P7D"
MAX_COLLECTION = 100

_DURATION = re.compile(
    r"^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)
_FILE_MODE = re.compile(r"^0?[0-7]{3}$")


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text[:200]


def invalid(prop: str, value: Any, reason: str | None = None) -> e.BatchError:
    values = {"PropertyName": prop, "PropertyValue": _show(value)}
    if reason:
        values["Reason"] = reason
    return e.InvalidPropertyValue(
        "The value provided for one of the properties in the request body is invalid.", values
    )


def missing(prop: str) -> e.BatchError:
    return e.MissingRequiredProperty(
        "A required property was not specified in the request body.", {"PropertyName": prop}
    )


def get_str(obj: Doc, key: str, *, required: bool = False, max_len: int | None = None) -> str | None:
    value = obj.get(key)
    if value is None or (required and value == ""):
        if required:
            raise missing(key)
        return None
    if not isinstance(value, str):
        raise invalid(key, value, "The value must be a string.")
    if max_len is not None and len(value) > max_len:
        raise invalid(key, value, f"The value must be at most {max_len} characters long.")
    return value


def get_int(obj: Doc, key: str, *, lo: int | None = None, hi: int | None = None) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(key, value, "The value must be an integer.")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise invalid(key, value, f"The value must be between {lo} and {hi}.")
    return value


def get_bool(obj: Doc, key: str) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise invalid(key, value, "The value must be true or false.")
    return value


def get_enum(obj: Doc, key: str, choices: Iterable[str]) -> str | None:
    """A value of an Azure enum, matched case-insensitively, returned as ``choices`` spells it."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        for choice in choices:
            if value.lower() == choice.lower():
                return choice
    raise invalid(key, value, f"The value must be one of: {', '.join(choices)}.")


def get_obj(obj: Doc, key: str, *, required: bool = False) -> Doc | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise missing(key)
        return None
    if not isinstance(value, dict):
        raise invalid(key, value, "The value must be a JSON object.")
    return value


def get_list(obj: Doc, key: str, *, objects: bool = True) -> list[Any] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or (objects and not all(isinstance(i, dict) for i in value)):
        raise invalid(key, value, "The value must be a JSON array" + (" of objects." if objects else "."))
    return value


def parse_duration(text: str) -> timedelta | None:
    """An ISO-8601 duration (``P1D``, ``PT10M``, ``P10675199DT2H48M5.4775807S``); None if malformed.

    Years and months count 365 and 30 days, as .NET's TimeSpan conversion does.
    """
    m = _DURATION.match(text) if isinstance(text, str) else None
    if m is None:
        return None
    years, months, weeks, days, hours, minutes = (int(g) if g else 0 for g in m.groups()[:6])
    seconds = float(m.group(7) or 0)
    total_days = years * 365 + months * 30 + weeks * 7 + days
    if total_days > 999_999_998:
        return timedelta.max
    return timedelta(days=total_days, hours=hours, minutes=minutes, seconds=seconds)


def get_duration(obj: Doc, key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or parse_duration(value) is None:
        raise invalid(key, value, "The value must be an ISO-8601 duration such as PT10M or P1D.")
    return value


# --- task specifications (tasks, job manager / preparation / release tasks, start tasks) ----------


def check_resource_files(items: list[Doc], prop: str = "resourceFiles") -> None:
    for rf in items:
        sources = [k for k in ("autoStorageContainerName", "storageContainerUrl", "httpUrl") if rf.get(k)]
        if len(sources) != 1:
            raise invalid(prop, ", ".join(sources) or "(none)",
                          "Exactly one of autoStorageContainerName, storageContainerUrl or httpUrl must be specified.")
        for key in ("autoStorageContainerName", "storageContainerUrl", "httpUrl", "blobPrefix", "filePath"):
            get_str(rf, key)
        if sources[0] == "httpUrl" and not rf.get("filePath"):
            raise missing("filePath")
        if rf.get("blobPrefix") and sources[0] == "httpUrl":
            raise invalid("blobPrefix", rf["blobPrefix"], "blobPrefix applies only to container sources.")
        path = rf.get("filePath") or ""
        if path.startswith(("/", "\\")) or ".." in re.split(r"[\\/]", path):
            raise invalid("filePath", path, "The file path must be relative and stay within the task's working "
                                            "directory.")
        mode = get_str(rf, "fileMode")
        if mode is not None and not _FILE_MODE.match(mode):
            raise invalid("fileMode", mode, "The file mode must be an octal string such as 0770.")


def check_output_files(items: list[Doc]) -> None:
    for of in items:
        get_str(of, "filePattern", required=True)
        destination = get_obj(of, "destination", required=True) or {}
        container = get_obj(destination, "container", required=True) or {}
        get_str(container, "containerUrl", required=True)
        get_str(container, "path")
        for header in get_list(container, "uploadHeaders") or []:
            get_str(header, "name", required=True)
        options = get_obj(of, "uploadOptions", required=True) or {}
        condition = get_enum(options, "uploadCondition", ("tasksuccess", "taskfailure", "taskcompletion"))
        if condition is None:
            raise missing("uploadCondition")
        options["uploadCondition"] = condition


def check_environment(items: list[Doc], prop: str = "environmentSettings") -> None:
    for setting in items:
        get_str(setting, "name", required=True)
        get_str(setting, "value")


def check_user_identity(identity: Doc) -> Doc:
    """Validated identity; the default (a non-admin pool auto-user) when empty."""
    username = get_str(identity, "username")
    auto = get_obj(identity, "autoUser")
    if username and auto is not None:
        raise invalid("userIdentity", "username and autoUser", "Specify either username or autoUser, not both.")
    if auto is not None:
        scope = get_enum(auto, "scope", ("task", "pool")) or "pool"
        level = get_enum(auto, "elevationLevel", ("nonadmin", "admin")) or "nonadmin"
        return {**identity, "autoUser": {**auto, "scope": scope, "elevationLevel": level}}
    if username:
        return identity
    return {"autoUser": {"scope": "pool", "elevationLevel": "nonadmin"}}


def check_task_spec(body: Doc, *, command_required: bool = True) -> None:
    """The fields every kind of task shares (command line, files, environment, identity, container)."""
    get_str(body, "commandLine", required=command_required)
    get_str(body, "displayName", max_len=1024)
    check_resource_files(get_list(body, "resourceFiles") or [])
    check_environment(get_list(body, "environmentSettings") or [])
    if "userIdentity" in body:
        body["userIdentity"] = check_user_identity(get_obj(body, "userIdentity") or {})
    container = get_obj(body, "containerSettings")
    if container is not None:
        get_str(container, "imageName", required=True)
    for ref in get_list(body, "applicationPackageReferences") or []:
        get_str(ref, "applicationId", required=True)


def task_constraints(given: Doc | None, job: Doc) -> Doc:
    """A task's constraints with Azure's defaults (retry count inherited from the job)."""
    given = given or {}
    retries = get_int(given, "maxTaskRetryCount", lo=-1)
    if retries is None:
        retries = int((job.get("constraints") or {}).get("maxTaskRetryCount", 0))
    return {
        "maxWallClockTime": get_duration(given, "maxWallClockTime") or UNLIMITED,
        "retentionTime": get_duration(given, "retentionTime") or DEFAULT_RETENTION,
        "maxTaskRetryCount": retries,
    }


def _check_dependencies(deps: Doc, job: Doc) -> None:
    if not job.get("usesTaskDependencies"):
        raise e.TaskDependenciesNotSpecifiedOnJob(
            "The task specifies dependencies but the job does not have usesTaskDependencies set to true.",
            {"JobId": str(job["id"])},
        )
    ids = get_list(deps, "taskIds", objects=False) or []
    if not all(isinstance(i, str) for i in ids):
        raise invalid("taskIds", ids, "Task ids must be strings.")
    if sum(len(i) for i in ids) > 64000:
        raise e.TaskDependencyListTooLong("The task's dependency list is too long.", {"JobId": str(job["id"])})
    for r in get_list(deps, "taskIdRanges") or []:
        start, end = get_int(r, "start", lo=0), get_int(r, "end", lo=0)
        if start is None or end is None:
            raise missing("start" if start is None else "end")
        if start > end:
            raise invalid("taskIdRanges", f"{start}-{end}", "The start of a range must not exceed its end.")


def _check_exit_conditions(conditions: Doc, job: Doc) -> None:
    options: list[Doc] = [o for o in (conditions.get(k) for k in ("preProcessingError", "fileUploadError",
                                                                   "default")) if isinstance(o, dict)]
    for mapping in (get_list(conditions, "exitCodes") or []) + (get_list(conditions, "exitCodeRanges") or []):
        options.append(get_obj(mapping, "exitOptions", required=True) or {})
    for option in options:
        action = get_enum(option, "jobAction", ("none", "disable", "terminate"))
        get_enum(option, "dependencyAction", ("satisfy", "block"))
        if action not in (None, "none") and job.get("onTaskFailure") != "performexitoptionsjobaction":
            raise invalid("jobAction", action, "A job action other than none requires the job's onTaskFailure "
                                               "to be performexitoptionsjobaction.")


def _reserved_ids(job: Doc) -> dict[str, type[e.BatchError]]:
    reserved: dict[str, type[e.BatchError]] = {}
    prep, release = job.get("jobPreparationTask"), job.get("jobReleaseTask")
    if prep:
        reserved[str(prep.get("id", "jobpreparation")).lower()] = e.TaskIdSameAsJobPreparationTask
    if release:
        reserved[str(release.get("id", "jobrelease")).lower()] = e.TaskIdSameAsJobReleaseTask
    return reserved


def build_task(body: Any, job: Doc, now: str, base_url: str) -> Doc:
    """A new task document from a request body (modern shape), or the BatchError Azure answers."""
    if not isinstance(body, dict):
        raise e.InvalidRequestBody("Each task must be a JSON object.")
    task_id = check_id(body.get("id"))
    reserved = _reserved_ids(job).get(task_id.lower()) if ("jobPreparationTask" in job or
                                                           "jobReleaseTask" in job) else None
    if reserved is not None:
        raise reserved("The task id is the same as the id of the job's preparation or release task.",
                       {"TaskId": task_id})
    check_task_spec(body)
    check_output_files(get_list(body, "outputFiles") or [])
    slots = get_int(body, "requiredSlots", lo=1)
    if "dependsOn" in body and body["dependsOn"] is not None:
        _check_dependencies(get_obj(body, "dependsOn") or {}, job)
    if body.get("exitConditions") is not None:
        _check_exit_conditions(get_obj(body, "exitConditions") or {}, job)
    if body.get("affinityInfo") is not None:
        get_str(get_obj(body, "affinityInfo") or {}, "affinityId", required=True)
    multi = get_obj(body, "multiInstanceSettings")
    if multi is not None:
        get_int(multi, "numberOfInstances", lo=1)
        check_resource_files(get_list(multi, "commonResourceFiles") or [], "commonResourceFiles")
    doc = {k: v for k, v in body.items() if v is not None and not k.startswith(("_", "odata."))}
    for key in ("url", "eTag", "lastModified", "creationTime", "state", "stateTransitionTime", "previousState",
                "previousStateTransitionTime", "executionInfo", "nodeInfo", "stats"):
        doc.pop(key, None)
    doc.update(
        url=f"{base_url}/jobs/{job['id']}/tasks/{task_id}",
        eTag=new_etag(),
        lastModified=now,
        creationTime=now,
        state=states.TaskState.ACTIVE.value,
        stateTransitionTime=now,
        constraints=task_constraints(get_obj(body, "constraints"), job),
        requiredSlots=slots or 1,
        executionInfo={"retryCount": 0, "requeueCount": 0},
    )
    if "userIdentity" not in doc:
        doc["userIdentity"] = {"autoUser": {"scope": "pool", "elevationLevel": "nonadmin"}}
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
        raise missing("value") if bodies is None else invalid("value", bodies, "The value must be a JSON array.")
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
               state: str | None, after: int, limit: int, scan_budget: int = 20_000) -> tuple[list[Doc], int | None]:
    """A page of the job's tasks in submission order and the skiptoken (a ``_seq``) of the next page.

    ``state`` pre-filters on the store's state index; ``match`` is the rest of the $filter. At
    most ``scan_budget`` tasks are examined per page, so a rare match over a huge job returns a
    short (even empty) page with a next link rather than holding the server.
    """
    job_of(ctx, account, job_id)
    found: list[Doc] = []
    scanned = 0
    while scanned < scan_budget:
        want = limit if match is None else max(limit, 1000)
        batch = ctx.store.page_tasks(account, job_id, after_seq=after, state=state, limit=want)
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
    task["constraints"] = task_constraints(get_obj(body, "constraints"), job)
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
    if instructions:
        ctx.hooks.perform(account, instructions)
    task["_deleted"] = True
    ctx.hooks.task_changed(account, job_id, task)


TERMINATED = {"category": "usererror", "code": "TaskEnded", "message": "Task Was Ended by User Request"}


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
