"""This machine's raw process-spawn rate: create_subprocess_exec('/bin/true'), 8 at a time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any


async def _spawn_many(count: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            proc = await asyncio.create_subprocess_exec("/bin/true")
            await proc.wait()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (time.perf_counter() - start)


def spawn_cpu(count: int = 2000, concurrency: int = 8) -> float:
    """CPU seconds this process spends per raw spawn (asyncio loop; the /bin/true processes' own
    CPU not counted): what one task's spawn costs at the least, less sensitive to other load
    on the machine than spawns/s."""
    start = time.process_time()
    asyncio.run(_spawn_many(count, concurrency))
    return (time.process_time() - start) / count


def spawn_rate(count: int = 2000, concurrency: int = 8) -> dict[str, float]:
    """Spawns/s with the default asyncio loop and with uvloop (the loop the server runs on)."""
    rates = {"asyncio": _run(asyncio.run, _spawn_many(count, concurrency))}
    try:
        import uvloop

        rates["uvloop"] = _run(uvloop.run, _spawn_many(count, concurrency))
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        pass
    return rates


def _run(runner: Callable[[Any], float], coro: Coroutine[Any, Any, float]) -> float:
    return float(runner(coro))
