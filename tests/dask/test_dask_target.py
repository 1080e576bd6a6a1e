"""What ``--compute`` accepts, and a refusal that names the accepted forms."""

from __future__ import annotations

import subprocess
import sys

import pytest

from openbatch.compute.dask import Target, parse_target
from openbatch.config import ConfigError


def test_targets() -> None:
    assert parse_target("dask://10.0.0.1:8786") == Target(address="tcp://10.0.0.1:8786")
    assert parse_target("tls://sched.example:8786") == Target(address="tls://sched.example:8786")
    assert parse_target("dask-local:3") == Target(workers=3)
    for bad in ("dask-local:0", "dask-local:x", "dask://", "dask://host", "http://host:1", "slurm"):
        with pytest.raises(ConfigError):
            parse_target(bad)


def test_serve_refuses_an_unknown_provider() -> None:
    proc = subprocess.run([sys.executable, "-m", "openbatch", "serve", "--compute", "dask-lcl:2"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--compute must be local, dask://HOST:PORT or dask-local:N" in proc.stderr
    assert "Traceback" not in proc.stderr
