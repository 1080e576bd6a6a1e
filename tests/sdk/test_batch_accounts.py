"""Pool user accounts on nodes that share the host (the test servers' default, --node-isolation
off), driven by azure-batch 15.x: the accounts are host accounts under the pool's prefix, tasks
naming one run as it, and they go with the pool. (Isolated nodes: tests/sdk/test_batch_isolation.py.)
Root only: a server that is not root makes no accounts."""

from __future__ import annotations

import os
import pwd
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as m

from openbatch.node import accounts
from tests.helpers.pools import make_pool
from tests.helpers.waiting import wait_for

POLL: Any = 0.2
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="accounts are made only by a server running as root")


def _host_accounts() -> set[str]:
    return {entry.pw_name for entry in pwd.getpwall()}


def test_a_task_runs_as_the_pools_host_account_which_goes_with_the_pool(client: BatchClient) -> None:
    pool = "acct-shared"
    name = accounts.host_name(pool, "alice")
    make_pool(client, pool, nodes=2, user_accounts=[
        m.UserAccount(name="alice", password="s3cret!Pass",
                      linux_user_configuration=m.LinuxUserConfiguration(uid=4322, gid=4322))])
    assert name in _host_accounts()
    client.create_job(m.BatchJobCreateOptions(id="acct", pool_info=m.BatchPoolInfo(pool_id=pool)))
    client.create_task("acct", m.BatchTaskCreateOptions(id="t", command_line="/bin/sh -c 'id -un; id -u; id -g'",
                                                        user_identity=m.UserIdentity(username="alice")))

    def done() -> m.BatchTask | None:
        task = client.get_task("acct", "t")
        return task if task.state == m.BatchTaskState.COMPLETED else None

    task = wait_for(done, "the task to complete", 60)
    out = b"".join(client.download_task_file("acct", "t", "stdout.txt")).decode().split()
    assert out == [name, "4322", "4322"], (task.execution_info, out)
    client.begin_delete_pool(pool, polling_interval=POLL).result(timeout=60)
    wait_for(lambda: name not in _host_accounts(), "the pool's account to be deleted with its last node", 30)
