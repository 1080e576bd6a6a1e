"""Fixtures of the multi-host suite: three namespace hosts (tests/multihost/hosts.py) for the
session, skipped with the reason where this machine cannot make them; every test here is marked
``multihost`` (deselect with ``-m 'not multihost'``)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.multihost.hosts import NamespacesUnavailable, Network

HOSTS = 3


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.multihost)


@pytest.fixture(scope="session")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """host1 .. host3 at 10.231.0.1 .. .3; removed at the end of the session, whatever happened."""
    try:
        net = Network.create(HOSTS, tmp_path_factory.mktemp("multihost-logs"))
    except NamespacesUnavailable as exc:
        pytest.skip(f"multi-host tests need network namespaces: {exc}")
    try:
        yield net
    finally:
        net.close()


def _scratch() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="openbatch-multihost-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory outside pytest's tmp tree (which it resets to 0700, locking the task account out)."""
    yield from _scratch()


@pytest.fixture(scope="module")
def module_scratch() -> Iterator[Path]:
    """``scratch`` for a module's fixtures."""
    yield from _scratch()
