"""Dask compute provider: a node is a Dask worker; the node's work runs inside that worker.

``--compute dask://HOST:PORT`` attaches to a running Dask scheduler; ``--compute dask-local:N``
starts a ``distributed.LocalCluster`` of N worker processes on this machine. That is the default
cluster; ``--dask-clusters FILE`` names more (schedulers to attach to, or cluster managers such as
``distributed.SSHCluster`` or dask-jobqueue's to start), and a pool whose metadata has
``openbatch.cluster`` = NAME puts its nodes on that one (compute/dask_cluster.py: one ``Cluster``
each, which grows its manager when a node finds no free worker and retires free workers as nodes
leave). The server registers ``NodeAgent`` (compute/dask_agent.py) as a worker plugin on each
cluster: every worker, present and future, runs a ``NodeHost`` — the local provider's node code —
under its node root, and answers the provider's calls over Dask's own comms, directly (no task
graph): one long-lived stream per worker, messages batched both ways (compute/dask_stream.py), so
many runs start and end per network round trip.

A node claims one free worker of its cluster whose ``slots`` resource covers the pool's
taskSlotsPerNode (a worker that held this node id for a previous server is preferred) and takes
its IP address from the worker's address. Membership is event-driven: the scheduler's
``add-worker`` / ``remove-worker`` events (topic ``all``) reach the provider at once; a worker
that leaves makes its node ``lost`` (every call waiting on it fails with ``NodeGone``, the engine
requeues its tasks and marks the node unusable), and when a worker of the same name comes back
(a nanny restarting a killed worker process) the node is ``back`` and the engine reboots it. A
call whose connection breaks fails the same way, so nothing waits on a dead worker, whether or
not the scheduler is still there to say it died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from openbatch.compute.base import (
    Doc,
    FileAccessError,
    NodeEvents,
    NodeFile,
    NodeGone,
    NodeInfo,
    RunOutcome,
    RunSpec,
)
from openbatch.compute.dask_agent import READ_MAX
from openbatch.compute.dask_cluster import DEFAULT, Cluster, ClusterSpec, load_clusters, parse_target
from openbatch.compute.local import auto_storage_url
from openbatch.compute.nodehost import relative_task_dir
from openbatch.config import Settings
from openbatch.node.certs import NodeCertificate

log = logging.getLogger("openbatch.compute.dask")

NODE_WAIT = 120.0  # seconds a new node waits for a free worker before it is unusable
AGENT_WAIT = 0.05  # a worker that just joined installs the agent a moment after the scheduler says so


@dataclass(eq=False)
class _Claim:
    """A node and the worker of ``cluster`` it is: ``address`` None while that worker is gone."""

    node_id: str
    pool_id: str
    cluster: Cluster
    worker: str | None = None  # the worker's name (stable across a nanny's restarts)
    slots: int = 1  # the pool's taskSlotsPerNode: the worker's `slots` resource must be at least this
    address: str | None = None
    lost: asyncio.Future[None] | None = None
    keys: set[str] = field(default_factory=set)


class DaskProvider:
    """See the module docstring."""

    def __init__(self, settings: Settings, target: str | None = None):
        self.settings = settings
        specs = {DEFAULT: parse_target(target or settings.compute), **load_clusters(settings.dask_clusters)}
        self.clusters = {name: Cluster(spec, self._node_root(spec), settings.batch_url, self)
                         for name, spec in specs.items()}
        self.session = secrets.token_hex(8)
        self._events: NodeEvents | None = None
        self._claims: dict[str, _Claim] = {}

    def _node_root(self, spec: ClusterSpec) -> str | None:
        """Where a cluster's node directories live on its workers' hosts (None: each worker's local directory)."""
        if spec.node_root or self.settings.dask_node_root:
            return spec.node_root or self.settings.dask_node_root
        return str(self.settings.data_dir / "nodes") if spec.local else None

    # --- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            for cluster in self.clusters.values():
                await cluster.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for claim in self._claims.values():
            self._lose(claim)
        for cluster in self.clusters.values():
            await cluster.stop()

    def attach(self, events: NodeEvents) -> None:
        self._events = events

    # --- membership (what the clusters tell) ---------------------------------------------------

    def _of(self, cluster: Cluster) -> list[_Claim]:
        return [claim for claim in self._claims.values() if claim.cluster is cluster]

    def workers_changed(self, cluster: Cluster) -> None:
        """Claims whose worker went are lost; those whose worker is back (a worker of the same name
        at a new address, maybe in the same look) come back."""
        by_name = cluster.by_name()
        for claim in self._of(cluster):
            if claim.address is not None and claim.address not in cluster.workers:
                cluster.left(claim.address)
            if claim.address is None and claim.worker in by_name and claim.lost is not None:
                claim.lost = None  # the engine reboots the node, whose boot claims the worker again
                if self._events is not None:
                    self._events.node_back(claim.node_id)

    def worker_left(self, cluster: Cluster, address: str) -> None:
        for claim in self._of(cluster):
            if claim.address == address:
                self._lose(claim)
                if self._events is not None:
                    self._events.node_lost(claim.node_id, f"The node's Dask worker {address} left the cluster.")

    def _lose(self, claim: _Claim) -> None:
        claim.address = None
        if claim.lost is not None and not claim.lost.done():
            claim.lost.set_result(None)

    def _holding(self, cluster: Cluster, but: _Claim | None = None) -> set[str]:
        """The workers of ``cluster`` that nodes (other than ``but``) hold."""
        return {c.worker for c in self._of(cluster) if c is not but and c.worker is not None}

    # --- nodes ---------------------------------------------------------------------------------

    async def create_node(self, account: str, pool_id: str, node_id: str,
                          certificates: Sequence[NodeCertificate] | None = None, slots: int = 1,
                          cluster: str = "", users: Sequence[Doc] | None = None,
                          inter_node: bool = False) -> NodeInfo:
        claim = self._claims.get(node_id)
        if claim is None:
            chosen = self.clusters.get(cluster or DEFAULT)
            if chosen is None:
                raise OSError(f"no Dask cluster is named {cluster!r} (the pool's metadata openbatch.cluster); "
                              f"this server has {', '.join(sorted(self.clusters))} (--dask-clusters)")
            claim = self._claims[node_id] = _Claim(node_id, pool_id, chosen)
        claim.slots = slots
        there = claim.cluster
        certs = None if certificates is None else [asdict(c) for c in certificates]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + NODE_WAIT
        while self._claims.get(node_id) is claim:
            by_name = there.by_name()
            if claim.worker not in by_name:
                claim.worker = there.pick(node_id, claim.slots, self._holding(there, claim), set(self._claims))
            if claim.worker is None:
                there.grow(len(self._of(there)))  # a worker for every node (never fewer: see docs/compute.md)
                await there.wait_for_workers(deadline)
                continue
            address = by_name[claim.worker]
            reply = await there.call(address, "claim", node_id=node_id, pool_id=pool_id, session=self.session,
                                     certificates=certs)
            if reply is None:  # the agent is not installed on that worker yet
                if loop.time() > deadline:
                    raise OSError(f"the Dask worker {address} has no openbatch agent")
                await asyncio.sleep(AGENT_WAIT)
                continue
            if "error" in reply:
                raise OSError(str(reply.get("message")))
            claim.address = address
            claim.lost = loop.create_future()
            there.held.pop(claim.worker, None)
            return NodeInfo(ip_address=str(reply["ip"]), root=f"{address}:{reply['root']}")
        raise OSError("the node was removed while it was being created")

    async def restart_node(self, pool_id: str, node_id: str, reimage: bool) -> None:
        claim = self._claims.get(node_id)
        if claim is None or claim.address is None:
            return  # its boot claims a worker afresh
        with contextlib.suppress(OSError):
            await claim.cluster.call(claim.address, "restart", node_id=node_id, pool_id=pool_id,
                                     session=self.session, reimage=reimage)

    async def remove_node(self, pool_id: str, node_id: str) -> None:
        claim = self._claims.pop(node_id, None)
        if claim is None:
            return
        address = claim.address
        self._lose(claim)
        there = claim.cluster
        if address is not None:
            await there.quiet(address, "release", node_id=node_id, session=self.session)
        there.changed.set()
        kept = {name for name, node in there.held.items() if node in self._claims}  # held for a node still claimed
        await there.shrink(len(self._of(there)), self._holding(there) | kept)

    def node_ok(self, node_id: str) -> bool:
        claim = self._claims.get(node_id)
        return claim is not None and claim.address is not None

    async def node_user(self, pool_id: str, node_id: str, mode: str, name: str, user: Doc) -> None:
        raise OSError("node user accounts are made by the local provider only (docs/compute.md)")

    async def remote_login(self, pool_id: str, node_id: str) -> tuple[str, int]:
        raise OSError("remote login is offered by the local provider's isolated nodes only (docs/compute.md)")

    # --- work ----------------------------------------------------------------------------------

    def _auto_urls(self, spec: RunSpec) -> dict[str, str]:
        names = {str(rf["autoStorageContainerName"]) for rf in spec.resource_files
                 if rf.get("autoStorageContainerName")}
        return {name: auto_storage_url(self.settings, spec.account, name) for name in names}

    async def run(self, spec: RunSpec) -> RunOutcome:
        claim = self._claims.get(spec.node_id)
        if claim is None or claim.address is None or claim.lost is None:
            raise NodeGone(f"The node {spec.node_id} has no Dask worker.")
        lost = claim.lost
        call = asyncio.ensure_future(claim.cluster.call(claim.address, "run", spec=asdict(spec), session=self.session,
                                                        auto=self._auto_urls(spec)))
        claim.keys.add(spec.key)
        try:
            await asyncio.wait((call, lost), return_when=asyncio.FIRST_COMPLETED)
            if not call.done():
                raise NodeGone(f"The Dask worker of node {spec.node_id} left the cluster.")
            reply = call.result()
        except OSError as exc:
            raise NodeGone(f"The Dask worker of node {spec.node_id} cannot be reached: {exc}") from None
        finally:
            claim.keys.discard(spec.key)
            if not call.done():
                call.cancel()
        if not isinstance(reply, dict) or "outcome" not in reply:
            raise NodeGone(str((reply or {}).get("message") or "The node's worker does not hold it any more."))
        return RunOutcome(**reply["outcome"])

    def kill(self, node_id: str, key: str) -> bool:
        claim = self._claims.get(node_id)
        if claim is None or claim.address is None or key not in claim.keys:
            return False
        claim.cluster.spawn(claim.cluster.quiet(claim.address, "kill", node_id=node_id, session=self.session,
                                                key=key))
        return True

    def task_dir(self, job_id: str, task_id: str) -> str:
        return relative_task_dir(job_id, task_id)

    def remove_task_dir(self, node_id: str, job_id: str, task_id: str) -> None:
        claim = self._claims.get(node_id)
        if claim is not None and claim.address is not None:
            claim.cluster.spawn(claim.cluster.quiet(claim.address, "rmtask", node_id=node_id, session=self.session,
                                                    job_id=job_id, task_id=task_id))

    async def remove_job_dir(self, node_id: str, job_id: str) -> None:
        claim = self._claims.get(node_id)
        if claim is not None and claim.address is not None:
            await claim.cluster.quiet(claim.address, "rmjob", node_id=node_id, session=self.session, job_id=job_id)

    # --- Files API -----------------------------------------------------------------------------

    async def _files(self, node_id: str, op: str, **kw: Any) -> tuple[_Claim, dict[str, Any]]:
        claim = self._claims.get(node_id)
        if claim is None or claim.address is None:
            raise FileAccessError("NodeNotReady", "The node's Dask worker is not in the cluster.")
        try:
            reply = await claim.cluster.call(claim.address, op, node_id=node_id, **kw)
        except OSError:
            raise FileAccessError("NodeNotReady", "The node's Dask worker cannot be reached.") from None
        if not isinstance(reply, dict):
            raise FileAccessError("NodeNotReady", "The node's Dask worker has no openbatch agent.")
        if "error" in reply:
            raise FileAccessError(str(reply["error"]), str(reply.get("message", "")))
        return claim, reply

    async def list_files(self, pool_id: str, node_id: str, base: str, recursive: bool) -> list[NodeFile]:
        _, reply = await self._files(node_id, "list", pool_id=pool_id, base=base, recursive=recursive)
        return [NodeFile(**f) for f in reply["files"]]

    async def stat_file(self, pool_id: str, node_id: str, path: str) -> NodeFile:
        _, reply = await self._files(node_id, "stat", pool_id=pool_id, path=path)
        return NodeFile(**reply["file"])

    async def open_file(self, pool_id: str, node_id: str, path: str) -> RemoteFile:
        claim, reply = await self._files(node_id, "open", pool_id=pool_id, path=path)
        assert claim.address is not None
        return RemoteFile(claim.cluster, claim.address, int(reply["handle"]), NodeFile(**reply["file"]))

    async def delete_file(self, pool_id: str, node_id: str, path: str, recursive: bool) -> None:
        await self._files(node_id, "delete", pool_id=pool_id, path=path, recursive=recursive)


class RemoteFile:
    """A node file opened once by the worker's agent: ``info`` from that open, bytes read from it."""

    def __init__(self, cluster: Cluster, address: str, handle: int, info: NodeFile):
        self.info = info
        self._cluster = cluster
        self._address = address
        self._handle = handle
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._cluster.spawn(self._cluster.quiet(self._address, "close", handle=self._handle))

    async def read(self, start: int, end: int | None) -> AsyncIterator[bytes]:
        try:
            offset = max(0, start)
            while end is None or offset <= end:
                size = READ_MAX if end is None else min(READ_MAX, end - offset + 1)
                try:
                    reply = await self._cluster.call(self._address, "read", handle=self._handle, offset=offset,
                                                     size=size)
                except OSError:
                    raise FileAccessError("NodeNotReady", "The node's Dask worker cannot be reached.") from None
                if "error" in reply:
                    raise FileAccessError(str(reply["error"]), str(reply.get("message", "")))
                data = reply["data"]
                if not data:
                    break
                offset += len(data)
                yield data
        finally:
            self.close()
