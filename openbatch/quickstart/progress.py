"""What the quickstart shows while it works: one line per step, and a live view of pool and tasks.

On a terminal the live view redraws in place (rich ``Live``); elsewhere (CI logs, pipes) every
change of a node or task state is printed once as a line, so the log tells the same story.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

_STYLES = {
    "idle": "green", "completed": "green", "steady": "green", "active": "cyan", "running": "yellow",
    "preparing": "yellow", "resizing": "yellow", "creating": "yellow", "starting": "yellow",
    "waitingforstarttask": "yellow", "starttaskfailed": "red", "unusable": "red", "failed": "red",
    "succeeded": "green",
}


@dataclass
class Snapshot:
    """Pool, node and task states as last polled."""

    pool_id: str
    pool_state: str = ""
    allocation_state: str = ""
    target_nodes: int = 0
    nodes: dict[str, str] = field(default_factory=dict)
    tasks: dict[str, str] = field(default_factory=dict)


@dataclass
class Step:
    title: str


class StepFailed(Exception):
    """A step of the workflow failed; ``detail`` (e.g. a task's stderr) is shown under the message."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.reported = False


class QuickstartView:
    """Prints the steps of the workflow and its live progress to ``console``."""

    def __init__(self, console: Console, started: float | None = None):
        self.console = console
        self.started = time.monotonic() if started is None else started

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @contextmanager
    def step(self, title: str) -> Iterator[Step]:
        """``✓ title (0.12s)`` when the block succeeds, ``✗ title`` and the error when it raises.

        The block may change ``step.title`` (e.g. to add what it found) before it is printed.
        """
        began = time.monotonic()
        step = Step(title)
        try:
            yield step
        except StepFailed as exc:
            self.console.print(f"[red]✗[/] {escape(step.title)}")
            self.failure(exc)
            raise
        except BaseException:
            self.console.print(f"[red]✗[/] {escape(step.title)}")
            raise
        self.console.print(f"[green]✓[/] {escape(step.title)} [dim]({time.monotonic() - began:.2f}s)[/]")

    def failure(self, exc: StepFailed) -> None:
        """Print a failure (once): the message, then its detail (e.g. stderr) verbatim."""
        if exc.reported:
            return
        exc.reported = True
        self.console.print(f"[bold red]error:[/] {escape(exc.message)}")
        if exc.detail.strip():
            print_block(self.console, "stderr", exc.detail)


    def info(self, text: str) -> None:
        self.console.print(text)

    @contextmanager
    def live(self) -> Iterator[LiveProgress]:
        progress = LiveProgress(self)
        if not self.console.is_terminal:
            yield progress
            return
        with Live(progress.render(), console=self.console, transient=True, refresh_per_second=12) as live:
            progress.live = live
            yield progress


class LiveProgress:
    """Receives snapshots; redraws (terminal) or prints the changes (anything else)."""

    def __init__(self, view: QuickstartView):
        self.view = view
        self.live: Live | None = None
        self.snapshot: Snapshot | None = None
        self._seen: dict[str, str] = {}

    def update(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        if self.live is not None:
            self.live.update(self.render())
            return
        self._print_changes(snapshot)

    def _print_changes(self, snapshot: Snapshot) -> None:
        states = {f"pool {snapshot.pool_id}": f"{snapshot.allocation_state or '?'}, "
                  f"{sum(s == 'idle' or s == 'running' for s in snapshot.nodes.values())}/{snapshot.target_nodes}"
                  " nodes ready"}
        states.update({f"node {node}": state for node, state in snapshot.nodes.items()})
        states.update({f"task {task}": state for task, state in snapshot.tasks.items()})
        for name, state in states.items():
            if self._seen.get(name) != state:
                self._seen[name] = state
                self.view.console.print(f"  [dim]{self.view.elapsed():6.2f}s[/] {escape(name)}: {_styled(state)}")

    def render(self) -> RenderableType:
        snap = self.snapshot
        header = Text.from_markup(f"[bold]elapsed[/] {self.view.elapsed():.1f}s")
        if snap is None:
            return Group(header, Text("waiting for the first poll..."))
        pool = Table.grid(padding=(0, 2))
        ready = sum(s in ("idle", "running") for s in snap.nodes.values())
        pool.add_row("[bold]pool[/]", escape(snap.pool_id), _styled(snap.pool_state), _styled(snap.allocation_state),
                     f"{ready}/{snap.target_nodes} nodes ready")
        for node, state in sorted(snap.nodes.items()):
            pool.add_row("", f"[dim]{escape(node)}[/]", _styled(state), "", "")
        tasks = Table.grid(padding=(0, 2))
        for task, state in snap.tasks.items():
            tasks.add_row("[bold]task[/]", escape(task), _styled(state))
        return Group(header, pool, tasks)


def print_block(console: Console, title: str, body: str) -> None:
    """A file's text (e.g. stderr.txt) verbatim between two rules: no cropping, no markup."""
    console.rule(f"[red]{escape(title)}[/]", align="left", style="red")
    console.print(Text(body.rstrip()), soft_wrap=True)
    console.rule(style="red")


def _styled(state: str) -> str:
    style = _STYLES.get(state)
    return f"[{style}]{escape(state)}[/]" if style else escape(state)
