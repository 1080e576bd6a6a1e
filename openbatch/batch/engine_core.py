"""The engine's runtime objects and its loop: one pass per event burst, batched writes, one commit.

Everything the engine knows in memory is here: pools, nodes and jobs (their documents are the
store's cached dicts, shared with the API), the scheduler's index of unfinished tasks, and the
runs in flight. Events (tasks added, a process ended, a node came up) only record what happened
and ``kick()``; the pass (``loop.call_soon``, once per loop iteration at most) then processes
finished runs, asks the scheduler for assignments, writes every changed task in one
``executemany``, commits once, and only then starts the new processes. No polling: an idle
engine does nothing until the next event.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from openbatch.batch.domain.common import now_iso, parse_iso
from openbatch.batch.scheduler import QueuedTask, SchedJob, Scheduler
from openbatch.batch.store import BatchStore
from openbatch.common import clock
from openbatch.compute.base import ComputeProvider, NodeGone, RunOutcome, RunSpec
from openbatch.config import Settings

log = logging.getLogger("openbatch.engine")

Doc = dict[str, Any]
Key = tuple[str, str]  # (account, lower-cased id)

# Task documents kept in memory with their queue entry (beyond this they are read back on dispatch).
MAX_HELD_DOCS = 20_000
# Passes run at most this often (seconds): under load each pass then carries several task changes,
# so there is one batched write and one commit for many tasks; an idle engine reacts at once.
PASS_GAP = 0.002
# Node documents (counters, recent tasks) are persisted at most this often; readers see the cached
# document at once, and node run-time counters are reset by recovery anyway.
NODE_SAVE_GAP = 0.5
RECENT_TASKS = 10
# A deleted pool, job or certificate stays visible in its ``deleting`` state at least this long
# (service clock), as on Azure where a deletion always takes a while: a GET between the DELETE and
# the end of the deletion sees it, and answers PoolBeingDeleted / JobBeingDeleted ... meanwhile.
DELETION_PASSAGE = 1.0


def key_of(account: str, ident: str) -> Key:
    return (account, ident.lower())


@dataclass(eq=False)
class PoolRt:
    account: str
    key: Key
    doc: Doc
    nodes: dict[str, NodeRt] = field(default_factory=dict)
    deleting: bool = False
    resizing: asyncio.Task[None] | None = None
    again: bool = False  # pool changed while a resize was running: reconcile once more
    serial: str = ""  # the number in this pool's node ids
    counter: int = 0  # the highest node index used in this pool (node ids are never reused)


@dataclass(eq=False)
class NodeRt:
    account: str
    pool: Key
    node_id: str
    doc: Doc
    runs: dict[str, Run] = field(default_factory=dict)  # everything running there, by run key
    tasks: int = 0  # ordinary task runs (preparing or running)
    slots_used: int = 0
    prepared: dict[Key, str] = field(default_factory=dict)  # job -> running | success | failed
    waiting: dict[Key, list[Run]] = field(default_factory=dict)  # tasks waiting for their job's prep task
    busy: str = ""  # booting | restarting | removing
    removal: asyncio.Task[None] | None = None
    recent: deque[Doc] = field(default_factory=lambda: deque(maxlen=RECENT_TASKS))

    @property
    def pool_id(self) -> str:
        return str(self.doc.get("poolId", self.pool[1]))


@dataclass(eq=False)
class JobRt:
    account: str
    key: Key
    doc: Doc
    sched: SchedJob
    tasks: dict[str, QueuedTask] = field(default_factory=dict)  # unfinished (queued or assigned)
    blocked: dict[str, set[str]] = field(default_factory=dict)  # task -> dependencies not satisfied yet
    waiters: dict[str, set[str]] = field(default_factory=dict)  # dependency -> tasks waiting for it
    ending: asyncio.Task[None] | None = None
    disabling: asyncio.Task[None] | None = None
    timer: clock.Timer | None = None  # maxWallClockTime, on the service's clock

    @property
    def job_id(self) -> str:
        return str(self.doc.get("id", self.key[1]))


@dataclass(eq=False)
class Run:
    """One thing running on a node: an ordinary task, the start task, a job prep/release task."""

    kind: str
    node: NodeRt
    key: str
    spec: RunSpec | None = None
    qt: QueuedTask | None = None  # ordinary tasks
    job: Key | None = None
    doc: Doc | None = None  # the task document (ordinary tasks)
    stop: str = ""  # why the engine ended it: requeue | terminate | delete | jobstop | restart | remove
    active: bool = False  # the provider is running it right now
    handle: asyncio.Task[None] | None = None
    finished: asyncio.Future[None] | None = None
    multi: Any = None  # a multi-instance task's other nodes and subtasks (engine_multi.MultiRun)

    def done(self) -> None:
        if self.finished is not None and not self.finished.done():
            self.finished.set_result(None)


class EngineCore:
    """State and loop shared by the engine's parts (nodes, tasks, jobs)."""

    def __init__(self, settings: Settings, store: BatchStore, compute: Any):
        self.settings = settings
        self.store = store
        self.compute: ComputeProvider = compute
        self.ctx: Any = None
        self.scheduler = Scheduler()
        self.pools: dict[Key, PoolRt] = {}
        self.nodes: dict[str, NodeRt] = {}
        self.jobs: dict[Key, JobRt] = {}
        self.runs: dict[tuple[Key, str], Run] = {}  # ordinary task runs by (job, task key)
        self.held = 0  # task documents held by queue entries
        self._done: list[tuple[Run, RunOutcome | None]] = []
        self._dirty_pools: set[Key] = set()
        self._dirty_nodes: dict[str, NodeRt] = {}
        self._rows: list[tuple[str, str, Doc]] = []
        self._starts: list[Run] = []
        self._kicked = False
        self._last_pass = 0.0
        self._node_timer: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stopping = False

    # --- loop plumbing -------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def kick(self, pool: Key | None = None) -> None:
        """Something changed: run a pass soon (once, however many events arrive before it)."""
        if pool is not None:
            self._dirty_pools.add(pool)
        if not self._kicked and not self.stopping:
            self._kicked = True
            wait = self._last_pass + PASS_GAP - self.loop.time()
            if wait > 0:
                self.loop.call_later(wait, self._pass)
            else:
                self.loop.call_soon(self._pass)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        """A background coroutine of the engine (node boot, job end...): kept alive, errors logged."""
        task = self.loop.create_task(coro, name=name or None)
        self._background.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("engine task %s failed", task.get_name(), exc_info=task.exception())

    def new_future(self) -> asyncio.Future[None]:
        return self.loop.create_future()

    async def deletion_passage(self, since: str) -> None:
        """Wait until DELETION_PASSAGE of the service clock has passed since ``since`` (the ISO time
        the entity entered ``deleting``); at once when it has (a deletion resumed after a restart)."""
        due = parse_iso(since).timestamp() + DELETION_PASSAGE
        if clock.SERVICE.time() >= due:
            return
        passed = self.new_future()

        def arrive() -> None:
            if not passed.done():
                passed.set_result(None)

        timer = clock.SERVICE.call_at(due, arrive)
        try:
            await passed
        finally:
            timer.cancel()

    # --- writes --------------------------------------------------------------------------------

    def save_task(self, account: str, job_key: str, doc: Doc) -> None:
        self._rows.append((account, job_key, doc))

    def save_node(self, node: NodeRt) -> None:
        """Persist the node's document soon (it is already current for readers: the store caches it)."""
        self._dirty_nodes[node.node_id] = node
        if self._node_timer is None and not self.stopping:
            self._node_timer = self.loop.call_later(NODE_SAVE_GAP, self._save_nodes)

    def _save_nodes(self) -> None:
        self._node_timer = None
        nodes, self._dirty_nodes = self._dirty_nodes, {}
        for node in nodes.values():
            if self.nodes.get(node.node_id) is node:
                self.store.put("node", node.account, node.doc, node.pool_id)
        self.kick()

    def save_entity(self, kind: str, account: str, doc: Doc, parent: str = "") -> None:
        self.store.put(kind, account, doc, parent)

    def write_out(self) -> None:
        """Write what the pass (or a coroutine) changed and commit it."""
        if self._rows:
            rows, self._rows = self._rows, []
            self.store.update_tasks(rows)
        self.store.commit_now()

    # --- the pass ------------------------------------------------------------------------------

    def _pass(self) -> None:
        self._kicked = False
        self._last_pass = self.loop.time()
        if self.stopping:
            return
        now = now_iso()
        done, self._done = self._done, []
        for run, outcome in done:
            try:
                self.run_finished(run, outcome, now)
            except Exception:
                log.exception("finishing %s on %s failed", run.key, run.node.node_id)
                run.done()
        pools, self._dirty_pools = self._dirty_pools, set()
        for pool in pools:
            try:
                self.dispatch(pool, now)
            except Exception:
                log.exception("scheduling pool %s failed", pool)
        try:
            self.write_out()
        except Exception:
            log.exception("writing engine changes failed")
        starts, self._starts = self._starts, []
        for run in starts:
            self.start_run(run)

    def finished(self, run: Run, outcome: RunOutcome | None) -> None:
        """A run's process ended (or its node is gone): processed by the next pass."""
        self._done.append((run, outcome))
        self.kick()

    # --- provided by the parts (engine_tasks, engine_nodes, engine_jobs) ------------------------

    async def attempt(self, run: Run) -> RunOutcome | None:
        """One attempt of a node-level run (start / prep / release task); None if stopped or the node is gone."""
        assert run.spec is not None
        node = run.node
        node.runs[run.key] = run
        run.active = True
        try:
            outcome: RunOutcome | None = await self.compute.run(run.spec)
        except NodeGone:
            outcome = None
            if not run.stop:
                self.node_unusable(node, "The node's directory is missing.")
        finally:
            run.active = False
            if node.runs.get(run.key) is run:
                del node.runs[run.key]
        return None if run.stop else outcome

    def run_finished(self, run: Run, outcome: RunOutcome | None, now: str) -> None:
        raise NotImplementedError

    def dispatch(self, pool: Key, now: str) -> None:
        raise NotImplementedError

    def start_run(self, run: Run) -> None:
        raise NotImplementedError

    def stop_task(self, run: Run, reason: str) -> None:
        raise NotImplementedError

    def kill_task(self, job_key: Key, task_key: str, reason: str) -> bool:
        raise NotImplementedError

    def forget_task(self, job: JobRt, qt: QueuedTask) -> None:
        raise NotImplementedError

    def settle_node(self, node: NodeRt) -> None:
        raise NotImplementedError

    def node_unusable(self, node: NodeRt, reason: str) -> None:
        raise NotImplementedError

    def forget_node_jobs(self, node: NodeRt, reimage: bool) -> None:
        raise NotImplementedError

    def job_rt(self, account: str, job_id: str) -> JobRt | None:
        raise NotImplementedError

    def job_task_completed(self, job: JobRt, doc: Doc, outcome: RunOutcome | None, now: str) -> None:
        raise NotImplementedError

    def start_job_prep(self, node: NodeRt, job: JobRt) -> None:
        raise NotImplementedError

    def perform_node(self, account: str, instruction: Any) -> None:
        raise NotImplementedError

    def perform(self, account: str, instructions: list[Any]) -> None:
        raise NotImplementedError

    def pool_changed(self, account: str, pool: Doc) -> None:
        raise NotImplementedError

    def job_changed(self, account: str, job: Doc) -> None:
        raise NotImplementedError

    def tasks_added(self, account: str, job_id: str, tasks: list[Doc]) -> None:
        raise NotImplementedError

    def task_changed(self, account: str, job_id: str, task: Doc) -> None:
        raise NotImplementedError

    def schedule_changed(self, account: str, schedule: Doc) -> None:
        raise NotImplementedError

    def terminate_job(self, job: JobRt, reason: str) -> None:
        raise NotImplementedError

    def job_ended(self, account: str, job: Doc) -> None:
        """A job completed or was deleted (engine_schedules: auto pools, the job's schedule)."""
        raise NotImplementedError

    def end_schedule_jobs(self, account: str, instruction: Any) -> None:
        raise NotImplementedError

    # --- multi-instance tasks (engine_multi) ---------------------------------------------------

    def queue_multi(self, job: JobRt, qt: QueuedTask, doc: Doc) -> None:
        raise NotImplementedError

    def assign_multi(self, run: Run, qt: QueuedTask) -> None:
        raise NotImplementedError

    async def execute_multi(self, run: Run) -> RunOutcome | None:
        raise NotImplementedError

    def release_multi(self, run: Run) -> None:
        raise NotImplementedError

    def kill_multi(self, run: Run) -> None:
        raise NotImplementedError
