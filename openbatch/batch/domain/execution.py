"""Rules of task execution, as Azure Batch applies them: pure functions over documents.

The engine calls these after a process ran (or could not run) to decide what the documents
say: executionInfo / startTaskInfo / job preparation and release info, whether a task is retried,
which job action a failure triggers, and how a task comes back after a node restart or a server
restart (requeue). No I/O, no clock: ``now`` is passed in.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from openbatch.batch.wire.models import parse_duration

Doc = dict[str, Any]

USER_ERROR, SERVER_ERROR = "usererror", "servererror"

EXIT_CODE_FAILURE = "The task exited with an exit code representing a failure"
ENDED_BY_USER = "Task Was Ended by User Request"
ENDED_BY_TIMEOUT = "Task Was Ended Due To Wall Clock Time Limit"
ENDED_BY_JOB = "Task Was Ended Because The Job Was Terminated"
ENDED_BY_NODE = "Task Was Ended Because Its Compute Node Was Removed Or Restarted"

# Job terminateReason values Azure reports.
ALL_TASKS_COMPLETE = "AllTasksComplete"
TASK_FAILED = "TaskFailed"
MAX_WALL_CLOCK_EXPIRY = "MaxWallClockTimeExpiry"
USER_TERMINATE = "UserTerminate"
JOB_MANAGER_COMPLETE = "JMComplete"

# Anything at or beyond this many seconds is "no limit" (Azure's TimeSpan.MaxValue and friends).
_UNLIMITED = 10 * 365 * 86400.0


@lru_cache(maxsize=1024)
def seconds(duration: str | None) -> float | None:
    """An ISO 8601 duration in seconds; None for absent, malformed or unlimited."""
    if not duration or not isinstance(duration, str):
        return None
    value = parse_duration(duration)
    if value is None:
        return None
    total = value.total_seconds()
    return None if total >= _UNLIMITED or total < 0 else total


def failure(category: str, code: str, message: str, details: list[Doc] | None = None) -> Doc:
    info: Doc = {"category": category, "code": code, "message": message}
    if details:
        info["details"] = details
    return info


def ended(message: str) -> Doc:
    return failure(USER_ERROR, "TaskEnded", message)


def container_refusal(task: Doc, pool: Doc) -> Doc | None:
    """The failureInfo of a task with ``containerSettings`` on a pool without a container
    configuration: Azure accepts the task and fails it when it is to run (ContainerPoolNotSupported)."""
    if not task.get("containerSettings") or (pool.get("virtualMachineConfiguration") or {}).get("containerConfiguration"):
        return None
    return failure(USER_ERROR, "ContainerPoolNotSupported", "The specified pool does not support container tasks.")


# --- what a finished run means -----------------------------------------------------------------


def max_retries(spec: Doc | None) -> int:
    """maxTaskRetryCount of a task, start task, or job prep/release task (-1 = unlimited)."""
    constraints = (spec or {}).get("constraints") or {}
    value = constraints.get("maxTaskRetryCount", (spec or {}).get("maxTaskRetryCount", 0))
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0


def should_retry(info: Doc, spec: Doc | None, *, exit_code: int | None, failed: bool, preprocessing: bool,
                 upload_failed: bool, timed_out: bool, killed: bool) -> bool:
    """Azure retries a failed command (nonzero exit), never a pre-processing or upload failure,
    a wall-clock timeout or a task ended from outside."""
    if not failed or preprocessing or upload_failed or timed_out or killed or exit_code in (None, 0):
        return False
    limit = max_retries(spec)
    return limit < 0 or int(info.get("retryCount", 0)) < limit


def record_retry(info: Doc, now: str) -> None:
    """The next attempt starts now (Azure: lastRetryTime is typically the new startTime)."""
    info["retryCount"] = int(info.get("retryCount", 0)) + 1
    info["lastRetryTime"] = now
    info["startTime"] = now
    for key in ("endTime", "exitCode", "failureInfo", "result"):
        info.pop(key, None)


def record_result(info: Doc, *, now: str, exit_code: int | None, failure_info: Doc | None) -> None:
    """endTime, exitCode, result and failureInfo of a finished run (task, start task, prep, release)."""
    info["endTime"] = now
    if exit_code is None:
        info.pop("exitCode", None)
    else:
        info["exitCode"] = exit_code
    if failure_info is None and exit_code == 0:
        info["result"] = "success"
        info.pop("failureInfo", None)
    else:
        info["result"] = "failure"
        info["failureInfo"] = failure_info or failure(USER_ERROR, "FailureExitCode", EXIT_CODE_FAILURE,
                                                      [{"name": "Message", "value": EXIT_CODE_FAILURE}])


def start_running(info: Doc, now: str) -> None:
    """A task (or start / prep task) attempt begins."""
    info["startTime"] = now
    for key in ("endTime", "exitCode", "failureInfo", "result"):
        info.pop(key, None)


def requeue(doc: Doc, now: str) -> None:
    """The executionInfo side of a requeue (node reboot / removal / job disable / server restart)."""
    info = doc.setdefault("executionInfo", {"retryCount": 0, "requeueCount": 0})
    info["requeueCount"] = int(info.get("requeueCount", 0)) + 1
    info["lastRequeueTime"] = now
    for key in ("startTime", "endTime", "exitCode", "failureInfo", "result"):
        info.pop(key, None)
    doc.pop("nodeInfo", None)


# --- job actions ---------------------------------------------------------------------------------


def _matches_code(entry: Doc, code: int) -> bool:
    if "code" in entry:
        return entry.get("code") == code
    start, end = entry.get("start"), entry.get("end")
    return isinstance(start, int) and isinstance(end, int) and start <= code <= end


def exit_options(task: Doc, *, exit_code: int | None, preprocessing: bool, upload_failed: bool) -> Doc | None:
    """The task's exitConditions entry that applies to this outcome, if any."""
    conditions = task.get("exitConditions") or {}
    if preprocessing:
        return conditions.get("preProcessingError") or conditions.get("default")
    if upload_failed:
        return conditions.get("fileUploadError") or conditions.get("default")
    if exit_code is not None:
        for entry in [*(conditions.get("exitCodes") or []), *(conditions.get("exitCodeRanges") or [])]:
            if isinstance(entry, dict) and _matches_code(entry, exit_code):
                options = entry.get("exitOptions")
                return options if isinstance(options, dict) else None
        if exit_code == 0:
            return None
    return conditions.get("default")


def job_action(job: Doc, task: Doc, *, succeeded: bool, exit_code: int | None, preprocessing: bool,
               upload_failed: bool) -> str:
    """none | disable | terminate: what a task's completion does to its job (onTaskFailure + exitConditions)."""
    if job.get("onTaskFailure") != "performexitoptionsjobaction":
        return "none"
    options = exit_options(task, exit_code=exit_code, preprocessing=preprocessing, upload_failed=upload_failed)
    action = (options or {}).get("jobAction")
    if isinstance(action, str) and action in ("none", "disable", "terminate"):
        return action
    return "none" if succeeded else "terminate"


# --- identities ----------------------------------------------------------------------------------


def elevation_of(identity: Doc | None, user_accounts: list[Doc] | None) -> tuple[str, str]:
    """(elevationLevel, AZ_BATCH_TASK_USER_IDENTITY) of a task's userIdentity."""
    identity = identity or {}
    name = identity.get("username") or identity.get("userName")
    if isinstance(name, str) and name:
        for account in user_accounts or []:
            if isinstance(account, dict) and str(account.get("name", "")).lower() == name.lower():
                return str(account.get("elevationLevel") or "nonadmin").lower(), name
        return "nonadmin", name
    auto = identity.get("autoUser") or {}
    level = str(auto.get("elevationLevel") or "nonadmin").lower()
    scope = str(auto.get("scope") or "pool").lower()
    return level, ("Task" if scope == "task" else "Pool") + ("Admin" if level == "admin" else "NonAdmin")


def environment(*lists: Any) -> list[Doc]:
    """Environment settings lists concatenated (later ones win when the provider builds the env)."""
    out: list[Doc] = []
    for items in lists:
        if isinstance(items, list):
            out.extend(i for i in items if isinstance(i, dict) and i.get("name"))
    return out


def node_environment(ctx: Any, account: str, pool_id: str) -> list[Doc]:
    """What every task on the pool's nodes starts with (its managed-identity endpoint: see
    pool_identity.py); the task's own settings come after and win."""
    from openbatch.batch.domain import pool_identity  # lazy: it loads the identity modules (cryptography)

    return pool_identity.run_environment(ctx, account, pool_id) if ctx is not None else []
