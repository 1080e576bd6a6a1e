"""Finding the Dask worker processes of a ``--compute dask-local:N`` server."""

from __future__ import annotations

import psutil

from tests.helpers.server import LiveServer


def worker_pids(server: LiveServer) -> set[int]:
    """The LocalCluster's worker processes: children of the server started by multiprocessing."""
    assert server.proc is not None
    found = set()
    for child in psutil.Process(server.proc.pid).children():
        try:
            if any("multiprocessing" in part for part in child.cmdline()):
                found.add(child.pid)
        except psutil.Error:
            continue
    return found
