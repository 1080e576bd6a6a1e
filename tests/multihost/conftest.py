"""Fixtures of the multi-host suite: three namespace hosts (tests/multihost/hosts.py) for the
session, skipped with the reason where this machine cannot make them; every test here is marked
``multihost`` (deselect with ``-m 'not multihost'``)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.multihost.hosts import NamespacesUnavailable, Network

HOSTS = 3
FAILED = pytest.StashKey[bool]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.multihost)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                                           pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report


@pytest.fixture(autouse=True)
def logs_of_failures(request: pytest.FixtureRequest, network: Network) -> Iterator[None]:
    """When a test fails, the tails of its hosts' process logs are printed (in the report)."""
    yield
    if request.node.stash.get(FAILED, False):
        for path in sorted(network.logs.glob("*.log")):
            print(f"----- {path.name}\n{path.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="session")
def network() -> Iterator[Network]:
    """host1 .. host3 at 10.231.0.1 .. .3; removed at the end of the session, whatever happened.
    The processes' logs go to a directory of the session's own (failures quote their tails)."""
    with _scratch() as logs:
        try:
            net = Network.create(HOSTS, logs)
        except NamespacesUnavailable as exc:
            pytest.skip(f"multi-host tests need network namespaces: {exc}")
        try:
            yield net
        finally:
            net.close()


@contextmanager
def _scratch() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="openbatch-multihost-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory outside pytest's tmp tree (which it resets to 0700, locking the task account out)."""
    with _scratch() as root:
        yield root


@pytest.fixture(scope="module")
def module_scratch() -> Iterator[Path]:
    """``scratch`` for a module's fixtures."""
    with _scratch() as root:
        yield root
