"""What a process cannot be started with is refused when the task (or job, or pool) is added:
400 InvalidPropertyValue naming the property, never a server error when the task starts."""

from __future__ import annotations

from typing import Any

import pytest

from openbatch.batch.domain import errors as e
from openbatch.batch.domain import jobs, pools, tasks

BASE = "http://batch.test"
NOW = "2024-01-01T00:00:00.000000Z"
JOB = {"id": "job1", "constraints": {"maxTaskRetryCount": 0}, "onTaskFailure": "noaction"}
BAD_NAMES = ["A=B", "=A", "NUL\x00NAME"]


def _refused(fn: Any, *args: Any) -> e.BatchError:
    with pytest.raises(e.BatchError) as info:
        fn(*args)
    assert info.value.code == "InvalidPropertyValue", info.value.values
    return info.value


def _env(name: str, value: str = "v") -> list[dict[str, str]]:
    return [{"name": "OK", "value": "fine"}, {"name": name, "value": value}]


def _task(**extra: Any) -> dict[str, Any]:
    return {"id": "t1", "commandLine": "/bin/true", **extra}


@pytest.mark.parametrize("name", BAD_NAMES)
def test_task_environment_names_that_no_process_can_have_are_refused(name: str) -> None:
    err = _refused(tasks.build_task, _task(environmentSettings=_env(name)), JOB, NOW, BASE)
    assert err.values["PropertyName"] == "environmentSettings.name"


def test_nul_in_an_environment_value_or_a_command_line_is_refused() -> None:
    err = _refused(tasks.build_task, _task(environmentSettings=_env("X", "a\x00b")), JOB, NOW, BASE)
    assert err.values["PropertyName"] == "environmentSettings.value"
    err = _refused(tasks.build_task, _task(commandLine="/bin/echo a\x00b"), JOB, NOW, BASE)
    assert err.values["PropertyName"] == "commandLine"


def test_valid_environment_is_kept() -> None:
    doc = tasks.build_task(_task(environmentSettings=[{"name": "A_B", "value": "x=y"}]), JOB, NOW, BASE)
    assert doc["environmentSettings"] == [{"name": "A_B", "value": "x=y"}]


@pytest.mark.parametrize("extra,prop", [
    ({"commonEnvironmentSettings": _env("A=B")}, "commonEnvironmentSettings.name"),
    ({"jobPreparationTask": {"commandLine": "/bin/true", "environmentSettings": _env("A\x00")}},
     "environmentSettings.name"),
    ({"jobPreparationTask": {"commandLine": "/bin/true"},
      "jobReleaseTask": {"commandLine": "/bin/true", "environmentSettings": _env("=x")}}, "environmentSettings.name"),
    ({"jobManagerTask": {"id": "jm", "commandLine": "/bin/true", "environmentSettings": _env("A=B")}},
     "environmentSettings.name"),
    ({"jobManagerTask": {"id": "jm", "commandLine": "/bin/\x00true"}}, "commandLine"),
    ({"jobPreparationTask": {"commandLine": "a\x00"}}, "commandLine"),
])
def test_job_environments_and_command_lines_are_checked(extra: dict[str, Any], prop: str) -> None:
    err = _refused(jobs.build_job, {"id": "j", "poolInfo": {"poolId": "p"}, **extra}, NOW, BASE)
    assert err.values["PropertyName"] == prop


@pytest.mark.parametrize("start,prop", [
    ({"commandLine": "/bin/true", "environmentSettings": _env("A=B")}, "startTask.environmentSettings.name"),
    ({"commandLine": "/bin/true", "environmentSettings": _env("A", "\x00")}, "startTask.environmentSettings.value"),
    ({"commandLine": "/bin/\x00true"}, "startTask.commandLine"),
])
def test_start_task_environment_and_command_line_are_checked(start: dict[str, Any], prop: str) -> None:
    err = _refused(pools.check_start_task, {"startTask": start})
    assert err.values["PropertyName"] == prop
