"""Isolated nodes and pool user accounts, driven by azure-batch 15.x against a live server
started with ``--node-isolation on`` (docs/compute.md, "Isolated nodes"): each node has its own
host name, processes and root file system, so five start tasks can ``apt-get install`` at once;
a task running as a pool user account is that account.

Needs root on Linux with overlayfs and namespaces; skipped, saying why, elsewhere. The apt test
uses the host's apt cache when it holds the package's .deb and the package lists, else it needs
the Debian mirror (apt-get update inside each node, bounded by a timeout)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.batch.models._models import BatchNodeRebootOptions, BatchNodeReimageOptions  # not exported by 15.1
from azure.core.exceptions import HttpResponseError

from openbatch.node import isolation
from tests.helpers.pools import make_pool
from tests.helpers.server import LiveServer
from tests.helpers.waiting import wait_for

ADMIN = m.UserIdentity(auto_user=m.AutoUserSpecification(scope=m.AutoUserScope.POOL,
                                                         elevation_level=m.ElevationLevel.ADMIN))
POLL: Any = 0.2  # seconds; the pollers sleep any number though typed int
PACKAGE = "pv"  # small, only libc6 as a dependency, not installed by the test environment
APT = ("export DEBIAN_FRONTEND=noninteractive; o=\"-y -q -o Dpkg::Use-Pty=0 -o Acquire::Retries=3 "
       "--no-install-recommends\"; timeout 150 apt-get install $o {p} || "
       "{{ timeout 150 apt-get update -q && timeout 150 apt-get install $o {p}; }}")


def _why_not() -> str | None:
    root = Path(tempfile.mkdtemp(prefix="openbatch-probe-"))
    try:
        return isolation.unavailable_reason(root / "nodes")
    finally:
        shutil.rmtree(root, ignore_errors=True)


REASON = _why_not()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"nodes cannot be isolated here: {REASON}")


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    root = Path(tempfile.mkdtemp(prefix="openbatch-test-"))
    try:
        srv = LiveServer(root / "data", extra_args=["--node-isolation", "on"]).start()
        yield srv
        srv.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(client: BatchClient, job: str, task: str, command: str, pool: str, **kwargs: Any) -> tuple[m.BatchTask, str]:
    """Run one task (a job of its own on ``pool``); the task and its stdout."""
    if not any(j.id == job for j in client.list_jobs()):
        client.create_job(m.BatchJobCreateOptions(id=job, pool_info=m.BatchPoolInfo(pool_id=pool)))
    client.create_task(job, m.BatchTaskCreateOptions(id=task, command_line=command, **kwargs))
    done = _completed(client, job, task)
    out = b"".join(client.download_task_file(job, task, "stdout.txt")).decode()
    return done, out


def _completed(client: BatchClient, job: str, task: str) -> m.BatchTask:
    def check() -> m.BatchTask | None:
        found = client.get_task(job, task)
        return found if found.state == m.BatchTaskState.COMPLETED else None

    return wait_for(check, f"task {task} to complete", 60)


def _stderr(client: BatchClient, job: str, task: str) -> str:
    return b"".join(client.download_task_file(job, task, "stderr.txt")).decode()


def test_each_node_has_its_hostname_processes_and_tmp(client: BatchClient) -> None:
    make_pool(client, "iso-names", nodes=2)
    client.create_job(m.BatchJobCreateOptions(id="names", pool_info=m.BatchPoolInfo(pool_id="iso-names")))
    # One slot per node and each task holding its slot a moment: the two run on the two nodes.
    command = ("/bin/sh -c 'hostname; cat /etc/hostname; echo $AZ_BATCH_NODE_ID; ls /proc | grep -c \"^[0-9]\"; "
               "touch /tmp/mine-$(hostname); sleep 1; ls /tmp; test -d \"$AZ_BATCH_NODE_SHARED_DIR\" && echo shared'")
    for i in range(2):
        client.create_task("names", m.BatchTaskCreateOptions(id=f"t{i}", command_line=command))
    hosts = set()
    for i in range(2):
        task = _completed(client, "names", f"t{i}")
        assert task.execution_info is not None and task.execution_info.exit_code == 0, _stderr(client, "names", f"t{i}")
        lines = b"".join(client.download_task_file("names", f"t{i}", "stdout.txt")).decode().split("\n")
        assert task.node_info is not None and task.node_info.node_id
        node_id = task.node_info.node_id
        assert lines[0] == lines[1] == isolation.hostname_of(node_id)
        assert lines[2] == node_id
        assert int(lines[3]) < 10, "a node sees only its own processes (its init, the task and its children)"
        assert [line for line in lines[4:] if line.startswith("mine-")] == [f"mine-{lines[0]}"], "/tmp is the node's own"
        assert lines[-2] == "shared"
        hosts.add(lines[0])
    assert len(hosts) == 2
    client.begin_delete_pool("iso-names", polling_interval=POLL).result(timeout=60)


def test_five_nodes_apt_get_install_at_once(client: BatchClient) -> None:
    """The ffmpeg tutorial's pattern: every node's start task installs a package at the same time."""
    start = m.BatchStartTask(command_line=f"/bin/sh -c '{APT.format(p=PACKAGE)}'", user_identity=ADMIN,
                             wait_for_success=True, max_task_retry_count=0)
    nodes = make_pool(client, "iso-apt", nodes=5, timeout=480, start_task=start)
    failed = [n for n in nodes if n.state != m.BatchNodeState.IDLE]
    details = ""
    for n in failed:
        assert n.id is not None
        details += b"".join(client.download_node_file("iso-apt", n.id, "startup/stderr.txt")).decode()[-2000:]
    assert not failed, details
    _, out = _run(client, "apt", "check", f"/bin/sh -c 'dpkg -s {PACKAGE} | grep Status; command -v pv'", "iso-apt")
    assert "install ok installed" in out and "/usr/bin/pv" in out
    host = subprocess.run(["dpkg", "-s", PACKAGE], capture_output=True, check=False)
    assert host.returncode != 0, "the package went into the nodes' own file systems, not the host's"
    client.begin_delete_pool("iso-apt", polling_interval=POLL).result(timeout=60)


def test_task_runs_as_pool_user_account(client: BatchClient, server: LiveServer) -> None:
    accounts = [m.UserAccount(name="alice", password="s3cret!Pass", elevation_level=m.ElevationLevel.NON_ADMIN,
                              linux_user_configuration=m.LinuxUserConfiguration(uid=4321, gid=4321)),
                m.UserAccount(name="bob", password="an0ther!Pass", elevation_level=m.ElevationLevel.ADMIN)]
    make_pool(client, "iso-users", nodes=1, user_accounts=accounts)
    task, out = _run(client, "users", "alice", "/bin/sh -c 'id -un; id -u; id -g; touch x && ls -n x'",
                     "iso-users", user_identity=m.UserIdentity(username="alice"))
    assert task.execution_info is not None and task.execution_info.exit_code == 0, _stderr(client, "users", "alice")
    lines = out.split("\n")
    assert lines[:3] == ["alice", "4321", "4321"], out
    assert " 4321 4321 " in lines[3], "what the task writes is the account's"
    task, out = _run(client, "users", "bob", "/bin/sh -c 'id -un; id -Gn'", "iso-users",
                     user_identity=m.UserIdentity(username="bob"))
    assert out.split("\n")[0] == "bob", out
    assert getattr(task.execution_info, "exit_code", None) == 0
    task, out = _run(client, "users", "auto", "id -un", "iso-users")
    assert out.strip() == "_azbatch", "tasks without a userName run as the auto-user, as before"
    host = subprocess.run(["id", "alice"], capture_output=True, check=False)
    assert host.returncode != 0, "the account lives in the node, not on the host"
    client.begin_delete_pool("iso-users", polling_interval=POLL).result(timeout=60)


def test_reimage_wipes_the_nodes_own_changes_and_reboot_keeps_them(client: BatchClient) -> None:
    (node,) = make_pool(client, "iso-reimage", nodes=1)
    assert node.id is not None
    _run(client, "reimage", "write", "/bin/sh -c 'echo kept > /etc/openbatch-test-marker'", "iso-reimage",
         user_identity=ADMIN)
    client.begin_reboot_node("iso-reimage", node.id, BatchNodeRebootOptions(node_reboot_kind="requeue"),
                             polling_interval=POLL).result(timeout=60)
    wait_for(lambda: client.get_node("iso-reimage", node.id).state == m.BatchNodeState.IDLE, "reboot", 60)
    _, out = _run(client, "reimage", "after-reboot", "cat /etc/openbatch-test-marker", "iso-reimage")
    assert out.strip() == "kept"
    client.begin_reimage_node("iso-reimage", node.id, BatchNodeReimageOptions(node_reimage_option="requeue"),
                              polling_interval=POLL).result(timeout=60)
    wait_for(lambda: client.get_node("iso-reimage", node.id).state == m.BatchNodeState.IDLE, "reimage", 60)
    task, _ = _run(client, "reimage", "after-reimage", "cat /etc/openbatch-test-marker", "iso-reimage")
    assert task.execution_info is not None and task.execution_info.exit_code != 0
    assert not Path("/etc/openbatch-test-marker").exists()
    client.begin_delete_pool("iso-reimage", polling_interval=POLL).result(timeout=60)


@pytest.mark.skipif(shutil.which("sshd") is None and not Path("/usr/sbin/sshd").exists(),
                    reason="remote login needs openssh-server on the host")
@pytest.mark.skipif(shutil.which("ssh") is None or shutil.which("ssh-keygen") is None, reason="needs openssh-client")
def test_node_users_and_remote_login_over_ssh(client: BatchClient, tmp_path: Path) -> None:
    (node,) = make_pool(client, "iso-ssh", nodes=1)
    assert node.id is not None
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public = (tmp_path / "id.pub").read_text().strip()
    client.create_node_user("iso-ssh", node.id, m.BatchNodeUserCreateOptions(name="carol", ssh_public_key=public))
    with pytest.raises(HttpResponseError) as exists:
        client.create_node_user("iso-ssh", node.id, m.BatchNodeUserCreateOptions(name="carol", password="x1!Aaaaa"))
    assert exists.value.status_code == 409 and exists.value.error is not None
    assert exists.value.error.code == "NodeUserExists"
    login = client.get_node_remote_login_settings("iso-ssh", node.id)
    assert login.remote_login_ip_address == "127.0.0.1" and login.remote_login_port

    def ssh(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ssh", "-i", str(key), "-p", str(login.remote_login_port), "-o", "BatchMode=yes",
                               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                               "-o", "ConnectTimeout=10", "carol@127.0.0.1", command],
                              capture_output=True, text=True, timeout=30, check=False)

    done = ssh("hostname; id -un")
    assert done.stdout.split() == [isolation.hostname_of(node.id), "carol"], done.stderr
    # PUT replaces the account's properties: without a key, the key no longer lets anyone in.
    client.replace_node_user("iso-ssh", node.id, "carol", m.BatchNodeUserReplaceOptions(password="n3w!Passw0rd"))
    assert ssh("true").returncode != 0
    client.delete_node_user("iso-ssh", node.id, "carol")
    with pytest.raises(HttpResponseError) as gone:
        client.delete_node_user("iso-ssh", node.id, "carol")
    assert gone.value.status_code == 404 and gone.value.error is not None
    assert gone.value.error.code == "NodeUserNotFound"
    client.begin_delete_pool("iso-ssh", polling_interval=POLL).result(timeout=60)
