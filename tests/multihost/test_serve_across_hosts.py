"""``openbatch serve`` on host1 used from host2: the blob endpoint through azure-storage-blob in a
process on host2, the batch endpoint through azure-batch from host2; the URLs the server hands a
node carry the address host2 reached it at, whether it listens on that address alone or on every
interface with ``--advertise-host`` (the local provider runs the nodes on host1)."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.batch import models as m
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from tests.helpers.pools import make_pool
from tests.multihost.hosts import Network
from tests.multihost.servers import Openbatch, completed_tasks, start_openbatch, stdout_of

BLOB_CLIENT = textwrap.dedent("""
    import datetime as dt, json, sys
    from azure.storage.blob import BlobClient, BlobSasPermissions, BlobServiceClient, generate_blob_sas

    endpoint, account, key = sys.argv[1:4]
    service = BlobServiceClient(endpoint, credential={"account_name": account, "account_key": key})
    container = service.create_container("inputs")
    container.upload_blob("in.txt", b"uploaded from host2")
    sas = generate_blob_sas(account, "inputs", "in.txt", account_key=key, permission=BlobSasPermissions(read=True),
                            expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    url = f"{container.url}/in.txt?{sas}"
    print(json.dumps({"container_url": container.url, "read": BlobClient.from_blob_url(url).download_blob().readall().decode()}))
""")


@pytest.fixture(params=[["--host", "10.231.0.1"], ["--host", "0.0.0.0", "--advertise-host", "10.231.0.1"]],
                ids=["listen-on-address", "listen-on-all-advertise"])
def server(request: pytest.FixtureRequest, network: Network, scratch: Path) -> Iterator[Openbatch]:
    host1 = network.hosts[0]
    srv = start_openbatch(host1, scratch / "data", *request.param)
    try:
        yield srv
    finally:
        host1.stop_all()


def test_blob_endpoint_from_another_host(network: Network, server: Openbatch) -> None:
    host2 = network.hosts[1]
    proc = host2.python(BLOB_CLIENT, server.blob_url, server.account, server.key)
    assert proc.returncode == 0, f"{proc.stderr}\n{server.proc.log()}"
    assert json.loads(proc.stdout) == {"container_url": f"{server.blob_url}/inputs", "read": "uploaded from host2"}
    assert not network.hosts[1].listening(10000, "127.0.0.1")  # nothing of host1 leaks to host2's loopback


def _run_job(server: Openbatch, out_url: str) -> tuple[m.BatchPool, list[m.BatchTask], str]:
    with server.batch() as client:
        nodes = make_pool(client, "across", nodes=1, timeout=120)
        assert nodes[0].state == "idle"
        client.create_job(m.BatchJobCreateOptions(id="across", pool_info=m.BatchPoolInfo(pool_id="across")))
        client.create_task("across", m.BatchTaskCreateOptions(
            id="t", command_line="/bin/sh -c 'cat in.txt; echo; echo $AZ_BATCH_ACCOUNT_URL; cat /proc/sys/kernel/hostname'",
            resource_files=[m.ResourceFile(auto_storage_container_name="inputs")],
            output_files=[m.OutputFile(file_pattern="../stdout.txt", destination=m.OutputFileDestination(
                container=m.OutputFileBlobContainerDestination(container_url=out_url, path="t/stdout.txt")),
                upload_options=m.OutputFileUploadConfiguration(
                    upload_condition=m.OutputFileUploadCondition.TASK_COMPLETION))]))
        tasks = completed_tasks(client, "across", 1)
        return client.get_pool("across"), tasks, stdout_of(client, "across", "t")


def test_node_urls_reach_the_server(network: Network, server: Openbatch) -> None:
    host2 = network.hosts[1]

    def prepare() -> str:
        blobs = server.blobs()
        blobs.create_container("inputs").upload_blob("in.txt", b"input data")
        return blobs.create_container("outputs").url + "?" + _container_sas(server, "outputs")

    out_url = host2.call(prepare)
    pool, tasks, stdout = host2.call(_run_job, server, out_url)
    info = tasks[0].execution_info
    assert info is not None and info.exit_code == 0, (info, server.proc.log())
    # the auto-storage SAS URL was fetched from host1's address, the task saw the advertised account URL
    assert stdout.splitlines() == ["input data", server.batch_url, "host1"]
    assert pool.url == f"{server.batch_url}/pools/across"
    uploaded = host2.call(lambda: server.blobs().get_blob_client("outputs", "t/stdout.txt").download_blob().readall())
    assert uploaded.decode() == stdout


def _container_sas(server: Openbatch, name: str) -> str:
    return generate_container_sas(server.account, name, account_key=server.key,
                                  permission=ContainerSasPermissions(write=True, create=True),
                                  expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
