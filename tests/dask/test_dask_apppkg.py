"""Application packages on the dask provider: the package of a pool (made through the management
plane) is downloaded and extracted by the node code inside the Dask worker, and a task there finds
it through AZ_BATCH_APP_PACKAGE_*."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobClient

from tests.dask.conftest import DASK_LOCAL
from tests.helpers.pools import make_pool
from tests.helpers.server import LiveServer, free_port
from tests.sdk.test_arm_batch import finished, mgmt, package_zip

GROUP, ACCOUNT = "openbatch", "devstoreaccount1"  # the configured account, as ARM shows it


@pytest.fixture(scope="module")
def arm_server() -> Iterator[LiveServer]:
    root = Path(tempfile.mkdtemp(prefix="openbatch-dask-"))
    arm_port = free_port()
    try:
        srv = LiveServer(root / "data", extra_args=[*DASK_LOCAL, "--arm-port", str(arm_port)])
        srv.arm_port = arm_port  # type: ignore[attr-defined]
        yield srv.start(timeout=60)
        srv.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_pool_package_reaches_a_task_in_a_dask_worker(arm_server: LiveServer) -> None:
    arm = mgmt(arm_server)
    arm.application.create(GROUP, ACCOUNT, "tool", {"properties": {}})
    version = arm.application_package.create(GROUP, ACCOUNT, "tool", "1.0")
    BlobClient.from_blob_url(version.properties.storage_url).upload_blob(package_zip())
    arm.application_package.activate(GROUP, ACCOUNT, "tool", "1.0", {"format": "zip"})

    client: Any = BatchClient(arm_server.batch_url, AzureNamedKeyCredential(arm_server.account, arm_server.key))
    make_pool(client, "pkgpool", application_package_references=[
        m.BatchApplicationPackageReference(application_id="tool", version="1.0")])
    client.create_job(m.BatchJobCreateOptions(id="pkg", pool_info=m.BatchPoolInfo(pool_id="pkgpool")))
    client.create_task("pkg", m.BatchTaskCreateOptions(
        id="t", command_line="/bin/sh -c 'cat $AZ_BATCH_APP_PACKAGE_tool_1_0/bin/hello.txt'"))
    done = finished(client, "pkg", "t")
    assert done.execution_info.exit_code == 0
    assert b"".join(client.download_task_file("pkg", "t", "stdout.txt")) == b"hello from the package"
