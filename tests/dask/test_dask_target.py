"""What ``--compute`` and ``--dask-clusters`` accept, and refusals that name the accepted forms."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from openbatch.compute.dask_cluster import ClusterSpec, load_clusters, local_cluster, parse_target
from openbatch.config import ConfigError


def test_targets() -> None:
    assert parse_target("dask://10.0.0.1:8786") == ClusterSpec(address="tcp://10.0.0.1:8786")
    assert parse_target("tls://sched.example:8786") == ClusterSpec(address="tls://sched.example:8786")
    local = parse_target("dask-local:3")
    assert (local.manager, local.minimum, local.options["n_workers"], local.local) == ("distributed.LocalCluster", 3, 3, True)
    for bad in ("dask-local:0", "dask-local:x", "dask://", "dask://host", "http://host:1", "slurm"):
        with pytest.raises(ConfigError):
            parse_target(bad)


def test_serve_refuses_an_unknown_provider() -> None:
    proc = subprocess.run([sys.executable, "-m", "openbatch", "serve", "--compute", "dask-lcl:2"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--compute must be local, dask://HOST:PORT or dask-local:N" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cluster_files(tmp_path: Path) -> None:
    path = tmp_path / "clusters.json"
    path.write_text(json.dumps({
        "remote": {"address": "dask://10.0.0.9:8786"},
        "two": {"local": 2, "node_root": "/srv/nodes"},
        "ssh": {"manager": "distributed.SSHCluster", "options": {"hosts": ["a", "b"]}, "minimum": 1},
    }))
    clusters = load_clusters(str(path))
    assert clusters["remote"] == ClusterSpec(name="remote", address="tcp://10.0.0.9:8786")
    assert clusters["two"].options == local_cluster(2).options and clusters["two"].node_root == "/srv/nodes"
    assert clusters["ssh"] == ClusterSpec(name="ssh", manager="distributed.SSHCluster",
                                          options={"hosts": ["a", "b"]}, minimum=1)
    assert load_clusters("") == {}
    bads: list[object] = [{"default": {"local": 1}}, {"x": {"local": 1, "address": "dask://h:1"}}, {"x": {}},
                {"x": {"address": "slurm"}}, {"x": {"local": 0}}, {"x": {"manager": "SSHCluster"}},
                {"x": {"manager": "a.B", "options": []}}, {"x": {"manager": "a.B", "minimum": -1}},
                {"x": {"local": 1, "colour": "blue"}}, ["x"]]
    for bad in bads:
        path.write_text(json.dumps(bad))
        with pytest.raises(ConfigError):
            load_clusters(str(path))
    path.write_text("{")
    with pytest.raises(ConfigError, match="clusters.json"):
        load_clusters(str(path))


def test_serve_refuses_clusters_without_a_dask_provider(tmp_path: Path) -> None:
    path = tmp_path / "clusters.json"
    path.write_text(json.dumps({"x": {"local": 1}}))
    proc = subprocess.run([sys.executable, "-m", "openbatch", "serve", "--dask-clusters", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--dask-clusters needs a dask compute provider" in proc.stderr
