"""api-version translation at the Batch wire edge (network-free, except one test that runs
the real azure-batch 1.0.0 SDK in its cached venv to prove the old generation reads our output
and that the hard-coded legacy request bodies below are what that SDK sends)."""

from __future__ import annotations

import copy
import json
from typing import Any

import azure.batch.models as m
import pytest

from openbatch.batch.wire.odata import TASK_FILTER_PROPERTIES, parse_filter
from openbatch.batch.wire.versions import (
    KINDS,
    LATEST,
    V2016_07_01,
    V_DEDICATED_NODES,
    V_HTTP_URL,
    V_SUPPORTED_IMAGES,
    V_TASK_SLOTS,
    V_USER_IDENTITY,
    ApiVersion,
    InvalidApiVersion,
    MissingApiVersion,
    filter_to_internal,
    from_internal,
    node_agent_skus,
    parse_api_version,
    to_internal,
)
from tests.helpers.venvs import run_script

OLD = V2016_07_01


def model(cls: type, doc: Any) -> Any:
    """A 15.x SDK model read from ``doc`` (typed Any: the assertions walk optional fields)."""
    return cls(doc)


V14 = parse_api_version("2024-02-01.19.0")
V20 = parse_api_version("2024-07-01.20.0")

# Request bodies exactly as azure-batch 1.0.0's own Serializer produces them (generated with
# LEGACY_SCRIPT below; test_legacy_sdk_round_trip re-checks them against the real SDK).
SAS_URL = "http://127.0.0.1:10000/devstoreaccount1/input/a.txt?sig=x"

_LEGACY_FILES = [{"blobSource": SAS_URL, "fileMode": "0644", "filePath": "a.txt"}]
_LEGACY_START = {
    "commandLine": "/bin/sh -c 'echo hi'",
    "environmentSettings": [{"name": "A", "value": "1"}],
    "maxTaskRetryCount": 1,
    "resourceFiles": _LEGACY_FILES,
    "runElevated": True,
    "waitForSuccess": True,
}
_LEGACY_VM = {
    "imageReference": {
        "offer": "UbuntuServer",
        "publisher": "Canonical",
        "sku": "16.04.0-LTS",
        "version": "latest",
    },
    "nodeAgentSKUId": "batch.node.ubuntu 16.04",
}
_LEGACY_POOL_INFO = {
    "autoPoolSpecification": {
        "autoPoolIdPrefix": "ap",
        "keepAlive": False,
        "pool": {
            "maxTasksPerNode": 2,
            "startTask": _LEGACY_START,
            "targetDedicated": 1,
            "virtualMachineConfiguration": _LEGACY_VM,
            "vmSize": "STANDARD_A1",
        },
        "poolLifetimeOption": "job",
    }
}
_LEGACY_TASK = {
    "commandLine": "/bin/sh -c 'exit 3'",
    "constraints": {"maxTaskRetryCount": 2, "maxWallClockTime": "PT5M"},
    "environmentSettings": [{"name": "B", "value": "2"}],
    "exitConditions": {
        "default": {"jobAction": "none"},
        "exitCodes": [{"code": 3, "exitOptions": {"jobAction": "terminate"}}],
        "schedulingError": {"jobAction": "disable"},
    },
    "id": "task1",
    "resourceFiles": _LEGACY_FILES,
    "runElevated": True,
}
LEGACY_REQUESTS: dict[str, dict[str, Any]] = {
    "pool": {
        "id": "pool1",
        "maxTasksPerNode": 4,
        "metadata": [{"name": "k", "value": "v"}],
        "startTask": _LEGACY_START,
        "targetDedicated": 2,
        "taskSchedulingPolicy": {"nodeFillType": "pack"},
        "virtualMachineConfiguration": _LEGACY_VM,
        "vmSize": "STANDARD_A1",
    },
    "pool.resize": {"nodeDeallocationOption": "requeue", "resizeTimeout": "PT10M", "targetDedicated": 5},
    "pool.update": {
        "applicationPackageReferences": [],
        "certificateReferences": [],
        "metadata": [],
        "startTask": _LEGACY_START,
    },
    "pool.patch": {"startTask": _LEGACY_START},
    "job": {
        "id": "job1",
        "jobManagerTask": {
            "commandLine": "/bin/true",
            "id": "jm",
            "killJobOnCompletion": True,
            "resourceFiles": _LEGACY_FILES,
            "runElevated": False,
        },
        "jobPreparationTask": {
            "commandLine": "/bin/true",
            "resourceFiles": _LEGACY_FILES,
            "runElevated": True,
        },
        "jobReleaseTask": {"commandLine": "/bin/true", "runElevated": True},
        "onAllTasksComplete": "terminateJob",
        "onTaskFailure": "performExitOptionsJobAction",
        "poolInfo": _LEGACY_POOL_INFO,
        "priority": 10,
    },
    "jobschedule": {
        "id": "js1",
        "jobSpecification": {
            "jobManagerTask": {"commandLine": "/bin/true", "id": "jm", "runElevated": True},
            "poolInfo": _LEGACY_POOL_INFO,
        },
        "schedule": {"recurrenceInterval": "PT1H"},
    },
    "task": _LEGACY_TASK,
    "taskcollection": {"value": [_LEGACY_TASK, {"commandLine": "/bin/true", "id": "task2"}]},
}

# -- modern internal documents (validated against the 15.x models below) ---------------------

START_TASK: dict[str, Any] = {
    "commandLine": "/bin/sh -c 'echo hi'",
    "resourceFiles": [{"httpUrl": SAS_URL, "filePath": "a.txt"}],
    "userIdentity": {"autoUser": {"scope": "pool", "elevationLevel": "admin"}},
    "maxTaskRetryCount": 1,
    "waitForSuccess": True,
}

POOL: dict[str, Any] = {
    "id": "pool1",
    "url": "http://127.0.0.1:8100/pools/pool1",
    "eTag": "0x8D",
    "lastModified": "2024-01-01T00:00:00Z",
    "creationTime": "2024-01-01T00:00:00Z",
    "state": "active",
    "stateTransitionTime": "2024-01-01T00:00:00Z",
    "allocationState": "steady",
    "allocationStateTransitionTime": "2024-01-01T00:00:00Z",
    "vmSize": "standard_a1",
    "virtualMachineConfiguration": {
        "imageReference": {
            "publisher": "canonical",
            "offer": "ubuntuserver",
            "sku": "22_04-lts",
            "version": "latest",
        },
        "nodeAgentSKUId": "batch.node.ubuntu 22.04",
    },
    "resizeTimeout": "PT15M",
    "resizeErrors": [
        {"code": "AllocationFailed", "message": "no capacity"},
        {"code": "Second", "message": "x"},
    ],
    "currentDedicatedNodes": 2,
    "currentLowPriorityNodes": 0,
    "targetDedicatedNodes": 3,
    "targetLowPriorityNodes": 0,
    "enableAutoScale": False,
    "enableInterNodeCommunication": False,
    "startTask": START_TASK,
    "taskSlotsPerNode": 4,
    "taskSchedulingPolicy": {"nodeFillType": "spread"},
    "metadata": [{"name": "k", "value": "v"}],
}

TASK_EXIT_FAILURE: dict[str, Any] = {
    "id": "task1",
    "url": "http://127.0.0.1:8100/jobs/job1/tasks/task1",
    "eTag": "0x8D",
    "creationTime": "2024-01-01T00:00:00.1234567Z",
    "lastModified": "2024-01-01T00:00:00Z",
    "state": "completed",
    "stateTransitionTime": "2024-01-01T00:01:00Z",
    "previousState": "running",
    "commandLine": "/bin/sh -c 'exit 3'",
    "resourceFiles": [{"httpUrl": SAS_URL, "filePath": "a.txt"}],
    "userIdentity": {"autoUser": {"elevationLevel": "admin"}},
    "exitConditions": {
        "exitCodes": [{"code": 3, "exitOptions": {"jobAction": "terminate"}}],
        "preProcessingError": {"jobAction": "disable"},
        "default": {"jobAction": "none"},
    },
    "constraints": {"maxWallClockTime": "PT5M", "retentionTime": "P7D", "maxTaskRetryCount": 0},
    "executionInfo": {
        "startTime": "2024-01-01T00:00:10Z",
        "endTime": "2024-01-01T00:00:11Z",
        "exitCode": 3,
        "result": "failure",
        "failureInfo": {"category": "usererror", "code": "FailureExitCode", "message": "exit code 3"},
        "retryCount": 0,
        "requeueCount": 0,
    },
    "nodeInfo": {
        "affinityId": "tvm-1",
        "nodeUrl": "u",
        "poolId": "pool1",
        "nodeId": "tvm-1",
        "taskRootDirectory": "d",
    },
}

TASK_START_FAILURE: dict[str, Any] = {
    "id": "task2",
    "state": "completed",
    "commandLine": "/bin/true",
    "executionInfo": {
        "result": "failure",
        "failureInfo": {
            "category": "usererror",
            "code": "BlobDownloadMiscError",
            "message": "could not download",
            "details": [{"name": "FilePath", "value": "a.txt"}],
        },
        "retryCount": 0,
        "requeueCount": 0,
    },
}

NODE: dict[str, Any] = {
    "id": "tvm-1",
    "url": "http://127.0.0.1:8100/pools/pool1/nodes/tvm-1",
    "state": "idle",
    "schedulingState": "enabled",
    "stateTransitionTime": "2024-01-01T00:00:00Z",
    "allocationTime": "2024-01-01T00:00:00Z",
    "ipAddress": "127.0.0.1",
    "vmSize": "standard_a1",
    "totalTasksRun": 1,
    "runningTasksCount": 0,
    "runningTaskSlotsCount": 0,
    "totalTasksSucceeded": 0,
    "isDedicated": True,
    "recentTasks": [
        {
            "taskUrl": "u",
            "jobId": "job1",
            "taskId": "task2",
            "taskState": "completed",
            "executionInfo": TASK_START_FAILURE["executionInfo"],
        }
    ],
    "startTask": START_TASK,
    "startTaskInfo": {
        "state": "completed",
        "startTime": "2024-01-01T00:00:00Z",
        "endTime": "2024-01-01T00:00:01Z",
        "exitCode": 0,
        "result": "success",
        "retryCount": 0,
    },
}

AUTO_POOL_INFO: dict[str, Any] = {
    "autoPoolSpecification": {
        "autoPoolIdPrefix": "ap",
        "poolLifetimeOption": "job",
        "keepAlive": False,
        "pool": {
            "vmSize": "standard_a1",
            "virtualMachineConfiguration": POOL["virtualMachineConfiguration"],
            "targetDedicatedNodes": 1,
            "taskSlotsPerNode": 2,
            "startTask": START_TASK,
        },
    }
}

JOB: dict[str, Any] = {
    "id": "job1",
    "url": "http://127.0.0.1:8100/jobs/job1",
    "eTag": "0x8D",
    "creationTime": "2024-01-01T00:00:00Z",
    "state": "active",
    "priority": 10,
    "poolInfo": AUTO_POOL_INFO,
    "jobManagerTask": {"id": "jm", "commandLine": "/bin/true", "userIdentity": {"username": "someone"}},
    "jobPreparationTask": {"commandLine": "/bin/true", "resourceFiles": START_TASK["resourceFiles"]},
    "jobReleaseTask": {"commandLine": "/bin/true", "userIdentity": {"autoUser": {"elevationLevel": "admin"}}},
    "onAllTasksComplete": "noaction",
    "onTaskFailure": "noaction",
    "executionInfo": {
        "startTime": "2024-01-01T00:00:00Z",
        "poolId": "ap-1",
        "schedulingError": {"category": "usererror", "code": "JobPreparationTaskFailed"},
    },
}

JOB_SCHEDULE: dict[str, Any] = {
    "id": "js1",
    "state": "active",
    "schedule": {"recurrenceInterval": "PT1H"},
    "jobSpecification": {
        "poolInfo": AUTO_POOL_INFO,
        "jobManagerTask": {
            "id": "jm",
            "commandLine": "/bin/true",
            "userIdentity": {"autoUser": {"elevationLevel": "admin"}},
        },
    },
    "executionInfo": {"nextRunTime": "2024-01-01T01:00:00Z", "recentJob": {"id": "js1:job-1", "url": "u"}},
}

SUBTASK: dict[str, Any] = {
    "id": 1,
    "state": "completed",
    "failureInfo": {"category": "servererror", "code": "NodeLost", "message": "lost"},
    "result": "failure",
}

PREP_RELEASE: dict[str, Any] = {
    "poolId": "pool1",
    "nodeId": "tvm-1",
    "nodeUrl": "u",
    "jobPreparationTaskExecutionInfo": {
        "startTime": "2024-01-01T00:00:00Z",
        "state": "completed",
        "retryCount": 0,
        "failureInfo": {"category": "usererror", "code": "ResourceFileDownloadFailed"},
        "result": "failure",
    },
    "jobReleaseTaskExecutionInfo": {
        "startTime": "2024-01-01T00:00:00Z",
        "state": "completed",
        "exitCode": 1,
        "failureInfo": {"category": "usererror", "code": "FailureExitCode"},
        "result": "failure",
    },
}

TASK_COUNTS: dict[str, Any] = {
    "taskCounts": {"active": 1, "running": 2, "completed": 3, "succeeded": 2, "failed": 1},
    "taskSlotCounts": {"active": 1, "running": 2, "completed": 3, "succeeded": 2, "failed": 1},
}

USAGE: dict[str, Any] = {
    "poolId": "pool1",
    "startTime": "2024-01-01T00:00:00Z",
    "endTime": "2024-01-01T00:30:00Z",
    "vmSize": "standard_a1",
    "totalCoreHours": 0.5,
}

SUPPORTED_IMAGES: list[dict[str, Any]] = [
    {
        "nodeAgentSKUId": "batch.node.ubuntu 22.04",
        "imageReference": {
            "publisher": "canonical",
            "offer": "0001-com-ubuntu-server-jammy",
            "sku": "22_04-lts",
            "version": "latest",
        },
        "osType": "linux",
        "verificationType": "verified",
    },
    {
        "nodeAgentSKUId": "batch.node.ubuntu 22.04",
        "imageReference": {
            "publisher": "canonical",
            "offer": "ubuntu-24_04-lts",
            "sku": "server",
            "version": "latest",
        },
        "osType": "linux",
        "verificationType": "verified",
    },
    {
        "nodeAgentSKUId": "batch.node.debian 12",
        "imageReference": {"publisher": "debian", "offer": "debian-12", "sku": "12", "version": "latest"},
        "osType": "linux",
        "verificationType": "verified",
    },
]

ADD_COLLECTION_RESULT: dict[str, Any] = {
    "value": [
        {
            "status": "success",
            "taskId": "a",
            "eTag": "0x1",
            "lastModified": "2024-01-01T00:00:00Z",
            "location": "u",
        },
        {
            "status": "clienterror",
            "taskId": "b",
            "error": {
                "code": "TaskExists",
                "message": {"lang": "en-US", "value": "The specified task already exists."},
            },
        },
    ]
}

MODERN_DOCS: dict[str, dict[str, Any]] = {
    "pool": POOL,
    "task": TASK_EXIT_FAILURE,
    "node": NODE,
    "job": JOB,
    "jobschedule": JOB_SCHEDULE,
    "subtask": SUBTASK,
    "preparationandreleasetaskstatus": PREP_RELEASE,
    "taskcounts": TASK_COUNTS,
    "poolusagemetrics": USAGE,
    "taskaddcollectionresult": ADD_COLLECTION_RESULT,
}

# Every version a client of each SDK generation may send, oldest first.
GENERATIONS = [
    "2016-07-01.3.1",
    "2017-01-01.4.0",
    "2017-05-01.5.0",
    "2017-06-01.5.1",
    "2017-09-01.6.0",
    "2018-03-01.6.1",
    "2018-08-01.7.0",
    "2018-12-01.8.0",
    "2019-06-01.9.0",
    "2019-08-01.10.0",
    "2020-03-01.11.0",
    "2020-09-01.12.0",
    "2021-06-01.14.0",
    "2022-01-01.15.0",
    "2022-10-01.16.0",
    "2023-05-01.17.0",
    "2023-11-01.18.0",
    "2024-02-01.19.0",
    "2024-07-01.20.0",
    "2025-06-01",
]


# -- api-version parsing --------------------------------------------------------------------


def test_parse_api_version_orders_by_date_then_service_version() -> None:
    parsed = [parse_api_version(text) for text in GENERATIONS]
    assert parsed == sorted(parsed)
    assert len(set(parsed)) == len(parsed)
    assert parse_api_version("2016-07-01.3.1") == OLD
    assert parse_api_version("2025-06-01") == LATEST
    assert str(parse_api_version(" 2024-02-01.19.0 ")) == "2024-02-01.19.0"
    assert parse_api_version("2017-05-01.5.0") < parse_api_version("2017-05-01.5.1")


def test_unknown_newer_versions_are_accepted() -> None:
    newer = parse_api_version("2031-01-01")
    assert newer > LATEST
    assert parse_api_version("2026-01-01.21.0") > LATEST
    assert parse_api_version("2025-10-01-preview") > LATEST
    assert from_internal("pool", POOL, newer) == POOL


@pytest.mark.parametrize("text", ["", "  ", None])
def test_missing_api_version(text: str | None) -> None:
    with pytest.raises(MissingApiVersion):
        parse_api_version(text)


@pytest.mark.parametrize(
    "text", ["latest", "2016-07-01.3.1.4", "2016-13-01", "2016-02-30.1.0", "16-07-01", "2016-07-01.a"]
)
def test_malformed_api_version(text: str) -> None:
    with pytest.raises(InvalidApiVersion) as info:
        parse_api_version(text)
    assert isinstance(info.value, ValueError)
    assert not isinstance(info.value, MissingApiVersion)


# -- requests from azure-batch 1.0.0 become the modern shape the 15.x models read ------------


def test_legacy_pool_add_becomes_modern() -> None:
    body = to_internal("pool", LEGACY_REQUESTS["pool"], OLD)
    assert "targetDedicated" not in body and "maxTasksPerNode" not in body
    assert "runElevated" not in body["startTask"]
    assert "blobSource" not in body["startTask"]["resourceFiles"][0]
    pool = model(m.BatchPoolCreateOptions, body)
    assert pool.target_dedicated_nodes == 2
    assert pool.task_slots_per_node == 4
    assert pool.start_task is not None and pool.start_task.user_identity is not None
    assert pool.start_task.user_identity.auto_user is not None
    assert pool.start_task.user_identity.auto_user.elevation_level == "admin"
    assert pool.start_task.resource_files is not None
    assert pool.start_task.resource_files[0].http_url == SAS_URL
    assert pool.start_task.resource_files[0].file_path == "a.txt"
    assert pool.virtual_machine_configuration.node_agent_sku_id == "batch.node.ubuntu 16.04"
    assert pool.virtual_machine_configuration.image_reference.offer == "UbuntuServer"


def test_legacy_job_add_translates_nested_tasks_and_auto_pool() -> None:
    job = model(m.BatchJobCreateOptions, to_internal("job", LEGACY_REQUESTS["job"], OLD))
    spec = job.pool_info.auto_pool_specification
    assert spec is not None and spec.pool is not None
    assert spec.pool.target_dedicated_nodes == 1
    assert spec.pool.task_slots_per_node == 2
    assert spec.pool.start_task is not None and spec.pool.start_task.user_identity is not None
    assert spec.pool.start_task.user_identity.auto_user.elevation_level == "admin"
    assert job.job_manager_task is not None and job.job_manager_task.user_identity is not None
    assert job.job_manager_task.user_identity.auto_user.elevation_level == "nonadmin"
    assert job.job_manager_task.resource_files[0].http_url == SAS_URL
    assert job.job_preparation_task.user_identity.auto_user.elevation_level == "admin"
    assert job.job_release_task.user_identity.auto_user.elevation_level == "admin"
    # 2016-07-01.3.1 spelt these enums in camelCase; the modern model has them lower-case.
    assert job.all_tasks_complete_mode == "terminatejob"
    assert job.task_failure_mode == "performexitoptionsjobaction"


def test_legacy_task_add_and_collection() -> None:
    task = model(m.BatchTaskCreateOptions, to_internal("task", LEGACY_REQUESTS["task"], OLD))
    assert task.user_identity.auto_user.elevation_level == "admin"
    assert task.resource_files[0].http_url == SAS_URL
    assert task.exit_conditions is not None
    assert task.exit_conditions.pre_processing_error.job_action == "disable"
    assert task.exit_conditions.exit_codes[0].exit_options.job_action == "terminate"
    assert task.constraints.max_wall_clock_time.total_seconds() == 300
    group = model(m.BatchTaskGroup, to_internal("taskcollection", LEGACY_REQUESTS["taskcollection"], OLD))
    assert [t.id for t in group.task_values] == ["task1", "task2"]
    assert group.task_values[0].user_identity.auto_user.elevation_level == "admin"
    assert group.task_values[1].user_identity is None


def test_legacy_resize_update_patch_and_schedule() -> None:
    resize = model(m.BatchPoolResizeOptions, to_internal("pool.resize", LEGACY_REQUESTS["pool.resize"], OLD))
    assert resize.target_dedicated_nodes == 5
    assert resize.resize_timeout.total_seconds() == 600
    update = model(m.BatchPoolReplaceOptions, to_internal("pool.update", LEGACY_REQUESTS["pool.update"], OLD))
    assert update.start_task.user_identity.auto_user.elevation_level == "admin"
    patch = model(m.BatchPoolUpdateOptions, to_internal("pool.patch", LEGACY_REQUESTS["pool.patch"], OLD))
    assert patch.start_task.resource_files[0].http_url == SAS_URL
    schedule = model(
        m.BatchJobScheduleCreateOptions, to_internal("jobschedule", LEGACY_REQUESTS["jobschedule"], OLD)
    )
    spec = schedule.job_specification
    assert spec.pool_info.auto_pool_specification.pool.target_dedicated_nodes == 1
    assert spec.job_manager_task.user_identity.auto_user.elevation_level == "admin"


@pytest.mark.parametrize("kind", sorted(LEGACY_REQUESTS))
def test_legacy_requests_round_trip(kind: str) -> None:
    body = LEGACY_REQUESTS[kind]
    original = copy.deepcopy(body)
    modern = to_internal(kind, body, OLD)
    assert body == original, "the request body must not be mutated"
    assert from_internal(kind, modern, OLD) == body


def test_run_elevated_false_and_named_users() -> None:
    assert to_internal("task", {"id": "t", "runElevated": False}, OLD)["userIdentity"] == {
        "autoUser": {"elevationLevel": "nonadmin"}
    }
    assert "userIdentity" not in to_internal("task", {"id": "t"}, OLD)
    # A named user has no runElevated equivalent: reported as not elevated.
    assert from_internal("task", {"id": "t", "userIdentity": {"username": "u"}}, OLD)["runElevated"] is False
    # When both are sent, the explicit modern field wins.
    body = {"id": "t", "runElevated": True, "userIdentity": {"username": "u"}}
    assert to_internal("task", body, OLD) == {"id": "t", "userIdentity": {"username": "u"}}


# -- responses for old versions ---------------------------------------------------------------


def test_pool_for_2016() -> None:
    pool = from_internal("pool", POOL, OLD)
    assert pool["targetDedicated"] == 3 and pool["currentDedicated"] == 2
    assert pool["maxTasksPerNode"] == 4
    assert pool["resizeError"] == {"code": "AllocationFailed", "message": "no capacity"}
    for modern in ("targetDedicatedNodes", "currentDedicatedNodes", "taskSlotsPerNode", "resizeErrors"):
        assert modern not in pool
    assert pool["startTask"]["runElevated"] is True
    assert "userIdentity" not in pool["startTask"]
    assert pool["startTask"]["resourceFiles"] == [{"blobSource": SAS_URL, "filePath": "a.txt"}]
    assert pool["virtualMachineConfiguration"] == POOL["virtualMachineConfiguration"]


def test_pool_without_resize_errors() -> None:
    doc = {**POOL, "resizeErrors": []}
    assert "resizeError" not in from_internal("pool", doc, OLD)
    assert "resizeErrors" not in from_internal("pool", {"id": "p"}, OLD)


def test_task_failure_info_becomes_scheduling_error_only_before_the_task_ran() -> None:
    ran = from_internal("task", TASK_EXIT_FAILURE, OLD)
    assert ran["executionInfo"]["exitCode"] == 3
    assert "schedulingError" not in ran["executionInfo"] and "failureInfo" not in ran["executionInfo"]
    assert ran["exitConditions"]["schedulingError"] == {"jobAction": "disable"}
    assert "preProcessingError" not in ran["exitConditions"]
    assert ran["runElevated"] is True
    assert ran["resourceFiles"][0]["blobSource"] == SAS_URL
    failed = from_internal("task", TASK_START_FAILURE, OLD)
    assert failed["executionInfo"]["schedulingError"] == TASK_START_FAILURE["executionInfo"]["failureInfo"]


def test_node_for_2016() -> None:
    node = from_internal("node", NODE, OLD)
    assert node["startTask"]["runElevated"] is True
    assert node["startTask"]["resourceFiles"][0]["blobSource"] == SAS_URL
    assert node["startTaskInfo"]["exitCode"] == 0 and "failureInfo" not in node["startTaskInfo"]
    recent = node["recentTasks"][0]["executionInfo"]
    assert recent["schedulingError"]["code"] == "BlobDownloadMiscError"
    assert node["schedulingState"] == "enabled"


def test_job_and_schedule_for_2016() -> None:
    job = from_internal("job", JOB, OLD)
    pool = job["poolInfo"]["autoPoolSpecification"]["pool"]
    assert pool["targetDedicated"] == 1 and pool["maxTasksPerNode"] == 2
    assert pool["startTask"]["runElevated"] is True
    assert job["jobManagerTask"]["runElevated"] is False  # a named user
    assert job["jobPreparationTask"]["resourceFiles"][0]["blobSource"] == SAS_URL
    assert "runElevated" not in job["jobPreparationTask"]
    assert job["jobReleaseTask"]["runElevated"] is True
    assert job["onAllTasksComplete"] == "noAction" and job["onTaskFailure"] == "noAction"
    # A job's own scheduling error is called that in every version.
    assert job["executionInfo"] == JOB["executionInfo"]
    schedule = from_internal("jobschedule", JOB_SCHEDULE, OLD)
    spec = schedule["jobSpecification"]
    assert spec["poolInfo"]["autoPoolSpecification"]["pool"]["targetDedicated"] == 1
    assert spec["jobManagerTask"]["runElevated"] is True
    assert schedule["executionInfo"] == JOB_SCHEDULE["executionInfo"]


def test_subtasks_and_preparation_status_for_2016() -> None:
    subtask = from_internal("subtask", SUBTASK, OLD)
    assert subtask["schedulingError"]["code"] == "NodeLost" and "failureInfo" not in subtask
    status = from_internal("jobpreparationandreleasetaskstatus", PREP_RELEASE, OLD)
    prep, release = status["jobPreparationTaskExecutionInfo"], status["jobReleaseTaskExecutionInfo"]
    assert prep["schedulingError"]["code"] == "ResourceFileDownloadFailed"
    assert "schedulingError" not in release and "failureInfo" not in release


def test_task_counts_per_generation() -> None:
    assert from_internal("taskcounts", TASK_COUNTS, LATEST) == TASK_COUNTS
    assert from_internal("taskcounts", TASK_COUNTS, parse_api_version("2020-09-01.12.0")) == TASK_COUNTS
    bare = from_internal("taskcounts", TASK_COUNTS, parse_api_version("2019-08-01.10.0"))
    assert bare == TASK_COUNTS["taskCounts"]
    validated = from_internal("taskcounts", TASK_COUNTS, parse_api_version("2017-06-01.5.1"))
    assert validated == {**TASK_COUNTS["taskCounts"], "validationStatus": "validated"}


def test_pool_usage_metrics_data_fields() -> None:
    old = from_internal("poolusagemetrics", USAGE, OLD)
    assert old["dataIngressGiB"] == 0.0 and old["dataEgressGiB"] == 0.0
    assert from_internal("poolusagemetrics", USAGE, V_HTTP_URL) == USAGE
    assert to_internal("poolusagemetrics", old, OLD) == USAGE


def test_node_agent_skus_group_supported_images() -> None:
    skus = node_agent_skus(SUPPORTED_IMAGES)
    assert [s["id"] for s in skus] == ["batch.node.ubuntu 22.04", "batch.node.debian 12"]
    assert skus[0]["osType"] == "linux"
    assert [r["offer"] for r in skus[0]["verifiedImageReferences"]] == [
        "0001-com-ubuntu-server-jammy",
        "ubuntu-24_04-lts",
    ]
    assert from_internal("nodeagentsku", skus[1], OLD) == skus[1]
    assert node_agent_skus([{"osType": "linux"}]) == []


def test_supported_images_match_the_15x_model() -> None:
    image = model(m.BatchSupportedImage, from_internal("supportedimage", SUPPORTED_IMAGES[0], LATEST))
    assert image.node_agent_sku_id == "batch.node.ubuntu 22.04"
    assert image.image_reference.publisher == "canonical"
    assert V_SUPPORTED_IMAGES > OLD


# -- intermediate generations -----------------------------------------------------------------


def v(text: str) -> ApiVersion:
    return parse_api_version(text)


def test_each_change_lands_in_its_own_generation() -> None:
    cases = [
        ("2016-07-01.3.1", True, True, True, True),
        ("2017-01-01.4.0", False, True, True, True),
        ("2017-05-01.5.0", False, False, True, True),
        ("2018-08-01.7.0", False, False, True, True),
        ("2018-12-01.8.0", False, False, False, True),
        ("2020-03-01.11.0", False, False, False, True),
        ("2020-09-01.12.0", False, False, False, False),
        ("2024-02-01.19.0", False, False, False, False),
    ]
    for text, run_elevated, target_dedicated, blob_source, max_tasks in cases:
        pool = from_internal("pool", POOL, v(text))
        start = pool["startTask"]
        assert ("runElevated" in start) is run_elevated, text
        assert ("userIdentity" in start) is not run_elevated, text
        assert ("targetDedicated" in pool) is target_dedicated, text
        assert ("targetDedicatedNodes" in pool) is not target_dedicated, text
        assert ("resizeError" in pool) is target_dedicated, text
        assert ("blobSource" in start["resourceFiles"][0]) is blob_source, text
        assert ("httpUrl" in start["resourceFiles"][0]) is not blob_source, text
        assert ("maxTasksPerNode" in pool) is max_tasks, text
        assert ("taskSlotsPerNode" in pool) is not max_tasks, text
        expected = copy.deepcopy(POOL)
        if target_dedicated:  # one resize error only
            expected["resizeErrors"] = POOL["resizeErrors"][:1]
        if run_elevated:  # the auto-user scope is not expressible before userIdentity
            expected["startTask"]["userIdentity"] = {"autoUser": {"elevationLevel": "admin"}}
        assert to_internal("pool", pool, v(text)) == expected, text


def test_failure_info_generation_boundary() -> None:
    before = from_internal("task", TASK_START_FAILURE, v("2017-01-01.4.0"))
    assert "schedulingError" in before["executionInfo"]
    after = from_internal("task", TASK_START_FAILURE, V_DEDICATED_NODES)
    assert after == TASK_START_FAILURE
    assert V_USER_IDENTITY < V_DEDICATED_NODES < V_HTTP_URL < V_SUPPORTED_IMAGES < V_TASK_SLOTS


def test_mixed_generation_request() -> None:
    # 2018-08-01.7.0 (azure-batch 5.x): userIdentity and targetDedicatedNodes, but blobSource
    # and maxTasksPerNode.
    body = {
        "id": "p",
        "targetDedicatedNodes": 1,
        "maxTasksPerNode": 2,
        "startTask": {"commandLine": "x", "resourceFiles": [{"blobSource": "u", "filePath": "f"}]},
    }
    modern = to_internal("pool", body, v("2018-08-01.7.0"))
    assert modern == {
        "id": "p",
        "targetDedicatedNodes": 1,
        "taskSlotsPerNode": 2,
        "startTask": {"commandLine": "x", "resourceFiles": [{"httpUrl": "u", "filePath": "f"}]},
    }


# -- modern versions are untouched ------------------------------------------------------------


@pytest.mark.parametrize("version", ["2020-09-01.12.0", "2024-02-01.19.0", "2024-07-01.20.0", "2025-06-01"])
@pytest.mark.parametrize("kind", sorted(MODERN_DOCS))
def test_modern_versions_are_identity(kind: str, version: str) -> None:
    doc = MODERN_DOCS[kind]
    out = from_internal(kind, doc, v(version))
    assert out == doc and out is not doc
    back = to_internal(kind, doc, v(version))
    assert back == doc and back is not doc


@pytest.mark.parametrize("kind", sorted(MODERN_DOCS))
def test_old_responses_do_not_mutate_internal_documents(kind: str) -> None:
    doc = MODERN_DOCS[kind]
    before = copy.deepcopy(doc)
    for version in GENERATIONS:
        from_internal(kind, doc, v(version))
    assert doc == before


@pytest.mark.parametrize("kind", ["pool", "job", "jobschedule", "node"])
def test_modern_docs_round_trip_through_old_versions(kind: str) -> None:
    doc = MODERN_DOCS[kind]
    for version in GENERATIONS[1:]:
        old = from_internal(kind, doc, v(version))
        back = to_internal(kind, old, v(version))
        if v(version) >= V_DEDICATED_NODES:
            assert back == doc, version


def test_modern_fixtures_match_the_15x_models() -> None:
    pool = model(m.BatchPool, POOL)
    assert pool.target_dedicated_nodes == 3 and pool.task_slots_per_node == 4
    assert pool.resize_errors is not None and pool.resize_errors[0].code == "AllocationFailed"
    task = model(m.BatchTask, TASK_EXIT_FAILURE)
    assert task.execution_info.failure_info.code == "FailureExitCode"
    assert task.exit_conditions.pre_processing_error.job_action == "disable"
    node = model(m.BatchNode, NODE)
    assert node.recent_tasks[0].execution_info.failure_info.category == "usererror"
    job = model(m.BatchJob, JOB)
    assert job.pool_info.auto_pool_specification.pool.task_slots_per_node == 2
    assert job.execution_info.scheduling_error.code == "JobPreparationTaskFailed"
    schedule = model(m.BatchJobSchedule, JOB_SCHEDULE)
    assert schedule.job_specification.pool_info.auto_pool_specification.pool.target_dedicated_nodes == 1
    assert model(m.BatchSubtask, SUBTASK).failure_info.code == "NodeLost"
    status = model(m.BatchJobPreparationAndReleaseTaskStatus, PREP_RELEASE)
    assert status.job_release_task_execution_info.exit_code == 1
    assert model(m.BatchTaskCountsResult, TASK_COUNTS).task_counts.completed == 3
    assert model(m.BatchPoolUsageMetrics, USAGE).total_core_hours == 0.5
    result = model(m.BatchCreateTaskCollectionResult, ADD_COLLECTION_RESULT)
    assert result.result_values[1].error.code == "TaskExists"


# -- errors ----------------------------------------------------------------------------------


def test_unknown_kind_and_bad_bodies() -> None:
    with pytest.raises(ValueError, match="kind"):
        to_internal("pools", {}, OLD)
    with pytest.raises(ValueError, match="kind"):
        from_internal("nope", {}, LATEST)
    not_an_object: Any = [1, 2]
    with pytest.raises(ValueError, match="JSON object"):
        to_internal("pool", not_an_object, OLD)
    assert {
        "pool",
        "pool.resize",
        "pool.update",
        "pool.patch",
        "job",
        "job.patch",
        "job.update",
        "task",
    } <= KINDS
    assert {"task.update", "node", "nodeagentsku", "jobschedule", "taskaddresult", "startTaskInfo"} <= KINDS


def test_garbage_values_pass_through_without_crashing() -> None:
    body = {
        "id": "p",
        "startTask": "not an object",
        "targetDedicated": "three",
        "resizeError": None,
        "poolInfo": [1, {"autoPoolSpecification": 5}],
    }
    for kind in ("pool", "job", "jobschedule", "task", "node"):
        to_internal(kind, body, OLD)
        from_internal(kind, body, OLD)
    job = to_internal("job", {"jobManagerTask": {"resourceFiles": [None, "x", {"blobSource": "u"}]}}, OLD)
    assert job["jobManagerTask"]["resourceFiles"] == [None, "x", {"httpUrl": "u"}]


def test_start_task_info_kind() -> None:
    info = {"state": "completed", "retryCount": 1, "failureInfo": {"category": "usererror", "code": "X"}}
    assert from_internal("startTaskInfo", info, OLD) == {
        "state": "completed",
        "retryCount": 1,
        "schedulingError": {"category": "usererror", "code": "X"},
    }


# -- $filter / $select property names ---------------------------------------------------------


def test_filter_to_internal_renames_old_properties() -> None:
    assert filter_to_internal("targetDedicated gt 2 and maxTasksPerNode eq 4", OLD) == (
        "targetDedicatedNodes gt 2 and taskSlotsPerNode eq 4"
    )
    assert (
        filter_to_internal("startTaskInfo/schedulingError/code eq 'X'", OLD)
        == "startTaskInfo/failureInfo/code eq 'X'"
    )
    assert filter_to_internal("id,runElevated,resourceFiles/blobSource", OLD, kind="task") == (
        "id,userIdentity,resourceFiles/httpUrl"
    )
    assert (
        filter_to_internal("exitConditions/schedulingError", OLD, kind="task")
        == "exitConditions/preProcessingError"
    )


def test_filter_to_internal_leaves_literals_and_modern_versions_alone() -> None:
    text = "id eq 'targetDedicated' and displayName eq 'it''s maxTasksPerNode'"
    assert filter_to_internal(text, OLD) == text
    assert filter_to_internal("maxTasksPerNode eq 1", V_TASK_SLOTS) == "maxTasksPerNode eq 1"
    assert filter_to_internal("maxTasksPerNode eq 1", v("2020-03-01.11.0")) == "taskSlotsPerNode eq 1"
    assert filter_to_internal("targetDedicated eq 1", v("2018-12-01.8.0")) == "targetDedicated eq 1"
    dt = "creationTime gt DateTime'2024-01-01T00:00:00Z'"
    assert filter_to_internal(dt, OLD) == dt


def test_filter_to_internal_execution_info_depends_on_kind() -> None:
    text = "executionInfo/schedulingError/category eq 'usererror'"
    assert filter_to_internal(text, OLD, kind="task") == "executionInfo/failureInfo/category eq 'usererror'"
    assert filter_to_internal(text, OLD, kind="job") == text
    assert filter_to_internal(text, OLD) == text
    assert filter_to_internal("schedulingError", OLD, kind="subtask") == "failureInfo"


def test_translated_filter_evaluates_on_internal_documents() -> None:
    text = filter_to_internal(
        "executionInfo/schedulingError/code eq 'BlobDownloadMiscError'", OLD, kind="task"
    )
    flt = parse_filter(text)
    assert flt(TASK_START_FAILURE) and not flt(TASK_EXIT_FAILURE)
    assert parse_filter(filter_to_internal("state eq 'completed'", OLD), TASK_FILTER_PROPERTIES)(
        TASK_EXIT_FAILURE
    )


# -- the real azure-batch 1.0.0 SDK ------------------------------------------------------------

LEGACY_SCRIPT = r"""
import datetime, json, os
import azure.batch.models as m
from msrest import Deserializer, Serializer

classes = {k: v for k, v in m.__dict__.items() if isinstance(v, type)}
ser, de = Serializer(classes), Deserializer(classes)
rf = [m.ResourceFile(blob_source="http://127.0.0.1:10000/devstoreaccount1/input/a.txt?sig=x", file_path="a.txt", file_mode="0644")]
start = m.StartTask(command_line="/bin/sh -c 'echo hi'", resource_files=rf, run_elevated=True, wait_for_success=True, max_task_retry_count=1,
                    environment_settings=[m.EnvironmentSetting(name="A", value="1")])
vmc = m.VirtualMachineConfiguration(image_reference=m.ImageReference(publisher="Canonical", offer="UbuntuServer", sku="16.04.0-LTS", version="latest"),
                                    node_agent_sku_id="batch.node.ubuntu 16.04")
pool = m.PoolAddParameter(id="pool1", vm_size="STANDARD_A1", virtual_machine_configuration=vmc, target_dedicated=2, start_task=start,
                          max_tasks_per_node=4, task_scheduling_policy=m.TaskSchedulingPolicy(node_fill_type="pack"),
                          metadata=[m.MetadataItem(name="k", value="v")])
auto = m.AutoPoolSpecification(pool_lifetime_option="job", keep_alive=False, auto_pool_id_prefix="ap",
                               pool=m.PoolSpecification(vm_size="STANDARD_A1", virtual_machine_configuration=vmc, target_dedicated=1,
                                                        max_tasks_per_node=2, start_task=start))
job = m.JobAddParameter(id="job1", pool_info=m.PoolInformation(auto_pool_specification=auto), priority=10,
                        job_manager_task=m.JobManagerTask(id="jm", command_line="/bin/true", run_elevated=False, resource_files=rf, kill_job_on_completion=True),
                        job_preparation_task=m.JobPreparationTask(command_line="/bin/true", run_elevated=True, resource_files=rf),
                        job_release_task=m.JobReleaseTask(command_line="/bin/true", run_elevated=True),
                        on_all_tasks_complete="terminateJob", on_task_failure="performExitOptionsJobAction")
task = m.TaskAddParameter(id="task1", command_line="/bin/sh -c 'exit 3'", resource_files=rf, run_elevated=True,
                          exit_conditions=m.ExitConditions(exit_codes=[m.ExitCodeMapping(code=3, exit_options=m.ExitOptions(job_action="terminate"))],
                                                           scheduling_error=m.ExitOptions(job_action="disable"), default=m.ExitOptions(job_action="none")),
                          constraints=m.TaskConstraints(max_task_retry_count=2, max_wall_clock_time=datetime.timedelta(minutes=5)),
                          environment_settings=[m.EnvironmentSetting(name="B", value="2")])
task2 = m.TaskAddParameter(id="task2", command_line="/bin/true")
coll = m.TaskAddCollectionParameter(value=[task, task2])
resize = m.PoolResizeParameter(target_dedicated=5, resize_timeout=datetime.timedelta(minutes=10), node_deallocation_option="requeue")
sched = m.JobScheduleAddParameter(id="js1", schedule=m.Schedule(recurrence_interval=datetime.timedelta(hours=1)),
                                  job_specification=m.JobSpecification(pool_info=m.PoolInformation(auto_pool_specification=auto),
                                                                       job_manager_task=m.JobManagerTask(id="jm", command_line="/bin/true", run_elevated=True)))
upd = m.PoolUpdatePropertiesParameter(start_task=start, certificate_references=[], application_package_references=[], metadata=[])
patch = m.PoolPatchParameter(start_task=start)
out = {
  "pool": ser.body(pool, "PoolAddParameter"),
  "job": ser.body(job, "JobAddParameter"),
  "task": ser.body(task, "TaskAddParameter"),
  "taskcollection": ser.body(coll, "TaskAddCollectionParameter"),
  "pool.resize": ser.body(resize, "PoolResizeParameter"),
  "jobschedule": ser.body(sched, "JobScheduleAddParameter"),
  "pool.update": ser.body(upd, "PoolUpdatePropertiesParameter"),
  "pool.patch": ser.body(patch, "PoolPatchParameter"),
}

docs = json.loads(os.environ["OPENBATCH_DOCS"])


def val(x):
    return getattr(x, "value", x)


pool = de("CloudPool", docs["pool"])
task = de("CloudTask", docs["task"])
task2 = de("CloudTask", docs["task_start_failure"])
node = de("ComputeNode", docs["node"])
job = de("CloudJob", docs["job"])
js = de("CloudJobSchedule", docs["jobschedule"])
skus = [de("NodeAgentSku", s) for s in docs["nodeagentskus"]]
sub = de("SubtaskInformation", docs["subtask"])
prs = de("JobPreparationAndReleaseTaskExecutionInformation", docs["prep"])
usage = de("PoolUsageMetrics", docs["usage"])
added = de("TaskAddCollectionResult", docs["addresult"])
auto_pool = job.pool_info.auto_pool_specification.pool
read = {
    "pool": [pool.id, pool.target_dedicated, pool.current_dedicated, pool.max_tasks_per_node,
             pool.resize_error.code, pool.start_task.run_elevated, pool.start_task.resource_files[0].blob_source,
             pool.creation_time.isoformat(), val(pool.state), val(pool.allocation_state),
             pool.resize_timeout.total_seconds(), pool.virtual_machine_configuration.node_agent_sku_id],
    "task": [task.id, task.run_elevated, task.resource_files[0].blob_source, task.execution_info.exit_code,
             task.execution_info.scheduling_error, val(task.exit_conditions.scheduling_error.job_action),
             task.creation_time.isoformat(), val(task.state), task.node_info.node_id,
             task.constraints.max_wall_clock_time.total_seconds()],
    "task_start_failure": [val(task2.execution_info.scheduling_error.category),
                           task2.execution_info.scheduling_error.code,
                           task2.execution_info.scheduling_error.details[0].value],
    "node": [node.id, val(node.state), val(node.scheduling_state), node.start_task.run_elevated,
             node.start_task_info.exit_code, node.recent_tasks[0].execution_info.scheduling_error.code],
    "job": [job.id, auto_pool.target_dedicated, auto_pool.max_tasks_per_node, auto_pool.start_task.run_elevated,
            job.job_manager_task.run_elevated, job.job_preparation_task.resource_files[0].blob_source,
            job.job_release_task.run_elevated, job.execution_info.scheduling_error.code],
    "jobschedule": [js.id, js.job_specification.pool_info.auto_pool_specification.pool.target_dedicated,
                    js.job_specification.job_manager_task.run_elevated, js.execution_info.recent_job.id],
    "nodeagentskus": [[s.id, val(s.os_type), [r.offer for r in s.verified_image_references]] for s in skus],
    "subtask": [sub.id, sub.scheduling_error.code],
    "prep": [prs.job_preparation_task_execution_info.scheduling_error.code,
             prs.job_release_task_execution_info.exit_code, prs.job_release_task_execution_info.scheduling_error],
    "usage": [usage.pool_id, usage.total_core_hours, usage.data_ingress_gi_b, usage.data_egress_gi_b],
    "addresult": [[val(r.status), r.task_id, r.error.code if r.error else None] for r in added.value],
}
print(json.dumps({"serialized": out, "read": read}, sort_keys=True))
"""


def test_legacy_sdk_round_trip() -> None:
    """azure-batch 1.0.0 itself: its request bodies are LEGACY_REQUESTS, and it reads what
    from_internal produces for api-version 2016-07-01.3.1."""
    docs = {
        "pool": from_internal("pool", POOL, OLD),
        "task": from_internal("task", TASK_EXIT_FAILURE, OLD),
        "task_start_failure": from_internal("task", TASK_START_FAILURE, OLD),
        "node": from_internal("node", NODE, OLD),
        "job": from_internal("job", JOB, OLD),
        "jobschedule": from_internal("jobschedule", JOB_SCHEDULE, OLD),
        "nodeagentskus": [from_internal("nodeagentsku", s, OLD) for s in node_agent_skus(SUPPORTED_IMAGES)],
        "subtask": from_internal("subtask", SUBTASK, OLD),
        "prep": from_internal("jobpreparationandreleasetaskstatus", PREP_RELEASE, OLD),
        "usage": from_internal("poolusagemetrics", USAGE, OLD),
        "addresult": from_internal("taskaddcollectionresult", ADD_COLLECTION_RESULT, OLD),
    }
    result = run_script("legacy", LEGACY_SCRIPT, env={"OPENBATCH_DOCS": json.dumps(docs)})
    assert result["serialized"] == LEGACY_REQUESTS
    read = result["read"]
    assert read["pool"] == [
        "pool1", 3, 2, 4, "AllocationFailed", True, SAS_URL,
        "2024-01-01T00:00:00+00:00", "active", "steady", 900.0, "batch.node.ubuntu 22.04",
    ]  # fmt: skip
    assert read["task"] == [
        "task1", True, SAS_URL, 3, None, "disable",
        "2024-01-01T00:00:00.123456+00:00", "completed", "tvm-1", 300.0,
    ]  # fmt: skip
    assert read["task_start_failure"] == ["usererror", "BlobDownloadMiscError", "a.txt"]
    assert read["node"] == ["tvm-1", "idle", "enabled", True, 0, "BlobDownloadMiscError"]
    assert read["job"] == ["job1", 1, 2, True, False, SAS_URL, True, "JobPreparationTaskFailed"]
    assert read["jobschedule"] == ["js1", 1, True, "js1:job-1"]
    assert read["nodeagentskus"] == [
        ["batch.node.ubuntu 22.04", "linux", ["0001-com-ubuntu-server-jammy", "ubuntu-24_04-lts"]],
        ["batch.node.debian 12", "linux", ["debian-12"]],
    ]
    assert read["subtask"] == [1, "NodeLost"]
    assert read["prep"] == ["ResourceFileDownloadFailed", 1, None]
    assert read["usage"] == ["pool1", 0.5, 0.0, 0.0]
    assert read["addresult"] == [["success", "a", None], ["clienterror", "b", "TaskExists"]]
