"""100 concurrent clients mixing Blob and Batch calls (put/get/list blobs, add/get/list tasks,
get job) for a fixed time: no errors at all, and the server's memory comes back near where it
started once the load stops. Latencies (p50/p99 per kind) and RSS are reported, not asserted:
the machine is shared. The load itself is ``bench/load.py`` (``python -m bench load``: 2 minutes).

Default: 100 clients for 20 s. ``-m slow``: 100 clients for 2 minutes.
"""

from __future__ import annotations

import pytest

from bench import load
from openbatch.testing import LiveServer
from tests.reliability import report
from tests.reliability.crash import tracebacks


def _run(server: LiveServer, sizes: load.Sizes, suite: str, rss_slack_mb: float) -> None:
    figures = load.measure(sizes, server)
    report.record(suite, **figures)
    assert figures["errors"] == 0, figures["error_examples"]
    assert figures["requests"] > sizes.clients, figures
    rss = figures["rss_mb"]
    # Python rarely hands freed memory back, and what was stored (task index, caches) stays: the
    # bound is generous, it catches a leak of per-request memory, not a few MB of growth.
    assert rss["after_idle"] <= rss["start"] + rss_slack_mb, rss
    server_errors, _ = tracebacks(server)
    assert not server_errors, server_errors[:3]


@pytest.mark.timeout(300)
def test_100_clients_for_20_seconds(fresh_server: LiveServer) -> None:
    _run(fresh_server, load.Sizes(clients=100, seconds=20, idle=5), "load: 100 clients x 20 s", 96)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_100_clients_for_2_minutes(fresh_server: LiveServer) -> None:
    _run(fresh_server, load.Sizes(clients=100, seconds=120, idle=20), "load: 100 clients x 2 min", 160)
