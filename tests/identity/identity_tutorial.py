"""The seed tutorial (Azure's Python Batch tutorial, top-N words) as Microsoft's azure-batch 15
samples write it: DefaultAzureCredential for both services, no key anywhere, user delegation SAS
for the resource files and the output container. Run with only environment variables set:
OPENBATCH_BATCH_URL, OPENBATCH_BLOB_URL and what `openbatch env` prints for identity and trust."""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime, timedelta

from azure.batch import BatchClient
from azure.batch import models as m
from azure.identity import DefaultAzureCredential
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)

from openbatch.quickstart.texts import TEXTS
from openbatch.quickstart.workflow import TASK_PROGRAM, task_program

POOL, JOB = "IdentityTutorialPool", "IdentityTutorialJob"


def main() -> int:
    credential = DefaultAzureCredential()
    blob_url = os.environ["OPENBATCH_BLOB_URL"]
    account = blob_url.rstrip("/").rsplit("/", 1)[-1]
    blobs = BlobServiceClient(blob_url, credential=credential)
    batch = BatchClient(os.environ["OPENBATCH_BATCH_URL"], credential)
    now = datetime.now(UTC)
    expiry = now + timedelta(hours=2)
    key = blobs.get_user_delegation_key(now - timedelta(minutes=5), expiry)

    def read_url(container: str, name: str) -> str:
        sas = generate_blob_sas(account, container, name, user_delegation_key=key,
                                permission=BlobSasPermissions(read=True), expiry=expiry)
        return f"{blobs.get_blob_client(container, name).url}?{sas}"

    for name in ("application", "input", "output"):
        blobs.create_container(name)
    blobs.get_blob_client("application", TASK_PROGRAM).upload_blob(task_program())
    for name, text in TEXTS.items():
        blobs.get_blob_client("input", name).upload_blob(text.encode())
    output_sas = generate_container_sas(account, "output", user_delegation_key=key,
                                        permission=ContainerSasPermissions(write=True), expiry=expiry)

    image = next(i for i in batch.list_supported_images() if i.os_type == "linux")
    batch.create_pool(m.BatchPoolCreateOptions(
        id=POOL, vm_size="STANDARD_D1_V2", target_dedicated_nodes=2,
        virtual_machine_configuration=m.VirtualMachineConfiguration(
            image_reference=image.image_reference, node_agent_sku_id=image.node_agent_sku_id),
        start_task=m.BatchStartTask(
            command_line=f'/bin/bash -c "cp -f {TASK_PROGRAM} $AZ_BATCH_NODE_SHARED_DIR/"',
            resource_files=[m.ResourceFile(http_url=read_url("application", TASK_PROGRAM), file_path=TASK_PROGRAM)],
            user_identity=m.UserIdentity(auto_user=m.AutoUserSpecification(
                scope=m.AutoUserScope.POOL, elevation_level=m.ElevationLevel.ADMIN)),
            wait_for_success=True)))
    batch.create_job(m.BatchJobCreateOptions(id=JOB, pool_info=m.BatchPoolInfo(pool_id=POOL)))
    tasks = []
    for index, name in enumerate(TEXTS):
        command = (f'/bin/bash -c "python3 $AZ_BATCH_NODE_SHARED_DIR/{TASK_PROGRAM} --filepath {name} --numwords 3 '
                   f"--storageaccount {account} --storagecontainer output --blobendpoint {blob_url} "
                   f"--sastoken '{output_sas}'\"")
        tasks.append(m.BatchTaskCreateOptions(id=f"Task{index}", command_line=command,
                                              resource_files=[m.ResourceFile(http_url=read_url("input", name),
                                                                             file_path=name)]))
    batch.create_tasks(JOB, tasks)

    deadline = time.monotonic() + 120
    while any(t.state != "completed" for t in batch.list_tasks(JOB)):
        if time.monotonic() > deadline:
            print("timed out", [(t.id, t.state) for t in batch.list_tasks(JOB)])
            return 1
        time.sleep(0.2)
    failed = [t.id for t in batch.list_tasks(JOB) if (t.execution_info and t.execution_info.exit_code) != 0]
    for task in batch.list_tasks(JOB):
        print(f"Task [{task.id}] stdout:", b"".join(batch.download_task_file(JOB, task.id, "stdout.txt")).decode())
        if failed:
            print(b"".join(batch.download_task_file(JOB, task.id, "stderr.txt")).decode())
    outputs = blobs.get_container_client("output")
    for item in outputs.list_blobs():
        print(f"Downloaded blob [{item.name}]:", outputs.download_blob(item.name).readall().decode().replace("\n", " "))
    batch.begin_delete_job(JOB)
    batch.begin_delete_pool(POOL)
    for name in ("application", "input", "output"):
        blobs.delete_container(name)
    print("Done." if not failed else f"failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
