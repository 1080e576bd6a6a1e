"""The engine's autoscale part: sample histories of autoscale pools, and their periodic evaluation.

Every 30 s of service-clock time (``clock.SERVICE`` timers, so a test clock moved forward takes
the samples that fell due at once) each autoscale pool gets a sample of its metrics: the task
counts of the jobs bound to it (``$ActiveTasks`` = queued tasks whose dependencies are met in
active jobs, ``$RunningTasks`` = tasks assigned to a node, ``$PendingTasks`` = both,
``$SucceededTasks`` / ``$FailedTasks`` = completed tasks of its unfinished jobs by result), its
nodes (``$SampleNodeCount``, ``$UsableNodeCount`` idle or running with scheduling enabled,
``$CurrentDedicatedNodes``, ``$CurrentLowPriorityNodes``, ``$PreemptedNodeCount`` the Spot nodes
in state preempted, engine_spot.py), ``$TaskSlotsPerNode``, ``$WallClockSeconds`` (node-seconds of the
period) and this machine's resource metrics (``domain/autoscale/machine.py``).

Each autoscale pool has a timer for its next evaluation: ``_autoScaleStart`` + k x interval (the
schedule enable starts). When it fires, ``domain.pools.autoscale_pool`` evaluates the formula,
keeps the run and resizes; the pool's ``pool_changed`` then arms the next one. Histories live in
memory (a restart begins them again); the timers are rebuilt from the pools at start.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from openbatch.batch.domain import pools as pool_ops
from openbatch.batch.domain.autoscale.machine import Machine
from openbatch.batch.domain.autoscale.samples import PERIOD, History
from openbatch.batch.domain.states import PoolState
from openbatch.batch.engine_core import Doc, Key, key_of
from openbatch.batch.scheduler import ASSIGNED, QUEUED
from openbatch.batch.wire import models as m
from openbatch.common import clock

if TYPE_CHECKING:
    from openbatch.batch.engine import Engine

log = logging.getLogger("openbatch.engine")


def _interval(pool: Doc) -> float:
    value = m.parse_duration(str(pool.get("autoScaleEvaluationInterval") or "PT15M"))
    return value.total_seconds() if value is not None and value.total_seconds() > 0 else 900.0


def next_evaluation(start: float, interval: float, now: float) -> float:
    """The first time of the schedule ``start + k * interval`` (k >= 1) after ``now``."""
    k = max(1, math.floor((now - start) / interval) + 1)
    return start + k * interval


class Autoscaler:
    """Sample histories and evaluation timers of the autoscale pools (a ``SampleSource`` for the domain)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.machine = Machine(engine.settings.data_dir)
        self.histories: dict[Key, History] = {}
        self.timers: dict[Key, tuple[float, clock.Timer]] = {}  # pool -> (when, timer)
        self.sampler: clock.Timer | None = None

    # --- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        for account, _, pool in list(self.engine.store.every("pool")):
            self.pool_changed(account, pool)

    def stop(self) -> None:
        for _, timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        if self.sampler is not None:
            self.sampler.cancel()
            self.sampler = None

    # --- the domain's SampleSource -------------------------------------------------------------

    def history(self, account: str, pool: Mapping[str, Any], now: float) -> History:
        key = key_of(account, str(pool["id"]))
        history = self.histories.setdefault(key, History())
        if history.due(now):
            history.catch_up(now, self.measure(account, pool))
        return history

    # --- hooks ---------------------------------------------------------------------------------

    def pool_changed(self, account: str, pool: Doc) -> None:
        """Arm, move or drop the pool's evaluation timer after the API or an evaluation changed it."""
        key = key_of(account, str(pool["id"]))
        if not pool.get("enableAutoScale") or pool.get("state") == PoolState.DELETING.value:
            self._forget(key)
            return
        now = clock.SERVICE.time()
        start = float(pool.get("_autoScaleStart") or now)
        when = next_evaluation(start, _interval(pool), now)
        armed = self.timers.get(key)
        if armed is not None and armed[0] == when and not armed[1].cancelled:
            return
        if armed is not None:
            armed[1].cancel()
        pool_id = str(pool["id"])
        self.timers[key] = (when, clock.SERVICE.call_at(when, lambda: self._due(account, pool_id, key)))
        self.histories.setdefault(key, History())
        if self.sampler is None:
            self.sampler = clock.SERVICE.call_at(now + PERIOD, self._sample)

    def _forget(self, key: Key) -> None:
        armed = self.timers.pop(key, None)
        if armed is not None:
            armed[1].cancel()
        self.histories.pop(key, None)

    # --- timers --------------------------------------------------------------------------------

    def _due(self, account: str, pool_id: str, key: Key) -> None:
        self.timers.pop(key, None)
        if not self.engine.stopping:
            self.engine.spawn(self._evaluate(account, pool_id), f"autoscale {pool_id}")

    async def _evaluate(self, account: str, pool_id: str) -> None:
        try:
            await pool_ops.autoscale_pool(self.engine.ctx, account, pool_id)
        finally:
            pool = self.engine.store.get("pool", account, pool_id)
            if pool is not None:
                self.pool_changed(account, pool)  # the next slot, even if the evaluation failed

    def _sample(self) -> None:
        self.sampler = None
        now = clock.SERVICE.time()
        for key, history in list(self.histories.items()):
            pool = self.engine.store.get("pool", *key)
            if pool is None or not pool.get("enableAutoScale"):
                self._forget(key)
            elif history.due(now):
                history.catch_up(now, self.measure(key[0], pool))
        if self.histories and not self.engine.stopping:
            self.sampler = clock.SERVICE.call_at(now + PERIOD, self._sample)

    # --- measuring -----------------------------------------------------------------------------

    def _task_counts(self, key: Key) -> tuple[int, int, int, int]:
        """(active, running, succeeded, failed) of the unfinished jobs bound to the pool."""
        active = running = succeeded = failed = 0
        for job in self.engine.jobs.values():
            if job.sched.pool != key:
                continue
            for qt in job.tasks.values():
                if qt.state == ASSIGNED:
                    running += 1
                elif qt.state == QUEUED and job.sched.active and qt.key not in job.blocked:
                    active += 1
            for state, result, count, _ in self.engine.store.task_count_rows(job.account, job.key[1]):
                if state == "completed":
                    succeeded += count if result == "success" else 0
                    failed += count if result == "failure" else 0
        return active, running, succeeded, failed

    def measure(self, account: str, pool: Mapping[str, Any]) -> dict[str, float]:
        key = key_of(account, str(pool["id"]))
        prt = self.engine.pools.get(key)
        nodes = [n for n in prt.nodes.values() if n.busy != "removing"] if prt is not None else []
        active, running, succeeded, failed = self._task_counts(key)
        return {
            **self.machine.read(),
            "$WallClockSeconds": len(nodes) * PERIOD,
            "$SampleNodeCount": float(len(nodes)),
            "$ActiveTasks": float(active), "$RunningTasks": float(running), "$PendingTasks": float(active + running),
            "$SucceededTasks": float(succeeded), "$FailedTasks": float(failed),
            "$TaskSlotsPerNode": float(pool.get("taskSlotsPerNode") or 1),
            "$CurrentDedicatedNodes": float(pool.get("currentDedicatedNodes") or 0),
            "$CurrentLowPriorityNodes": float(pool.get("currentLowPriorityNodes") or 0),
            "$UsableNodeCount": float(sum(1 for n in nodes if self.engine.usable(n))),
            "$PreemptedNodeCount": float(self.engine.preempted_count(prt)),
        }
