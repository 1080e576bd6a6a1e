"""The engine's Spot/low-priority side: preempting a node and restoring it, as Azure does.

Azure preempts Spot nodes when it needs the capacity back: the node goes ``preempted`` (it stays in
the pool and in ``currentLowPriorityNodes``, and is counted by ``$PreemptedNodeCount``), the tasks
that ran there go back to the queue (``requeueCount + 1``; a requeue never counts against
``maxTaskRetryCount``) and run on another node, and Batch restores the node when capacity comes
back: it boots again, its start task runs again, as a new VM would. Nothing preempts a node of this
host by itself, so a preemption comes from outside (``openbatch node preempt`` or
``POST /openbatch/pools/{pool}/nodes/{node}/preempt``), or at random for chaos testing: a pool whose
metadata has ``openbatch.preemptionsPerHour`` loses each of its Spot nodes that many times per hour
on average. A preempted node is restored after ``openbatch.spotRestoreSeconds`` (pool metadata;
default ``RESTORE_SECONDS``; a negative value keeps it preempted until the pool shrinks or the
server restarts, which reboots every node).
"""

from __future__ import annotations

import asyncio
import logging
import random

from openbatch.batch.domain import states
from openbatch.batch.domain.common import now_iso
from openbatch.batch.engine_core import Doc, EngineCore, NodeRt, PoolRt
from openbatch.common.eventlog import EVENTS

log = logging.getLogger("openbatch.engine")

_N = states.NodeState
RESTORE_SECONDS = 30.0
RESTORE_KEY = "openbatch.spotRestoreSeconds"
RATE_KEY = "openbatch.preemptionsPerHour"
CHAOS_INTERVAL = 5.0
# States a Spot node can be preempted in (one that is booting, rebooting or reimaging included).
PREEMPTIBLE = frozenset({_N.IDLE.value, _N.RUNNING.value, _N.OFFLINE.value, _N.START_TASK_FAILED.value,
                         _N.WAITING_FOR_START_TASK.value, _N.STARTING.value, _N.UNUSABLE.value, _N.CREATING.value,
                         _N.REBOOTING.value, _N.REIMAGING.value})


def metadata_number(pool: Doc, name: str) -> float | None:
    """A number from the pool's metadata (None when absent or not a number)."""
    for item in pool.get("metadata") or []:
        if isinstance(item, dict) and item.get("name") == name:
            try:
                return float(str(item.get("value")))
            except (TypeError, ValueError):
                return None
    return None


class EngineSpot(EngineCore):
    """Preemption of Spot nodes (mixed into Engine)."""

    def preempt(self, node: NodeRt) -> None:
        """The node is ``preempted`` already (the API applied the transition): stop what runs there."""
        if node.busy in ("removing", "preempted"):
            return
        self.spawn(self._preempt(node), f"preempt {node.node_id}")

    def preempt_now(self, node: NodeRt) -> bool:
        """Preempt a Spot node from inside the engine (chaos); False when it is not preemptible now."""
        if node.doc.get("isDedicated", True) or node.busy in ("removing", "preempted"):
            return False
        if node.doc.get("state") not in PREEMPTIBLE or not states.NODE.allowed(node.doc, _N.PREEMPTED):
            return False
        old = node.doc.get("state")
        states.NODE.apply(node.doc, _N.PREEMPTED, states.Context(now_iso(), reason="preempted"))
        EVENTS.node_state(node.pool_id, node.node_id, old, _N.PREEMPTED.value, None)
        self.save_node(node)
        self.preempt(node)
        return True

    async def _preempt(self, node: NodeRt) -> None:
        node.busy = "preempted"
        self.save_node(node)
        self.scheduler.set_node_usable(node.pool, node.node_id, False)
        self.kick()
        # The VM is gone: what ran there is lost (tasks requeued), its disk with it.
        for run in list(node.runs.values()):
            if run.qt is not None:
                self.stop_task(run, "restart")
            else:
                run.stop = run.stop or "restart"
        stopped = [r for r in node.runs.values() if r.active]
        for run in stopped:
            if run.finished is None:
                run.finished = self.new_future()
        await self.compute.restart_node(node.pool_id, node.node_id, True)
        await asyncio.gather(*(r.finished for r in stopped if r.finished is not None), return_exceptions=True)
        node.doc.pop("startTaskInfo", None)
        self.forget_node_jobs(node, True)
        self.save_node(node)
        self.kick(node.pool)
        prt = self.pools.get(node.pool)
        wait = metadata_number(prt.doc, RESTORE_KEY) if prt is not None else None
        wait = RESTORE_SECONDS if wait is None else wait
        if wait < 0:
            return
        await asyncio.sleep(wait)
        await self.restore(node)

    async def restore(self, node: NodeRt) -> None:
        """Capacity is back: the preempted node boots again (start task again)."""
        if node.busy != "preempted" or self.nodes.get(node.node_id) is not node or self.stopping:
            return
        if node.doc.get("state") != _N.PREEMPTED.value:
            return
        node.busy = ""
        self._set_state(node, _N.STARTING)
        await self.boot(node)

    def preempted_count(self, prt: PoolRt | None) -> int:
        if prt is None:
            return 0
        return sum(1 for n in prt.nodes.values() if n.doc.get("state") == _N.PREEMPTED.value)

    # --- chaos ---------------------------------------------------------------------------------

    async def chaos(self) -> None:
        """Every few seconds, preempt Spot nodes of pools that ask for it (``RATE_KEY`` per node-hour)."""
        rng = random.Random()
        while not self.stopping:
            await asyncio.sleep(CHAOS_INTERVAL)
            for prt in list(self.pools.values()):
                rate = metadata_number(prt.doc, RATE_KEY)
                if not rate or rate <= 0 or prt.deleting:
                    continue
                chance = min(1.0, rate * CHAOS_INTERVAL / 3600.0)
                for node in list(prt.nodes.values()):
                    if rng.random() < chance and self.preempt_now(node):
                        log.info("chaos: preempted Spot node %s of pool %s", node.node_id, node.pool_id)

    # --- provided by engine_nodes ----------------------------------------------------------------

    def _set_state(self, node: NodeRt, to: states.NodeState, reason: str = "") -> None:
        raise NotImplementedError

    async def boot(self, node: NodeRt) -> None:
        raise NotImplementedError
