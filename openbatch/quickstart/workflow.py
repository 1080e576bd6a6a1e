"""The seed tutorial's workflow (Azure's Python Batch tutorial, top-N words) through the official SDKs.

Containers ``application``, ``input`` and ``output``; the task program and three text files
uploaded; read SAS URLs as resource files and a write SAS for the output container; a pool whose
elevated start task copies the program into the shared dir; a job; one task per file that uploads
its result itself; live progress; the outputs downloaded and printed; everything deleted again.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from openbatch.cli.connection import CliError, Connection, as_text, describe_error
from openbatch.cli.inputs import FAST_POLL, Backoff, first_linux_image
from openbatch.quickstart.progress import LiveProgress, QuickstartView, Snapshot, Step, StepFailed
from openbatch.quickstart.texts import TEXTS

if TYPE_CHECKING:
    from azure.batch import BatchClient, models

APP_CONTAINER = "application"
INPUT_CONTAINER = "input"
OUTPUT_CONTAINER = "output"
CONTAINERS = (APP_CONTAINER, INPUT_CONTAINER, OUTPUT_CONTAINER)
TASK_PROGRAM = "python_tutorial_task.py"
BAD_NODE_STATES = {"starttaskfailed", "unusable"}


def task_program() -> bytes:
    """The task program, shipped in this package (the same file as examples/python_tutorial's)."""
    return resources.files("openbatch.quickstart").joinpath(TASK_PROGRAM).read_bytes()


@dataclass
class Options:
    pool_id: str = "PythonQuickstartPool"
    job_id: str = "PythonQuickstartJob"
    nodes: int = 3
    num_words: int = 3
    timeout: float = 120.0
    keep: bool = False
    vm_size: str = "STANDARD_D1_V2"


@dataclass
class TaskResult:
    task_id: str
    input_name: str
    state: str
    exit_code: int | None = None
    result: str | None = None
    failure: str | None = None
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "completed" and self.exit_code == 0 and self.result != "failure" and not self.failure


@dataclass
class Outcome:
    tasks: list[TaskResult] = field(default_factory=list)
    top_words: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.tasks) and all(t.ok for t in self.tasks)


@dataclass
class _Created:
    containers: list[str] = field(default_factory=list)
    job: bool = False
    pool: bool = False


class Quickstart:
    """Runs the workflow once against ``conn``; :meth:`run` always cleans up what it created (unless ``keep``)."""

    def __init__(self, conn: Connection, options: Options, view: QuickstartView):
        self.conn = conn
        self.options = options
        self.view = view
        self.batch = conn.batch()
        self.blob = conn.blob()
        self.created = _Created()
        self.tasks: dict[str, str] = {}  # task id -> input blob name

    def run(self) -> Outcome:
        try:
            return self._run()
        finally:
            if self.options.keep:
                self.view.info(f"[dim]kept containers {', '.join(self.created.containers) or '-'}, "
                               f"job {self.options.job_id} and pool {self.options.pool_id} (--keep)[/]")
            else:
                self.cleanup()

    def _run(self) -> Outcome:
        opts = self.options
        with self._step(f"Create containers {', '.join(CONTAINERS)}"):
            self._create_containers()
        with self._step(f"Upload {TASK_PROGRAM} and {len(TEXTS)} input files"):
            program_url, input_urls = self._upload()
        with self._step("Find a Linux image") as step:
            image = first_linux_image(self.batch)
            step.title += f": {image.node_agent_sku_id}"
        with self._step(f"Create pool {opts.pool_id} ({opts.nodes} nodes, elevated start task)"):
            self._create_pool(image, program_url)
        with self._step(f"Create job {opts.job_id}"):
            self._create_job()
        with self._step(f"Add {len(input_urls)} tasks"):
            self._add_tasks(input_urls)
        with self._step("Allocate the nodes and run the tasks"), self.view.live() as live:
            self._monitor(live)
        outcome = Outcome()
        with self._step("Collect the task results"):
            outcome.tasks = self._results()
        with self._step("Download the outputs"):
            outcome.top_words = self._download_outputs()
        return outcome

    @contextmanager
    def _step(self, title: str) -> Iterator[Step]:
        """One step; Azure errors become StepFailed with their code and message."""
        from azure.core.exceptions import AzureError

        with self.view.step(title) as step:
            try:
                yield step
            except (AzureError, CliError, ValueError) as exc:  # ValueError: e.g. a key that is not base64
                raise StepFailed(describe_error(exc)) from exc

    # -- storage -------------------------------------------------------------------------------------

    def _create_containers(self) -> None:
        for name in CONTAINERS:
            self.blob.create_container(name)
            self.created.containers.append(name)

    def _upload(self) -> tuple[str, dict[str, str]]:
        """Upload the program and the texts; return their read SAS URLs."""
        self.blob.get_blob_client(APP_CONTAINER, TASK_PROGRAM).upload_blob(task_program(), overwrite=True)
        urls = {}
        for name, text in TEXTS.items():
            self.blob.get_blob_client(INPUT_CONTAINER, name).upload_blob(text.encode(), overwrite=True)
            urls[name] = self._read_sas_url(INPUT_CONTAINER, name)
        return self._read_sas_url(APP_CONTAINER, TASK_PROGRAM), urls

    def _expiry(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=2)

    def _read_sas_url(self, container: str, blob: str) -> str:
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        token = generate_blob_sas(self.conn.account, container, blob, account_key=self.conn.key,
                                  permission=BlobSasPermissions(read=True), expiry=self._expiry())
        return f"{self.blob.get_blob_client(container, blob).url}?{token}"

    def _output_sas(self) -> str:
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        return generate_container_sas(self.conn.account, OUTPUT_CONTAINER, account_key=self.conn.key,
                                      permission=ContainerSasPermissions(write=True), expiry=self._expiry())

    def _download_outputs(self) -> dict[str, list[tuple[str, int]]]:
        container = self.blob.get_container_client(OUTPUT_CONTAINER)
        results = {}
        for item in container.list_blobs():
            text = container.download_blob(item.name).readall().decode("utf-8", errors="replace")
            results[item.name] = _parse_counts(text)
        return results

    # -- batch ---------------------------------------------------------------------------------------

    def _create_pool(self, image: models.BatchSupportedImage, program_url: str) -> None:
        from azure.batch import models

        start_task = models.BatchStartTask(
            command_line=f'/bin/bash -c "cp -f {TASK_PROGRAM} $AZ_BATCH_NODE_SHARED_DIR/"',
            resource_files=[models.ResourceFile(http_url=program_url, file_path=TASK_PROGRAM)],
            user_identity=models.UserIdentity(auto_user=models.AutoUserSpecification(
                scope=models.AutoUserScope.POOL, elevation_level=models.ElevationLevel.ADMIN)),
            wait_for_success=True,
        )
        pool = models.BatchPoolCreateOptions(
            id=self.options.pool_id, vm_size=self.options.vm_size,
            virtual_machine_configuration=models.VirtualMachineConfiguration(
                image_reference=image.image_reference, node_agent_sku_id=image.node_agent_sku_id),
            target_dedicated_nodes=self.options.nodes, start_task=start_task,
        )
        self.batch.create_pool(pool)
        self.created.pool = True

    def _create_job(self) -> None:
        from azure.batch import models

        self.batch.create_job(models.BatchJobCreateOptions(
            id=self.options.job_id, pool_info=models.BatchPoolInfo(pool_id=self.options.pool_id)))
        self.created.job = True

    def _add_tasks(self, input_urls: dict[str, str]) -> None:
        from azure.batch import models

        sas = self._output_sas()
        tasks = []
        for index, (name, url) in enumerate(input_urls.items()):
            command = (
                f'/bin/bash -c "python3 $AZ_BATCH_NODE_SHARED_DIR/{TASK_PROGRAM} --filepath {name} '
                f"--numwords {self.options.num_words} --storageaccount {self.conn.account} "
                f"--storagecontainer {OUTPUT_CONTAINER} --blobendpoint {self.conn.blob_url} --sastoken '{sas}'\""
            )
            task_id = f"Task{index}"
            self.tasks[task_id] = name
            tasks.append(models.BatchTaskCreateOptions(
                id=task_id, command_line=command,
                resource_files=[models.ResourceFile(http_url=url, file_path=name)]))
        self.batch.create_tasks(self.options.job_id, tasks)

    def _monitor(self, live: LiveProgress) -> None:
        """Poll pool, nodes and tasks (``$select``-ed) until every task completed; fail fast on bad nodes."""
        deadline = time.monotonic() + self.options.timeout
        backoff = Backoff(first=0.02, cap=0.25)
        while True:
            snapshot = self._snapshot()
            live.update(snapshot)
            if snapshot.tasks and all(state == "completed" for state in snapshot.tasks.values()):
                return
            self._check_nodes(snapshot)
            if time.monotonic() > deadline:
                waiting = ", ".join(t for t, s in snapshot.tasks.items() if s != "completed")
                ready = sum(s in ("idle", "running") for s in snapshot.nodes.values())
                raise StepFailed(f"timed out after {self.options.timeout:g}s with tasks {waiting} not completed "
                                 f"(pool {snapshot.allocation_state}, {ready}/{snapshot.target_nodes} nodes ready)")
            backoff.sleep()

    def _snapshot(self) -> Snapshot:
        opts = self.options
        pool = self.batch.get_pool(opts.pool_id, select=["id", "state", "allocationState", "targetDedicatedNodes",
                                                          "resizeErrors"])
        if pool.resize_errors:
            errors = "; ".join(f"{e.code}: {e.message}" for e in pool.resize_errors)
            raise StepFailed(f"pool {opts.pool_id} could not allocate nodes: {errors}")
        nodes = {n.id or "?": as_text(n.state) for n in self.batch.list_nodes(opts.pool_id, select=["id", "state"])}
        tasks = {t.id or "?": as_text(t.state) for t in self.batch.list_tasks(opts.job_id, select=["id", "state"])}
        nodes, tasks = dict(sorted(nodes.items())), dict(sorted(tasks.items()))
        return Snapshot(pool_id=opts.pool_id, pool_state=as_text(pool.state),
                        allocation_state=as_text(pool.allocation_state),
                        target_nodes=pool.target_dedicated_nodes or 0, nodes=nodes, tasks=tasks)

    def _check_nodes(self, snapshot: Snapshot) -> None:
        """All nodes allocated and none usable: the start task failed; say why."""
        if snapshot.allocation_state != "steady" or not snapshot.nodes:
            return
        if not all(state in BAD_NODE_STATES for state in snapshot.nodes.values()):
            return
        node_id = sorted(snapshot.nodes)[0]
        state = snapshot.nodes[node_id]
        detail = self._node_file(node_id, "startup/stderr.txt") if state == "starttaskfailed" else ""
        raise StepFailed(f"no node of pool {self.options.pool_id} can run tasks (node {node_id}: {state})", detail)

    def _node_file(self, node_id: str, path: str) -> str:
        from azure.core.exceptions import AzureError

        try:
            data = b"".join(self.batch.download_node_file(self.options.pool_id, node_id, path))
        except AzureError as exc:
            return f"({path} unavailable: {describe_error(exc)})"
        return data.decode("utf-8", errors="replace")

    def _results(self) -> list[TaskResult]:
        results = []
        for task in self.batch.list_tasks(self.options.job_id, select=["id", "state", "executionInfo"]):
            task_id = task.id or "?"
            info = task.execution_info
            result = TaskResult(task_id=task_id, input_name=self.tasks.get(task_id, ""), state=as_text(task.state))
            if info is not None:
                result.exit_code = info.exit_code
                result.result = as_text(info.result) or None
                if info.failure_info is not None:
                    result.failure = f"{info.failure_info.code}: {info.failure_info.message}"
            if not result.ok:
                result.stderr = _task_file(self.batch, self.options.job_id, task_id, "stderr.txt")
            results.append(result)
        return sorted(results, key=lambda r: r.task_id)

    # -- cleanup -------------------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Delete what this run created: job and pool (waiting for both), then the containers."""
        from azure.core.exceptions import AzureError

        deleted: list[str] = []
        problems: list[str] = []
        pollers: list[tuple[str, Any]] = []
        began = time.monotonic()
        try:
            if self.created.job:
                pollers.append((f"job {self.options.job_id}",
                                self.batch.begin_delete_job(self.options.job_id, polling_interval=FAST_POLL)))
            if self.created.pool:
                pollers.append((f"pool {self.options.pool_id}",
                                self.batch.begin_delete_pool(self.options.pool_id, polling_interval=FAST_POLL)))
        except AzureError as exc:
            problems.append(describe_error(exc))
        deadline = time.monotonic() + 30
        for name, poller in pollers:
            poller.wait(max(0.0, deadline - time.monotonic()))
            if poller.done() and poller.status() == "Succeeded":
                deleted.append(name)
            else:
                problems.append(f"{name} not deleted (status {poller.status()})")
        for container in self.created.containers:
            try:
                self.blob.delete_container(container)
                deleted.append(f"container {container}")
            except AzureError as exc:
                problems.append(f"container {container}: {describe_error(exc)}")
        if deleted:
            self.view.info(f"[green]✓[/] Delete {', '.join(deleted)} [dim]({time.monotonic() - began:.2f}s)[/]")
        for problem in problems:
            self.view.info(f"[yellow]![/] cleanup: {problem}")


def _task_file(client: BatchClient, job_id: str, task_id: str, name: str) -> str:
    from azure.core.exceptions import AzureError

    try:
        data = b"".join(client.download_task_file(job_id, task_id, name))
    except AzureError as exc:
        return f"({name} unavailable: {describe_error(exc)})"
    return data.decode("utf-8", errors="replace")


def _parse_counts(text: str) -> list[tuple[str, int]]:
    counts = []
    for line in text.splitlines():
        word, _, count = line.rpartition(",")
        if word and count.strip().isdigit():
            counts.append((word, int(count)))
    return counts
