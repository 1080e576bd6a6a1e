"""Tasks get their pool's managed identity: ManagedIdentityCredential inside a task reads a blob."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient

from tests.helpers.pools import IMAGE
from tests.helpers.server import LiveServer
from tests.helpers.waiting import wait_for
from tests.identity.conftest import IDENTITIES, TASK_IDENTITY, TASK_WRITER

CONTAINER = "taskdata"
# Run by the task's Python: the identity endpoint and the certificate trust come from the node.
TASK_CODE = """
import os
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import BlobClient
from azure.core.exceptions import HttpResponseError
blob = BlobClient(os.environ["BLOB_URL"], "taskdata", "input.txt", credential=ManagedIdentityCredential())
print("read:", blob.download_blob().readall().decode())
try:
    BlobClient(os.environ["BLOB_URL"], "taskdata", "out.txt", credential=ManagedIdentityCredential()).upload_blob(b"x")
    print("write: allowed")
except HttpResponseError as exc:
    print("write:", exc.error_code)
"""


def _pool(pool_id: str, identity: dict[str, Any] | None) -> m.BatchPoolCreateOptions:
    options = m.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v3", virtual_machine_configuration=IMAGE,
                                       target_dedicated_nodes=1)
    if identity is not None:  # Azure sets it through ARM; openbatch also takes it here (docs/identity.md)
        options["identity"] = identity
    return options


@pytest.fixture(scope="module")
def batch(https_server: LiveServer) -> BatchClient:
    return BatchClient(https_server.batch_url, AzureNamedKeyCredential(https_server.account, https_server.key),
                       connection_verify=str(https_server.data_dir / "tls" / "ca.pem"))


def test_a_task_reads_a_blob_with_its_pools_managed_identity(https_server: LiveServer, batch: BatchClient) -> None:
    blobs = BlobServiceClient(https_server.blob_url, credential=https_server.key,
                              connection_verify=str(https_server.data_dir / "tls" / "ca.pem"))
    blobs.create_container(CONTAINER)
    blobs.get_blob_client(CONTAINER, "input.txt").upload_blob(b"for the task's identity")
    batch.create_pool(_pool("mipool", {"type": "UserAssigned",
                                       "userAssignedIdentities": [{"resourceId": TASK_IDENTITY}]}))
    pool = batch.get_pool("mipool")
    assigned = next(iter(pool.identity.user_assigned_identities or []), None) if pool.identity else None
    entry = next(i for i in IDENTITIES if i.get("resourceId") == TASK_IDENTITY)
    assert assigned is not None and assigned.client_id == entry["clientId"]
    assert assigned.principal_id == entry["objectId"]
    batch.create_job(m.BatchJobCreateOptions(id="mijob", pool_info=m.BatchPoolInfo(pool_id="mipool")))
    batch.create_task("mijob", m.BatchTaskCreateOptions(
        id="reader", command_line=f"{sys.executable} -c \"import os; exec(os.environ['TASK_CODE'])\"",
        environment_settings=[m.EnvironmentSetting(name="TASK_CODE", value=TASK_CODE),
                              m.EnvironmentSetting(name="BLOB_URL", value=https_server.blob_url)],
        # admin: the non-admin task account may not run this checkout's virtualenv Python
        user_identity=m.UserIdentity(auto_user=m.AutoUserSpecification(elevation_level=m.ElevationLevel.ADMIN))))

    def done() -> m.BatchTask | None:
        task = batch.get_task("mijob", "reader")
        return task if task.state == "completed" else None

    reference = m.BatchNodeIdentityReference(resource_id=TASK_IDENTITY)
    batch.create_task("mijob", m.BatchTaskCreateOptions(  # resource files fetched with the identity, no SAS
        id="fetcher", command_line="/bin/sh -c 'cat in.txt; echo; ls listed'", resource_files=[
            m.ResourceFile(http_url=f"{https_server.blob_url}/{CONTAINER}/input.txt", file_path="in.txt",
                           identity_reference=reference),
            m.ResourceFile(storage_container_url=f"{https_server.blob_url}/{CONTAINER}", file_path="listed",
                           identity_reference=reference)]))

    stranger = m.BatchNodeIdentityReference(resource_id=TASK_IDENTITY.replace("task-reader", "not-the-pools"))
    batch.create_task("mijob", m.BatchTaskCreateOptions(id="stranger", command_line="/bin/true", resource_files=[
        m.ResourceFile(http_url=f"{https_server.blob_url}/{CONTAINER}/input.txt", file_path="in.txt",
                       identity_reference=stranger)]))

    task = wait_for(done, "the task to complete", 120)
    stdout = b"".join(batch.download_task_file("mijob", "reader", "stdout.txt")).decode()
    stderr = b"".join(batch.download_task_file("mijob", "reader", "stderr.txt")).decode()
    assert task.execution_info.exit_code == 0, stdout + stderr
    assert "read: for the task's identity" in stdout
    assert "write: AuthorizationPermissionMismatch" in stdout  # the identity holds Storage Blob Data Reader only
    fetcher = wait_for(lambda: (t := batch.get_task("mijob", "fetcher")).state == "completed" and t, "fetcher", 60)
    fetched = b"".join(batch.download_task_file("mijob", "fetcher", "stdout.txt")).decode()
    assert fetcher.execution_info.exit_code == 0, (fetcher.execution_info.failure_info, fetched)
    assert fetched.split() == ["for", "the", "task's", "identity", "input.txt"]
    refused = wait_for(lambda: (t := batch.get_task("mijob", "stranger")).state == "completed" and t, "stranger", 60)
    failure = refused.execution_info.failure_info
    assert failure is not None and failure.code == "BlobAccessDenied"  # not one of the pool's identities
    batch.begin_delete_job("mijob")
    batch.begin_delete_pool("mipool")


def test_a_pool_naming_an_unknown_identity_is_refused(batch: BatchClient) -> None:
    unknown = TASK_IDENTITY.replace("task-reader", "nobody-knows")
    with pytest.raises(HttpResponseError) as err:
        batch.create_pool(_pool("badpool", {"type": "UserAssigned", "userAssignedIdentities": [{"resourceId": unknown}]}))
    assert err.value.status_code == 400
    error = getattr(err.value, "error", None)
    assert error is not None and error.code == "InvalidPropertyValue"


def test_output_files_upload_with_the_pools_identity(https_server: LiveServer, batch: BatchClient) -> None:
    batch.create_pool(_pool("wpool", {"type": "UserAssigned", "userAssignedIdentities": [{"resourceId": TASK_WRITER}]}))
    batch.create_job(m.BatchJobCreateOptions(id="wjob", pool_info=m.BatchPoolInfo(pool_id="wpool")))
    container = m.OutputFileBlobContainerDestination(  # no SAS: the identity's token
        container_url=f"{https_server.blob_url}/{CONTAINER}", path="results/out.txt",
        identity_reference=m.BatchNodeIdentityReference(resource_id=TASK_WRITER))
    batch.create_task("wjob", m.BatchTaskCreateOptions(
        id="writer", command_line="/bin/sh -c 'echo written by the pool identity > out.txt'",
        output_files=[m.OutputFile(file_pattern="out.txt", destination=m.OutputFileDestination(container=container),
                                   upload_options=m.OutputFileUploadConfiguration(
                                       upload_condition=m.OutputFileUploadCondition.TASK_SUCCESS))]))
    task = wait_for(lambda: (t := batch.get_task("wjob", "writer")).state == "completed" and t, "writer", 120)
    assert task.execution_info.failure_info is None, task.execution_info.failure_info
    blobs = BlobServiceClient(https_server.blob_url, credential=https_server.key,
                              connection_verify=str(https_server.data_dir / "tls" / "ca.pem"))
    uploaded = blobs.get_blob_client(CONTAINER, "results/out.txt").download_blob().readall()
    assert uploaded == b"written by the pool identity\n"
    batch.begin_delete_job("wjob")
    batch.begin_delete_pool("wpool")
