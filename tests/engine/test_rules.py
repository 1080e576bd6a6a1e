"""Execution and recovery rules as pure functions: documents in, documents (and decisions) out."""

from __future__ import annotations

from typing import Any

from openbatch.batch.domain import execution as ex
from openbatch.batch.domain import recovery

NOW = "2026-01-01T00:00:00.000000Z"


def task(**kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": "t", "state": "running", "executionInfo": {"retryCount": 0, "requeueCount": 0},
                           "constraints": {"maxTaskRetryCount": 0}}
    doc.update(kw)
    return doc


def retry(doc: dict[str, Any], **kw: Any) -> bool:
    args = {"exit_code": 1, "failed": True, "preprocessing": False, "upload_failed": False, "timed_out": False,
            "killed": False, **kw}
    return ex.should_retry(doc["executionInfo"], doc, **args)


def test_seconds_of_durations() -> None:
    assert ex.seconds("PT1M30S") == 90
    assert ex.seconds("P1D") == 86400
    assert ex.seconds("P10675199DT2H48M5.4775807S") is None  # Azure's "unlimited"
    assert ex.seconds(None) is None and ex.seconds("garbage") is None


def test_failed_commands_are_retried_up_to_the_limit() -> None:
    doc = task(constraints={"maxTaskRetryCount": 2})
    assert retry(doc)
    ex.record_retry(doc["executionInfo"], NOW)
    ex.record_retry(doc["executionInfo"], NOW)
    assert doc["executionInfo"]["retryCount"] == 2 and doc["executionInfo"]["lastRetryTime"] == NOW
    assert not retry(doc)


def test_unlimited_retries_and_what_is_never_retried() -> None:
    doc = task(constraints={"maxTaskRetryCount": -1})
    doc["executionInfo"]["retryCount"] = 500
    assert retry(doc)
    assert not retry(doc, exit_code=0, failed=False)
    assert not retry(doc, preprocessing=True, exit_code=None)
    assert not retry(doc, upload_failed=True, exit_code=0)
    assert not retry(doc, timed_out=True, exit_code=137)
    assert not retry(doc, killed=True, exit_code=137)
    assert not retry(task())  # maxTaskRetryCount 0


def test_results_as_azure_reports_them() -> None:
    info: dict[str, Any] = {}
    ex.record_result(info, now=NOW, exit_code=0, failure_info=None)
    assert info == {"endTime": NOW, "exitCode": 0, "result": "success"}
    ex.record_result(info, now=NOW, exit_code=3, failure_info=None)
    assert info["result"] == "failure" and info["failureInfo"]["code"] == "FailureExitCode"
    assert info["failureInfo"]["category"] == "usererror"
    missing = ex.failure(ex.USER_ERROR, "CommandProgramNotFound", "nope")
    ex.record_result(info, now=NOW, exit_code=None, failure_info=missing)
    assert "exitCode" not in info and info["failureInfo"]["code"] == "CommandProgramNotFound"
    ex.start_running(info, NOW)
    assert set(info) == {"startTime"}


def test_requeue_counts_and_forgets_the_node() -> None:
    doc = task(nodeInfo={"nodeId": "n"})
    doc["executionInfo"].update(startTime=NOW, exitCode=1)
    ex.requeue(doc, NOW)
    assert doc["executionInfo"] == {"retryCount": 0, "requeueCount": 1, "lastRequeueTime": NOW}
    assert "nodeInfo" not in doc


def test_job_actions_follow_on_task_failure_and_exit_conditions() -> None:
    job = {"onTaskFailure": "noaction"}
    assert ex.job_action(job, task(), succeeded=False, exit_code=1, preprocessing=False, upload_failed=False) == "none"
    job = {"onTaskFailure": "performexitoptionsjobaction"}
    plain = task()
    assert ex.job_action(job, plain, succeeded=False, exit_code=1, preprocessing=False, upload_failed=False) == "terminate"
    assert ex.job_action(job, plain, succeeded=True, exit_code=0, preprocessing=False, upload_failed=False) == "none"
    rich = task(exitConditions={
        "exitCodes": [{"code": 3, "exitOptions": {"jobAction": "disable"}}],
        "exitCodeRanges": [{"start": 10, "end": 20, "exitOptions": {"jobAction": "none"}}],
        "preProcessingError": {"jobAction": "terminate"},
        "default": {"jobAction": "none"},
    })
    assert ex.job_action(job, rich, succeeded=False, exit_code=3, preprocessing=False, upload_failed=False) == "disable"
    assert ex.job_action(job, rich, succeeded=False, exit_code=15, preprocessing=False, upload_failed=False) == "none"
    assert ex.job_action(job, rich, succeeded=False, exit_code=99, preprocessing=False, upload_failed=False) == "none"
    assert ex.job_action(job, rich, succeeded=False, exit_code=None, preprocessing=True, upload_failed=False) == "terminate"


def test_identities() -> None:
    assert ex.elevation_of(None, None) == ("nonadmin", "PoolNonAdmin")
    assert ex.elevation_of({"autoUser": {"scope": "task", "elevationLevel": "admin"}}, None) == ("admin", "TaskAdmin")
    users = [{"name": "Bob", "elevationLevel": "admin"}]
    assert ex.elevation_of({"username": "bob"}, users) == ("admin", "bob")
    assert ex.elevation_of({"username": "eve"}, users) == ("nonadmin", "eve")


def test_recovery_requeues_running_and_preparing_tasks_once() -> None:
    for state in ("running", "preparing"):
        doc = task(state=state, nodeInfo={"nodeId": "n"})
        assert recovery.recover_task(doc, "job", NOW)
        assert doc["state"] == "active" and doc["previousState"] == state
        assert doc["executionInfo"]["requeueCount"] == 1
        assert not recovery.recover_task(doc, "job", NOW)  # already active: nothing more
        assert doc["executionInfo"]["requeueCount"] == 1
    for state in ("active", "completed"):
        assert not recovery.recover_task(task(state=state), "job", NOW)


def test_recovery_reboots_nodes_and_finishes_removals() -> None:
    def node(state: str) -> dict[str, Any]:
        return {"id": "n", "poolId": "p", "state": state, "runningTasksCount": 3, "runningTaskSlotsCount": 3}

    idle = node("running")
    assert recovery.recover_node(idle, NOW) == recovery.RESTART
    assert idle["state"] == "rebooting" and idle["runningTasksCount"] == 0
    assert recovery.recover_node(node("leavingpool"), NOW) == recovery.REMOVE
    assert recovery.recover_node(node("creating"), NOW) == recovery.BOOT
    assert recovery.recover_node(node("reimaging"), NOW) == recovery.REIMAGE
    assert recovery.recover_node(node("starttaskfailed"), NOW) == recovery.RESTART
