"""The namespace hosts themselves: own address and hostname, reachable from each other and not
from the machine's network, stale runs removed; a Dask scheduler on host1 with workers on host2
and host3 runs functions there (before any openbatch compute provider is involved)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers.waiting import wait_for
from tests.multihost.hosts import PREFIX, SUBNET, Network, remove_stale, unavailable_reason
from tests.multihost.servers import start_scheduler, start_worker

WHO_AM_I = textwrap.dedent("""
    import json, socket, sys
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.connect((sys.argv[1], 9))  # no packet: picks the source address a peer sees
    print(json.dumps({"hostname": socket.gethostname(), "ip": probe.getsockname()[0]}))
""")


def test_each_host_has_its_address_and_hostname(network: Network) -> None:
    seen = {}
    for host in network.hosts:
        peer = network.hosts[(network.hosts.index(host) + 1) % len(network.hosts)]
        proc = host.python(WHO_AM_I, peer.address)
        assert proc.returncode == 0, proc.stderr
        seen[host.name] = json.loads(proc.stdout)
    assert seen == {f"host{i}": {"hostname": f"host{i}", "ip": f"{SUBNET}.{i}"} for i in (1, 2, 3)}
    assert os.uname().nodename not in {s["hostname"] for s in seen.values()}


def test_hosts_reach_each_other_and_nothing_else(network: Network) -> None:
    host1, host2, host3 = network.hosts
    server = host3.popen([sys.executable, "-m", "http.server", "8080", "--bind", host3.address], "http")
    try:
        host3.wait_listening(8080, server)
        assert host1.listening(8080, host3.address) and host2.listening(8080, host3.address)
        assert not host3.listening(8080, "127.0.0.1")  # bound to eth0's address only
    finally:
        server.stop()
    # The machine's own network namespace has none of the hosts' addresses or interfaces.
    root = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    assert f"{SUBNET}." not in root
    assert all(netns.startswith(f"{PREFIX}-{os.getpid()}-") for netns in network.namespaces())


def test_stale_namespaces_of_a_dead_run_are_removed(network: Network) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"{PREFIX}-{dead.pid}-0a0b0c-h1"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    left = subprocess.Popen(["ip", "netns", "exec", stale, "sleep", "300"], start_new_session=True)
    try:
        wait_for(lambda: str(left.pid) in subprocess.run(["ip", "netns", "pids", stale], capture_output=True,
                                                         text=True).stdout.split(), "the process to enter", 120)
        assert stale in remove_stale()
        assert left.wait(10) == -9  # what an aborted run left running inside is gone with it
        assert not Path(f"/run/netns/{stale}").exists()
        assert all(Path(f"/run/netns/{n}").exists() for n in network.namespaces())  # a live run's stay
    finally:
        if left.poll() is None:
            left.kill()
        subprocess.run(["ip", "netns", "del", stale], capture_output=True)


def test_where_namespaces_cannot_be_made_the_reason_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "needs root" in str(unavailable_reason())
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "ip" else f"/usr/bin/{tool}")
    assert "install iproute2" in str(unavailable_reason())


DASK_CLIENT = textwrap.dedent("""
    import json, socket, sys
    from distributed import Client, get_worker

    def where(i, peer):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.connect((peer, 9))
        return {"i": i, "hostname": socket.gethostname(), "ip": probe.getsockname()[0],
                "worker": get_worker().address}

    with Client(sys.argv[1], timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
        slots = {w: info["resources"] for w, info in client.scheduler_info()["workers"].items()}
        futures = [client.submit(where, i, sys.argv[2], resources={"slots": 1}, pure=False) for i in range(40)]
        print(json.dumps({"slots": slots, "results": client.gather(futures)}))
""")


def test_dask_workers_run_on_their_own_hosts(network: Network, scratch: Path) -> None:
    host1, *workers = network.hosts
    try:
        scheduler = start_scheduler(host1)
        for host in workers:
            start_worker(host, scheduler, scratch, slots=2, threads=2)
        proc = host1.python(DASK_CLIENT, scheduler, host1.address, timeout=120)
        assert proc.returncode == 0, f"{proc.stderr}\n{[p.log(1500) for h in workers for p in h.procs]}"
        out = json.loads(proc.stdout)
    finally:
        for host in reversed(network.hosts):
            host.stop_all()
    assert sorted(out["slots"].values(), key=str) == [{"slots": 2.0}, {"slots": 2.0}]
    assert {w.split("//")[1].rsplit(":", 1)[0] for w in out["slots"]} == {h.address for h in workers}
    results = out["results"]
    assert sorted(r["i"] for r in results) == list(range(40))
    assert {(r["hostname"], r["ip"]) for r in results} == {(h.name, h.address) for h in workers}
    assert all(r["worker"].startswith(f"tcp://{r['ip']}:") for r in results)
