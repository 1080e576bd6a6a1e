"""One Dask cluster of the dask compute provider: its scheduler, its workers and, when openbatch
starts it, its cluster manager.

A cluster is named by a spec (``ClusterSpec``): the scheduler of ``--compute dask://HOST:PORT``
to attach to, the ``distributed.LocalCluster`` of ``--compute dask-local:N``, or any entry of the
``--dask-clusters`` file — a scheduler address, or a cluster manager openbatch starts (an import
path such as ``distributed.SSHCluster`` or ``dask_jobqueue.SLURMCluster`` and its keyword
arguments). The provider (compute/dask.py) keeps which node is which worker; a ``Cluster`` keeps
what the scheduler says about its workers, the streams to them (compute/dask_stream.py) and the
manager: it grows the manager when a node finds no free worker and retires free workers again when
nodes leave (``minimum`` of them are kept).

Growing and retiring follow Dask's ``SpecCluster`` (LocalCluster, SSHCluster, dask-jobqueue's
clusters): a retired worker's spec is kept and started again first when the cluster grows, so a
manager with a fixed list of machines (SSHCluster) gives a machine back and takes it again; more
workers than that come from the manager's worker template when it has one (``scale``). A retired
worker is also asked to close through the scheduler, for managers that cannot stop a remote
process themselves. Managers that are not SpecClusters are only scaled up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from distributed import Client
from distributed.comm import get_address_host
from distributed.utils import import_term

from openbatch.compute.dask_agent import PLUGIN_NAME, NodeAgent, held_node
from openbatch.compute.dask_stream import AgentStream
from openbatch.compute.nodehost import kill_processes_under
from openbatch.config import ConfigError

log = logging.getLogger("openbatch.compute.dask")

DEFAULT = "default"  # the cluster of ``--compute``: pools that name none
WATCH = 1.0  # seconds between looks at the client's connection to an attached scheduler
LOCAL_SLOTS = 256  # the `slots` resource of dask-local workers (Azure's most taskSlotsPerNode)
LOCAL_MANAGER = "distributed.LocalCluster"


@dataclass(frozen=True)
class ClusterSpec:
    """A scheduler to attach to (``address``), or a cluster manager to start (``manager``, an import
    path, called with ``options`` and ``asynchronous=True``); ``minimum`` workers are never retired;
    ``node_root``: where node directories live on the workers' hosts ("" : the server's default)."""

    name: str = DEFAULT
    address: str = ""
    manager: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    minimum: int = 0
    node_root: str = ""

    @property
    def local(self) -> bool:
        """Its workers run on this machine (a LocalCluster): node directories under the data dir."""
        return self.manager == LOCAL_MANAGER


def local_cluster(workers: int, name: str = DEFAULT) -> ClusterSpec:
    """``dask-local:N``: a LocalCluster of N single-threaded worker processes on 127.0.0.1, N kept."""
    return ClusterSpec(name=name, manager=LOCAL_MANAGER, minimum=workers, options={
        "n_workers": workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None,
        "host": "127.0.0.1", "resources": {"slots": LOCAL_SLOTS}})


def parse_target(text: str) -> ClusterSpec:
    """``--compute``: ``dask://HOST:PORT`` (also ``tcp://`` / ``tls://``) or ``dask-local:N``; ConfigError otherwise."""
    if text.startswith("dask-local:"):
        count = text.partition(":")[2]
        if not count.isdigit() or not 1 <= int(count) <= 256:
            raise ConfigError(f"--compute dask-local:N needs N from 1 to 256, got {count!r}")
        return local_cluster(int(count))
    scheme, sep, rest = text.partition("://")
    if sep and scheme in ("dask", "tcp", "tls") and rest and ":" in rest:
        return ClusterSpec(address=f"{'tcp' if scheme == 'dask' else scheme}://{rest}")
    raise ConfigError(f"--compute must be local, dask://HOST:PORT or dask-local:N, got {text!r}")


def load_clusters(path: str) -> dict[str, ClusterSpec]:
    """The ``--dask-clusters`` file: a JSON object of names to ``{"address": "dask://HOST:PORT"}``,
    ``{"local": N}`` or ``{"manager": "module.Class", "options": {...}, "minimum": N}`` (each may add
    ``"node_root"``). ConfigError naming the entry for anything else."""
    if not path:
        return {}
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--dask-clusters {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"--dask-clusters {path}: a JSON object of cluster names is needed")
    return {name: _cluster_entry(str(name), entry, path) for name, entry in doc.items()}


def _cluster_entry(name: str, entry: Any, path: str) -> ClusterSpec:
    where = f"--dask-clusters {path}: cluster {name!r}"
    if not name or name == DEFAULT:
        raise ConfigError(f"{where}: the name must be given and not {DEFAULT!r} (that is --compute's cluster)")
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: an object is needed")
    unknown = set(entry) - {"address", "local", "manager", "options", "minimum", "node_root"}
    kinds = [key for key in ("address", "local", "manager") if key in entry]
    if unknown or len(kinds) != 1:
        raise ConfigError(f"{where}: exactly one of address, local, manager is needed (and options, minimum, "
                          f"node_root); got {sorted(entry)}")
    root = entry.get("node_root", "")
    if not isinstance(root, str):
        raise ConfigError(f"{where}: node_root must be a path")
    if "address" in entry:
        spec = parse_target(str(entry["address"]))
        if not spec.address:
            raise ConfigError(f"{where}: address must be dask://HOST:PORT")
        return ClusterSpec(name=name, address=spec.address, node_root=root)
    if "local" in entry:
        count = entry["local"]
        if not isinstance(count, int) or not 1 <= count <= 256:
            raise ConfigError(f"{where}: local needs a number of workers from 1 to 256")
        return ClusterSpec(**{**local_cluster(count, name).__dict__, "node_root": root})
    manager, options, minimum = entry["manager"], entry.get("options", {}), entry.get("minimum", 0)
    if not isinstance(manager, str) or "." not in manager:
        raise ConfigError(f"{where}: manager must be an import path such as distributed.SSHCluster")
    if not isinstance(options, dict) or not isinstance(minimum, int) or minimum < 0:
        raise ConfigError(f"{where}: options must be an object and minimum a number of workers")
    return ClusterSpec(name=name, manager=manager, options=options, minimum=minimum, node_root=root)


class Members(Protocol):
    """What a cluster tells the provider about its workers."""

    def worker_left(self, cluster: Cluster, address: str) -> None: ...

    def workers_changed(self, cluster: Cluster) -> None: ...


class Cluster:
    """See the module docstring. ``workers``: address -> name, as the scheduler last said."""

    def __init__(self, spec: ClusterSpec, node_root: str | None, batch_url: str, members: Members):
        self.spec = spec
        self.node_root = node_root  # None: under each worker's local directory
        self.batch_url = batch_url
        self.manager: Any = None
        self.workers: dict[str, str] = {}  # address -> name (stable across a nanny's restarts)
        self.slots: dict[str, float] = {}  # worker name -> its `slots` resource (1 when it declares none)
        self.held: dict[str, str] = {}  # worker name -> node id it held for an earlier server
        self.changed = asyncio.Event()
        self._members = members
        self._client: Client | None = None
        self._comm: Any = None  # the client's connection to the scheduler when it attached
        self._streams: dict[str, asyncio.Future[AgentStream]] = {}  # worker address -> its stream
        self._retired: dict[Any, Any] = {}  # manager's worker name -> its spec, started again first
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def client(self) -> Client:
        if self._client is None:  # not started, or attaching again to a scheduler that went away
            raise ConnectionError(f"not attached to the Dask scheduler of cluster {self.name!r}")
        return self._client

    # --- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        address = self.spec.address
        if self.spec.manager:
            if self.spec.local and self.node_root is not None:
                Path(self.node_root).mkdir(parents=True, exist_ok=True)
                kill_processes_under(Path(self.node_root))  # what workers of a killed server left running
            try:
                factory = import_term(self.spec.manager)
            except (ImportError, AttributeError) as exc:
                raise ConfigError(f"Dask cluster {self.name!r}: cannot import {self.spec.manager}: {exc}") from None
            self.manager = await factory(asynchronous=True, **self.spec.options)
            address = self.manager.scheduler_address
        await self._attach(address)
        if self.manager is None:
            self.spawn(self._watch(address))
        log.info("dask compute: cluster %s, scheduler %s, %d workers, node root %s", self.name, address,
                 len(self.workers), self.node_root or "{worker local directory}/openbatch-nodes")

    async def _attach(self, address: str) -> None:
        """A client of the scheduler: its worker events heard, the agent plugin registered."""
        self._client = await Client(address, asynchronous=True)
        self._comm = self._client.scheduler_comm  # a Client reconnecting by itself gets another
        self.client.subscribe_topic("all", self._event)
        await self.refresh()
        await self._ask_held()
        registered: Any = self.client.register_plugin(NodeAgent(self.node_root, self.batch_url), name=PLUGIN_NAME)
        if registered is not None:
            await registered
        await self.refresh()

    async def _watch(self, address: str) -> None:
        """An attached scheduler: when the connection to it is lost, attach again (a new client, its
        events, the agent plugin) as soon as a scheduler answers at that address; nodes whose workers
        did not survive are lost, and come back as workers of the same names join. A Client that
        reconnected by itself meanwhile (to a new scheduler: no subscription, no plugin) counts as
        lost too."""
        while True:
            await asyncio.sleep(WATCH)
            old = self._client
            if old is not None and old.status == "running" and old.scheduler_comm is not None \
                    and old.scheduler_comm is self._comm and not old.scheduler_comm.closed():
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
            log.info("dask compute: attached to the scheduler %s again, %d workers", address, len(self.workers))

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for address in list(self._streams):
            await self._drop_stream(address)
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.unsubscribe_topic("all")  # else the scheduler writes its last event to a closed client
                await self._client.close()
            self._client = None
        if self.manager is not None:
            closing: Any = self.manager.close()
            with contextlib.suppress(Exception):
                await closing
            self.manager = None

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- membership ----------------------------------------------------------------------------

    def _event(self, event: tuple[float, Any]) -> None:
        msg = event[1]
        if not isinstance(msg, dict) or msg.get("action") not in ("add-worker", "remove-worker"):
            return
        if msg["action"] == "remove-worker":
            self.left(str(msg.get("worker", "")))
        self.spawn(self.refresh())

    async def refresh(self) -> None:
        """Read the cluster's workers and tell the provider (whose nodes' workers went or came back)."""
        info = await self.client.scheduler.identity()
        workers = info.get("workers", {})
        self.workers = {addr: str(w.get("name", addr)) for addr, w in workers.items()}
        self.slots = {str(w.get("name", addr)): worker_slots(w) for addr, w in workers.items()}
        self._members.workers_changed(self)
        self.changed.set()

    def left(self, address: str) -> None:
        """The worker at ``address`` is gone (the scheduler says so, or its connection broke)."""
        self.spawn(self._drop_stream(address))
        self._members.worker_left(self, address)

    def by_name(self) -> dict[str, str]:
        return {name: addr for addr, name in self.workers.items()}

    async def _ask_held(self) -> None:
        """Which node each worker held for an earlier server (a restart keeps nodes on their workers)."""
        with contextlib.suppress(Exception):
            held = await self.client.run(held_node)
            for address, node_id in held.items():
                if node_id and address in self.workers:
                    self.held[self.workers[address]] = str(node_id)

    def pick(self, node_id: str, need: int, taken: set[str], claimed: set[str]) -> str | None:
        """A free worker (not in ``taken``, not being retired) for node ``node_id`` of ``need`` slots."""
        specs = self._specs()
        free = [name for addr, name in self.workers.items()
                if name not in taken and (specs is None or addr in specs)]
        return pick_worker(free, self.slots, self.held, claimed, node_id, need)

    def _specs(self) -> dict[str, Any] | None:
        """Which of the manager's worker specs each worker (by address) is — by its name (with a
        group's suffix, as dask-jobqueue names them), else by the host it was started on (SSHCluster's
        workers are named by their address); a worker of no spec is being retired. None: no
        SpecCluster (every worker counts)."""
        planned: dict[Any, Any] | None = getattr(self.manager, "worker_spec", None)
        if planned is None:
            return None
        found: dict[str, Any] = {}
        by_host: list[str] = []
        for address, name in self.workers.items():
            for key, spec in planned.items():
                if name == str(key) or (name.startswith(str(key)) and name[len(str(key)):] in spec.get("group", ())):
                    found[address] = key
                    break
            else:
                by_host.append(address)
        left = [key for key in planned if key not in found.values()]
        for address in by_host:
            host = get_address_host(address)
            key = next((k for k in left if (planned[k].get("options") or {}).get("address") == host), None)
            if key is not None:
                found[address] = key
                left.remove(key)
        return found

    async def wait_for_workers(self, deadline: float) -> None:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise OSError(f"no free worker of the Dask cluster {self.name!r} with enough slots (its `slots` "
                          "resource at least the pool's taskSlotsPerNode) joined in time for the node")
        self.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), left)

    # --- the manager ---------------------------------------------------------------------------

    def grow(self, wanted: int) -> None:
        """At least ``wanted`` workers planned (never fewer than now): retired specs started again
        first, then the manager's template. Nothing without a manager (an attached scheduler)."""
        if self.manager is None:
            return
        planned = getattr(self.manager, "worker_spec", None)
        if planned is None:  # not a SpecCluster: its own scale, upwards only
            self.manager.scale(wanted)
            return
        while len(planned) < wanted and self._retired:
            name, spec = self._retired.popitem()
            planned[name] = spec
        target = max(len(planned), wanted) if getattr(self.manager, "new_spec", None) else len(planned)
        self.manager.scale(target)  # also starts what was put back

    async def shrink(self, keep: int, taken: set[str]) -> None:
        """Free workers beyond ``keep`` (the nodes on this cluster) or ``minimum``, whichever is more,
        are retired, the newest first; without a manager (an attached scheduler) a released worker
        stays in the cluster, free for the next node."""
        specs = self._specs()
        if specs is None:
            return
        planned = self.manager.worker_spec
        spare = len(planned) - max(self.spec.minimum, keep)
        free = [(address, key) for address, key in specs.items() if self.workers.get(address) not in taken]
        retire = free[len(free) - min(spare, len(free)):] if spare > 0 else []
        if not retire:
            return
        log.info("dask compute: retiring %d free worker(s) of cluster %s", len(retire), self.name)
        for _, key in retire:
            self._retired[key] = planned[key]
        with contextlib.suppress(Exception):
            await self.manager.scale_down([key for _, key in retire])
        with contextlib.suppress(Exception):  # a manager that cannot signal a remote process (SSH) leaves it running
            await self.client.retire_workers(workers=[address for address, _ in retire], close_workers=True)

    # --- calls to workers ----------------------------------------------------------------------

    async def call(self, address: str, op: str, **kw: Any) -> Any:
        """``claim`` as one RPC (a worker without the agent yet answers None); the rest over the
        worker's stream (compute/dask_stream.py). A broken connection: the worker is taken as gone."""
        try:
            if op == "claim":
                return await getattr(self.client.rpc(address), f"openbatch_{op}")(**kw)
            stream = await self._stream(address)
            return await stream.call(op, **kw)
        except OSError:
            self.left(address)
            raise

    async def quiet(self, address: str, op: str, **kw: Any) -> None:
        with contextlib.suppress(OSError):
            await self.call(address, op, **kw)

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


def worker_slots(info: dict[str, Any]) -> float:
    """A worker's `slots` resource from the scheduler's identity of it (1, Azure's default, if none)."""
    resources = info.get("resources") or {}
    return float(resources.get("slots", 1))


def pick_worker(free: list[str], slots: dict[str, float], held: dict[str, str], claimed: set[str],
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
