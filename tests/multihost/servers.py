"""What the multi-host tests run on the namespace hosts: ``openbatch serve`` and a Dask scheduler
and workers, plus the SDK helpers their tests share."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobServiceClient

from openbatch.config import DEFAULT_BATCH_PORT, DEFAULT_BLOB_PORT, DEV_ACCOUNT, DEV_KEY
from tests.helpers.waiting import wait_for
from tests.multihost.hosts import Host, Proc

SCHEDULER_PORT = 8786


@dataclass
class Openbatch:
    """``openbatch serve`` on ``host``, reached at ``address`` (what it advertises)."""

    host: Host
    proc: Proc
    address: str
    account: str = DEV_ACCOUNT
    key: str = DEV_KEY

    @property
    def batch_url(self) -> str:
        return f"http://{self.address}:{DEFAULT_BATCH_PORT}"

    @property
    def blob_url(self) -> str:
        return f"http://{self.address}:{DEFAULT_BLOB_PORT}/{self.account}"

    def batch(self) -> BatchClient:
        """A Batch client; create and use it inside ``Host.call`` to reach the server from that host."""
        return BatchClient(self.batch_url, AzureNamedKeyCredential(self.account, self.key))

    def blobs(self) -> BlobServiceClient:
        return BlobServiceClient(self.blob_url, credential={"account_name": self.account, "account_key": self.key})


def start_openbatch(host: Host, data_dir: Path, *flags: str, address: str | None = None) -> Openbatch:
    """Serve on ``host`` with ``flags`` (``--host`` etc.) on the default ports; ready when both listen."""
    # Nodes share their host (--node-isolation off): the tests check that tasks see that host's name.
    proc = host.popen([sys.executable, "-m", "openbatch", "serve", "--data-dir", str(data_dir),
                       "--node-isolation", "off", *flags], "openbatch")
    server = Openbatch(host, proc, address or host.address)
    for port in (DEFAULT_BLOB_PORT, DEFAULT_BATCH_PORT):
        host.wait_listening(port, proc, address=server.address)
    return server


def start_scheduler(host: Host) -> str:
    """A Dask scheduler on ``host``; returns its address."""
    proc = host.popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", host.address,
                       "--port", str(SCHEDULER_PORT), "--no-dashboard"], "dask-scheduler")
    host.wait_listening(SCHEDULER_PORT, proc)
    return f"tcp://{host.address}:{SCHEDULER_PORT}"


def start_worker(host: Host, scheduler: str, scratch: Path, slots: int = 2, threads: int = 1,
                 label: str = "dask-worker") -> Proc:
    """One Dask worker on ``host`` offering ``slots`` (the resource openbatch's nodes are made of);
    one thread, as docs/compute.md tells (a node's work runs on the worker's event loop)."""
    return host.popen([sys.executable, "-m", "distributed.cli.dask_worker", scheduler, "--nworkers", "1",
                       "--nthreads", str(threads), "--resources", f"slots={slots}", "--no-dashboard",
                       "--local-directory", str(scratch / f"{host.name}-{label}")], label)


def completed_tasks(client: BatchClient, job_id: str, count: int, timeout: float = 120.0) -> list[m.BatchTask]:
    """The job's tasks once all ``count`` of them completed."""
    def check() -> list[m.BatchTask] | None:
        found = list(client.list_tasks(job_id))
        return found if len(found) == count and all(t.state == m.BatchTaskState.COMPLETED for t in found) else None

    return list(wait_for(check, f"{count} tasks of {job_id} to complete", timeout, every=0.5))


def stdout_of(client: BatchClient, job_id: str, task_id: str) -> str:
    return b"".join(client.download_task_file(job_id, task_id, "stdout.txt")).decode()
