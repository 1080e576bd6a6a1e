from __future__ import annotations

from pathlib import Path

import pytest

from openbatch.node.env import app_package_names, identity_name, task_environment
from openbatch.node.layout import NodeLayout

DOCUMENTED = [
    "AZ_BATCH_ACCOUNT_NAME", "AZ_BATCH_ACCOUNT_URL", "AZ_BATCH_POOL_ID", "AZ_BATCH_NODE_ID",
    "AZ_BATCH_NODE_IS_DEDICATED", "AZ_BATCH_NODE_ROOT_DIR", "AZ_BATCH_NODE_SHARED_DIR", "AZ_BATCH_NODE_STARTUP_DIR",
    "AZ_BATCH_NODE_STARTUP_WORKING_DIR", "AZ_BATCH_NODE_MOUNTS_DIR", "AZ_BATCH_JOB_ID", "AZ_BATCH_TASK_ID",
    "AZ_BATCH_TASK_DIR", "AZ_BATCH_TASK_WORKING_DIR", "AZ_BATCH_JOB_PREP_DIR", "AZ_BATCH_JOB_PREP_WORKING_DIR",
    "AZ_BATCH_TASK_USER_IDENTITY", "AZ_BATCH_TASK_USER", "AZ_BATCH_CERTIFICATES_DIR",
    "AZ_BATCH_TASK_RESERVED_EPHEMERAL_DISK_SPACE_BYTES",
]


def _env(layout: NodeLayout, **overrides: object) -> dict[str, str]:
    task_dir = layout.task_dir("job1", "task1")
    args: dict[str, object] = dict(
        account_name="acct", account_url="http://127.0.0.1:10100", pool_id="pool1", node_id="tvm-1", node_ip="10.0.0.4",
        layout=layout, task_dir=task_dir, task_id="task1", job_id="job1", is_dedicated=True, user_identity=None,
        job_prep_dir=layout.job_prep_dir("job1"), settings=[],
        base={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/root", "SECRET_KEY": "x"}, task_user="_azbatch",
    )
    args.update(overrides)
    return task_environment(**args)  # type: ignore[arg-type]


@pytest.fixture
def layout(tmp_path: Path) -> NodeLayout:
    return NodeLayout(tmp_path / "node")


def test_every_documented_variable_is_present_with_its_value(layout: NodeLayout) -> None:
    env = _env(layout)
    for name in DOCUMENTED:
        assert name in env, name
    task_dir = layout.task_dir("job1", "task1")
    assert env["AZ_BATCH_ACCOUNT_NAME"] == "acct"
    assert env["AZ_BATCH_ACCOUNT_URL"] == "http://127.0.0.1:10100"
    assert env["AZ_BATCH_POOL_ID"] == "pool1"
    assert env["AZ_BATCH_NODE_ID"] == "tvm-1"
    assert env["AZ_BATCH_NODE_IS_DEDICATED"] == "true"
    assert env["AZ_BATCH_NODE_ROOT_DIR"] == str(layout.root)
    assert env["AZ_BATCH_NODE_SHARED_DIR"] == str(layout.root / "shared")
    assert env["AZ_BATCH_NODE_STARTUP_DIR"] == str(layout.root / "startup")
    assert env["AZ_BATCH_NODE_STARTUP_WORKING_DIR"] == str(layout.root / "startup" / "wd")
    assert env["AZ_BATCH_NODE_MOUNTS_DIR"] == str(layout.root / "fsmounts")
    assert env["AZ_BATCH_JOB_ID"] == "job1"
    assert env["AZ_BATCH_TASK_ID"] == "task1"
    assert env["AZ_BATCH_TASK_DIR"] == str(task_dir)
    assert env["AZ_BATCH_TASK_WORKING_DIR"] == str(task_dir / "wd")
    assert env["AZ_BATCH_JOB_PREP_DIR"] == str(layout.job_prep_dir("job1"))
    assert env["AZ_BATCH_JOB_PREP_WORKING_DIR"] == str(layout.job_prep_dir("job1") / "wd")
    assert env["AZ_BATCH_TASK_USER_IDENTITY"] == "PoolNonAdmin"
    assert env["AZ_BATCH_TASK_USER"] == env["USER"] == "_azbatch"
    assert env["AZ_BATCH_CERTIFICATES_DIR"] == str(layout.root / "certs" / "task")


def test_path_home_and_what_passes_from_the_server(layout: NodeLayout) -> None:
    env = _env(layout)
    wd = layout.task_dir("job1", "task1") / "wd"
    assert env["PATH"] == f"/usr/bin:/bin:{layout.shared}:{wd}"
    assert env["HOME"] == str(wd)
    assert env["LANG"] == "C.UTF-8"
    assert "SECRET_KEY" not in env
    assert "/usr/bin" in _env(layout, base={})["PATH"]


def test_start_task_has_no_job_or_task_id_and_no_prep_dirs(layout: NodeLayout) -> None:
    env = _env(layout, task_dir=layout.startup, task_id=None, job_id=None, job_prep_dir=None, is_dedicated=False)
    assert "AZ_BATCH_JOB_ID" not in env and "AZ_BATCH_TASK_ID" not in env
    assert "AZ_BATCH_JOB_PREP_DIR" not in env and "AZ_BATCH_JOB_PREP_WORKING_DIR" not in env
    assert env["AZ_BATCH_TASK_WORKING_DIR"] == str(layout.startup / "wd")
    assert env["AZ_BATCH_NODE_IS_DEDICATED"] == "false"
    assert env["AZ_BATCH_CERTIFICATES_DIR"] == str(layout.root / "certs" / "starttask")


def test_settings_job_common_first_then_task_and_reserved_names_kept(layout: NodeLayout) -> None:
    settings = [
        {"name": "A", "value": "job"}, {"name": "B", "value": "job"},
        {"name": "A", "value": "task"}, {"name": "EMPTY"}, {"name": "AZ_BATCH_TASK_ID", "value": "forged"},
        {"name": "PATH", "value": "/opt/bin"},
    ]
    env = _env(layout, settings=settings)
    assert env["A"] == "task" and env["B"] == "job" and env["EMPTY"] == ""
    assert env["AZ_BATCH_TASK_ID"] == "task1"
    assert env["PATH"] == "/opt/bin"


@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        (None, "PoolNonAdmin"),
        ({"autoUser": {"scope": "pool", "elevationLevel": "admin"}}, "PoolAdmin"),
        ({"autoUser": {"scope": "task", "elevationLevel": "nonadmin"}}, "TaskNonAdmin"),
        ({"autoUser": {"scope": "Task", "elevationLevel": "Admin"}}, "TaskAdmin"),
        ({"username": "alice"}, "alice"),
    ],
)
def test_user_identity_names(identity: dict[str, object] | None, expected: str) -> None:
    assert identity_name(identity) == expected


def test_multi_instance_variables(layout: NodeLayout) -> None:
    env = _env(layout, host_ips=["10.0.0.4", "10.0.0.5"])
    assert env["AZ_BATCH_HOST_LIST"] == "10.0.0.4,10.0.0.5"
    assert env["AZ_BATCH_NODE_LIST"] == "10.0.0.4;10.0.0.5"
    assert env["AZ_BATCH_IS_CURRENT_NODE_MASTER"] == "true"
    assert env["AZ_BATCH_MASTER_NODE"].startswith("10.0.0.4:")
    assert env["CCP_NODES"] == "2 10.0.0.4 1 10.0.0.5 1"
    assert "AZ_BATCH_TASK_SHARED_DIR" in env
    assert _env(layout, node_ip="10.0.0.5", host_ips=["10.0.0.4", "10.0.0.5"])["AZ_BATCH_IS_CURRENT_NODE_MASTER"] == "false"
    assert "AZ_BATCH_HOST_LIST" not in _env(layout)


def test_application_packages(layout: NodeLayout, tmp_path: Path) -> None:
    assert app_package_names("FOO", "1") == ["AZ_BATCH_APP_PACKAGE_FOO_1", "AZ_BATCH_APP_PACKAGE_foo_1"]
    assert app_package_names("agent-linux-x64", "1.1.46.0") == ["AZ_BATCH_APP_PACKAGE_agent_linux_x64_1_1_46_0"]
    env = _env(layout, app_packages=[("FOO", "1", tmp_path / "foo1"), ("bar", None, tmp_path / "bar")])
    assert env["AZ_BATCH_APP_PACKAGE_FOO_1"] == str(tmp_path / "foo1")
    assert env["AZ_BATCH_APP_PACKAGE_bar"] == str(tmp_path / "bar")
