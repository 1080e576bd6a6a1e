#!/usr/bin/env python3
"""Azure Batch Python tutorial client (top-N words), on azure-batch 15 and azure-storage-blob 12.

This is Microsoft's ``python_tutorial_client.py`` (azure-batch-samples, article_samples) brought to
the current SDKs. It runs unchanged against Azure Batch or an openbatch server: only the endpoints
and the key differ, and they come from the environment:

    OPENBATCH_BATCH_URL  Batch endpoint       (default http://127.0.0.1:10100)
    OPENBATCH_BLOB_URL   Blob endpoint         (default http://127.0.0.1:10000/devstoreaccount1)
    OPENBATCH_ACCOUNT    account name          (default devstoreaccount1)
    OPENBATCH_KEY        account key, base64   (default the storage emulator's well-known key)

What it does: creates the containers ``application``, ``input`` and ``output``; uploads the task
program (python_tutorial_task.py) and the text files in ./data; creates a pool whose start task
copies the program to the nodes' shared directory; creates a job with one task per text file (each
task counts the words of its file and uploads the top N to ``output`` with a container SAS);
waits for the tasks; downloads and prints the results; deletes what it created (unless --keep).

    pip install azure-batch azure-storage-blob
    openbatch serve &            # or export OPENBATCH_* for another server
    python python_tutorial_client.py
"""

from __future__ import annotations

import argparse
import contextlib
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

POOL_ID = "PythonTutorialPool"
JOB_ID = "PythonTutorialJob"
POOL_NODE_COUNT = 3
POOL_VM_SIZE = "STANDARD_D1_V2"
NUM_WORDS = 3
APP_CONTAINER = "application"
INPUT_CONTAINER = "input"
OUTPUT_CONTAINER = "output"
TASK_PROGRAM = "python_tutorial_task.py"
HERE = Path(__file__).resolve().parent


def sas_expiry() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=2)


def upload_file_to_container(blob_service: BlobServiceClient, container: str, path: Path) -> models.ResourceFile:
    """Upload a file; return it as a resource file: its blob URL with a read SAS."""
    print(f"Uploading file {path} to container [{container}]...")
    blob = blob_service.get_blob_client(container, path.name)
    with path.open("rb") as data:
        blob.upload_blob(data, overwrite=True)
    token = generate_blob_sas(ACCOUNT, container, path.name, account_key=KEY,
                              permission=BlobSasPermissions(read=True), expiry=sas_expiry())
    return models.ResourceFile(http_url=f"{blob.url}?{token}", file_path=path.name)


def output_container_sas() -> str:
    """A SAS token that lets the tasks write their results into the output container."""
    return generate_container_sas(ACCOUNT, OUTPUT_CONTAINER, account_key=KEY,
                                  permission=ContainerSasPermissions(write=True), expiry=sas_expiry())


def create_pool(batch: BatchClient, program: models.ResourceFile) -> None:
    """A pool of Ubuntu nodes; the start task (elevated) copies the task program to the shared dir."""
    print(f"Creating pool [{POOL_ID}]...")
    start_task = models.BatchStartTask(
        command_line=f'/bin/bash -c "cp -f {TASK_PROGRAM} $AZ_BATCH_NODE_SHARED_DIR/"',
        resource_files=[program],
        user_identity=models.UserIdentity(auto_user=models.AutoUserSpecification(
            scope=models.AutoUserScope.POOL, elevation_level=models.ElevationLevel.ADMIN)),
        wait_for_success=True,
    )
    batch.create_pool(models.BatchPoolCreateOptions(
        id=POOL_ID,
        vm_size=POOL_VM_SIZE,
        virtual_machine_configuration=models.VirtualMachineConfiguration(
            image_reference=models.BatchVmImageReference(
                publisher="canonical", offer="0001-com-ubuntu-server-focal", sku="20_04-lts", version="latest"),
            node_agent_sku_id="batch.node.ubuntu 20.04",
        ),
        target_dedicated_nodes=POOL_NODE_COUNT,
        start_task=start_task,
    ))


def add_tasks(batch: BatchClient, input_files: list[models.ResourceFile], sas_token: str) -> None:
    """One task per input file. Command lines do not run in a shell, hence /bin/bash -c."""
    print(f"Adding {len(input_files)} tasks to job [{JOB_ID}]...")
    tasks = []
    for index, input_file in enumerate(input_files):
        command = (
            f'/bin/bash -c "python3 $AZ_BATCH_NODE_SHARED_DIR/{TASK_PROGRAM} --filepath {input_file.file_path} '
            f"--numwords {NUM_WORDS} --storageaccount {ACCOUNT} --storagecontainer {OUTPUT_CONTAINER} "
            f"--blobendpoint {BLOB_URL} --sastoken '{sas_token}'\""
        )
        tasks.append(models.BatchTaskCreateOptions(id=f"Task{index}", command_line=command,
                                                   resource_files=[input_file]))
    batch.create_tasks(JOB_ID, tasks)


def wait_for_tasks_to_complete(batch: BatchClient, timeout: datetime.timedelta) -> None:
    """Poll the job's task states (only id and state) until all are completed."""
    deadline = datetime.datetime.now() + timeout
    print(f"Monitoring all tasks for 'Completed' state, timeout in {timeout}...", end="", flush=True)
    delay = 0.05
    while datetime.datetime.now() < deadline:
        print(".", end="", flush=True)
        tasks = list(batch.list_tasks(JOB_ID, select=["id", "state"]))
        if tasks and all(task.state == models.BatchTaskState.COMPLETED for task in tasks):
            print()
            return
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    print()
    raise RuntimeError(f"ERROR: Tasks did not reach 'Completed' state within timeout period of {timeout}")


def read_task_file(batch: BatchClient, task_id: str, name: str) -> str:
    try:
        return b"".join(batch.download_task_file(JOB_ID, task_id, name)).decode(errors="replace")
    except HttpResponseError as exc:  # e.g. the task failed before it could start
        return f"({name} unavailable: {exc.reason})"


def check_task_results(batch: BatchClient) -> bool:
    """Print each task's stdout; report failed tasks with their stderr."""
    ok = True
    for task in batch.list_tasks(JOB_ID, select=["id", "executionInfo"]):
        info = task.execution_info
        print(f"Task [{task.id}] stdout: {read_task_file(batch, task.id, 'stdout.txt').strip()}")
        if info is None or info.result == models.BatchTaskExecutionResult.FAILURE or info.exit_code != 0:
            ok = False
            failure = info.failure_info.message if info and info.failure_info else f"exit code {info and info.exit_code}"
            stderr = read_task_file(batch, task.id, "stderr.txt")
            print(f"Task [{task.id}] FAILED: {failure}\n{stderr}", file=sys.stderr)
    return ok


def download_blobs_from_container(blob_service: BlobServiceClient, directory: Path) -> int:
    print(f"Downloading all files from container [{OUTPUT_CONTAINER}]...")
    directory.mkdir(parents=True, exist_ok=True)
    container = blob_service.get_container_client(OUTPUT_CONTAINER)
    count = 0
    for item in container.list_blobs():
        target = directory / item.name
        target.write_bytes(container.download_blob(item.name).readall())
        print(f"  Downloaded blob [{item.name}] to {target}")
        for line in target.read_text().splitlines():
            print(f"    {line}")
        count += 1
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description="Azure Batch Python tutorial: top N words of text files.")
    parser.add_argument("--keep", action="store_true", help="Keep the containers, job and pool.")
    parser.add_argument("--timeout", type=float, default=300, help="Seconds to wait for the tasks.")
    parser.add_argument("--output-dir", type=Path, default=Path("tutorial_output"), help="Where results go.")
    args = parser.parse_args()

    start = time.monotonic()
    print(f"Sample start: {datetime.datetime.now():%Y-%m-%d %H:%M:%S}\n")
    blob_service = BlobServiceClient(BLOB_URL, credential={"account_name": ACCOUNT, "account_key": KEY})
    batch = BatchClient(BATCH_URL, AzureNamedKeyCredential(ACCOUNT, KEY))
    ok = False
    try:
        for container in (APP_CONTAINER, INPUT_CONTAINER, OUTPUT_CONTAINER):
            with contextlib.suppress(ResourceExistsError):  # fail_on_exist=False in the original tutorial
                blob_service.create_container(container)
        program = upload_file_to_container(blob_service, APP_CONTAINER, HERE / TASK_PROGRAM)
        input_files = [upload_file_to_container(blob_service, INPUT_CONTAINER, path)
                       for path in sorted((HERE / "data").glob("taskdata*.txt"))]
        sas_token = output_container_sas()

        create_pool(batch, program)
        print(f"Creating job [{JOB_ID}]...")
        batch.create_job(models.BatchJobCreateOptions(id=JOB_ID, pool_info=models.BatchPoolInfo(pool_id=POOL_ID)))
        add_tasks(batch, input_files, sas_token)
        wait_for_tasks_to_complete(batch, datetime.timedelta(seconds=args.timeout))
        print("  Success! All tasks reached the 'Completed' state within the specified timeout period.")
        ok = check_task_results(batch)
        outputs = download_blobs_from_container(blob_service, args.output_dir)
        ok = ok and outputs == len(input_files)
    except HttpResponseError as exc:
        code = exc.error.code if exc.error else getattr(exc, "error_code", None)
        print(f"Azure error: {code}: {exc.message.splitlines()[0] if exc.message else exc.reason}", file=sys.stderr)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
    finally:
        if not args.keep:
            cleanup(batch, blob_service)

    print(f"\nSample end: {datetime.datetime.now():%Y-%m-%d %H:%M:%S}")
    print(f"Elapsed time: {time.monotonic() - start:.1f}s")
    print("Done." if ok else "FAILED.")
    return 0 if ok else 1


def cleanup(batch: BatchClient, blob_service: BlobServiceClient) -> None:
    """Delete containers, job and pool; what was never created is skipped."""
    for container in (APP_CONTAINER, INPUT_CONTAINER, OUTPUT_CONTAINER):
        try:
            blob_service.delete_container(container)
            print(f"Deleted container [{container}]")
        except HttpResponseError:
            pass
    for what, delete in (("job", lambda: batch.begin_delete_job(JOB_ID, polling_interval=1)),
                         ("pool", lambda: batch.begin_delete_pool(POOL_ID, polling_interval=1))):
        try:
            delete().result(timeout=120)
            print(f"Deleted {what}")
        except HttpResponseError:
            pass


if __name__ == "__main__":
    sys.exit(main())
