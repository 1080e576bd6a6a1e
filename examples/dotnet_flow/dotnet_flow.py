#!/usr/bin/env python3
"""The flow of Microsoft's .NET Batch tutorial (BatchDotNetFfmpegTutorial), written in Python.

The .NET tutorial converts media files with ffmpeg; here each task converts a text file to upper
case with ``tr``, so the program runs on any Linux node. The flow is the tutorial's:

1. create the input and output containers if they do not exist, upload the input files;
2. create the pool if it does not exist (a ``PoolExists`` error is fine: the pool is reused);
3. create a job and one task per input file, each declaring an output file that the Batch
   service uploads to the output container through a container SAS URL when the task completes;
4. monitor the tasks: poll their state with ``$select=id,state`` until all are completed or the
   timeout passes (the .NET ``TaskStateMonitor``); then terminate the job;
5. check each completed task's ``executionInfo`` (result, exit code, failureInfo) for failures;
6. list the outputs, delete the containers, the job and (unless --keep-pool) the pool.

Endpoints and key come from OPENBATCH_BATCH_URL, OPENBATCH_BLOB_URL, OPENBATCH_ACCOUNT and
OPENBATCH_KEY, defaulting to a local ``openbatch serve``. Exit code 0 when every task succeeded.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

from azure.batch import BatchClient, models
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)

EMULATOR_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
BATCH_URL = os.environ.get("OPENBATCH_BATCH_URL", "http://127.0.0.1:10100")
BLOB_URL = os.environ.get("OPENBATCH_BLOB_URL", "http://127.0.0.1:10000/devstoreaccount1")
ACCOUNT = os.environ.get("OPENBATCH_ACCOUNT", "devstoreaccount1")
KEY = os.environ.get("OPENBATCH_KEY", EMULATOR_KEY)

POOL_ID = "DotNetFlowPool"
JOB_ID = "DotNetFlowJob"
DEDICATED_NODE_COUNT = 2
POOL_VM_SIZE = "STANDARD_A1_v2"
INPUT_CONTAINER = "dotnet-input"
OUTPUT_CONTAINER = "dotnet-output"
INPUT_DIR = Path(__file__).resolve().parent / "InputFiles"


def expiry(hours: int = 2) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=hours)


def create_container_if_not_exist(blob_service: BlobServiceClient, name: str) -> None:
    try:
        blob_service.create_container(name)
        print(f"Created container {name}.")
    except ResourceExistsError:
        print(f"Container {name} exists, reusing it.")


def upload_resource_files(blob_service: BlobServiceClient, paths: list[Path]) -> list[models.ResourceFile]:
    files = []
    for path in paths:
        print(f"Uploading file {path} to container [{INPUT_CONTAINER}]...")
        blob = blob_service.get_blob_client(INPUT_CONTAINER, path.name)
        blob.upload_blob(path.read_bytes(), overwrite=True)
        sas = generate_blob_sas(ACCOUNT, INPUT_CONTAINER, path.name, account_key=KEY,
                                permission=BlobSasPermissions(read=True), expiry=expiry())
        files.append(models.ResourceFile(http_url=f"{blob.url}?{sas}", file_path=path.name))
    return files


def container_sas_url(blob_service: BlobServiceClient, name: str) -> str:
    sas = generate_container_sas(ACCOUNT, name, account_key=KEY,
                                 permission=ContainerSasPermissions(write=True), expiry=expiry())
    return f"{blob_service.get_container_client(name).url}?{sas}"


def ubuntu_image(batch: BatchClient) -> models.BatchSupportedImage:
    """An Ubuntu image the service advertises (the .NET tutorial hard-codes one)."""
    images = [i for i in batch.list_supported_images() if (i.node_agent_sku_id or "").startswith("batch.node.ubuntu")]
    if not images:
        raise RuntimeError("the Batch service offers no Ubuntu image")
    return images[0]


def create_pool_if_not_exist(batch: BatchClient) -> None:
    image = ubuntu_image(batch)
    print(f"Creating pool [{POOL_ID}] ({image.node_agent_sku_id})...")
    pool = models.BatchPoolCreateOptions(
        id=POOL_ID,
        vm_size=POOL_VM_SIZE,
        virtual_machine_configuration=models.VirtualMachineConfiguration(
            image_reference=image.image_reference, node_agent_sku_id=image.node_agent_sku_id),
        target_dedicated_nodes=DEDICATED_NODE_COUNT,
    )
    try:
        batch.create_pool(pool)
    except HttpResponseError as exc:
        if exc.error is not None and exc.error.code == "PoolExists":
            print(f"The pool {POOL_ID} already existed when we tried to create it")
        else:
            raise  # any other exception is unexpected


def create_job(batch: BatchClient) -> None:
    print(f"Creating job [{JOB_ID}]...")
    batch.create_job(models.BatchJobCreateOptions(id=JOB_ID, pool_info=models.BatchPoolInfo(pool_id=POOL_ID)))


def add_tasks(batch: BatchClient, input_files: list[models.ResourceFile], output_container_url: str) -> None:
    print(f"Adding {len(input_files)} tasks to job [{JOB_ID}]...")
    tasks = []
    for index, input_file in enumerate(input_files):
        name = input_file.file_path or ""
        output_name = f"{Path(name).stem}_UPPER.txt"
        tasks.append(models.BatchTaskCreateOptions(
            id=f"Task{index}",
            command_line=f"/bin/sh -c \"tr '[:lower:]' '[:upper:]' < {name} > {output_name}\"",
            resource_files=[input_file],
            output_files=[models.OutputFile(
                file_pattern=output_name,
                destination=models.OutputFileDestination(
                    container=models.OutputFileBlobContainerDestination(container_url=output_container_url)),
                upload_options=models.OutputFileUploadConfiguration(
                    upload_condition=models.OutputFileUploadCondition.TASK_COMPLETION),
            )],
        ))
    batch.create_tasks(JOB_ID, tasks)


def terminate_job(batch: BatchClient) -> None:
    # azure-batch 15.1 cannot send a terminate request without a body (and does not export the
    # options model from azure.batch.models), so pass the default reason explicitly.
    from azure.batch.models._models import BatchJobTerminateOptions

    options = BatchJobTerminateOptions(termination_reason="UserTerminate")
    batch.begin_terminate_job(JOB_ID, options, polling_interval=1).result()


def monitor_tasks(batch: BatchClient, timeout: datetime.timedelta) -> bool:
    """Wait for all tasks to complete, terminate the job, then look for failed tasks."""
    print(f"Monitoring all tasks for 'Completed' state, timeout in {timeout}...")
    deadline = time.monotonic() + timeout.total_seconds()
    delay = 0.05
    while True:
        states = {t.id: t.state for t in batch.list_tasks(JOB_ID, select=["id", "state"])}
        if states and all(state == models.BatchTaskState.COMPLETED for state in states.values()):
            break
        if time.monotonic() > deadline:
            terminate_job(batch)
            print("One or more tasks failed to reach the Completed state within the timeout period.")
            return False
        time.sleep(delay)
        delay = min(delay * 2, 1.0)

    terminate_job(batch)
    print("All tasks reached state Completed.")

    all_ok = True
    print("Checking for task failures...")
    for task in batch.list_tasks(JOB_ID, filter="state eq 'completed'", select=["id", "executionInfo"]):
        info = task.execution_info
        if info is None:
            continue
        if info.result == models.BatchTaskExecutionResult.FAILURE:
            all_ok = False
            message = info.failure_info.message if info.failure_info else "no failure information"
            print(f"WARNING: Task [{task.id}] encountered a failure: {message}")
            if info.exit_code != 0:
                print(f"WARNING: Task [{task.id}] returned a non-zero exit code - this may indicate task "
                      "execution or completion failure.")
    if all_ok:
        print("Success! All tasks completed successfully within the specified timeout period. "
              "Output files uploaded to output container.")
    return all_ok


def print_outputs(blob_service: BlobServiceClient) -> int:
    container = blob_service.get_container_client(OUTPUT_CONTAINER)
    count = 0
    for item in container.list_blobs():
        lines = container.download_blob(item.name).readall().decode(errors="replace").splitlines()
        print(f"  {item.name}: {lines[0] if lines else ''}")
        count += 1
    return count


def cleanup(batch: BatchClient, blob_service: BlobServiceClient, keep_pool: bool) -> None:
    for name in (INPUT_CONTAINER, OUTPUT_CONTAINER):
        try:
            blob_service.delete_container(name)
            print(f"Container [{name}] deleted.")
        except HttpResponseError:
            pass
    try:
        batch.begin_delete_job(JOB_ID, polling_interval=1).result(timeout=120)
        print(f"Job [{JOB_ID}] deleted.")
    except HttpResponseError:
        pass
    if keep_pool:
        print(f"Pool [{POOL_ID}] kept for the next run.")
        return
    try:
        batch.begin_delete_pool(POOL_ID, polling_interval=1).result(timeout=120)
        print(f"Pool [{POOL_ID}] deleted.")
    except HttpResponseError:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description="The .NET Batch tutorial's flow, in Python.")
    parser.add_argument("--keep-pool", action="store_true", help="Keep the pool for the next run.")
    parser.add_argument("--timeout", type=float, default=300, help="Seconds to wait for the tasks.")
    args = parser.parse_args()

    start = time.monotonic()
    print(f"Sample start: {datetime.datetime.now():%Y-%m-%d %H:%M:%S}")
    blob_service = BlobServiceClient(BLOB_URL, credential={"account_name": ACCOUNT, "account_key": KEY})
    batch = BatchClient(BATCH_URL, AzureNamedKeyCredential(ACCOUNT, KEY))
    ok = False
    try:
        create_container_if_not_exist(blob_service, INPUT_CONTAINER)
        create_container_if_not_exist(blob_service, OUTPUT_CONTAINER)
        input_files = upload_resource_files(blob_service, sorted(INPUT_DIR.glob("*.txt")))
        output_url = container_sas_url(blob_service, OUTPUT_CONTAINER)
        create_pool_if_not_exist(batch)
        create_job(batch)
        add_tasks(batch, input_files, output_url)
        ok = monitor_tasks(batch, datetime.timedelta(seconds=args.timeout))
        print("Output files:")
        ok = print_outputs(blob_service) == len(input_files) and ok
    except HttpResponseError as exc:
        code = exc.error.code if exc.error else getattr(exc, "error_code", None)
        print(f"Azure error: {code}: {exc.message.splitlines()[0] if exc.message else exc.reason}", file=sys.stderr)
    finally:
        cleanup(batch, blob_service, args.keep_pool)
    print(f"Sample end: {datetime.datetime.now():%Y-%m-%d %H:%M:%S}")
    print(f"Elapsed time: {time.monotonic() - start:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
