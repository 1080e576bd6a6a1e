"""``openbatch serve -v --log-format json`` against a live server: requests and engine events are
logged, and no SAS signature or account key ever reaches the log."""

from __future__ import annotations

import base64
import datetime
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.batch import BatchClient, models
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient, BlobSasPermissions, BlobServiceClient, generate_blob_sas

from tests.helpers.server import LiveServer
from tests.helpers.waiting import wait_for

IMAGE = models.VirtualMachineConfiguration(
    image_reference=models.BatchVmImageReference(publisher="canonical", offer="ubuntu-24_04-lts", sku="server"),
    node_agent_sku_id="batch.node.ubuntu 24.04")


@pytest.fixture
def logged_server() -> Iterator[LiveServer]:
    root = Path(tempfile.mkdtemp(prefix="openbatch-test-"))
    server = LiveServer(root / "data", extra_args=["-v", "--log-format", "json"]).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_requests_and_events_are_logged_without_secrets(logged_server: LiveServer) -> None:
    server = logged_server
    blobs = BlobServiceClient.from_connection_string(server.connection_string)
    blobs.create_container("inputs").upload_blob("in.txt", b"data")
    expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    sas = generate_blob_sas(server.account, "inputs", "in.txt", account_key=server.key,
                            permission=BlobSasPermissions(read=True), expiry=expiry)
    signature = dict(part.split("=", 1) for part in sas.split("&"))["sig"]
    url = f"{server.blob_url}/inputs/in.txt?{sas}"
    assert BlobClient.from_blob_url(url).download_blob().readall() == b"data"

    client = BatchClient(server.batch_url, AzureNamedKeyCredential(server.account, server.key))
    client.create_pool(models.BatchPoolCreateOptions(
        id="logpool", vm_size="standard_d1_v2", target_dedicated_nodes=1,
        virtual_machine_configuration=IMAGE))
    client.create_job(models.BatchJobCreateOptions(id="logjob", pool_info=models.BatchPoolInfo(pool_id="logpool")))
    client.create_task("logjob", models.BatchTaskCreateOptions(
        id="reads", command_line="/bin/sh -c 'cat in.txt'",
        resource_files=[models.ResourceFile(http_url=url, file_path="in.txt")]))
    client.create_task("logjob", models.BatchTaskCreateOptions(id="fails", command_line="/bin/sh -c 'exit 7'"))
    wait_for(lambda: all(t.state == "completed" for t in client.list_tasks("logjob")) and
             len(list(client.list_tasks("logjob"))) == 2, "both tasks to complete")
    other_key = base64.b64encode(b"some other key of the usual length, 64 bytes long, for this!!!").decode()
    with pytest.raises(HttpResponseError):
        list(BatchClient(server.batch_url, AzureNamedKeyCredential(server.account, other_key)).list_pools())
    assert server.stop() == 0

    text = server.log_path.read_text()  # all of it (log() is the tail)
    assert signature not in text and signature.replace("%2F", "/").replace("%3D", "=") not in text
    assert server.key not in text and other_key not in text
    docs = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    requests = [d for d in docs if d.get("event") == "request"]
    sas_reads = [d for d in requests if d["path"].startswith("/devstoreaccount1/inputs/in.txt?")]
    assert any(d["method"] == "GET" and d["status"] in (200, 206) and d["endpoint"] == "blob" for d in sas_reads)
    assert all("sig" in d["path"].split("?")[1].split("&") for d in sas_reads)  # the name, not the value
    assert any(d["path"].startswith("/pools?") and d["status"] == 403 for d in requests)
    assert all(isinstance(d["ms"], float | int) for d in requests)
    completed = {d["task"]: d for d in docs if d.get("event") == "task.completed"}
    assert completed["reads"]["exitCode"] == 0 and completed["reads"]["result"] == "success"
    assert completed["fails"]["exitCode"] == 7 and completed["fails"]["result"] == "failure"
    assert any(d.get("event") == "pool.resized" and d["pool"] == "logpool" for d in docs)
    assert any(d.get("event") == "node.state" and d["new"] == "idle" for d in docs)
    shutdown = next(d for d in docs if d.get("event") == "server.shutdown")
    assert shutdown["tasks_failed"] == 1 and shutdown["tasks_succeeded"] == 1


def test_restart_says_what_it_requeued(fresh_server: LiveServer) -> None:
    client = BatchClient(fresh_server.batch_url, AzureNamedKeyCredential(fresh_server.account, fresh_server.key))
    client.create_pool(models.BatchPoolCreateOptions(
        id="requeuepool", vm_size="standard_d1_v2", target_dedicated_nodes=1,
        virtual_machine_configuration=IMAGE))
    client.create_job(models.BatchJobCreateOptions(id="requeuejob",
                                                   pool_info=models.BatchPoolInfo(pool_id="requeuepool")))
    client.create_task("requeuejob", models.BatchTaskCreateOptions(id="long", command_line="/bin/sleep 60"))
    wait_for(lambda: client.get_task("requeuejob", "long").state == "running", "the task to run")
    fresh_server.kill()
    fresh_server.start()
    wait_for(lambda: "1 running tasks requeued" in fresh_server.log(), "the recovery line naming the requeue")
