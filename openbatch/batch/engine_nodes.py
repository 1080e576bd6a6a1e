"""The engine's node side: pools get nodes, nodes boot and run their start task, restart, leave.

Node documents are created here (kind "node", parent = pool id) and change state only through
``states.NODE``: creating -> starting -> waitingforstarttask -> idle | starttaskfailed, idle <->
running as tasks come and go, offline while scheduling is disabled, rebooting / reimaging ->
starting (start task again), unusable when the node's directory vanished, leavingpool -> gone.
Allocation is immediate: a resize creates or removes nodes and returns the pool to steady.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from datetime import UTC, datetime

from openbatch.batch.domain import applications, states
from openbatch.batch.domain import execution as ex
from openbatch.batch.domain.common import now_iso
from openbatch.batch.domain.pools import cluster_of
from openbatch.batch.engine_certificates import node_certificates
from openbatch.batch.engine_core import Doc, EngineCore, Key, NodeRt, PoolRt, Run, key_of
from openbatch.common.eventlog import EVENTS
from openbatch.compute.base import START_TASK, RunSpec

log = logging.getLogger("openbatch.engine")

_N = states.NodeState
_UP = frozenset({_N.IDLE.value, _N.RUNNING.value, _N.OFFLINE.value})
_KEEP_TASKS = ("taskcompletion", "retaineddata")
HEALTH_INTERVAL = 5.0
_NODE_INDEX = re.compile(r"^tvm-(\d+)_(\d+)-")


class EngineNodes(EngineCore):
    """Pools and nodes (mixed into Engine)."""

    # --- runtime objects -----------------------------------------------------------------------

    def pool_rt(self, account: str, pool: Doc) -> PoolRt:
        key = key_of(account, str(pool["id"]))
        prt = self.pools.get(key)
        if prt is None:
            prt = self.pools[key] = PoolRt(account, key, pool, serial=f"{secrets.randbelow(9_000_000_000) + 10**9}")
        prt.doc = pool
        fill = ((pool.get("taskSchedulingPolicy") or {}).get("nodeFillType") or "spread").lower()
        self.scheduler.set_pool(key, fill)
        return prt

    def node_rt(self, prt: PoolRt, doc: Doc) -> NodeRt:
        node_id = str(doc["id"])
        found = _NODE_INDEX.match(node_id)
        if found:
            prt.serial = prt.serial if prt.nodes else found.group(1)
            prt.counter = max(prt.counter, int(found.group(2)))
        nrt = self.nodes.get(node_id)
        if nrt is None:
            nrt = self.nodes[node_id] = NodeRt(prt.account, prt.key, node_id, doc)
            prt.nodes[node_id] = nrt
            self.scheduler.add_node(prt.key, node_id, int(prt.doc.get("taskSlotsPerNode") or 1))
        nrt.doc = doc
        return nrt

    def _new_node_doc(self, prt: PoolRt, dedicated: bool) -> Doc:
        stamp = datetime.now(UTC).strftime("%Y%m%dt%H%M%Sz")
        prt.counter += 1
        node_id = f"tvm-{prt.serial}_{prt.counter}-{stamp}"
        while node_id in self.nodes:
            prt.counter += 1
            node_id = f"tvm-{prt.serial}_{prt.counter}-{stamp}"
        now = now_iso()
        pool = prt.doc
        return {
            "id": node_id, "poolId": pool["id"],
            # from the pool's, which was built from the host its add request named (Azure: the account's)
            "url": f"{pool.get('url') or self.settings.batch_url + '/pools/' + str(pool['id'])}/nodes/{node_id}",
            "state": _N.CREATING.value, "schedulingState": "enabled", "stateTransitionTime": now,
            "allocationTime": now, "ipAddress": "127.0.0.1", "affinityId": f"TVM:{node_id}",
            "vmSize": pool.get("vmSize", ""), "totalTasksRun": 0, "runningTasksCount": 0,
            "runningTaskSlotsCount": 0, "totalTasksSucceeded": 0, "isDedicated": dedicated,
            "endpointConfiguration": {"inboundEndpoints": []},
            "nodeAgentInfo": {"version": "1.0.0", "lastUpdateTime": now},
            "virtualMachineInfo": {"imageReference": (pool.get("virtualMachineConfiguration") or {})
                                   .get("imageReference", {})},
        }

    # --- hooks: pools --------------------------------------------------------------------------

    def pool_changed(self, account: str, pool: Doc) -> None:
        prt = self.pool_rt(account, pool)
        if pool.get("state") == states.PoolState.DELETING.value:
            self.delete_pool(prt)
            return
        for doc in self.store.all("node", account, str(pool["id"])):
            self.sync_node(self.node_rt(prt, doc))
        self.resize(prt)
        self.kick(prt.key)

    def sync_node(self, node: NodeRt) -> None:
        """Adopt what the API changed on a node (scheduling enabled/disabled)."""
        doc = node.doc
        if not node.busy and doc.get("state") == _N.OFFLINE.value and doc.get("schedulingState") == "enabled":
            self._set_state(node, _N.RUNNING if node.tasks else _N.IDLE)
        self.settle_node(node)

    def usable(self, node: NodeRt) -> bool:
        doc = node.doc
        return (not node.busy and doc.get("state") in (_N.IDLE.value, _N.RUNNING.value)
                and doc.get("schedulingState", "enabled") == "enabled")

    def settle_node(self, node: NodeRt) -> None:
        """idle <-> running <-> offline as tasks come and go; tell the scheduler whether it may use the node."""
        state = node.doc.get("state")
        if not node.busy and state in _UP:
            disabled = node.doc.get("schedulingState") == "disabled"
            want = _N.RUNNING if node.tasks else (_N.OFFLINE if disabled else _N.IDLE)
            if state != want.value and states.NODE.allowed(node.doc, want):
                self._set_state(node, want)
        self.scheduler.set_node_usable(node.pool, node.node_id, self.usable(node))

    def _set_state(self, node: NodeRt, to: states.NodeState, reason: str = "") -> None:
        if node.doc.get("state") == to.value:
            return
        if not states.NODE.allowed(node.doc, to):  # e.g. the API moved it meanwhile: keep its word
            log.warning("node %s: no transition %s -> %s; left as it is", node.node_id, node.doc.get("state"), to.value)
            return
        old = node.doc.get("state")
        states.NODE.apply(node.doc, to, states.Context(now_iso(), reason=reason))
        self.save_node(node)
        EVENTS.node_state(node.pool_id, node.node_id, old, to.value, node.doc.get("startTaskInfo"))

    # --- resize --------------------------------------------------------------------------------

    def resize(self, prt: PoolRt) -> None:
        alloc = prt.doc.get("allocationState", "steady")
        if alloc == states.AllocationState.STOPPING.value:
            states.ALLOCATION.apply(prt.doc, states.AllocationState.STEADY, states.Context(now_iso()))
            self._count_nodes(prt)
            return
        if alloc != states.AllocationState.RESIZING.value and self._counts_match(prt):
            return
        if prt.resizing is not None and not prt.resizing.done():
            prt.again = True
            return
        prt.resizing = self.spawn(self._resize(prt), f"resize {prt.key}")

    def _targets(self, prt: PoolRt) -> tuple[int, int]:
        return int(prt.doc.get("targetDedicatedNodes") or 0), int(prt.doc.get("targetLowPriorityNodes") or 0)

    def _staying(self, prt: PoolRt, dedicated: bool) -> list[NodeRt]:
        return [n for n in prt.nodes.values() if n.busy != "removing" and
                n.doc.get("state") != _N.LEAVING_POOL.value and bool(n.doc.get("isDedicated", True)) == dedicated]

    def _counts_match(self, prt: PoolRt) -> bool:
        dedicated, low = self._targets(prt)
        return len(self._staying(prt, True)) == dedicated and len(self._staying(prt, False)) == low

    async def _resize(self, prt: PoolRt) -> None:
        while not prt.deleting:
            prt.again = False
            option = str(prt.doc.get("_nodeDeallocationOption") or "requeue").lower()
            for dedicated, want in zip((True, False), self._targets(prt), strict=True):
                have = self._staying(prt, dedicated)
                for _ in range(want - len(have)):
                    self._create_node(prt, dedicated)
                extra = sorted(have, key=lambda n: (n.tasks, n.doc.get("state") != _N.IDLE.value))
                for node in extra[: max(0, len(have) - want)]:
                    self.start_removal(node, option)
            leaving = [n.removal for n in prt.nodes.values() if n.removal is not None and not n.removal.done()]
            self._count_nodes(prt)
            self.kick(prt.key)
            if leaving:
                await asyncio.gather(*leaving, return_exceptions=True)
            if not prt.again:
                break
        if not prt.deleting and prt.doc.get("allocationState") != states.AllocationState.STEADY.value:
            states.ALLOCATION.apply(prt.doc, states.AllocationState.STEADY, states.Context(now_iso()))
        self._count_nodes(prt)
        if not prt.deleting:
            EVENTS.pool_resized(str(prt.doc.get("id")), prt.doc.get("currentDedicatedNodes"),
                                prt.doc.get("currentLowPriorityNodes"), prt.doc.get("resizeErrors"))
        self.kick(prt.key)

    def _count_nodes(self, prt: PoolRt) -> None:
        if prt.deleting or self.pools.get(prt.key) is not prt:
            return
        nodes = [n for n in prt.nodes.values() if n.busy != "removing"]
        prt.doc["currentDedicatedNodes"] = sum(1 for n in nodes if n.doc.get("isDedicated", True))
        prt.doc["currentLowPriorityNodes"] = sum(1 for n in nodes if not n.doc.get("isDedicated", True))
        self.save_entity("pool", prt.account, prt.doc)

    def _create_node(self, prt: PoolRt, dedicated: bool) -> NodeRt:
        doc = self._new_node_doc(prt, dedicated)
        self.save_entity("node", prt.account, doc, str(prt.doc["id"]))
        node = self.node_rt(prt, doc)
        node.busy = "booting"
        self.spawn(self.boot(node), f"boot {node.node_id}")
        return node

    # --- boot and start task -------------------------------------------------------------------

    def _booting(self, node: NodeRt) -> bool:
        """Still the node's boot that runs (not removed, restarted or made unusable meanwhile)."""
        return node.busy == "booting" and self.nodes.get(node.node_id) is node

    async def boot(self, node: NodeRt) -> None:
        """creating/starting -> (start task) -> idle | starttaskfailed; also after reboot/reimage."""
        node.busy = "booting"
        prt = self.pools.get(node.pool)
        refs, certificates = node_certificates(self.store, node.account, prt.doc if prt else {})
        try:
            slots = int((prt.doc.get("taskSlotsPerNode") if prt else None) or 1)
            info = await self.compute.create_node(node.account, node.pool_id, node.node_id, certificates, slots=slots,
                                                  cluster=cluster_of(prt.doc) if prt else "",
                                                  users=(prt.doc.get("userAccounts") if prt else None) or [],
                                                  inter_node=bool(prt and prt.doc.get("enableInterNodeCommunication")))
        except OSError as exc:
            node.busy = ""
            self.node_unusable(node, f"The node could not be created: {exc}")
            return
        if not self._booting(node):
            return
        node.doc["ipAddress"] = info.ip_address
        if refs:
            node.doc["certificateReferences"] = refs  # installed now: in use until the node restarts
        else:
            node.doc.pop("certificateReferences", None)
        if node.doc.get("state") != _N.STARTING.value:
            self._set_state(node, _N.STARTING)
        node.doc["lastBootTime"] = now_iso()
        node.doc.pop("startTaskInfo", None)
        node.doc.pop("errors", None)
        prt = self.pools.get(node.pool)
        start = prt.doc.get("startTask") if prt else None
        if not start or not start.get("commandLine"):
            node.doc.pop("startTask", None)
            self._booted(node, _N.IDLE)
            return
        node.doc["startTask"] = start
        if not start.get("waitForSuccess", True):
            self._booted(node, _N.IDLE)
            self.spawn(self.run_start_task(node, start), f"starttask {node.node_id}")
            return
        self._set_state(node, _N.WAITING_FOR_START_TASK)
        self.kick()
        ok = await self.run_start_task(node, start)
        if ok is not None and self._booting(node):
            self._booted(node, _N.IDLE if ok else _N.START_TASK_FAILED)

    def _booted(self, node: NodeRt, to: states.NodeState) -> None:
        node.busy = ""
        if to is _N.IDLE and node.doc.get("schedulingState") == "disabled":
            to = _N.OFFLINE
        self._set_state(node, to)
        self.settle_node(node)
        self.kick(node.pool)

    def _start_spec(self, node: NodeRt, start: Doc) -> RunSpec:
        prt = self.pools.get(node.pool)
        level, identity = ex.elevation_of(start.get("userIdentity"), (prt.doc if prt else {}).get("userAccounts"))
        packages, bad_package = applications.run_packages(self.ctx, node.account, prt.doc if prt else None)
        return RunSpec(
            kind=START_TASK, key=START_TASK, account=node.account, pool_id=node.pool_id, node_id=node.node_id,
            command_line=str(start.get("commandLine", "")), resource_files=start.get("resourceFiles") or [],
            environment=ex.environment(ex.node_environment(self.ctx, node.account, node.pool_id),
                                       start.get("environmentSettings")), elevation=level, user_identity=identity,
            max_wall_clock=None, is_dedicated=bool(node.doc.get("isDedicated", True)),
            app_packages=packages, refusal=bad_package,
        )

    async def run_start_task(self, node: NodeRt, start: Doc) -> bool | None:
        """Run the start task with its retries; True/False as it ended, None if the node stopped it."""
        info: Doc = {"state": states.StartTaskState.RUNNING.value, "startTime": now_iso(), "retryCount": 0}
        node.doc["startTaskInfo"] = info
        self.save_node(node)
        run = Run(START_TASK, node, START_TASK, spec=self._start_spec(node, start), finished=self.new_future())
        while True:
            outcome = await self.attempt(run)
            if outcome is None or node.doc.get("startTaskInfo") is not info:
                run.done()
                return None
            now = now_iso()
            if ex.should_retry(info, start, exit_code=outcome.exit_code, failed=not outcome.succeeded,
                               preprocessing=outcome.preprocessing, upload_failed=outcome.upload_failed,
                               timed_out=outcome.timed_out, killed=outcome.killed):
                ex.record_retry(info, now)
                states.START_TASK.apply(info, states.StartTaskState.RUNNING, states.Context(now))
                info.pop("_startTaskTransitionTime", None)
                self.save_node(node)
                self.kick()
                continue
            states.START_TASK.apply(info, states.StartTaskState.COMPLETED, states.Context(now))
            info.pop("_startTaskTransitionTime", None)
            ex.record_result(info, now=now, exit_code=outcome.exit_code, failure_info=outcome.failure)
            self.save_node(node)
            self.kick()
            run.done()
            return outcome.succeeded

    # --- unusable, restart, removal ------------------------------------------------------------

    def node_unusable(self, node: NodeRt, reason: str) -> None:
        if node.doc.get("state") in (_N.UNUSABLE.value, _N.LEAVING_POOL.value) or node.busy == "removing":
            return
        if states.NODE.allowed(node.doc, _N.UNUSABLE):
            self._set_state(node, _N.UNUSABLE)
        node.doc["errors"] = [{"code": "NodeUnusable", "message": reason, "errorDetails": []}]
        node.busy = ""
        self.scheduler.set_node_usable(node.pool, node.node_id, False)
        for run in list(node.runs.values()):
            if run.qt is not None:
                self.stop_task(run, "requeue")
        self.save_node(node)
        self.kick()

    def _stop_runs(self, node: NodeRt, option: str, other: str) -> list[Run]:
        """Stop the node's runs as ``option`` says; returns the task runs left to finish on their own."""
        left: list[Run] = []
        for run in list(node.runs.values()):
            if run.qt is None:
                run.stop = run.stop or other
                if run.key == START_TASK:
                    node.doc.pop("startTaskInfo", None)
                continue
            if option in _KEEP_TASKS:
                left.append(run)
            else:
                self.stop_task(run, "nodeterminate" if option == "terminate" else other)
        return left

    async def _drain(self, node: NodeRt, option: str, other: str) -> None:
        """Deal with what runs on a node before it restarts or leaves, as ``option`` says."""
        self.scheduler.set_node_usable(node.pool, node.node_id, False)
        waiting = self._stop_runs(node, option, other)
        for run in waiting:
            if run.finished is None:
                run.finished = self.new_future()
        await asyncio.gather(*(r.finished for r in waiting if r.finished is not None))
        self._stop_runs(node, "requeue", other)
        stopped = [r for r in node.runs.values() if r.active]
        for run in stopped:
            if run.finished is None:
                run.finished = self.new_future()

    async def restart_node(self, node: NodeRt, reimage: bool, option: str) -> None:
        if node.busy in ("restarting", "removing"):
            return
        node.busy = "restarting"
        target = _N.REIMAGING if reimage else _N.REBOOTING
        if node.doc.get("state") != target.value and states.NODE.allowed(node.doc, target):
            self._set_state(node, target, option)
        self.save_node(node)
        self.kick()
        await self._drain(node, option.lower(), "restart")
        pending = [r.finished for r in node.runs.values() if r.finished is not None]
        await self.compute.restart_node(node.pool_id, node.node_id, reimage)
        await asyncio.gather(*pending, return_exceptions=True)
        self.forget_node_jobs(node, reimage)
        if self.nodes.get(node.node_id) is not node:
            return
        self._set_state(node, _N.STARTING)
        await self.boot(node)

    def start_removal(self, node: NodeRt, option: str) -> asyncio.Task[None]:
        if node.removal is None:
            node.removal = self.spawn(self._remove_node(node, option), f"remove {node.node_id}")
        return node.removal

    async def _remove_node(self, node: NodeRt, option: str) -> None:
        node.busy = "removing"
        if node.doc.get("state") != _N.LEAVING_POOL.value and states.NODE.allowed(node.doc, _N.LEAVING_POOL):
            self._set_state(node, _N.LEAVING_POOL, option)
        self.kick()
        await self._drain(node, option.lower(), "remove")
        pending = [r.finished for r in node.runs.values() if r.finished is not None]
        try:
            await self.compute.remove_node(node.pool_id, node.node_id)
        except OSError as exc:
            log.warning("removing node %s: %s", node.node_id, exc)
        await asyncio.gather(*pending, return_exceptions=True)
        self.forget_node_jobs(node, True)
        self._forget_node(node)

    def _forget_node(self, node: NodeRt) -> None:
        prt = self.pools.get(node.pool)
        self.nodes.pop(node.node_id, None)
        self.scheduler.remove_node(node.pool, node.node_id)
        self._dirty_nodes.pop(node.node_id, None)
        if prt is not None:
            prt.nodes.pop(node.node_id, None)
            if not prt.deleting:
                self.store.delete("node", node.account, node.node_id, node.pool_id)
                self._count_nodes(prt)
        self.kick()

    def delete_pool(self, prt: PoolRt) -> None:
        if prt.deleting:
            return
        prt.deleting = True
        self.spawn(self._delete_pool(prt), f"delete pool {prt.key}")

    async def _delete_pool(self, prt: PoolRt) -> None:
        removals = [self.start_removal(n, "requeue") for n in list(prt.nodes.values())]
        await asyncio.gather(*removals, return_exceptions=True)
        await self.deletion_passage(str(prt.doc.get("stateTransitionTime") or now_iso()))
        pool_id = str(prt.doc["id"])
        self.store.delete_children("node", prt.account, pool_id)
        self.store.delete("pool", prt.account, pool_id)
        self.scheduler.remove_pool(prt.key)
        if self.pools.get(prt.key) is prt:
            del self.pools[prt.key]
        self.kick()

    def stop_node_tasks(self, node: NodeRt, option: str) -> None:
        """Scheduling was disabled with requeue / terminate: end what runs there."""
        self.scheduler.set_node_usable(node.pool, node.node_id, False)
        for run in list(node.runs.values()):
            if run.qt is not None:
                self.stop_task(run, "nodeterminate" if option == "terminate" else "requeue")

    # --- what the provider reports (NodeEvents) ------------------------------------------------

    def node_lost(self, node_id: str, reason: str) -> None:
        """The node's machine or worker is gone (a Dask worker died): unusable, its tasks requeued."""
        node = self.nodes.get(node_id)
        if node is not None and not self.stopping:
            self.node_unusable(node, reason)

    def node_back(self, node_id: str) -> None:
        """A lost node's worker is back: it reboots, as a recovered Azure VM does (start task again)."""
        node = self.nodes.get(node_id)
        if node is None or self.stopping or node.busy or node.doc.get("state") != _N.UNUSABLE.value:
            return
        self.spawn(self.restart_node(node, False, "requeue"), f"restart {node.node_id}")

    # --- health --------------------------------------------------------------------------------

    async def watch_nodes(self) -> None:
        """Every few seconds: a node whose directory vanished becomes unusable (never a crash)."""
        while not self.stopping:
            await asyncio.sleep(HEALTH_INTERVAL)
            for node in list(self.nodes.values()):
                if node.busy or node.doc.get("state") in (_N.UNUSABLE.value, _N.LEAVING_POOL.value):
                    continue
                if not self.compute.node_ok(node.node_id):
                    self.node_unusable(node, "The node's directory is missing.")

    def pool_key_of(self, node_id: str) -> Key | None:
        node = self.nodes.get(node_id)
        return node.pool if node else None
