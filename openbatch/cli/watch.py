"""``openbatch job watch JOB``: live progress of a job until it completes.

Counts come from the task-counts API (one request per poll, whatever the job's size); failures are
listed once each as the failed count grows. On a terminal a progress bar updates in place; in a pipe
or a log, one line is printed whenever the counts change.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from openbatch.cli.connection import Connection, as_text, command
from openbatch.cli.jobs import JobId, job_app
from openbatch.cli.output import as_rest, console, pick

if TYPE_CHECKING:
    from azure.batch import BatchClient
    from rich.console import Console

RATE_WINDOW = 5.0  # tasks/s is measured over this many seconds
Interval = Annotated[float, typer.Option("--interval", metavar="SECONDS", help="Seconds between polls.")]


@dataclass(frozen=True)
class Counts:
    active: int
    running: int
    completed: int
    succeeded: int
    failed: int

    @property
    def total(self) -> int:
        return self.active + self.running + self.completed

    def line(self, rate: float) -> str:
        return (f"{self.completed}/{self.total} completed ({self.succeeded} succeeded, {self.failed} failed), "
                f"{self.running} running, {self.active} active, {rate:.1f} tasks/s")


def read_counts(client: BatchClient, job_id: str) -> Counts:
    c = client.get_job_task_counts(job_id).task_counts
    return Counts(int(c.active), int(c.running), int(c.completed), int(c.succeeded), int(c.failed))


def failed_tasks(client: BatchClient, job_id: str, seen: set[str]) -> list[str]:
    """One line for each failed task not reported yet: id, exit code, failureInfo."""
    lines = []
    tasks = client.list_tasks(job_id, filter="state eq 'completed' and executionInfo/result eq 'failure'",
                              select=["id", "executionInfo"])
    for task in tasks:
        doc = as_rest(task)
        task_id = str(doc.get("id"))
        if task_id in seen:
            continue
        seen.add(task_id)
        code = pick(doc, "executionInfo.exitCode")
        failure = pick(doc, "executionInfo.failureInfo") or {}
        why = f"{failure.get('code', '')}: {failure.get('message', '')}" if failure else ""
        lines.append(f"task {task_id} failed" + (f" with exit code {code}" if code is not None else "")
                     + (f" - {why}" if why else ""))
    return lines


@job_app.command("watch")
@command
def job_watch(conn: Connection, job_id: JobId, interval: Interval = 1.0) -> None:
    """Follow a job live: task counts, tasks/s, each failure as it happens; exit when the job completes
    (or when all its tasks have). The exit code is 1 if any task failed."""
    client = conn.batch()
    out = console()
    seen: set[str] = set()
    window: deque[tuple[float, int]] = deque()  # (time, completed) over the last RATE_WINDOW seconds
    with _View(out, job_id) as view:
        while True:
            counts = read_counts(client, job_id)
            now = time.monotonic()
            window.append((now, counts.completed))
            while len(window) > 2 and now - window[1][0] >= RATE_WINDOW:
                window.popleft()
            then, done_then = window[0]
            rate = max(0, counts.completed - done_then) / (now - then) if now > then else 0.0
            if counts.failed > len(seen):
                for line in failed_tasks(client, job_id, seen):
                    view.failure(line)
            view.update(counts, rate)
            state = as_text(client.get_job(job_id, select=["state"]).state)
            if state == "completed" or (counts.total and counts.active == counts.running == 0):
                break
            time.sleep(interval)
    verdict = "job completed" if state == "completed" else "all tasks completed (the job is still " + state + ")"
    out.print(f"{verdict}: {escape(counts.line(rate))}")
    if counts.failed:
        raise typer.Exit(1)


class _View:
    """A progress bar on a terminal; one line per change otherwise."""

    def __init__(self, out: Console, job_id: str):
        self.out = out
        self.job_id = job_id
        self.progress: Progress | None = None
        self.task_id: TaskID | None = None
        self.printed = ""

    def __enter__(self) -> _View:
        if self.out.is_terminal:
            self.progress = Progress(TextColumn(f"job {escape(self.job_id)}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.description}"), TimeElapsedColumn(), console=self.out,
                                     transient=True)
            self.progress.start()
            self.task_id = self.progress.add_task("", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, counts: Counts, rate: float) -> None:
        if self.progress is not None and self.task_id is not None:
            self.progress.update(self.task_id, completed=counts.completed, total=counts.total or None,
                                 description=f"{counts.running} running, {counts.failed} failed, {rate:.1f}/s")
            return
        line = counts.line(rate)
        if line != self.printed:
            self.out.print(f"{time.strftime('%H:%M:%S')}  {escape(line)}")
            self.printed = line

    def failure(self, line: str) -> None:
        self.out.print(f"[red]{escape(line)}[/]")
