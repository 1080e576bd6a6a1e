"""Dask compute provider: a node is a Dask worker; the node's work runs inside that worker.

``--compute dask://HOST:PORT`` attaches to a running Dask scheduler; ``--compute dask-local:N``
starts a ``distributed.LocalCluster`` of N worker processes on this machine (scaled up by one
worker whenever a pool wants more nodes than there are free workers, and the free workers beyond
N retired again when pools shrink). The server registers
``NodeAgent`` (compute/dask_agent.py) as a worker plugin: every worker, present and future, runs
a ``NodeHost`` — the local provider's node code — under its node root, and answers the provider's
calls over Dask's own comms, directly (no task graph): one long-lived stream per worker, messages
batched both ways (compute/dask_stream.py), so many runs start and end per network round trip.

A node claims one free worker whose ``slots`` resource covers the pool's taskSlotsPerNode (a
worker that held this node id for a previous server is preferred) and takes its IP address from the worker's address. Membership is event-driven: the scheduler's
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
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster

from openbatch.compute.base import (
    FileAccessError,
    NodeEvents,
    NodeFile,
    NodeGone,
    NodeInfo,
    RunOutcome,
    RunSpec,
)
from openbatch.compute.dask_agent import PLUGIN_NAME, READ_MAX, NodeAgent, held_node
from openbatch.compute.dask_stream import AgentStream
from openbatch.compute.local import auto_storage_url
from openbatch.compute.nodehost import kill_processes_under, relative_task_dir
from openbatch.config import ConfigError, Settings
from openbatch.node.certs import NodeCertificate

log = logging.getLogger("openbatch.compute.dask")

NODE_WAIT = 120.0  # seconds a new node waits for a free worker before it is unusable
WATCH = 1.0  # seconds between looks at the client's connection to an attached scheduler
AGENT_WAIT = 0.05  # a worker that just joined installs the agent a moment after the scheduler says so
LOCAL_SLOTS = 256  # the `slots` resource of dask-local workers (Azure's most taskSlotsPerNode)


@dataclass(frozen=True)
class Target:
    """What ``--compute`` names: a scheduler to attach to, or a LocalCluster of ``workers``."""

    address: str = ""
    workers: int = 0


def parse_target(text: str) -> Target:
    """``dask://HOST:PORT`` (also ``tcp://`` / ``tls://``) or ``dask-local:N``; ConfigError otherwise."""
    if text.startswith("dask-local:"):
        count = text.partition(":")[2]
        if not count.isdigit() or not 1 <= int(count) <= 256:
            raise ConfigError(f"--compute dask-local:N needs N from 1 to 256, got {count!r}")
        return Target(workers=int(count))
    scheme, sep, rest = text.partition("://")
    if sep and scheme in ("dask", "tcp", "tls") and rest and ":" in rest:
        return Target(address=f"{'tcp' if scheme == 'dask' else scheme}://{rest}")
    raise ConfigError(f"--compute must be local, dask://HOST:PORT or dask-local:N, got {text!r}")


def worker_slots(info: dict[str, Any]) -> float:
    """A worker's `slots` resource from the scheduler's identity of it (1, Azure's default, if none)."""
    resources = info.get("resources") or {}
    return float(resources.get("slots", 1))


def pick_worker(free: Sequence[str], slots: dict[str, float], held: dict[str, str], claimed: set[str],
                node_id: str, need: int) -> str | None:
    """A free worker for a node of ``need`` slots: one that held this node before, else one that holds no
    other node still claimed, else any; never one with fewer slots than needed."""
    fits = [name for name in free if slots.get(name, 1) >= need]
    for name in fits:
        if held.get(name) == node_id:
            return name
    unheld = [name for name in fits if held.get(name) not in claimed]
    choice = unheld or fits
    return choice[0] if choice else None


@dataclass(eq=False)
class _Claim:
    """A node and the worker it is: ``address`` None while that worker is gone."""

    node_id: str
    pool_id: str
    worker: str | None = None  # the worker's name (stable across a nanny's restarts)
    slots: int = 1  # the pool's taskSlotsPerNode: the worker's `slots` resource must be at least this
    address: str | None = None
    lost: asyncio.Future[None] | None = None
    keys: set[str] = field(default_factory=set)


class DaskProvider:
    """See the module docstring."""

    def __init__(self, settings: Settings, target: str | None = None):
        self.settings = settings
        self.target = parse_target(target or settings.compute)
        root = settings.dask_node_root or (str(settings.data_dir / "nodes") if self.target.workers else "")
        self.node_root = root or None  # None: under each worker's local directory
        self.session = secrets.token_hex(8)
        self.cluster: LocalCluster | None = None
        self._client: Client | None = None
        self._events: NodeEvents | None = None
        self._workers: dict[str, str] = {}  # address -> name
        self._slots: dict[str, float] = {}  # worker name -> its `slots` resource (1 when it declares none)
        self._held: dict[str, str] = {}  # worker name -> node id it held for an earlier server
        self._claims: dict[str, _Claim] = {}
        self._streams: dict[str, asyncio.Future[AgentStream]] = {}  # worker address -> its stream (opening or open)
        self._changed = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()

    # --- life cycle ----------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        if self._client is None:  # not started, or attaching again to a scheduler that went away
            raise ConnectionError("not attached to the Dask scheduler")
        return self._client

    async def start(self) -> None:
        address = self.target.address
        if self.target.workers:
            assert self.node_root is not None
            Path(self.node_root).mkdir(parents=True, exist_ok=True)
            kill_processes_under(Path(self.node_root))  # what workers of a killed server left running
            self.cluster = await LocalCluster(
                n_workers=self.target.workers, threads_per_worker=1, processes=True, asynchronous=True,
                dashboard_address=None, host="127.0.0.1", resources={"slots": LOCAL_SLOTS})
            address = self.cluster.scheduler_address
        await self._attach(address)
        if self.cluster is None:
            self._spawn(self._watch(address))
        log.info("dask compute: scheduler %s, %d workers, node root %s", address, len(self._workers),
                 self.node_root or "{worker local directory}/openbatch-nodes")

    async def _attach(self, address: str) -> None:
        """A client of the scheduler: its worker events heard, the agent plugin registered."""
        self._client = await Client(address, asynchronous=True)
        self.client.subscribe_topic("all", self._event)
        await self._refresh()
        await self._ask_held()
        registered: Any = self.client.register_plugin(NodeAgent(self.node_root, self.settings.batch_url), name=PLUGIN_NAME)
        if registered is not None:
            await registered
        await self._refresh()

    async def _watch(self, address: str) -> None:
        """dask://: when the connection to the scheduler is lost, attach again (a new client, its
        events, the agent plugin) as soon as a scheduler answers at that address; nodes whose workers
        did not survive are lost, and come back as workers of the same names join."""
        while True:
            await asyncio.sleep(WATCH)
            old = self._client
            if old is not None and old.status == "running" and old.scheduler_comm is not None \
                    and not old.scheduler_comm.closed():
                continue
            log.warning("dask compute: the connection to the scheduler %s is lost; attaching again", address)
            self._client = None
            if old is not None:
                with contextlib.suppress(Exception):
                    await old.close(timeout=5)
            while self._client is None:
                try:
                    await self._attach(address)
                except (OSError, TimeoutError):
                    self._client = None
                    await asyncio.sleep(WATCH)
            log.info("dask compute: attached to the scheduler %s again, %d workers", address, len(self._workers))

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for claim in self._claims.values():
            self._lose(claim)
        for address in list(self._streams):
            await self._drop_stream(address)
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.unsubscribe_topic("all")  # else the scheduler writes its last event to a closed client
                await self._client.close()
            self._client = None
        if self.cluster is not None:
            closing: Any = self.cluster.close()
            with contextlib.suppress(Exception):
                await closing
            self.cluster = None

    def attach(self, events: NodeEvents) -> None:
        self._events = events

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- membership ----------------------------------------------------------------------------

    def _event(self, event: tuple[float, Any]) -> None:
        msg = event[1]
        if not isinstance(msg, dict) or msg.get("action") not in ("add-worker", "remove-worker"):
            return
        if msg["action"] == "remove-worker":
            self._worker_left(str(msg.get("worker", "")))
        self._spawn(self._refresh())

    async def _refresh(self) -> None:
        """Read the cluster's workers; claims whose worker went are lost, those whose worker is back
        (a worker of the same name at a new address) come back."""
        info = await self.client.scheduler.identity()
        workers = info.get("workers", {})
        self._workers = {addr: str(w.get("name", addr)) for addr, w in workers.items()}
        self._slots = {str(w.get("name", addr)): worker_slots(w) for addr, w in workers.items()}
        by_name = {name: addr for addr, name in self._workers.items()}
        for claim in self._claims.values():
            if claim.address is not None and claim.address not in self._workers:
                self._worker_left(claim.address)
            elif claim.address is None and claim.worker in by_name and claim.lost is not None:
                claim.lost = None  # the engine reboots the node, whose boot claims the worker again
                if self._events is not None:
                    self._events.node_back(claim.node_id)
        self._changed.set()

    def _worker_left(self, address: str) -> None:
        self._spawn(self._drop_stream(address))
        for claim in self._claims.values():
            if claim.address == address:
                self._lose(claim)
                if self._events is not None:
                    self._events.node_lost(claim.node_id, f"The node's Dask worker {address} left the cluster.")

    def _lose(self, claim: _Claim) -> None:
        claim.address = None
        if claim.lost is not None and not claim.lost.done():
            claim.lost.set_result(None)

    async def _ask_held(self) -> None:
        """Which node each worker held for an earlier server (a restart keeps nodes on their workers)."""
        with contextlib.suppress(Exception):
            held = await self.client.run(held_node)
            for address, node_id in held.items():
                if node_id and address in self._workers:
                    self._held[self._workers[address]] = str(node_id)

    def _pick(self, claim: _Claim) -> str | None:
        taken = {c.worker for c in self._claims.values() if c is not claim and c.worker is not None}
        free = [name for name in self._workers.values() if name not in taken]
        if self.cluster is not None:  # not one being retired
            planned = {str(name) for name in self.cluster.worker_spec}
            free = [name for name in free if name in planned]
        return pick_worker(free, self._slots, self._held, set(self._claims), claim.node_id, claim.slots)

    async def _wait_for_workers(self, deadline: float) -> None:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise OSError("no free Dask worker with enough slots (its `slots` resource at least the pool's "
                          "taskSlotsPerNode) joined the cluster in time for the node")
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), left)

    # --- nodes ---------------------------------------------------------------------------------

    async def create_node(self, account: str, pool_id: str, node_id: str,
                          certificates: Sequence[NodeCertificate] | None = None, slots: int = 1) -> NodeInfo:
        claim = self._claims.get(node_id)
        if claim is None:
            claim = self._claims[node_id] = _Claim(node_id, pool_id)
        claim.slots = slots
        certs = None if certificates is None else [asdict(c) for c in certificates]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + NODE_WAIT
        while self._claims.get(node_id) is claim:
            by_name = {name: addr for addr, name in self._workers.items()}
            if claim.worker not in by_name:
                claim.worker = self._pick(claim)
            if claim.worker is None:
                if self.cluster is not None:  # a worker for every node (never fewer: see docs/compute.md)
                    self.cluster.scale(max(len(self.cluster.worker_spec), len(self._claims)))  # never down
                await self._wait_for_workers(deadline)
                continue
            address = by_name[claim.worker]
            reply = await self._call(address, "claim", node_id=node_id, pool_id=pool_id, session=self.session,
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
            self._held.pop(claim.worker, None)
            return NodeInfo(ip_address=str(reply["ip"]), root=f"{address}:{reply['root']}")
        raise OSError("the node was removed while it was being created")

    async def _call(self, address: str, op: str, **kw: Any) -> Any:
        """``claim`` as one RPC (a worker without the agent yet answers None); the rest over the
        worker's stream (compute/dask_stream.py). A broken connection: the worker is taken as gone."""
        try:
            if op == "claim":
                return await getattr(self.client.rpc(address), f"openbatch_{op}")(**kw)
            stream = await self._stream(address)
            return await stream.call(op, **kw)
        except OSError:
            self._worker_left(address)
            raise

    async def _stream(self, address: str) -> AgentStream:
        opening = self._streams.get(address)
        if opening is None:
            opening = self._streams[address] = asyncio.ensure_future(
                AgentStream.open(address, self.client.connection_args, on_close=self._stream_closed))
        try:
            return await asyncio.shield(opening)
        except BaseException:
            if opening.done() and self._streams.get(address) is opening:
                del self._streams[address]  # the next call tries afresh
            raise

    def _stream_closed(self, stream: AgentStream) -> None:
        for address, opening in list(self._streams.items()):
            if opening.done() and not opening.cancelled() and opening.exception() is None \
                    and opening.result() is stream:
                del self._streams[address]

    async def _drop_stream(self, address: str) -> None:
        opening = self._streams.pop(address, None)
        if opening is None:
            return
        with contextlib.suppress(Exception):  # it never opened: nothing to close
            stream = await opening
            await stream.close()

    async def restart_node(self, pool_id: str, node_id: str, reimage: bool) -> None:
        claim = self._claims.get(node_id)
        if claim is None or claim.address is None:
            return  # its boot claims a worker afresh
        with contextlib.suppress(OSError):
            await self._call(claim.address, "restart", node_id=node_id, pool_id=pool_id, session=self.session,
                             reimage=reimage)

    async def remove_node(self, pool_id: str, node_id: str) -> None:
        claim = self._claims.pop(node_id, None)
        if claim is None:
            return
        address = claim.address
        self._lose(claim)
        if address is not None:
            with contextlib.suppress(OSError):
                await self._call(address, "release", node_id=node_id, session=self.session)
        self._changed.set()
        await self._shrink()

    async def _shrink(self) -> None:
        """With a cluster manager (dask-local), free workers beyond the cluster's own size (N) or the
        nodes claimed, whichever is more, are retired (``scale_down``: the manager does not start them
        again); without one (dask://), a released worker stays in the cluster, free for the next node."""
        if self.cluster is None:
            return
        names = {str(name): name for name in self.cluster.worker_spec}
        spare = len(names) - max(self.target.workers, len(self._claims))
        if spare <= 0:
            return
        taken = {c.worker for c in self._claims.values()} | {n for n, node in self._held.items() if node in self._claims}
        free = [name for name in names if name not in taken]
        retire = free[len(free) - min(spare, len(free)):]  # the newest first
        if retire:
            log.info("dask compute: retiring %d free worker(s) of the LocalCluster", len(retire))
            with contextlib.suppress(Exception):
                await self.cluster.scale_down([names[name] for name in retire])

    def node_ok(self, node_id: str) -> bool:
        claim = self._claims.get(node_id)
        return claim is not None and claim.address is not None

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
        call = asyncio.ensure_future(self._call(claim.address, "run", spec=asdict(spec), session=self.session,
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
        self._spawn(self._quiet(claim.address, "kill", node_id=node_id, session=self.session, key=key))
        return True

    async def _quiet(self, address: str, op: str, **kw: Any) -> None:
        with contextlib.suppress(OSError):
            await self._call(address, op, **kw)

    def task_dir(self, job_id: str, task_id: str) -> str:
        return relative_task_dir(job_id, task_id)

    def remove_task_dir(self, node_id: str, job_id: str, task_id: str) -> None:
        claim = self._claims.get(node_id)
        if claim is not None and claim.address is not None:
            self._spawn(self._quiet(claim.address, "rmtask", node_id=node_id, session=self.session,
                                    job_id=job_id, task_id=task_id))

    async def remove_job_dir(self, node_id: str, job_id: str) -> None:
        claim = self._claims.get(node_id)
        if claim is not None and claim.address is not None:
            await self._quiet(claim.address, "rmjob", node_id=node_id, session=self.session, job_id=job_id)

    # --- Files API -----------------------------------------------------------------------------

    async def _files(self, node_id: str, op: str, **kw: Any) -> tuple[str, dict[str, Any]]:
        claim = self._claims.get(node_id)
        if claim is None or claim.address is None:
            raise FileAccessError("NodeNotReady", "The node's Dask worker is not in the cluster.")
        try:
            reply = await self._call(claim.address, op, node_id=node_id, **kw)
        except OSError:
            raise FileAccessError("NodeNotReady", "The node's Dask worker cannot be reached.") from None
        if not isinstance(reply, dict):
            raise FileAccessError("NodeNotReady", "The node's Dask worker has no openbatch agent.")
        if "error" in reply:
            raise FileAccessError(str(reply["error"]), str(reply.get("message", "")))
        return claim.address, reply

    async def list_files(self, pool_id: str, node_id: str, base: str, recursive: bool) -> list[NodeFile]:
        _, reply = await self._files(node_id, "list", pool_id=pool_id, base=base, recursive=recursive)
        return [NodeFile(**f) for f in reply["files"]]

    async def stat_file(self, pool_id: str, node_id: str, path: str) -> NodeFile:
        _, reply = await self._files(node_id, "stat", pool_id=pool_id, path=path)
        return NodeFile(**reply["file"])

    async def open_file(self, pool_id: str, node_id: str, path: str) -> RemoteFile:
        address, reply = await self._files(node_id, "open", pool_id=pool_id, path=path)
        return RemoteFile(self, address, int(reply["handle"]), NodeFile(**reply["file"]))

    async def delete_file(self, pool_id: str, node_id: str, path: str, recursive: bool) -> None:
        await self._files(node_id, "delete", pool_id=pool_id, path=path, recursive=recursive)


class RemoteFile:
    """A node file opened once by the worker's agent: ``info`` from that open, bytes read from it."""

    def __init__(self, provider: DaskProvider, address: str, handle: int, info: NodeFile):
        self.info = info
        self._provider = provider
        self._address = address
        self._handle = handle
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._provider._spawn(self._provider._quiet(self._address, "close", handle=self._handle))

    async def read(self, start: int, end: int | None) -> AsyncIterator[bytes]:
        try:
            offset = max(0, start)
            while end is None or offset <= end:
                size = READ_MAX if end is None else min(READ_MAX, end - offset + 1)
                try:
                    reply = await self._provider._call(self._address, "read", handle=self._handle, offset=offset,
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
