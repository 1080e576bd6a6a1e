"""Which task goes to which slot: pure, event in -> assignments out.

The scheduler holds the in-memory index of everything that can still be scheduled — small
``QueuedTask`` objects, never task documents — and the free slots of every node. The engine
tells it what happened (tasks added or requeued, a node became usable, a task finished and gave
its slots back) and asks ``assign(pool)`` for the assignments to carry out. No I/O, no clock.

Rules (Azure Batch's): only jobs in state active are scheduled; higher job priority first, then
submission order (task sequence number) across the jobs of one priority; a job never has more
than ``maxParallelTasks`` tasks assigned; a task needs ``requiredSlots`` free slots on one node;
only nodes that are idle/running with scheduling enabled take tasks (``usable``); nodeFillType
``spread`` picks the node with the most free slots, ``pack`` fills the first node (in node order)
before the next. A task that does not fit anywhere right now is passed over so that smaller ones
behind it can use the free slots (backfill); it keeps its place in the queue.

A multi-instance task (``instances`` > 0) needs that many distinct usable nodes at once, each with
all of its slots free, and only in a pool that allows it (``multi_ok``: inter-node communication
enabled, one slot per node); until then it waits in the queue, as on Azure (a task asking for more
nodes than the pool has waits until the pool grows). Its extra nodes are ``QueuedTask.extra``.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str]  # (account, lower-cased id)

QUEUED, ASSIGNED, GONE = 0, 1, 2

# How many tasks that fit nowhere one job may pass over in one assign() before giving up for now.
_MAX_SKIPS = 64


@dataclass(slots=True, eq=False)
class QueuedTask:
    """A task the scheduler knows: queued (active) or assigned (preparing/running)."""

    seq: int
    job: Key
    key: str  # lower-cased task id
    slots: int = 1
    state: int = QUEUED
    node_id: str = ""
    payload: Any = None  # the engine's own data (e.g. the task document while it is cheap to keep)
    instances: int = 0  # a multi-instance task's numberOfInstances (0: an ordinary task)
    extra: tuple[str, ...] = ()  # a multi-instance task's other nodes (node_id is its primary's)


@dataclass(slots=True, eq=False)
class SchedNode:
    node_id: str
    pool: Key
    total: int
    order: int
    free: int = 0
    usable: bool = False

    def __post_init__(self) -> None:
        self.free = self.total


@dataclass(slots=True, eq=False)
class SchedJob:
    key: Key
    pool: Key | None
    order: int
    priority: int = 0
    max_parallel: int = -1
    active: bool = True
    assigned: int = 0
    queue: list[tuple[int, QueuedTask]] = field(default_factory=list)
    excluded: set[str] = field(default_factory=set)  # nodes where this job may not run (prep task failed)

    def runnable(self) -> bool:
        return self.active and bool(self.queue) and (self.max_parallel < 0 or self.assigned < self.max_parallel)

    def head(self) -> QueuedTask | None:
        while self.queue:
            task = self.queue[0][1]
            if task.state == QUEUED:
                return task
            heapq.heappop(self.queue)
        return None


@dataclass(slots=True, eq=False)
class SchedPool:
    key: Key
    fill: str = "spread"
    multi_ok: bool = False  # multi-instance tasks may run (enableInterNodeCommunication, 1 slot per node)
    nodes: dict[str, SchedNode] = field(default_factory=dict)
    jobs: dict[Key, SchedJob] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Assignment:
    task: QueuedTask
    node_id: str


class Scheduler:
    """The index of schedulable work per pool; see the module docstring."""

    def __init__(self) -> None:
        self.pools: dict[Key, SchedPool] = {}
        self.jobs: dict[Key, SchedJob] = {}
        self._order = 0

    # --- pools and nodes -----------------------------------------------------------------------

    def set_pool(self, pool: Key, fill: str = "spread") -> SchedPool:
        sp = self.pools.get(pool)
        if sp is None:
            sp = self.pools[pool] = SchedPool(pool)
            for job in self.jobs.values():
                if job.pool == pool:
                    sp.jobs[job.key] = job
        sp.fill = "pack" if fill == "pack" else "spread"
        return sp

    def remove_pool(self, pool: Key) -> None:
        self.pools.pop(pool, None)

    def add_node(self, pool: Key, node_id: str, slots: int) -> SchedNode:
        sp = self.set_pool(pool) if pool not in self.pools else self.pools[pool]
        node = sp.nodes.get(node_id)
        if node is None:
            self._order += 1
            node = sp.nodes[node_id] = SchedNode(node_id, pool, max(1, slots), self._order)
        return node

    def remove_node(self, pool: Key, node_id: str) -> None:
        sp = self.pools.get(pool)
        if sp is not None:
            sp.nodes.pop(node_id, None)
            for job in sp.jobs.values():
                job.excluded.discard(node_id)

    def set_node_usable(self, pool: Key, node_id: str, usable: bool) -> None:
        sp = self.pools.get(pool)
        node = sp.nodes.get(node_id) if sp else None
        if node is not None:
            node.usable = usable

    # --- jobs ----------------------------------------------------------------------------------

    def set_job(self, job: Key, pool: Key | None, *, priority: int = 0, max_parallel: int = -1,
                active: bool = True) -> SchedJob:
        sj = self.jobs.get(job)
        if sj is None:
            self._order += 1
            sj = self.jobs[job] = SchedJob(job, None, self._order)
        if sj.pool != pool:
            old = self.pools.get(sj.pool) if sj.pool else None
            if old is not None:
                old.jobs.pop(job, None)
            sj.pool = pool
            new = self.pools.get(pool) if pool else None
            if new is not None:
                new.jobs[job] = sj
        sj.priority, sj.max_parallel, sj.active = priority, max_parallel, active
        return sj

    def remove_job(self, job: Key) -> None:
        sj = self.jobs.pop(job, None)
        sp = self.pools.get(sj.pool) if sj is not None and sj.pool is not None else None
        if sp is not None:
            sp.jobs.pop(job, None)

    def exclude_node(self, job: Key, node_id: str, excluded: bool = True) -> None:
        sj = self.jobs.get(job)
        if sj is not None:
            (sj.excluded.add if excluded else sj.excluded.discard)(node_id)

    # --- tasks ---------------------------------------------------------------------------------

    def push(self, task: QueuedTask) -> None:
        """Queue a task (new, requeued or reactivated); it keeps its submission order."""
        sj = self.jobs.get(task.job)
        if sj is None:
            sj = self.set_job(task.job, None)
        task.state, task.node_id, task.extra = QUEUED, "", ()
        heapq.heappush(sj.queue, (task.seq, task))

    def drop(self, task: QueuedTask) -> None:
        """Forget a queued task (terminated, deleted); an assigned one must be released first."""
        if task.state == QUEUED:
            task.state = GONE

    def release(self, task: QueuedTask) -> None:
        """An assigned task gave its slots back (finished, killed, requeued)."""
        if task.state != ASSIGNED:
            return
        task.state = GONE
        sj = self.jobs.get(task.job)
        if sj is not None:
            sj.assigned = max(0, sj.assigned - 1)
            sp = self.pools.get(sj.pool) if sj.pool else None
            for node_id in (task.node_id, *task.extra):
                node = sp.nodes.get(node_id) if sp else None
                if node is not None:
                    node.free = min(node.total, node.free + task.slots)

    def take(self, task: QueuedTask, pool: Key, node_id: str) -> None:
        """Record an assignment made outside assign() (recovery of a running task)."""
        sp = self.pools.get(pool)
        node = sp.nodes.get(node_id) if sp else None
        sj = self.jobs.get(task.job)
        task.state, task.node_id = ASSIGNED, node_id
        if node is not None:
            node.free -= task.slots
        if sj is not None:
            sj.assigned += 1

    # --- the decision --------------------------------------------------------------------------

    def free_slots(self, pool: Key) -> int:
        sp = self.pools.get(pool)
        return sum(n.free for n in sp.nodes.values() if n.usable) if sp else 0

    def assign(self, pool: Key) -> list[Assignment]:
        """Fill the pool's free slots with queued tasks; the tasks returned are now ASSIGNED."""
        sp = self.pools.get(pool)
        if sp is None:
            return []
        nodes = sorted((n for n in sp.nodes.values() if n.usable and n.free > 0), key=lambda n: n.order)
        free = sum(n.free for n in nodes)
        out: list[Assignment] = []
        if free <= 0:
            return out
        jobs = [j for j in sp.jobs.values() if j.runnable()]
        for priority in sorted({j.priority for j in jobs}, reverse=True):
            free = self._assign_group([j for j in jobs if j.priority == priority], nodes, sp, free, out)
            if free <= 0:
                break
        return out

    def _assign_group(self, jobs: list[SchedJob], nodes: list[SchedNode], sp: SchedPool, free: int,
                      out: list[Assignment]) -> int:
        heap: list[tuple[int, int, SchedJob]] = []
        for job in jobs:
            head = job.head()
            if head is not None:
                heap.append((head.seq, job.order, job))
        heapq.heapify(heap)
        skipped: dict[Key, list[tuple[int, QueuedTask]]] = {}
        while heap and free > 0:
            _, _, job = heapq.heappop(heap)
            task = job.head()
            if task is None:
                continue
            entry = heapq.heappop(job.queue)
            picked = _place(task, nodes, sp, job.excluded)
            if not picked:
                held = skipped.setdefault(job.key, [])
                held.append(entry)
            else:
                for taken in picked:
                    taken.free -= task.slots
                    free -= task.slots
                task.state, task.node_id = ASSIGNED, picked[0].node_id
                if task.instances:
                    task.extra = tuple(n.node_id for n in picked[1:])
                job.assigned += 1
                out.append(Assignment(task, task.node_id))
            nxt = job.head()
            if nxt is not None and job.runnable() and len(skipped.get(job.key, ())) < _MAX_SKIPS:
                heapq.heappush(heap, (nxt.seq, job.order, job))
        for key, entries in skipped.items():
            queue = self.jobs[key].queue
            for entry in entries:
                heapq.heappush(queue, entry)
        return free


def _place(task: QueuedTask, nodes: list[SchedNode], sp: SchedPool, excluded: set[str]) -> list[SchedNode] | None:
    """Where a task goes now: one node, or a multi-instance task's nodes (primary first); None if nowhere."""
    if task.instances:
        return _pick_many(nodes, task.instances, excluded, sp.multi_ok)
    node = _pick(nodes, task.slots, sp.fill, excluded)
    return [node] if node is not None else None


def _pick_many(nodes: list[SchedNode], count: int, excluded: set[str], allowed: bool) -> list[SchedNode] | None:
    """``count`` distinct nodes with every slot free (a multi-instance task), in node order; None if
    the pool does not have them now (or does not allow multi-instance tasks at all)."""
    if not allowed:
        return None
    found = [n for n in nodes if n.free == n.total and not (excluded and n.node_id in excluded)]
    return found[:count] if len(found) >= count else None


def _pick(nodes: list[SchedNode], slots: int, fill: str, excluded: set[str]) -> SchedNode | None:
    best: SchedNode | None = None
    for node in nodes:
        if node.free < slots or (excluded and node.node_id in excluded):
            continue
        if fill == "pack":
            return node
        if best is None or node.free > best.free:
            best = node
    return best
