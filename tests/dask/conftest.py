"""A live server whose nodes are the workers of a Dask LocalCluster (``--compute dask-local:2``)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.server import LiveServer
from tests.sdk.conftest import client, service

__all__ = ["client", "service"]  # the SDK tests' clients, of this package's server

DASK_LOCAL = ["--compute", "dask-local:2"]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Outside pytest's tmp tree (kept 0700, which would lock the non-admin task account out)."""
    root = Path(tempfile.mkdtemp(prefix="openbatch-dask-"))
    try:
        yield root / "data"
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    root = Path(tempfile.mkdtemp(prefix="openbatch-dask-"))
    try:
        srv = LiveServer(root / "data", extra_args=DASK_LOCAL).start(timeout=60)
        yield srv
        srv.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
