"""An engine with the real local compute provider and the real domain operations, no HTTP.

Each test runs one async scenario: the domain functions (pools.add_pool, tasks.add_task, ...)
change the store and call the engine's hooks exactly as the API does; the scenario then waits
(``until``) for what the engine must make of it. No timing asserts: waits only bound how long a
broken engine can keep a test hanging.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import uvloop

from openbatch.batch.domain import jobs, pools, tasks
from openbatch.batch.domain.common import BatchContext, Doc
from openbatch.batch.engine import Engine
from openbatch.batch.store import BatchStore
from openbatch.compute.local import LocalProvider
from openbatch.config import Settings

ACCOUNT = "devstoreaccount1"
BASE = "http://batch.test"
IMAGE = {"imageReference": {"publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-LTS"},
         "nodeAgentSKUId": "batch.node.ubuntu 22.04"}
ADMIN = {"autoUser": {"scope": "pool", "elevationLevel": "admin"}}
T = TypeVar("T")


def sh(script: str) -> str:
    return f"/bin/sh -c '{script}'"


class Harness:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.scratch = data_dir.parent / "scratch"  # files tasks of any account may read and write
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.scratch.chmod(0o1777)
        self.settings = Settings(data_dir=data_dir)
        self.store = BatchStore(data_dir / "batch" / "batch.db")
        self.compute = LocalProvider(self.settings)
        self.engine = Engine(self.settings, self.store, self.compute)
        self.ctx = BatchContext(settings=self.settings, store=self.store, hooks=self.engine, compute=self.compute)
        self.engine.ctx = self.ctx

    async def start(self) -> Harness:
        await self.compute.start()
        await self.engine.start()
        return self

    async def stop(self) -> None:
        await self.engine.stop()
        await self.compute.stop()
        self.store.close()

    def crash(self) -> None:
        """Stop as a kill -9 would: nothing more is written; processes are left behind."""
        self.engine.stopping = True
        for task in list(self.engine._background):
            task.cancel()
        self.store.db.close()

    # --- the API side, through the domain ------------------------------------------------------

    async def pool(self, pool_id: str, nodes: int = 1, slots: int = 1, **kw: Any) -> Doc:
        body = {"id": pool_id, "vmSize": "STANDARD_D1", "virtualMachineConfiguration": IMAGE,
                "targetDedicatedNodes": nodes, "taskSlotsPerNode": slots, **kw}
        doc = await pools.add_pool(self.ctx, ACCOUNT, body, BASE)
        await self.until(lambda: self.steady(pool_id, nodes), f"pool {pool_id} to reach {nodes} nodes")
        return doc

    async def job(self, job_id: str, pool_id: str, **kw: Any) -> Doc:
        return await jobs.add_job(self.ctx, ACCOUNT, {"id": job_id, "poolInfo": {"poolId": pool_id}, **kw}, BASE)

    async def add(self, job_id: str, *bodies: Doc) -> None:
        await tasks.add_task_collection(self.ctx, ACCOUNT, job_id, list(bodies), BASE)

    # --- looking --------------------------------------------------------------------------------

    def task(self, job_id: str, task_id: str) -> Doc:
        doc = self.store.get_task(ACCOUNT, job_id, task_id)
        assert doc is not None, f"task {job_id}/{task_id} is gone"
        return doc

    def nodes(self, pool_id: str) -> list[Doc]:
        return sorted(self.store.all("node", ACCOUNT, pool_id), key=lambda n: str(n["id"]))

    def node_dir(self, node_id: str) -> Path:
        return self.data_dir / "nodes" / node_id

    def steady(self, pool_id: str, nodes: int) -> bool:
        pool = self.store.get("pool", ACCOUNT, pool_id)
        states = [n["state"] for n in self.nodes(pool_id)]
        return (pool is not None and pool["allocationState"] == "steady" and len(states) == nodes
                and all(s in ("idle", "running", "starttaskfailed", "offline") for s in states))

    def state(self, job_id: str, task_id: str) -> str:
        return str(self.task(job_id, task_id)["state"])

    async def until(self, check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)

    async def completed(self, job_id: str, *task_ids: str, timeout: float = 30.0) -> list[Doc]:
        await self.until(lambda: all(self.state(job_id, t) == "completed" for t in task_ids),
                         f"{job_id}/{task_ids} to complete", timeout)
        return [self.task(job_id, t) for t in task_ids]


def data_dir(tmp_path: Path) -> Path:
    """A data dir non-admin task accounts can traverse to: pytest's tmp dirs are 0700, and a pytest
    run started meanwhile resets their top directory to 0700 (so granting o+x there does not last)."""
    marker = tmp_path / "data-dir"
    if not marker.exists():
        top = Path(tempfile.mkdtemp(prefix="openbatch-test-"))
        marker.write_text(str(top))
    return Path(marker.read_text()) / "data"


def scenario(tmp_path: Path, body: Callable[[Harness], Awaitable[T]]) -> T:
    """Run ``body`` against a fresh harness in uvloop (as the server does)."""

    async def main() -> T:
        h = await Harness(data_dir(tmp_path)).start()
        try:
            return await body(h)
        finally:
            if not h.engine.stopping:
                await h.stop()

    try:
        return run(main())
    finally:
        cleanup(tmp_path)


def cleanup(tmp_path: Path) -> None:
    marker = tmp_path / "data-dir"
    if marker.exists():
        shutil.rmtree(Path(marker.read_text()), ignore_errors=True)
        marker.unlink()


def run(coro: Coroutine[Any, Any, T]) -> T:
    return uvloop.run(coro)
