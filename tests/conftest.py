from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers.server import LiveServer


@contextmanager
def _server_dir() -> Iterator[Path]:
    """A data dir outside pytest's tmp tree: pytest resets its tmp dirs to 0700 when another run
    starts, which would lock the non-admin task account out of its node directories."""
    root = Path(tempfile.mkdtemp(prefix="openbatch-test-"))
    try:
        yield root / "data"
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """One live server per test module (fresh data dir); on the test clock (``--test-clock``,
    ``server.advance_clock``) when the module says ``TEST_CLOCK = True``."""
    extra = ["--test-clock"] if getattr(request.module, "TEST_CLOCK", False) else []
    with _server_dir() as data:
        srv = LiveServer(data, extra_args=extra).start()
        yield srv
        srv.stop()


@pytest.fixture
def fresh_server(request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """A live server of the test's own, for tests that kill or restart it (on the test clock too
    when the module says ``TEST_CLOCK = True``)."""
    extra = ["--test-clock"] if getattr(request.module, "TEST_CLOCK", False) else []
    with _server_dir() as data:
        srv = LiveServer(data, extra_args=extra).start()
        yield srv
        srv.stop()
