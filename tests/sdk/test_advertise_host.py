"""``serve --advertise-host``: the URLs the server hands out to a node carry the advertised name,
not the address it listens on. The server listens on 127.0.0.1 and advertises a name that never
resolves (RFC 6761 ``.invalid``), so a task sees it in AZ_BATCH_ACCOUNT_URL and its auto-storage
download fails naming it (tests/multihost shows the same address reached across hosts)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.storage.blob import BlobServiceClient

from tests.conftest import _server_dir
from tests.helpers.pools import make_pool
from tests.helpers.server import LiveServer
from tests.helpers.waiting import wait_for
from tests.sdk.test_batch_compute import sh

ADVERTISED = "openbatch-head.invalid"


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with _server_dir() as data:
        srv = LiveServer(data, extra_args=["--advertise-host", ADVERTISED]).start()
        yield srv
        srv.stop()


def _finished(client: BatchClient, job_id: str, task_id: str) -> m.BatchTask:
    return wait_for(lambda: (t := client.get_task(job_id, task_id)).state == m.BatchTaskState.COMPLETED and t,
                    f"task {task_id}")


def test_node_urls_carry_the_advertised_host(server: LiveServer, client: BatchClient) -> None:
    BlobServiceClient.from_connection_string(server.connection_string).create_container("inputs") \
        .upload_blob("in.txt", b"data")
    make_pool(client, "adv")
    client.create_job(m.BatchJobCreateOptions(id="adv", pool_info=m.BatchPoolInfo(pool_id="adv")))
    client.create_task("adv", m.BatchTaskCreateOptions(id="env", command_line=sh("echo $AZ_BATCH_ACCOUNT_URL")))
    client.create_task("adv", m.BatchTaskCreateOptions(
        id="fetch", command_line="/bin/true",
        resource_files=[m.ResourceFile(auto_storage_container_name="inputs")]))

    assert _finished(client, "adv", "env").execution_info.exit_code == 0  # type: ignore[union-attr]
    out = b"".join(client.download_task_file("adv", "env", "stdout.txt")).decode()
    assert out.strip() == f"http://{ADVERTISED}:{server.batch_port}"

    fetch = _finished(client, "adv", "fetch")
    info = fetch.execution_info.failure_info  # type: ignore[union-attr]
    assert info is not None and info.category == "usererror"
    urls = [d.value for d in info.details or [] if d.name == "ResourceUrl"]
    assert urls == [f"http://{ADVERTISED}:{server.blob_port}/{server.account}/inputs"], info
    assert info.code == "ResourceContainerListMiscError"


def test_serve_refuses_an_advertised_url(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "openbatch", "serve", "--data-dir", str(tmp_path), "--advertise-host",
         "http://10.0.0.1:10000"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "advertised host" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_serve_prints_the_advertised_endpoints(server: LiveServer) -> None:
    assert f"batch endpoint http://{ADVERTISED}:{server.batch_port}" in server.log()
