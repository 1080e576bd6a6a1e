"""Load: many concurrent clients mixing Blob and Batch calls for a fixed time; errors, latency per
operation kind, and the server's RSS at start, at its peak and after an idle pause.

Each client is one keep-alive HTTP connection (httpx, in one asyncio loop) that signs its
requests with SharedKey and picks, at random, one of: put a small blob (1-64 KiB), get one,
list blobs, add a task, get one, list tasks, get the job. Tasks go to a job on a pool with no
nodes, so they stay queued and the figures are the API's, not the task runner's.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import httpx

from bench.common import Report, openbatch_server, percentile, rss_mb, server_pid
from bench.signing import batch_authorization, blob_authorization
from openbatch.testing import LiveServer

BLOB_VERSION = "2021-08-06"
BATCH_VERSION = "2024-07-01.20.0"
CONTAINER = "load"
JOB = "load"
# operation kind -> relative weight
MIX = {"put blob": 3, "get blob": 4, "list blobs": 1, "add task": 3, "get task": 3, "list tasks": 1, "get job": 2}


@dataclass
class Sizes:
    clients: int = 100
    seconds: float = 120.0
    idle: float = 20.0


SMOKE = Sizes(clients=8, seconds=2.0, idle=1.0)


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    blobs: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values()) + sum(len(v) for v in self.errors.values())

    @property
    def error_count(self) -> int:
        return sum(len(v) for v in self.errors.values())


class Client:
    """One simulated client: a connection to each endpoint, SharedKey-signed raw requests."""

    def __init__(self, server: LiveServer, index: int, rng: random.Random, results: Results) -> None:
        self.server = server
        self.index = index
        self.rng = rng
        self.results = results
        self.n = 0
        timeout = httpx.Timeout(60.0)
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.blob = httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.blob_port}", timeout=timeout, limits=limits)
        self.batch = httpx.AsyncClient(base_url=server.batch_url, timeout=timeout, limits=limits)

    async def close(self) -> None:
        await self.blob.aclose()
        await self.batch.aclose()

    async def blob_call(self, method: str, path: str, query: str = "", body: bytes = b"",
                        headers: dict[str, str] | None = None) -> httpx.Response:
        raw_path = f"/{self.server.account}{path}"
        h = {"x-ms-version": BLOB_VERSION, "x-ms-date": formatdate(usegmt=True), "content-length": str(len(body)),
             **(headers or {})}
        h["authorization"] = blob_authorization(self.server.key, self.server.account, method, raw_path, query, h)
        return await self.blob.request(method, raw_path + (f"?{query}" if query else ""), content=body, headers=h)

    async def batch_call(self, method: str, path: str, query: str = "", body: Any = None) -> httpx.Response:
        full = "&".join(filter(None, [f"api-version={BATCH_VERSION}", query]))
        data = json.dumps(body).encode() if body is not None else b""
        h = {"ocp-date": formatdate(usegmt=True)}
        if data or method != "GET":
            h["content-length"] = str(len(data))
        if data:
            h["content-type"] = "application/json; odata=minimalmetadata"
        h["authorization"] = batch_authorization(self.server.key, self.server.account, method, path, full, h)
        return await self.batch.request(method, f"{path}?{full}", content=data, headers=h)

    # --- the operations -------------------------------------------------------------------------

    async def put_blob(self) -> httpx.Response:
        self.n += 1
        name = f"c{self.index}/b{self.n}"
        r = await self.blob_call("PUT", f"/{CONTAINER}/{name}", body=os.urandom(self.rng.randint(1, 64) << 10),
                                 headers={"x-ms-blob-type": "BlockBlob"})
        if r.status_code == 201:
            self.results.blobs.append(name)
        return r

    async def get_blob(self) -> httpx.Response:
        return await self.blob_call("GET", f"/{CONTAINER}/{self.rng.choice(self.results.blobs)}")

    async def list_blobs(self) -> httpx.Response:
        prefix = f"c{self.rng.randrange(100)}/"
        return await self.blob_call("GET", f"/{CONTAINER}", f"comp=list&maxresults=100&prefix={prefix}&restype=container")

    async def add_task(self) -> httpx.Response:
        self.n += 1
        task_id = f"c{self.index}-t{self.n}"
        r = await self.batch_call("POST", f"/jobs/{JOB}/tasks", body={"id": task_id, "commandLine": "/bin/true"})
        if r.status_code == 201:
            self.results.tasks.append(task_id)
        return r

    async def get_task(self) -> httpx.Response:
        return await self.batch_call("GET", f"/jobs/{JOB}/tasks/{self.rng.choice(self.results.tasks)}")

    async def list_tasks(self) -> httpx.Response:
        return await self.batch_call("GET", f"/jobs/{JOB}/tasks", "maxresults=100&$select=id,state")

    async def get_job(self) -> httpx.Response:
        return await self.batch_call("GET", f"/jobs/{JOB}")

    def operations(self) -> dict[str, Callable[[], Awaitable[httpx.Response]]]:
        return {"put blob": self.put_blob, "get blob": self.get_blob, "list blobs": self.list_blobs,
                "add task": self.add_task, "get task": self.get_task, "list tasks": self.list_tasks,
                "get job": self.get_job}

    async def run(self, deadline: float) -> None:
        ops = self.operations()
        kinds, weights = list(MIX), list(MIX.values())
        while time.monotonic() < deadline:
            kind = self.rng.choices(kinds, weights)[0]
            started = time.perf_counter()
            try:
                r = await ops[kind]()
            except httpx.HTTPError as exc:
                self.results.errors[kind].append(f"{type(exc).__name__}: {exc}")
                continue
            elapsed = (time.perf_counter() - started) * 1000
            if r.status_code >= 300:
                self.results.errors[kind].append(f"{r.status_code} {r.text[:200]}")
            else:
                self.results.latencies[kind].append(elapsed)


class RssWatch:
    """Samples a process's RSS every 50 ms in a thread: the peak between start() and stop()."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.peak = rss_mb(self.pid)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb(self.pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _setup(server: LiveServer, results: Results) -> None:
    seed = Client(server, 0, random.Random(0), results)
    try:
        r = await seed.blob_call("PUT", f"/{CONTAINER}", "restype=container")
        assert r.status_code == 201, r.text
        r = await seed.batch_call("POST", "/jobs", body={"id": JOB, "poolInfo": {"poolId": "no-such-pool"}})
        assert r.status_code == 201, r.text
        for _ in range(20):
            await seed.put_blob()
            await seed.add_task()
    finally:
        await seed.close()


async def _load(server: LiveServer, sizes: Sizes, results: Results, seed: int) -> float:
    clients = [Client(server, i + 1, random.Random(seed + i), results) for i in range(sizes.clients)]
    started = time.monotonic()
    try:
        await asyncio.gather(*(c.run(started + sizes.seconds) for c in clients))
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    return time.monotonic() - started


def measure(sizes: Sizes, server: LiveServer | None = None, seed: int = 1) -> dict[str, Any]:
    """Run the load against ``server`` (a fresh one when None): every figure, errors included
    (the caller judges)."""
    if server is None:
        with openbatch_server() as fresh:
            return measure(sizes, fresh, seed)
    results = Results()
    pid = server_pid(server)
    asyncio.run(_setup(server, results))
    time.sleep(1.0)
    start_rss = rss_mb(pid)
    watch = RssWatch(pid)
    watch.start()
    cpu_before = cpu_seconds(pid)
    elapsed = asyncio.run(_load(server, sizes, results, seed))
    server_cpu = (cpu_seconds(pid) - cpu_before) / elapsed
    peak_rss = watch.stop()
    time.sleep(sizes.idle)
    idle_rss = rss_mb(pid)
    per_kind = {kind: {"count": len(v), "p50_ms": round(percentile(v, 50), 2), "p99_ms": round(percentile(v, 99), 2)}
                for kind, v in sorted(results.latencies.items())}
    return {
        "clients": sizes.clients, "seconds": round(elapsed, 1), "requests": results.requests,
        "requests_per_s": round(results.requests / elapsed, 1), "errors": results.error_count,
        "server_cpu_percent": round(100 * server_cpu),
        "error_examples": {k: v[:3] for k, v in results.errors.items()}, "per_kind": per_kind,
        "rss_mb": {"start": round(start_rss, 1), "peak": round(peak_rss, 1), "after_idle": round(idle_rss, 1)},
        "idle_seconds": sizes.idle,
        "stored": {"blobs": len(results.blobs), "tasks": len(results.tasks)},
    }


def run(sizes: Sizes) -> Report:
    figures = measure(sizes)
    report = Report("load", ["figure", "value"])
    report.add(f"clients x seconds ({sizes.clients} x {sizes.seconds:g})", figures["requests"])
    report.add("requests/s", figures["requests_per_s"])
    report.add("server CPU % (of one core) under the load", figures["server_cpu_percent"])
    report.add("errors", figures["errors"])
    for kind, f in figures["per_kind"].items():
        report.add(f"{kind}: p50 / p99 ms", f"{f['p50_ms']} / {f['p99_ms']}")
    rss = figures["rss_mb"]
    report.add("server RSS MB: start / peak / after idle", " / ".join(str(v) for v in rss.values()))
    report.details = figures
    return report
