"""What each dashboard page shows, read through the same domain operations the REST API calls
(batch/domain/*, blob/service.py). Pure reads; the templates only lay it out.

Everything rendered passes ``redact`` first: SAS signatures in URLs (resource files, output
containers) never reach a page.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from openbatch.batch.domain import errors as e
from openbatch.batch.domain import jobs, nodes, pools, tasks
from openbatch.batch.domain.common import BatchContext, Doc

PAGE = 50  # tasks per page
EXIT_SCAN = 2_000  # tasks an exit-code filter examines per page (a short page then links on)
NODE_STATES = ("idle", "running", "starting", "waitingforstarttask", "starttaskfailed", "creating", "rebooting",
               "reimaging", "leavingpool", "unusable", "offline", "preempted", "unknown")
JOB_STATES = ("active", "disabling", "disabled", "enabling", "terminating", "completed", "deleting")
TASK_STATES = ("active", "preparing", "running", "completed")

_SIG = re.compile(r"((?:^|[?&])sig=)[^&#\s]*", re.IGNORECASE)


def redact(value: Any) -> Any:
    """``value`` with every SAS signature (``sig=...``) in its strings replaced; ``_`` keys dropped."""
    if isinstance(value, str):
        return _SIG.sub(r"\1REDACTED", value) if "sig=" in value.lower() else value
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


# --- overview --------------------------------------------------------------------------------


def pool_rows(ctx: BatchContext, account: str) -> list[Doc]:
    rows = []
    for pool in sorted(ctx.store.all("pool", account), key=lambda p: str(p["id"]).lower()):
        states = Counter(str(n.get("state")) for n in ctx.store.all("node", account, str(pool["id"])))
        rows.append({"pool": redact(pool), "nodes": dict(states), "total": sum(states.values())})
    return rows


def node_states(ctx: BatchContext, account: str) -> dict[str, int]:
    found: Counter[str] = Counter()
    for pool in ctx.store.all("pool", account):
        found.update(str(n.get("state")) for n in ctx.store.all("node", account, str(pool["id"])))
    return dict(found)


def job_rows(ctx: BatchContext, account: str, limit: int = 100) -> list[Doc]:
    """The ``limit`` most recently created jobs with their task counts."""
    every = sorted(ctx.store.all("job", account), key=lambda j: str(j.get("creationTime") or ""), reverse=True)
    rows = []
    for job in every[:limit]:
        try:
            counts = jobs.task_counts(ctx, account, str(job["id"]))["taskCounts"]
        except e.BatchError:
            continue
        rows.append({"job": redact(job), "counts": counts, "progress": progress(counts)})
    return rows


def job_states(ctx: BatchContext, account: str) -> dict[str, int]:
    return dict(Counter(str(j.get("state")) for j in ctx.store.all("job", account)))


def progress(counts: Doc) -> Doc:
    """Percentages of succeeded / failed / running / active for a progress bar."""
    total = sum(int(counts.get(k, 0)) for k in ("active", "running", "completed"))
    if not total:
        return {"total": 0, "succeeded": 0.0, "failed": 0.0, "running": 0.0, "done": 0.0}
    pct = {k: 100.0 * int(counts.get(k, 0)) / total for k in ("succeeded", "failed", "running")}
    return {"total": total, **pct, "done": 100.0 * int(counts.get("completed", 0)) / total}


# --- pool ------------------------------------------------------------------------------------


@dataclass
class PoolView:
    pool: Doc
    nodes: list[Doc]
    counts: Doc
    start_task_failures: list[Doc] = field(default_factory=list)


def pool_view(ctx: BatchContext, account: str, pool_id: str) -> PoolView:
    pool = pools.get_pool(ctx, account, pool_id)
    members = sorted(ctx.store.all("node", account, str(pool["id"])), key=lambda n: str(n["id"]))
    failures = [n for n in members if (n.get("startTaskInfo") or {}).get("result") == "failure"]
    return PoolView(pool=redact(pool), nodes=redact(members), counts=nodes.pool_node_counts(ctx, account, pool),
                    start_task_failures=redact(failures))


# --- job and its tasks -------------------------------------------------------------------------


@dataclass
class TaskFilter:
    """The task table's filter: a state, "failed" (completed with a failure) or an exit code."""

    state: str = ""
    exit_code: int | None = None

    @classmethod
    def parse(cls, state: str, exit_code: str) -> TaskFilter:
        state = state if state in (*TASK_STATES, "failed") else ""
        code = exit_code.strip()
        return cls(state=state, exit_code=int(code) if re.fullmatch(r"-?\d{1,10}", code) else None)

    def query(self) -> str:
        parts = []
        if self.state:
            parts.append(f"state={self.state}")
        if self.exit_code is not None:
            parts.append(f"exit={self.exit_code}")
        return "&".join(parts)


@dataclass
class TaskPage:
    tasks: list[Doc]
    next_after: int | None
    after: int


def task_page(ctx: BatchContext, account: str, job_id: str, flt: TaskFilter, after: int) -> TaskPage:
    """One page of the job's tasks in submission order, after the task with sequence ``after``
    (keyset paging: each page is one index range scan however deep it is)."""
    state, result = flt.state or None, None
    if flt.state == "failed":
        state, result = "completed", "failure"
    match = None
    budget = 20_000
    if flt.exit_code is not None:
        code = flt.exit_code
        state = state or "completed"
        budget = EXIT_SCAN
        if code != 0 and state == "completed":  # a non-zero exit code always makes a failure
            result = "failure"  # (domain/execution.py): only failed tasks need reading

        def match(doc: Doc) -> bool:
            return (doc.get("executionInfo") or {}).get("exitCode") == code

    docs, token = tasks.list_tasks(ctx, account, job_id, match=match, state=state, after=after, limit=PAGE,
                                   scan_budget=budget, result=result)
    return TaskPage(tasks=redact(docs), next_after=token, after=after)


def job_view(ctx: BatchContext, account: str, job_id: str) -> Doc:
    doc: Doc = redact(tasks.job_of(ctx, account, job_id))
    return doc


def job_counts(ctx: BatchContext, account: str, job_id: str) -> Doc:
    """The job's task counts, as Get Task Counts answers them (one aggregate over its tasks)."""
    counts: Doc = jobs.task_counts(ctx, account, job_id)["taskCounts"]
    return counts


def task_view(ctx: BatchContext, account: str, job_id: str, task_id: str) -> Doc:
    doc: Doc = redact(tasks.get_task(ctx, account, job_id, task_id))
    return doc


# --- charts -------------------------------------------------------------------------------------


def chart(series: list[float], width: int = 600, height: int = 120) -> Doc:
    """An SVG polyline of ``series`` (tasks/s per interval): points, scale and the peak."""
    peak = max(series, default=0.0)
    top = peak if peak > 0 else 1.0
    n = len(series)
    step = width / max(n - 1, 1)
    points = " ".join(f"{i * step:.1f},{height - (v / top) * (height - 10):.1f}" for i, v in enumerate(series))
    return {"points": points, "peak": peak, "width": width, "height": height, "count": n}


def heat_color(state: str) -> str:
    return {"idle": "#3fb950", "running": "#2f81f7", "starting": "#d29922", "waitingforstarttask": "#d29922",
            "creating": "#a371f7", "rebooting": "#a371f7", "reimaging": "#a371f7", "starttaskfailed": "#f85149",
            "unusable": "#f85149", "offline": "#8b949e", "leavingpool": "#8b949e", "preempted": "#8b949e"}.get(
        state, "#6e7681")


def us_iso(us: int) -> str:
    """Microseconds since the epoch (the blob store's times) as ISO 8601 UTC."""
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
