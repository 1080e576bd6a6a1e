"""What the dashboard remembers while the server runs: completed-task counts sampled every few
seconds (tasks/s per job and per account, for the charts) and each pool's resize history.

Samples are taken through the domain's own task counts (one aggregate query per job that can
still change; a completed job's count is kept). Nothing here is stored: the history starts when
the server does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from openbatch.batch.domain.common import BatchContext, Doc, now_iso

log = logging.getLogger("openbatch.ui")

PERIOD = 2.0  # seconds between samples
KEEP = 150  # samples kept: 5 minutes
HISTORY = 50  # resize events kept per pool


@dataclass
class ResizeEvent:
    when: str
    allocation_state: str
    target_dedicated: int
    target_low_priority: int
    current_dedicated: int
    current_low_priority: int


def _pool_key(pool: Doc) -> tuple[Any, ...]:
    return (pool.get("allocationState"), pool.get("targetDedicatedNodes"), pool.get("targetLowPriorityNodes"),
            pool.get("currentDedicatedNodes"), pool.get("currentLowPriorityNodes"))


class Rates:
    """See the module docstring. ``sample()`` is called by ``run()``; tests may call it directly."""

    def __init__(self, ctx: BatchContext, accounts: list[str], period: float = PERIOD):
        self.ctx = ctx
        self.accounts = accounts
        self.period = period
        self.jobs: dict[tuple[str, str], deque[tuple[float, int]]] = {}
        self.totals: dict[str, deque[tuple[float, int]]] = {a: deque(maxlen=KEEP) for a in accounts}
        self.frozen: dict[tuple[str, str], int] = {}  # completed jobs' final counts
        self.pools: dict[tuple[str, str], deque[ResizeEvent]] = {}
        self._last_pool: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run(self) -> None:
        while True:
            try:
                self.sample()
            except Exception:  # the dashboard's charts must never take the server down
                log.exception("dashboard: sampling failed")
            await asyncio.sleep(self.period)

    def completed(self, account: str, job: Doc) -> int:
        key = (account, str(job["id"]).lower())
        if key in self.frozen:
            return self.frozen[key]
        # The store's per-state count reads only the state index (the full task counts also read
        # each task's result and slots): cheap enough to run every few seconds on a 100,000-task job.
        count = int(self.ctx.store.task_state_counts(account, str(job["id"])).get("completed", 0))
        if job.get("state") == "completed":
            self.frozen[key] = count
        return count

    def sample(self) -> None:
        now = time.monotonic()
        for account in self.accounts:
            total = 0
            for job in self.ctx.store.all("job", account):
                count = self.completed(account, job)
                total += count
                self.jobs.setdefault((account, str(job["id"]).lower()), deque(maxlen=KEEP)).append((now, count))
            self.totals.setdefault(account, deque(maxlen=KEEP)).append((now, total))
            for pool in self.ctx.store.all("pool", account):
                self._pool_sample(account, pool)

    def _pool_sample(self, account: str, pool: Doc) -> None:
        key = (account, str(pool["id"]).lower())
        seen = _pool_key(pool)
        if self._last_pool.get(key) == seen:
            return
        self._last_pool[key] = seen
        self.pools.setdefault(key, deque(maxlen=HISTORY)).append(ResizeEvent(
            when=now_iso(), allocation_state=str(pool.get("allocationState") or ""),
            target_dedicated=int(pool.get("targetDedicatedNodes") or 0),
            target_low_priority=int(pool.get("targetLowPriorityNodes") or 0),
            current_dedicated=int(pool.get("currentDedicatedNodes") or 0),
            current_low_priority=int(pool.get("currentLowPriorityNodes") or 0)))

    # --- reading -------------------------------------------------------------------------------

    def series(self, account: str, job_id: str | None = None) -> list[float]:
        """Tasks completed per second in each sampling interval, oldest first (never negative:
        a deleted job takes its count away)."""
        samples = self.totals.get(account) if job_id is None else self.jobs.get((account, job_id.lower()))
        points = list(samples or [])
        return [max(0.0, (c1 - c0) / (t1 - t0)) for (t0, c0), (t1, c1) in zip(points, points[1:], strict=False)
                if t1 > t0]

    def current(self, account: str, job_id: str | None = None, window: int = 5) -> float:
        """Tasks/s over the last ``window`` intervals."""
        recent = self.series(account, job_id)[-window:]
        return sum(recent) / len(recent) if recent else 0.0

    def resize_history(self, account: str, pool_id: str) -> list[ResizeEvent]:
        return list(reversed(self.pools.get((account, pool_id.lower()), [])))
