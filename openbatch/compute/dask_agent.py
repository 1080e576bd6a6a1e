"""What runs inside each Dask worker for the ``dask`` provider: the worker's node, as a plugin.

``NodeAgent`` is a Dask ``WorkerPlugin`` (the server registers it with the cluster; Dask installs
it on every worker, present and future). On setup it makes a ``NodeHost`` (compute/nodehost.py:
the same node code as the local provider) under the node root on the worker's host and adds
handlers to the worker's own RPC server, which the provider calls directly over Dask's comms —
``claim`` as one RPC, everything else over one long-lived stream per worker with messages batched
both ways (compute/dask_stream.py) — no task graph, no scheduler in the way, and nothing that
Dask could retry behind the engine's back (exactly once is the engine's job).

A worker is one node at a time. ``claim`` makes it the node ``node_id`` for the server session
``session``: a node it does not hold yet, or holds for another session (the server restarted),
starts with every process under that node's directory killed, as a rebooted VM would. Replies are
plain dicts of plain values (msgpack); errors travel as ``{"error": code, "message": ...}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin
from distributed.comm import get_address_host

from openbatch.compute.base import FileAccessError, NodeGone, RunSpec
from openbatch.compute.dask_stream import STREAM_OP, serve_stream
from openbatch.compute.nodefiles import OpenNodeFile
from openbatch.compute.nodehost import NodeHost, kill_processes_under
from openbatch.node.certs import NodeCertificate
from openbatch.node.spawner import kill_orphaned_helpers

log = logging.getLogger("openbatch.compute.dask")

PLUGIN_NAME = "openbatch-node-agent"
READ_MAX = 1024 * 1024
OPEN_FILES = 64  # handles one agent keeps for reads in progress
OPEN_IDLE = 300.0  # seconds a handle nobody reads stays open
HANDLERS = ("claim", "restart", "release", "run", "kill", "rmtask", "rmjob", "list", "stat", "open", "read",
            "close", "delete", "held")


@dataclass(eq=False)
class _Handle:
    opened: OpenNodeFile
    used: float


def _error(exc: FileAccessError) -> dict[str, Any]:
    return {"error": exc.code, "message": exc.message}


def certificates_from(docs: list[dict[str, Any]] | None) -> list[NodeCertificate] | None:
    if docs is None:
        return None
    return [NodeCertificate(**{**d, "visibility": tuple(d["visibility"])}) for d in docs]


def held_node(dask_worker: Any) -> str:
    """The node a worker's agent holds ('' if none): run on every worker by ``Client.run``."""
    agent = dask_worker.plugins.get(PLUGIN_NAME)
    return str(getattr(agent, "node_id", "") or "")


class NodeAgent(WorkerPlugin):
    """See the module docstring. ``root``: the node root on every worker's host (None: under the
    worker's local directory); ``batch_url``: the account URL tasks are told."""

    name = PLUGIN_NAME
    idempotent = False

    def __init__(self, root: str | None, batch_url: str):
        self.root = root
        self.batch_url = batch_url
        self.host: NodeHost | None = None
        self.node_id = ""
        self.session = ""
        self._files: dict[int, _Handle] = {}
        self._next = 0
        self.closing = False

    # --- plugin life -----------------------------------------------------------------------------

    async def setup(self, worker: Any) -> None:
        root = Path(self.root) if self.root else Path(worker.local_directory) / "openbatch-nodes"
        self.host = NodeHost(root, batch_url=self.batch_url, node_ip=get_address_host(worker.address))
        await self.host.start(kill_leftovers=False)  # the root may be shared: only a claimed node's own
        kill_orphaned_helpers()
        for name in HANDLERS:
            worker.handlers[f"openbatch_{name}"] = getattr(self, f"_{name}")
        worker.handlers[STREAM_OP] = self._stream

    async def _stream(self, comm: Any) -> None:
        """The provider's long-lived stream (compute/dask_stream.py): the same operations, batched."""
        await serve_stream(comm, {name: getattr(self, f"_{name}") for name in HANDLERS})

    async def teardown(self, worker: Any) -> None:
        self.closing = True  # the worker leaves (closed, or gave up on its scheduler): its runs are lost, not ended
        if self.host is not None:
            await self.host.stop(whole_root=False)
        for handle in self._files.values():
            handle.opened.close()
        self._files.clear()

    def _host(self) -> NodeHost:
        assert self.host is not None, "the agent is not set up"
        return self.host

    # --- nodes -------------------------------------------------------------------------------------

    async def _claim(self, node_id: str, pool_id: str, session: str,
                     certificates: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        host = self._host()
        if self.node_id and self.node_id != node_id:
            await host.remove_node("", self.node_id)  # the worker changes nodes: the old one goes
        if self.node_id != node_id or self.session != session:
            if node_id in host.node_ids():
                await host.restart_node(pool_id, node_id, reimage=False)
            else:  # what an earlier worker or server left running in this node's directory
                await asyncio.to_thread(kill_processes_under, host.root / node_id)
        self.node_id, self.session = node_id, session
        try:
            root = await host.create_node(pool_id, node_id, certificates_from(certificates))
        except OSError as exc:
            return {"error": "NodeCreateFailed", "message": str(exc)}
        return {"ip": host.node_ip, "root": str(root)}

    def _mine(self, node_id: str, session: str) -> bool:
        return bool(node_id) and node_id == self.node_id and session == self.session

    async def _restart(self, node_id: str, pool_id: str, session: str, reimage: bool) -> dict[str, Any]:
        if not self._mine(node_id, session):
            return {"error": "NodeGone", "message": "The worker holds another node."}
        await self._host().restart_node(pool_id, node_id, reimage)
        return {}

    async def _release(self, node_id: str, session: str) -> dict[str, Any]:
        if self._mine(node_id, session):
            await self._host().remove_node("", node_id)
            self.node_id = self.session = ""
        return {}

    async def _held(self) -> dict[str, Any]:
        return {"node": self.node_id, "session": self.session}

    # --- work --------------------------------------------------------------------------------------

    async def _run(self, spec: dict[str, Any], session: str, auto: dict[str, str] | None = None) -> dict[str, Any]:
        run = RunSpec(**spec)
        if not self._mine(run.node_id, session):
            return {"error": "NodeGone", "message": "The worker does not hold this node any more."}
        urls = auto or {}

        def auto_storage(name: str) -> str:
            return urls.get(name, "")

        try:
            outcome = await self._host().run(run, auto_storage)
        except NodeGone as exc:
            return {"error": "NodeGone", "message": str(exc) or "The node's directory is missing."}
        if self.closing:
            return {"error": "NodeGone", "message": "The node's Dask worker is closing."}
        return {"outcome": asdict(outcome)}

    async def _kill(self, node_id: str, session: str, key: str) -> bool:
        return self._mine(node_id, session) and self._host().kill(node_id, key)

    async def _rmtask(self, node_id: str, session: str, job_id: str, task_id: str) -> None:
        if self._mine(node_id, session):
            await asyncio.to_thread(self._host().remove_task_dir, node_id, job_id, task_id)

    async def _rmjob(self, node_id: str, session: str, job_id: str) -> None:
        if self._mine(node_id, session):
            await self._host().remove_job_dir(node_id, job_id)

    # --- Files API ---------------------------------------------------------------------------------

    async def _list(self, pool_id: str, node_id: str, base: str, recursive: bool) -> dict[str, Any]:
        try:
            found = await asyncio.to_thread(lambda: self._host().files(pool_id, node_id).listing(base, recursive))
        except FileAccessError as exc:
            return _error(exc)
        return {"files": [asdict(f) for f in found]}

    async def _stat(self, pool_id: str, node_id: str, path: str) -> dict[str, Any]:
        try:
            return {"file": asdict(self._host().files(pool_id, node_id).stat(path))}
        except FileAccessError as exc:
            return _error(exc)

    async def _open(self, pool_id: str, node_id: str, path: str) -> dict[str, Any]:
        try:
            opened = self._host().files(pool_id, node_id).open(path)
        except FileAccessError as exc:
            return _error(exc)
        self._forget_idle()
        self._next += 1
        self._files[self._next] = _Handle(opened, time.monotonic())
        return {"handle": self._next, "file": asdict(opened.info)}

    def _forget_idle(self) -> None:
        now = time.monotonic()
        old = sorted(self._files, key=lambda h: self._files[h].used)
        for handle in old:
            if len(self._files) < OPEN_FILES and now - self._files[handle].used < OPEN_IDLE:
                break
            self._files.pop(handle).opened.close()

    async def _read(self, handle: int, offset: int, size: int) -> dict[str, Any]:
        found = self._files.get(handle)
        if found is None:
            return {"error": "FileNotFound", "message": "The file was closed."}
        found.used = time.monotonic()
        try:
            data = await asyncio.to_thread(found.opened.read_at, offset, min(size, READ_MAX))
        except OSError as exc:
            return {"error": "FileNotFound", "message": str(exc)}
        return {"data": data}

    async def _close(self, handle: int) -> None:
        found = self._files.pop(handle, None)
        if found is not None:
            found.opened.close()

    async def _delete(self, pool_id: str, node_id: str, path: str, recursive: bool) -> dict[str, Any]:
        try:
            files = self._host().files(pool_id, node_id)
            await asyncio.to_thread(files.delete, path, recursive)
        except FileAccessError as exc:
            return _error(exc)
        return {}

