"""``openbatch job ...`` and ``openbatch task ...``."""

from __future__ import annotations

import itertools
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import typer

from openbatch.cli import inputs
from openbatch.cli.connection import CliError, Connection, as_text, command
from openbatch.cli.output import (
    Column,
    OutputFormat,
    OutputOption,
    as_rest,
    done,
    note,
    pick,
    show_list,
    show_one,
)

if TYPE_CHECKING:
    from azure.batch import BatchClient, models

job_app = typer.Typer(no_args_is_help=True, help="Jobs: collections of tasks bound to a pool.")
task_app = typer.Typer(no_args_is_help=True, help="Tasks: command lines that run on a pool's nodes.")

JOB_COLUMNS: list[Column] = [
    ("ID", "id"), ("State", "state"), ("Pool", "poolInfo.poolId"), ("Priority", "priority"),
    ("Created", "creationTime"), ("Terminate reason", "executionInfo.terminateReason"),
]
TASK_COLUMNS: list[Column] = [
    ("ID", "id"), ("State", "state"), ("Exit code", "executionInfo.exitCode"), ("Result", "executionInfo.result"),
    ("Node", "nodeInfo.nodeId"), ("Failure", "executionInfo.failureInfo.code"), ("Command line", "commandLine"),
]

JobId = Annotated[str, typer.Argument(help="Job id.")]
TaskId = Annotated[str, typer.Argument(help="Task id.")]
Wait = Annotated[bool, typer.Option("--wait", help="Wait until the operation has finished.")]
Timeout = Annotated[float, typer.Option("--timeout", help="Seconds to wait with --wait.")]
Filter = Annotated[str | None, typer.Option("--filter", help="OData $filter, e.g. \"state eq 'completed'\".")]
DEFAULT_TOP = 1000
JsonFile = Annotated[Path | None, typer.Option("--json", help="Body in the REST shape (- = stdin).")]


@job_app.command("create")
@command
def job_create(
    conn: Connection,
    job_id: Annotated[str | None, typer.Argument(help="Job id (or the id in --json).", show_default=False)] = None,
    pool: Annotated[str | None, typer.Option("--pool", help="Pool the job's tasks run on.")] = None,
    priority: Annotated[int | None, typer.Option(help="-1000 .. 1000.")] = None,
    terminate_when_done: Annotated[
        bool, typer.Option("--terminate-when-done", help="Terminate the job when all its tasks complete.")
    ] = False,
    json_file: JsonFile = None,
) -> None:
    """Create a job from flags, or from a JSON body in the REST shape (--json FILE)."""
    from azure.batch import models

    if json_file is not None:
        body = inputs.load_json(json_file)
        if job_id:
            body["id"] = job_id
        job = models.BatchJobCreateOptions(body)
    else:
        if not job_id or not pool:
            raise CliError("give a job id and --pool (or --json FILE)")
        job = models.BatchJobCreateOptions(
            id=job_id, pool_info=models.BatchPoolInfo(pool_id=pool), priority=priority,
            all_tasks_complete_mode=models.BatchAllTasksCompleteMode.TERMINATE_JOB if terminate_when_done else None,
        )
    conn.batch().create_job(job)
    done(f"created job {job.id}")


@job_app.command("list")
@command
def job_list(conn: Connection, filter: Filter = None, output: OutputOption = OutputFormat.table) -> None:
    """List jobs."""
    show_list(conn.batch().list_jobs(filter=filter), JOB_COLUMNS, output, title="Jobs")


@job_app.command("show")
@command
def job_show(conn: Connection, job_id: JobId, output: OutputOption = OutputFormat.table) -> None:
    """Show one job and its task counts."""
    client = conn.batch()
    show_one(client.get_job(job_id), output)
    if output is OutputFormat.json:
        return
    counts = client.get_job_task_counts(job_id).task_counts
    done(f"tasks: {counts.active} active, {counts.running} running, {counts.completed} completed "
         f"({counts.succeeded} succeeded, {counts.failed} failed)")


@job_app.command("delete")
@command
def job_delete(conn: Connection, job_id: JobId, wait: Wait = False, timeout: Timeout = 300.0) -> None:
    """Delete a job and all its tasks."""
    poller = conn.batch().begin_delete_job(job_id, polling_interval=inputs.FAST_POLL)
    if wait:
        inputs.wait_for(poller, f"job {job_id} to be deleted", timeout)
    done(f"deleted job {job_id}" if wait else f"deleting job {job_id}")


@job_app.command("terminate")
@command
def job_terminate(
    conn: Connection, job_id: JobId,
    reason: Annotated[str | None, typer.Option("--reason", help="Terminate reason (default UserTerminate).")] = None,
    wait: Wait = False, timeout: Timeout = 300.0,
) -> None:
    """Terminate a job: running tasks are killed, the job completes."""
    from azure.batch.models._models import BatchJobTerminateOptions

    # Always a body: azure-batch 15.1 fails to build a terminate request without one.
    options = BatchJobTerminateOptions(termination_reason=reason or "UserTerminate")
    poller = conn.batch().begin_terminate_job(job_id, options, polling_interval=inputs.FAST_POLL)
    if wait:
        inputs.wait_for(poller, f"job {job_id} to terminate", timeout)
    done(f"terminated job {job_id}" if wait else f"terminating job {job_id}")


@task_app.command("create")
@command
def task_create(
    conn: Connection, job_id: JobId,
    task_id: Annotated[str | None, typer.Argument(help="Task id (or the id in --json).", show_default=False)] = None,
    command_line: Annotated[
        str | None, typer.Option("--command", help="Command line; not run under a shell: use /bin/sh -c '...'.")
    ] = None,
    resource_file: Annotated[list[str] | None, typer.Option("--resource-file", help="URL or PATH=URL.")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", help="NAME=VALUE, repeatable.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Run elevated (pool-scoped admin auto-user).")] = False,
    max_wall_clock: Annotated[int | None, typer.Option("--max-wall-clock", help="Seconds before the task is killed.")] = None,
    retries: Annotated[int | None, typer.Option("--retries", help="Max task retry count (-1 = unlimited).")] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="A task, a list of tasks or {\"value\": [...]} in the REST shape.")
    ] = None,
) -> None:
    """Add a task to a job from flags, or one or many tasks from a JSON file (--json FILE)."""
    client = conn.batch()
    if json_file is not None:
        _create_from_json(client, job_id, task_id, json_file)
        return
    if not task_id or not command_line:
        raise CliError("give a task id and --command (or --json FILE)")
    client.create_task(job_id, _task_options(task_id, command_line, resource_file, env, admin, max_wall_clock, retries))
    done(f"added task {task_id} to job {job_id}")


def _task_options(task_id: str, command_line: str, files: list[str] | None, env: list[str] | None, admin: bool,
                  max_wall_clock: int | None, retries: int | None) -> models.BatchTaskCreateOptions:
    import datetime

    from azure.batch import models

    constraints = None
    if max_wall_clock is not None or retries is not None:
        constraints = models.BatchTaskConstraints(
            max_wall_clock_time=datetime.timedelta(seconds=max_wall_clock) if max_wall_clock is not None else None,
            max_task_retry_count=retries,
        )
    return models.BatchTaskCreateOptions(
        id=task_id, command_line=command_line, resource_files=inputs.resource_files(files),
        environment_settings=inputs.environment(env), user_identity=inputs.admin_identity(admin),
        constraints=constraints,
    )


def _create_from_json(client: BatchClient, job_id: str, task_id: str | None, path: Path) -> None:
    import json

    from azure.batch import models

    text = sys.stdin.read() if str(path) == "-" else path.read_text()
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{path} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("value"), list):
        data = data["value"]
    if isinstance(data, dict):
        if task_id:
            data["id"] = task_id
        client.create_task(job_id, models.BatchTaskCreateOptions(data))
        done(f"added task {data.get('id')} to job {job_id}")
        return
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise CliError(f"{path} must hold a task object or a list of task objects")
    client.create_tasks(job_id, [models.BatchTaskCreateOptions(item) for item in data])
    done(f"added {len(data)} task(s) to job {job_id}")


class TaskState(StrEnum):
    active = "active"
    preparing = "preparing"
    running = "running"
    completed = "completed"


@task_app.command("list")
@command
def task_list(
    conn: Connection, job_id: JobId, filter: Filter = None,
    state: Annotated[TaskState | None, typer.Option("--state", help="Only tasks in this state.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Only completed tasks that failed.")] = False,
    top: Annotated[int, typer.Option("--top", min=0, metavar="N",
                                     help="At most N tasks (0: all of them).")] = DEFAULT_TOP,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the tasks of a job (the first 1,000 unless --top says otherwise)."""
    clauses = [f"({filter})"] if filter else []
    if state:
        clauses.append(f"state eq '{state.value}'")
    if failed:
        clauses.append("executionInfo/result eq 'failure'")
    tasks = conn.batch().list_tasks(job_id, filter=" and ".join(clauses) or None,
                                    max_results=min(top, 1000) if top else None)
    shown = show_list(itertools.islice(tasks, top + 1) if top else tasks, TASK_COLUMNS, output,
                      title="Tasks", limit=top)
    if top and shown > top:
        note(f"showing the first {top} tasks; --top N for more (0: all), or `openbatch job show {job_id}` for counts")


@task_app.command("show")
@command
def task_show(conn: Connection, job_id: JobId, task_id: TaskId, output: OutputOption = OutputFormat.table) -> None:
    """Show one task."""
    show_one(conn.batch().get_task(job_id, task_id), output)


@task_app.command("delete")
@command
def task_delete(conn: Connection, job_id: JobId, task_id: TaskId) -> None:
    """Delete a task (a running one is killed)."""
    conn.batch().delete_task(job_id, task_id)
    done(f"deleted task {task_id}")


@task_app.command("terminate")
@command
def task_terminate(conn: Connection, job_id: JobId, task_id: TaskId) -> None:
    """Terminate a task: its processes are killed and it completes."""
    conn.batch().terminate_task(job_id, task_id)
    done(f"terminated task {task_id}")


@task_app.command("logs")
@command
def task_logs(
    conn: Connection, job_id: JobId, task_id: TaskId,
    stderr: Annotated[bool, typer.Option("--stderr", help="stderr.txt instead of stdout.txt.")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the task completes.")] = False,
) -> None:
    """Print a task's stdout.txt (or stderr.txt), optionally following it until the task completes."""
    from azure.core.exceptions import ResourceNotFoundError

    name = "stderr.txt" if stderr else "stdout.txt"
    client = conn.batch()
    if follow:
        follow_file(client, job_id, task_id, name, sys.stdout.buffer)
        written = -1
    else:
        try:
            written = _write(sys.stdout.buffer, client.download_task_file(job_id, task_id, name))
        except ResourceNotFoundError:
            written = None  # no task directory: it never ran (resource files, a missing node ...)
    if not written:
        _explain_failure(client, job_id, task_id, name, missing=written is None)


def _explain_failure(client: BatchClient, job_id: str, task_id: str, name: str, missing: bool) -> None:
    """A task with no output: say why it failed (failureInfo), or that there is nothing yet."""
    task = client.get_task(job_id, task_id, select=["state", "executionInfo"])
    doc = as_rest(task)
    info = pick(doc, "executionInfo.failureInfo")
    if isinstance(info, dict):
        lines = [f"task {task_id} failed: {info.get('code', '')}: {info.get('message', '')}"]
        lines += [f"  {d.get('name')}: {d.get('value')}" for d in info.get("details") or [] if isinstance(d, dict)]
        if missing:
            raise CliError("\n".join(lines))
        note("\n".join(lines))  # an empty file: said on stderr, the command itself worked
        return
    if missing:
        raise CliError(f"task {task_id} has no {name} (state {as_text(task.state)}): it has not run yet")


def follow_file(client: BatchClient, job_id: str, task_id: str, name: str, out: BinaryIO) -> None:
    """Print what the task writes to ``name`` as it grows; return once the task completed and all is read."""
    from azure.core.exceptions import HttpResponseError

    offset = 0
    backoff = inputs.Backoff(first=0.05, cap=1.0)
    while True:
        finished = as_text(client.get_task(job_id, task_id, select=["state"]).state) == "completed"
        try:
            size = int(client.get_task_file_properties(job_id, task_id, name).content_length or 0)
        except HttpResponseError as exc:
            if exc.status_code not in (404, 409):
                raise
            size = 0  # not scheduled yet: no node, no task dir
        if size > offset:
            chunk = client.download_task_file(job_id, task_id, name, ocp_range=f"bytes={offset}-{size - 1}")
            offset += _write(out, chunk)
            backoff = inputs.Backoff(first=0.05, cap=1.0)
        if finished:
            return
        backoff.sleep()


def _write(out: BinaryIO, chunks: Any) -> int:
    written = 0
    for chunk in chunks:
        out.write(chunk)
        written += len(chunk)
    out.flush()
    return written
