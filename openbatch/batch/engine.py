"""The engine: events -> domain transitions -> scheduler -> provider calls, in the server's loop.

``Engine`` implements ``EngineHooks`` (domain/events.py): the API reports what it changed
(``pool_changed``, ``job_changed``, ``tasks_added``, ``task_changed``, ``perform(instructions)``)
and the engine reacts in the same event loop — creating and removing nodes, running start tasks,
scheduling tasks on free slots, running them through the compute provider, and writing every
state change through ``states.*`` to the store. It is split in parts: engine_core.py (runtime
objects, the pass), engine_tasks.py, engine_nodes.py, engine_jobs.py, engine_schedules.py (job
schedules, auto pool lifetimes), engine_autoscale.py (the autoscaler: samples, evaluation timers,
composed rather than mixed in); this module adds the hooks
that need all parts, recovery at start and a clean stop.

Contract with the API side (what the engine expects the domain operations to do):

- a new/resized pool: set ``targetDedicatedNodes``/``targetLowPriorityNodes`` and
  ``allocationState: resizing`` (through ``states.ALLOCATION``), stash the resize's
  nodeDeallocationOption as ``pool["_nodeDeallocationOption"]``, then ``pool_changed``; the engine
  creates/removes nodes and returns the pool to ``steady`` (stop resize: ``stopping`` ->
  ``steady``). Pool delete: ``states.POOL`` -> deleting, then ``perform([RemovePoolNodes])`` and/or
  ``pool_changed``: the engine removes the nodes and then deletes the pool document.
- node operations apply ``states.NODE`` and ``perform`` what it returns (RestartNode, RemoveNode,
  StopNodeTasks); enabling/disabling scheduling also calls ``pool_changed`` so the engine notices
  ``schedulingState``.
- jobs: ``job_changed`` after add/patch/update/state changes, and ``perform`` the instructions
  of ``states.JOB`` transitions; the engine completes terminating -> completed, deleting -> gone,
  disabling -> disabled, enabling -> active.
- tasks: ``tasks_added`` after commit; ``task_changed`` after update / terminate / reactivate /
  delete (``_deleted: True``), plus ``perform([KillTask])`` for a running one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from openbatch.batch.domain import instructions as ins
from openbatch.batch.domain import recovery, states
from openbatch.batch.domain.common import now_iso, touch
from openbatch.batch.engine_autoscale import Autoscaler
from openbatch.batch.engine_certificates import EngineCertificates
from openbatch.batch.engine_core import Doc, JobRt, NodeRt
from openbatch.batch.engine_jobs import EngineJobs
from openbatch.batch.engine_multi import EngineMulti
from openbatch.batch.engine_nodes import EngineNodes
from openbatch.batch.engine_schedules import EngineSchedules
from openbatch.batch.engine_spot import EngineSpot
from openbatch.batch.engine_tasks import EngineTasks
from openbatch.batch.store import BatchStore
from openbatch.common.eventlog import EVENTS
from openbatch.config import Settings
from openbatch.node import containers

log = logging.getLogger("openbatch.engine")

_J = states.JobState
_RECOVERY_BATCH = 1000


class Engine(EngineNodes, EngineJobs, EngineTasks, EngineSchedules, EngineCertificates, EngineSpot, EngineMulti):
    """See the module docstring."""

    def __init__(self, settings: Settings, store: BatchStore, compute: object):
        super().__init__(settings, store, compute)
        self.init_tasks()
        self.autoscale = Autoscaler(self)
        self.init_schedules()

    # --- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.stopping = False
        self.compute.attach(self)
        self._recover()
        self.autoscale.start()
        self.spawn(self.watch_nodes(), "watch nodes")
        self.spawn(self.chaos(), "spot preemption chaos")
        # The container runtime is probed once, off the loop; adding a container pool then finds it known.
        self.loop.run_in_executor(None, containers.runtime)

    async def stop(self) -> None:
        self.stopping = True
        self.autoscale.stop()
        self.stop_schedules()
        pending = list(self._background)
        for task in pending:
            task.cancel()
        runs = [r.handle for n in self.nodes.values() for r in n.runs.values() if r.handle is not None]
        for task in runs:
            task.cancel()
        await asyncio.gather(*pending, *runs, return_exceptions=True)
        with contextlib.suppress(Exception):
            self._save_nodes()
            self.write_out()

    # --- hooks: a bug in the engine must never turn an acknowledged API call into an error ------

    def pool_changed(self, account: str, pool: Doc) -> None:
        try:
            super().pool_changed(account, pool)
        except Exception:
            log.exception("engine: pool_changed %s failed", pool.get("id"))
        try:
            self.autoscale.pool_changed(account, pool)
        except Exception:
            log.exception("engine: autoscale timer of %s failed", pool.get("id"))

    def job_changed(self, account: str, job: Doc) -> None:
        try:
            super().job_changed(account, job)
        except Exception:
            log.exception("engine: job_changed %s failed", job.get("id"))

    def tasks_added(self, account: str, job_id: str, tasks: list[Doc]) -> None:
        try:
            super().tasks_added(account, job_id, tasks)
        except Exception:
            log.exception("engine: tasks_added to %s failed", job_id)

    def task_changed(self, account: str, job_id: str, task: Doc) -> None:
        try:
            super().task_changed(account, job_id, task)
        except Exception:
            log.exception("engine: task_changed %s/%s failed", job_id, task.get("id"))

    def schedule_changed(self, account: str, schedule: Doc) -> None:
        try:
            super().schedule_changed(account, schedule)
        except Exception:
            log.exception("engine: schedule_changed %s failed", schedule.get("id"))

    # --- hooks that need every part ------------------------------------------------------------

    def perform_node(self, account: str, instruction: ins.Instruction) -> None:
        if isinstance(instruction, ins.FinishCertificateDeletion):
            self.finish_certificate_deletion(account, instruction)
            return
        if isinstance(instruction, ins.RemovePoolNodes):
            pool = self.store.get("pool", account, instruction.pool_id)
            prt = self.pools.get((account, instruction.pool_id.lower()))
            if pool is not None:
                prt = self.pool_rt(account, pool)
            if prt is not None:
                self.delete_pool(prt)
            return
        node = self._node_of(account, getattr(instruction, "pool_id", ""), getattr(instruction, "node_id", ""))
        if node is None:
            return
        if isinstance(instruction, ins.RemoveNode):
            self.start_removal(node, instruction.requeue or "requeue")
        elif isinstance(instruction, ins.RestartNode):
            self.spawn(self.restart_node(node, instruction.reimage, instruction.option or "requeue"),
                       f"restart {node.node_id}")
        elif isinstance(instruction, ins.StopNodeTasks):
            self.stop_node_tasks(node, instruction.option)
        elif isinstance(instruction, ins.PreemptNode):
            self.preempt(node)

    def _node_of(self, account: str, pool_id: str, node_id: str) -> NodeRt | None:
        node = self.nodes.get(node_id)
        if node is not None and node.account == account and node.pool == (account, pool_id.lower()):
            return node
        return None

    # --- recovery ------------------------------------------------------------------------------

    def _recover(self) -> None:
        """Rebuild the in-memory index from the store; requeue what was running (exactly once)."""
        now = now_iso()
        for account, _, pool in list(self.store.every("pool")):
            self.pool_rt(account, pool)
        for account, parent, node in list(self.store.every("node")):
            prt = self.pools.get((account, parent))
            if prt is None:
                self.store.delete("node", account, str(node["id"]), parent)
                continue
            self.node_rt(prt, node)
        for account, _, job in list(self.store.every("job")):
            if job.get("state") != _J.COMPLETED.value:
                self._adopt_job(account, job)
        changed = self._recover_tasks(now)
        for nrt in list(self.nodes.values()):
            nrt.busy = "booting"
            self.save_node(nrt)
        self.write_out()
        EVENTS.recovered(len(self.pools), len(self.nodes), len(self.jobs), changed)
        self._resume(now)

    def _recover_tasks(self, now: str) -> int:
        changed: list[tuple[str, str, Doc]] = []
        for account, job_key, doc in self.store.unfinished_tasks():
            job = self.jobs.get((account, job_key))
            if job is None:
                continue
            if recovery.recover_task(doc, job.job_id, now):
                touch(doc, now)
                changed.append((account, job_key, doc))
            self.enqueue(job, doc)
        for i in range(0, len(changed), _RECOVERY_BATCH):
            self.store.update_tasks(changed[i: i + _RECOVERY_BATCH])
        return len(changed)

    def _resume(self, now: str) -> None:
        """Carry on with what was under way: nodes boot again, pools and jobs finish their changes."""
        for node in list(self.nodes.values()):
            node.busy = ""
            action = recovery.recover_node(node.doc, now)
            self.save_node(node)
            if action == recovery.REMOVE:
                self.start_removal(node, "requeue")
            elif action == recovery.BOOT:
                self.spawn(self.boot(node), f"boot {node.node_id}")
            else:
                self.spawn(self.restart_node(node, action == recovery.REIMAGE, "requeue"), f"restart {node.node_id}")
        for prt in list(self.pools.values()):
            if prt.doc.get("state") == states.PoolState.DELETING.value:
                self.delete_pool(prt)
            else:
                self.resize(prt)
        for job in list(self.jobs.values()):
            self._resume_job(job)
        self.resume_schedules()
        self.resume_certificate_deletions()
        self.kick()

    def _resume_job(self, job: JobRt) -> None:
        state = job.doc.get("state")
        if state in (_J.TERMINATING.value, _J.DELETING.value):
            reason = str((job.doc.get("executionInfo") or {}).get("terminateReason") or "UserTerminate")
            self.end_job(job, reason)
        elif state == _J.DISABLING.value:
            self.disable_job(job, "requeue")
        elif state == _J.ENABLING.value:
            states.JOB.apply(job.doc, _J.ACTIVE, states.Context(now_iso()))
            job.sched.active = True
            self.save_entity("job", job.account, job.doc)
        elif state == _J.ACTIVE.value:
            self.check_all_complete(job)
        self.kick(job.sched.pool)
