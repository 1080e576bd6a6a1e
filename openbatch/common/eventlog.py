"""The server's event log: what ``openbatch serve`` prints while it runs (stderr; text or JSON lines).

- Engine events (logger ``openbatch.events``): pools resized, nodes changing state, start task failures,
  tasks completed or failed with their exit codes, requeues at recovery, a shutdown summary. By default
  they come at a readable rate: completions and node changes are added up and printed once per
  :data:`WINDOW` seconds ("1,000 tasks completed (3 failed) in the last 5 s"); failures are named, a
  few per window. With ``-v`` every event has its own line.
- Requests (logger ``openbatch.requests``, ``-v`` only): method, path, status, duration. Query strings
  never appear whole: only the names of their parameters and the values of a few harmless ones
  (api-version, restype, comp), so no SAS signature, key or token reaches the log.

The engine calls :data:`EVENTS` at a few points; the formatting and the adding-up live here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

WINDOW = 5.0  # seconds over which routine events are added up at the default verbosity
FAILURES_PER_WINDOW = 5  # failed tasks named one by one per window; more are counted
SAFE_QUERY = frozenset({"api-version", "restype", "comp"})

events_log = logging.getLogger("openbatch.events")
requests_log = logging.getLogger("openbatch.requests")


class EngineEvents:
    """Adds up routine engine events per window; names the ones a person must see."""

    def __init__(self, window: float = WINDOW):
        self.window = window
        self.verbose = False
        self._completed = 0
        self._failed = 0
        self._named_failures = 0
        self._nodes: Counter[tuple[str, str]] = Counter()  # (pool, new state) -> nodes
        self._timer: asyncio.TimerHandle | None = None
        self._started = time.monotonic()
        self.totals: Counter[str] = Counter()

    # --- what the engine reports -----------------------------------------------------------------

    def task_completed(self, job_id: str, task_id: str, exit_code: object, result: object,
                       failure_code: object = None) -> None:
        failed = result == "failure"
        self.totals["tasks failed" if failed else "tasks succeeded"] += 1
        if self.verbose:
            how = "failed" if failed else "completed"
            code = f" with exit code {exit_code}" if exit_code is not None else ""
            why = f" ({failure_code})" if failure_code and failed else ""
            _emit(f"task {job_id}/{task_id} {how}{code}{why}", event="task.completed", job=job_id, task=task_id,
                  exitCode=exit_code, result=result, failure=failure_code)
            return
        self._completed += 1
        if failed:
            self._failed += 1
            if self._named_failures < FAILURES_PER_WINDOW:
                self._named_failures += 1
                code = f" with exit code {exit_code}" if exit_code is not None else ""
                _emit(f"task {job_id}/{task_id} failed{code}" + (f" ({failure_code})" if failure_code else ""),
                      event="task.failed", job=job_id, task=task_id, exitCode=exit_code, failure=failure_code)
        self._arm()

    def node_state(self, pool_id: str, node_id: str, old: object, new: str, start_task: object = None) -> None:
        self.totals["node state changes"] += 1
        if new == "starttaskfailed":
            info = start_task if isinstance(start_task, dict) else {}
            failure = (info.get("failureInfo") or {}).get("code") if isinstance(info.get("failureInfo"), dict) else None
            code = info.get("exitCode")
            _emit(f"node {node_id} of pool {pool_id}: start task failed"
                  + (f" with exit code {code}" if code is not None else "") + (f" ({failure})" if failure else ""),
                  level=logging.WARNING, event="node.starttaskfailed", pool=pool_id, node=node_id, exitCode=code,
                  failure=failure)
            return
        if self.verbose:
            _emit(f"node {node_id} of pool {pool_id}: {old} -> {new}", event="node.state", pool=pool_id,
                  node=node_id, old=old, new=new)
            return
        self._nodes[(pool_id, new)] += 1
        self._arm()

    def pool_resized(self, pool_id: str, dedicated: object, low_priority: object, errors: object = None) -> None:
        self.totals["pool resizes"] += 1
        trouble = f"; resize errors: {errors}" if errors else ""
        _emit(f"pool {pool_id} resized: {dedicated} dedicated, {low_priority} low-priority nodes{trouble}",
              level=logging.WARNING if errors else logging.INFO, event="pool.resized", pool=pool_id,
              dedicated=dedicated, lowPriority=low_priority)

    def recovered(self, pools: int, nodes: int, jobs: int, requeued: int) -> None:
        _emit(f"recovered {pools} pools, {nodes} nodes, {jobs} jobs; {requeued} running tasks requeued",
              event="server.recovered", pools=pools, nodes=nodes, jobs=jobs, requeued=requeued)

    def shutdown(self) -> None:
        self.flush()
        uptime = time.monotonic() - self._started
        parts = ", ".join(f"{count:,} {name}" for name, count in sorted(self.totals.items())) or "nothing happened"
        _emit(f"shutting down after {uptime:,.0f} s: {parts}", event="server.shutdown", uptimeSeconds=round(uptime, 1),
              **{name.replace(" ", "_"): count for name, count in self.totals.items()})

    # --- the window ------------------------------------------------------------------------------

    def _arm(self) -> None:
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a unit test driving the engine by hand): say it now
            self.flush()
            return
        self._timer = loop.call_later(self.window, self.flush)

    def flush(self) -> None:
        """Print what was added up since the window opened."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._completed:
            failed = f" ({self._failed:,} failed)" if self._failed else ""
            _emit(f"{self._completed:,} tasks completed{failed} in the last {self.window:g} s",
                  event="tasks.completed", completed=self._completed, failed=self._failed, seconds=self.window)
        by_pool: dict[str, list[str]] = {}
        for (pool_id, state), count in sorted(self._nodes.items()):
            by_pool.setdefault(pool_id, []).append(f"{count} {state}")
        for pool_id, changes in by_pool.items():
            _emit(f"pool {pool_id}: nodes now {', '.join(changes)}", event="nodes.state", pool=pool_id)
        self._completed = self._failed = self._named_failures = 0
        self._nodes.clear()


EVENTS = EngineEvents()


def _emit(message: str, level: int = logging.INFO, **fields: Any) -> None:
    if events_log.isEnabledFor(level):
        events_log.log(level, message, extra={"fields": {k: v for k, v in fields.items() if v is not None}})


# --- requests ------------------------------------------------------------------------------------


def safe_target(path: str, query_string: bytes | str) -> str:
    """``path?names``: the values of query parameters are left out (``sig``, ``se``, keys in custom
    names ...), except for :data:`SAFE_QUERY`."""
    query = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    if not query:
        return path
    parts = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        parts.append(f"{name}={value}" if name.lower() in SAFE_QUERY else name)
    return f"{path}?{'&'.join(parts)}"


ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]


def with_request_log(app: Any, endpoint: str) -> ASGIApp:
    """``app`` logging one line per HTTP request: method, safe target, status, duration, bytes out."""

    async def logged(scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
                     send: Callable[[Any], Awaitable[None]]) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def sending(message: Any) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message.get("status", 0))
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            ms = (time.perf_counter() - started) * 1000
            target = safe_target(str(scope.get("path", "")), scope.get("query_string", b""))
            method = str(scope.get("method", ""))
            requests_log.info("%s %s %s %d %.1f ms", endpoint, method, target, status, ms,
                              extra={"fields": {"event": "request", "endpoint": endpoint, "method": method,
                                                "path": target, "status": status, "ms": round(ms, 2)}})

    return logged


# --- set-up --------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
        }
        doc.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure(verbosity: int, fmt: str = "text") -> None:
    """Log to stderr: engine events at the default verbosity, every event and every request with -v,
    debug output of openbatch with -vv."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("openbatch")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)
    root.propagate = False
    requests_log.setLevel(logging.INFO if verbosity >= 1 else logging.WARNING)
    EVENTS.verbose = verbosity >= 1
