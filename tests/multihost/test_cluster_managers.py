"""A pool on a cluster manager across hosts: openbatch on host1 starts a ``distributed.SSHCluster``
named in its ``--dask-clusters`` file (scheduler on host1, one worker on host2 and one on host3,
each started over SSH by an sshd of that host), beside its default ``dask-local:1`` cluster. A
pool naming the cluster in its metadata gets its nodes on host2 and host3; resizing it down
retires a worker (its process on that host ends), resizing it up starts one there again; a pool
naming no cluster stays on the default one, and a pool naming an unknown cluster gets unusable
nodes that say why."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as m

from tests.helpers.pools import IMAGE, make_pool
from tests.helpers.waiting import wait_for
from tests.multihost.hosts import Host, Network
from tests.multihost.servers import Openbatch, completed_tasks, start_openbatch, stdout_of

SSHD = "/usr/sbin/sshd"
WHERE = "cat /proc/sys/kernel/hostname"
POLL: Any = 0.2  # seconds between polls (typed int by the SDK, takes any number)


def _sshd(host: Host, keys: Path) -> None:
    """An sshd on ``host``'s address with its own host key, letting in only the test's client key."""
    proc = host.popen([SSHD, "-D", "-e", "-f", "/dev/null", "-o", f"ListenAddress={host.address}",
                       "-o", f"HostKey={keys / 'host'}", "-o", f"AuthorizedKeysFile={keys / 'client.pub'}",
                       "-o", "StrictModes=no", "-o", "PidFile=none", "-o", "PermitRootLogin=prohibit-password"],
                      "sshd")
    host.wait_listening(22, proc)


@pytest.fixture(scope="module")
def server(network: Network, module_scratch: Path) -> Iterator[Openbatch]:
    if not Path(SSHD).exists() or shutil.which("ssh-keygen") is None:
        pytest.skip("the SSHCluster test needs openssh-server (sshd) and ssh-keygen (scripts/test.sh installs them)")
    pytest.importorskip("asyncssh", reason="SSHCluster needs asyncssh (the test extra installs it)")
    keys = module_scratch / "keys"
    keys.mkdir(mode=0o700)
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    host1 = network.hosts[0]
    clusters = module_scratch / "clusters.json"
    clusters.write_text(json.dumps({"ssh": {
        "manager": "distributed.SSHCluster",
        "options": {
            "hosts": [h.address for h in network.hosts],
            "connect_options": {"known_hosts": None, "client_keys": [str(keys / "client")], "username": "root"},
            "scheduler_options": {"port": 0, "interface": "eth0", "dashboard_address": None},
            "worker_options": {"nthreads": 1, "interface": "eth0", "resources": {"slots": 2},
                               "local_directory": str(module_scratch / "ssh-workers")},
            "remote_python": sys.executable},
        "node_root": str(module_scratch / "ssh-nodes")}}))
    try:
        for host in network.hosts:
            _sshd(host, keys)
        yield start_openbatch(host1, module_scratch / "data", "--host", host1.address, "--compute", "dask-local:1",
                              "--dask-clusters", str(clusters))
    finally:
        for host in reversed(network.hosts):
            host.stop_all()


def _ssh_workers(host: Host) -> int:
    """Dask worker processes an SSHCluster started on ``host`` (its ``dask_spec`` processes)."""
    count = 0
    for pid in host.pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        count += b"distributed.cli.dask_spec" in cmdline
    return count


def _metadata(cluster: str) -> list[m.BatchMetadataItem]:
    return [m.BatchMetadataItem(name="openbatch.cluster", value=cluster)]


def _resize(client: BatchClient, pool_id: str, nodes: int) -> list[m.BatchNode]:
    client.begin_resize_pool(pool_id, m.BatchPoolResizeOptions(target_dedicated_nodes=nodes), polling_interval=POLL).result()

    def settled() -> list[m.BatchNode] | None:
        found = list(client.list_nodes(pool_id))
        return found if len(found) == nodes and all(n.state == "idle" for n in found) else None

    return list(wait_for(settled, f"pool {pool_id} to have {nodes} idle nodes", 120))


def _hostnames(client: BatchClient, job_id: str, pool_id: str, count: int) -> set[str]:
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool_id)))
    client.create_tasks(job_id, [m.BatchTaskCreateOptions(id=f"w{i}", command_line=f"/bin/sh -c '{WHERE}'")
                                 for i in range(count)])
    done = completed_tasks(client, job_id, count)
    assert all(t.execution_info and t.execution_info.exit_code == 0 for t in done)
    return {stdout_of(client, job_id, str(t.id)).strip() for t in done}


def test_a_pool_on_an_ssh_cluster_resizes_through_its_manager(network: Network, server: Openbatch) -> None:
    host1, host2, host3 = network.hosts

    def scenario(client: BatchClient) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        nodes = make_pool(client, "ssh", nodes=2, slots=2, timeout=120, metadata=_metadata("ssh"))
        seen["ips"] = sorted(str(n.ip_address) for n in nodes)
        seen["hosts"] = _hostnames(client, "on-ssh", "ssh", 6)
        seen["down"] = [str(n.ip_address) for n in _resize(client, "ssh", 1)]
        seen["retired"] = wait_for(lambda: (_ssh_workers(host2) + _ssh_workers(host3) == 1) or None,
                                   "a retired worker's process to end", 60)
        seen["up"] = sorted(str(n.ip_address) for n in _resize(client, "ssh", 2))
        seen["workers"] = _ssh_workers(host2) + _ssh_workers(host3)
        seen["default"] = [str(n.ip_address) for n in make_pool(client, "plain", nodes=1, timeout=120)]
        return seen

    with server.batch() as client:
        seen = host1.call(scenario, client)
    workers = sorted([host2.address, host3.address])
    assert seen["ips"] == workers, seen
    assert seen["hosts"] == {host2.name, host3.name}, seen
    assert len(seen["down"]) == 1 and seen["down"][0] in workers, seen
    assert seen["up"] == workers and seen["workers"] == 2, seen  # the retired host's worker started again
    assert seen["default"] == ["127.0.0.1"], seen  # no metadata: the default dask-local cluster


def test_a_pool_naming_an_unknown_cluster_gets_nodes_that_say_why(network: Network, server: Openbatch) -> None:
    def scenario(client: BatchClient) -> m.BatchNode:
        client.create_pool(m.BatchPoolCreateOptions(id="nowhere", vm_size="standard_d2s_v3",
                                                    virtual_machine_configuration=IMAGE, target_dedicated_nodes=1,
                                                    metadata=_metadata("gpu")))

        def unusable() -> m.BatchNode | None:
            found = list(client.list_nodes("nowhere"))
            return found[0] if found and found[0].state == "unusable" else None

        return wait_for(unusable, "the node to be unusable", 60)

    with server.batch() as client:
        node = network.hosts[0].call(scenario, client)
    messages = " ".join(str(e.message) for e in node.errors or [])
    assert "no Dask cluster is named 'gpu'" in messages and "ssh" in messages, messages
