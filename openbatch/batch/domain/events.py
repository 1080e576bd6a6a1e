"""How domain operations tell the engine that something happened (implemented by batch/engine.py).

The domain never imports the engine: it reports facts through this protocol, and the engine
reacts (schedules tasks, creates or removes nodes, kills processes) in its own loop.
"""

from __future__ import annotations

from typing import Any, Protocol

from openbatch.batch.domain.instructions import Instruction

Doc = dict[str, Any]


class EngineHooks(Protocol):
    def pool_changed(self, account: str, pool: Doc) -> None:
        """A pool was added, resized, stopped resizing, had its start task changed, or is being deleted."""

    def job_changed(self, account: str, job: Doc) -> None:
        """A job was added or its state, priority, constraints or pool changed."""

    def tasks_added(self, account: str, job_id: str, tasks: list[Doc]) -> None:
        """New active tasks (already stored and committed)."""

    def task_changed(self, account: str, job_id: str, task: Doc) -> None:
        """A task's state or constraints changed through the API (terminate, reactivate, update, delete)."""

    def schedule_changed(self, account: str, schedule: Doc) -> None:
        """A job schedule was added, changed (schedule, job specification) or disabled / enabled."""

    def perform(self, account: str, instructions: list[Instruction]) -> None:
        """Carry out what a transition asked for (kill processes, remove nodes, run job release...)."""


class NullHooks:
    """Hooks that do nothing: for tests of the API without compute."""

    def pool_changed(self, account: str, pool: Doc) -> None:
        return None

    def job_changed(self, account: str, job: Doc) -> None:
        return None

    def tasks_added(self, account: str, job_id: str, tasks: list[Doc]) -> None:
        return None

    def task_changed(self, account: str, job_id: str, task: Doc) -> None:
        return None

    def schedule_changed(self, account: str, schedule: Doc) -> None:
        return None

    def perform(self, account: str, instructions: list[Instruction]) -> None:
        return None
