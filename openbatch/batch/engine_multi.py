"""The engine's multi-instance tasks (MPI): one task on several nodes at once, as Azure runs it.

A task with ``multiInstanceSettings`` asks for ``numberOfInstances`` nodes. It is scheduled only in
a pool with ``enableInterNodeCommunication`` and one task slot per node, and only when that many
nodes are free at once (scheduler.py); until then it stays ``active`` (Azure keeps it waiting too,
also when the pool has fewer nodes than it asks for). Its first node is the primary's: the task's
``nodeInfo``, ``executionInfo``, resource files (downloaded on the primary only), output files
(uploaded from the primary) and stdout are the primary's. The other nodes run its subtasks,
listed by ``GET .../subtasksinfo`` with their node, state and exit code.

How it runs: the ``commonResourceFiles`` are downloaded into the task directory
(``AZ_BATCH_TASK_SHARED_DIR``) on every node and the ``coordinationCommandLine`` runs on every node
at once; when it succeeded everywhere, the task's command line runs on the primary. The subtasks
stay running until the primary's command ends, then complete with their coordination command's exit
code; the task completes as the primary's command did. A coordination command that fails on any
node fails the task (retried up to ``maxTaskRetryCount`` on the same nodes, as Azure does). Every run
gets ``AZ_BATCH_HOST_LIST`` / ``AZ_BATCH_NODE_LIST`` / ``AZ_BATCH_MASTER_NODE`` /
``AZ_BATCH_IS_CURRENT_NODE_MASTER`` / ``AZ_BATCH_TASK_SHARED_DIR``. Nodes that share one address
(every node of the local provider is 127.0.0.1) are listed by host name instead (the node id in
lower case; node/rshagent.py), and the runs get ``OMPI_MCA_plm_rsh_agent`` pointing at openbatch's
rsh agent, so Open MPI's ``mpirun -host $AZ_BATCH_HOST_LIST`` starts its ranks on those nodes
without ssh. Terminating the task, a requeue, or a reboot / removal / loss of any of its nodes ends
it on every node.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from dataclasses import dataclass

from openbatch.batch.domain import execution as ex
from openbatch.batch.domain.common import now_iso
from openbatch.batch.engine_core import Doc, EngineCore, JobRt, NodeRt, Run
from openbatch.batch.scheduler import QueuedTask
from openbatch.compute.base import NodeGone, RunOutcome, RunSpec
from openbatch.node import rshagent

log = logging.getLogger("openbatch.engine")

_HOST_CHARS = re.compile(r"[^a-z0-9-]")


def instances_of(doc: Doc) -> int:
    """numberOfInstances of a multi-instance task (1 when omitted); 0 for an ordinary task."""
    multi = doc.get("multiInstanceSettings")
    if not isinstance(multi, dict):
        return 0
    count = multi.get("numberOfInstances", 1)
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 1


def host_name(node_id: str) -> str:
    """The host name of a node: its id in lower case, characters a host name cannot have as '-'."""
    name = _HOST_CHARS.sub("-", node_id.lower()).strip("-")[:63].strip("-")
    return name or "node"


def multi_ok(pool: Doc) -> bool:
    """Whether a pool can run multi-instance tasks (Azure: inter-node communication, 1 slot per node)."""
    return bool(pool.get("enableInterNodeCommunication")) and int(pool.get("taskSlotsPerNode") or 1) == 1


@dataclass(eq=False)
class MultiRun:
    nodes: list[NodeRt]  # the primary's first
    hosts: list[str]  # AZ_BATCH_HOST_LIST entries, in the same order
    by_name: bool  # hosts are node host names (the nodes share one address)


class EngineMulti(EngineCore):
    """Multi-instance tasks (mixed into Engine)."""

    # --- scheduling ----------------------------------------------------------------------------

    def queue_multi(self, job: JobRt, qt: QueuedTask, doc: Doc) -> None:
        """A task is queued: a multi-instance one asks the scheduler for its nodes."""
        qt.instances = instances_of(doc)
        # What an earlier attempt's subtasks were (running when the server was killed, say) is no
        # more: the next attempt lists its own (saved with the task by whoever queues it).
        doc.pop("_subtasks", None)
        if qt.instances and job.sched.pool is not None:
            pool = self.pools.get(job.sched.pool)
            sp = self.scheduler.pools.get(job.sched.pool)
            if pool is not None and sp is not None:
                sp.multi_ok = multi_ok(pool.doc)

    def assign_multi(self, run: Run, qt: QueuedTask) -> None:
        """The scheduler gave a multi-instance task its nodes: the others are taken too."""
        nodes = [run.node]
        for node_id in qt.extra:
            node = self.nodes.get(node_id)
            if node is None:
                continue
            nodes.append(node)
            node.runs[run.key] = run
            node.tasks += 1
            node.slots_used += qt.slots
            self._node_counts(node)
        ips = [str(n.doc.get("ipAddress") or "") for n in nodes]
        by_name = len(set(ips)) != len(ips) or not all(ips)
        run.multi = MultiRun(nodes, [host_name(n.node_id) for n in nodes] if by_name else ips, by_name)

    def release_multi(self, run: Run) -> None:
        """The task ended: its other nodes are free again."""
        mr: MultiRun = run.multi
        slots = run.qt.slots if run.qt is not None else 1
        for node in mr.nodes[1:]:
            if node.runs.get(run.key) is not run:
                continue
            del node.runs[run.key]
            node.tasks = max(0, node.tasks - 1)
            node.slots_used = max(0, node.slots_used - slots)
            self._node_counts(node)
            self.kick(node.pool)

    def kill_multi(self, run: Run) -> None:
        mr: MultiRun = run.multi
        for index, node in enumerate(mr.nodes):
            self.compute.kill(node.node_id, f"{run.key}#{index}")
        self.compute.kill(run.node.node_id, run.key)

    # --- running -------------------------------------------------------------------------------

    async def execute_multi(self, run: Run) -> RunOutcome | None:
        """Coordination command on every node, then the task's command on the primary."""
        assert run.spec is not None and run.doc is not None
        spec, doc, mr = run.spec, run.doc, run.multi
        if spec.refusal is not None:
            return await self.compute.run(spec)
        settings = doc.get("multiInstanceSettings") or {}
        env = list(spec.environment)
        if mr.by_name:
            env = [*rshagent.environment(mr.hosts, [n.node_id for n in mr.nodes]), *env]
        subs = self._start_subtasks(run)
        specs = [dataclasses.replace(
            spec, key=f"{run.key}#{i}", node_id=node.node_id, command_line=str(settings.get("coordinationCommandLine")
                                                                               or ""),
            resource_files=[], output_files=[], common_resource_files=list(settings.get("commonResourceFiles") or []),
            instance_hosts=mr.hosts, instance_index=i, environment=env,
            is_dedicated=bool(node.doc.get("isDedicated", True))) for i, node in enumerate(mr.nodes)]
        results = await asyncio.gather(*(self._coordinate(s) for s in specs))
        failed = self._coordination_failure(run, results)
        if failed is not None or run.stop:
            self._end_subtasks(run, subs, results)
            return failed if failed is not None else (results[0] or None)
        try:
            outcome: RunOutcome | None = await self.compute.run(dataclasses.replace(
                spec, instance_hosts=mr.hosts, instance_index=0, environment=env))
        finally:
            self._end_subtasks(run, subs, results)
        return outcome

    async def _coordinate(self, spec: RunSpec) -> RunOutcome | None:
        try:
            return await self.compute.run(spec)
        except NodeGone:
            return None
        except Exception as exc:
            log.exception("running the coordination command of %s on %s failed", spec.key, spec.node_id)
            t = time.time()
            return RunOutcome(None, t, t, preprocessing=True, failure=ex.failure(
                ex.SERVER_ERROR, "TaskFailedToStart", f"The coordination command could not be started: {exc}"))

    def _coordination_failure(self, run: Run, results: list[RunOutcome | None]) -> RunOutcome | None:
        """The first failed coordination command (the task fails with it); a node that is gone makes
        it unusable (its runs, this task among them, are requeued)."""
        mr: MultiRun = run.multi
        for node, result in zip(mr.nodes, results, strict=True):
            if result is None and not run.stop:
                self.node_unusable(node, "The node's directory is missing.")
        if run.stop:
            return None
        for result in results:
            if result is not None and not result.succeeded:
                return result
        return None

    def _start_subtasks(self, run: Run) -> list[Doc]:
        assert run.doc is not None and run.job is not None
        mr: MultiRun = run.multi
        now, job = now_iso(), self.jobs.get(run.job)
        job_id = job.job_id if job is not None else run.job[1]
        subs = [{"id": i, "nodeInfo": self.node_info(node, job_id, str(run.doc["id"])), "state": "running",
                 "stateTransitionTime": now, "startTime": now} for i, node in enumerate(mr.nodes) if i > 0]
        run.doc["_subtasks"] = subs
        self.save_task(run.node.account, run.job[1], run.doc)
        self.kick()
        return subs

    def _end_subtasks(self, run: Run, subs: list[Doc], results: list[RunOutcome | None]) -> None:
        assert run.doc is not None and run.job is not None
        now = now_iso()
        for sub, result in zip(subs, results[1:], strict=True):
            sub.update(previousState=sub["state"], previousStateTransitionTime=sub["stateTransitionTime"],
                       state="completed", stateTransitionTime=now)
            failure = result.failure if result is not None else ex.failure(
                ex.SERVER_ERROR, "TaskEnded", "The subtask's node was lost.")
            ex.record_result(sub, now=now, exit_code=result.exit_code if result is not None else None,
                             failure_info=failure)
        if run.doc.get("_subtasks") is subs:
            self.save_task(run.node.account, run.job[1], run.doc)
            self.kick()

    # --- provided by the other parts -----------------------------------------------------------

    def _node_counts(self, node: NodeRt) -> None:
        raise NotImplementedError

    def node_info(self, node: NodeRt, job_id: str, task_id: str) -> Doc:
        raise NotImplementedError
