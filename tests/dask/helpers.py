"""Finding the Dask worker processes of a ``--compute dask-local:N`` server."""

from __future__ import annotations

import psutil

from tests.helpers.server import LiveServer


def worker_pids(server: LiveServer) -> set[int]:
    """The LocalCluster's worker processes: children of the server spawned by multiprocessing."""
    assert server.proc is not None
    found = set()
    for child in psutil.Process(server.proc.pid).children():
        try:
            if any("spawn_main" in part for part in child.cmdline()):  # not multiprocessing's resource tracker
                found.add(child.pid)
        except psutil.Error:
            continue
    return found
