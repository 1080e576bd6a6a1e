"""The Azure CLI against openbatch: ``az batch`` with shared-key data-plane credentials (no login),
from its own cached venv (``tests/helpers/venvs.py``: azure-cli 2.91.0, built under .cache/ once).

What the CLI does differently from the SDKs: it sends every integer flag as a JSON string
(``"targetDedicatedNodes": "1"``, ``"priority": "100"``, ``"maxTaskRetryCount": "1"``), which Azure's
OData reader takes, and it drives job schedules through its own commands.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.batch import BatchClient

from tests.helpers.server import LiveServer
from tests.helpers.venvs import ensure_venv
from tests.helpers.waiting import wait_for

IMAGE = "canonical:0001-com-ubuntu-server-jammy:22_04-lts"
AGENT = "batch.node.ubuntu 22.04"

Az = Callable[..., Any]


@pytest.fixture(scope="module")
def az(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Az]:
    """``az(*args)``: run ``az batch ...`` against the module's server, JSON out (None when empty)."""
    executable = ensure_venv("azure-cli").parent / "az"
    config = tmp_path_factory.mktemp("azure-config")
    env = {**os.environ, "AZURE_CONFIG_DIR": str(config), "AZURE_CORE_COLLECT_TELEMETRY": "no",
           "AZURE_CORE_NO_COLOR": "true", "AZURE_CORE_ONLY_SHOW_ERRORS": "true",
           "AZURE_BATCH_ACCOUNT": server.account, "AZURE_BATCH_ACCESS_KEY": server.key,
           "AZURE_BATCH_ENDPOINT": server.batch_url}

    def run(*args: str, check: bool = True) -> Any:
        done = subprocess.run([str(executable), "batch", *args, "-o", "json"], capture_output=True, text=True,
                              env=env, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"az batch {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        if not check:
            return done
        return json.loads(done.stdout) if done.stdout.strip() else None

    yield run


def test_integer_flags_of_pools(az: Az, client: BatchClient, server: LiveServer) -> None:
    az("pool", "create", "--id", "azpool", "--vm-size", "standard_d2s_v3", "--image", IMAGE,
       "--node-agent-sku-id", AGENT, "--target-dedicated-nodes", "1", "--task-slots-per-node", "2")
    pool = az("pool", "show", "--pool-id", "azpool")
    assert (pool["targetDedicatedNodes"], pool["taskSlotsPerNode"]) == (1, 2)
    wait_for(lambda: client.get_pool("azpool").allocation_state == "steady", "steady", 60)
    az("pool", "resize", "--pool-id", "azpool", "--target-dedicated-nodes", "2")
    assert az("pool", "show", "--pool-id", "azpool")["targetDedicatedNodes"] == 2
    wait_for(lambda: [n.state for n in client.list_nodes("azpool")] == ["idle", "idle"], "two idle nodes", 60)
    nodes = az("node", "list", "--pool-id", "azpool")
    assert len(nodes) == 2 and all(n["url"].startswith(f"{server.batch_url}/pools/azpool/nodes/") for n in nodes)


def test_integer_flags_of_jobs_and_tasks(az: Az) -> None:
    az("pool", "create", "--id", "azempty", "--vm-size", "standard_d2s_v3", "--image", IMAGE,
       "--node-agent-sku-id", AGENT, "--target-dedicated-nodes", "0")
    az("job", "create", "--id", "azjob", "--pool-id", "azempty", "--priority", "10", "--job-max-task-retry-count", "1")
    az("job", "set", "--job-id", "azjob", "--priority", "100")
    job = az("job", "show", "--job-id", "azjob")
    assert job["priority"] == 100 and job["constraints"]["maxTaskRetryCount"] == 1
    az("task", "create", "--job-id", "azjob", "--task-id", "waiting", "--command-line", "/bin/true",
       "--max-task-retry-count", "2")
    az("task", "reset", "--job-id", "azjob", "--task-id", "waiting", "--max-task-retry-count", "1")
    task = az("task", "show", "--job-id", "azjob", "--task-id", "waiting")
    assert task["state"] == "active" and task["constraints"]["maxTaskRetryCount"] == 1


def test_job_schedules(az: Az, client: BatchClient) -> None:
    az("pool", "create", "--id", "azsched", "--vm-size", "standard_d2s_v3", "--image", IMAGE,
       "--node-agent-sku-id", AGENT, "--target-dedicated-nodes", "0")
    az("job-schedule", "create", "--id", "azs", "--pool-id", "azsched", "--recurrence-interval", "PT5M",
       "--priority", "5", "--job-max-task-retry-count", "2")
    assert "azs" in [s["id"] for s in az("job-schedule", "list")]
    schedule = az("job-schedule", "show", "--job-schedule-id", "azs")
    assert schedule["state"] == "active" and schedule["schedule"]["recurrenceInterval"] == "PT5M"
    assert schedule["jobSpecification"]["priority"] == 5
    assert schedule["jobSpecification"]["constraints"]["maxTaskRetryCount"] == 2
    az("job-schedule", "delete", "--job-schedule-id", "azs", "--yes")
    wait_for(lambda: "azs" not in [s.id for s in client.list_job_schedules()], "the schedule to go", 60)
    gone = az("job-schedule", "show", "--job-schedule-id", "azs", check=False)
    assert gone.returncode != 0 and "JobScheduleNotFound" in gone.stderr
    assert "azs" not in [s["id"] for s in az("job-schedule", "list")]


def test_credentials_given_as_flags(az: Az, server: LiveServer, tmp_path: Path) -> None:
    """--account-name / --account-key / --account-endpoint instead of the AZURE_BATCH_* variables."""
    executable = ensure_venv("azure-cli").parent / "az"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_BATCH_")}
    env.update(AZURE_CONFIG_DIR=str(tmp_path), AZURE_CORE_COLLECT_TELEMETRY="no")
    done = subprocess.run([str(executable), "batch", "pool", "list", "--account-name", server.account,
                           "--account-key", server.key, "--account-endpoint", server.batch_url, "-o", "json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout), list)
