"""Auto pools: the pool a job gets from ``poolInfo.autoPoolSpecification`` instead of ``poolId``.

As on Azure, the request checks only the specification's own fields (``poolLifetimeOption``
required, ``jobschedule`` only in job schedules, ``autoPoolIdPrefix`` up to 20 characters); the
``pool`` it describes is checked when the pool is created — when the job is added, or when a job
schedule creates a job. A pool that cannot be created does not fail the request: the job moves
to ``completed`` with ``executionInfo.schedulingError`` (category ``usererror``, code
``InvalidAutoPoolSettings``, or the more specific ``InvalidAutoScaleFormulaInAutoPool`` /
``InvalidApplicationPackageReferencesInAutoPool`` / ``InvalidCertificatesInAutoPool``), and the
error's details name the property, as Azure's job scheduling errors do.

The pool's id is the prefix, ``_`` and an upper-case GUID (at most 57 characters); the job shows
it in ``executionInfo.poolId`` while its ``poolInfo`` keeps only the specification. Who deletes
the pool (unless ``keepAlive``): the engine, when the job completes or is deleted
(``poolLifetimeOption: job``: internal ``_autoPoolId`` on the job) or when the job schedule
completes or is deleted (``jobschedule``: ``_autoPoolId`` on the schedule, shared by its jobs).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from openbatch.batch.domain import errors as e
from openbatch.batch.domain import pools, states
from openbatch.batch.domain.common import BatchContext, Doc, touch
from openbatch.batch.domain.instructions import Instruction
from openbatch.batch.store import BatchStore
from openbatch.batch.wire import models as m

LIFETIMES = ("jobschedule", "job")
MAX_PREFIX = 20
_PREFIX = re.compile(r"^[A-Za-z0-9_-]*$")
_PROP = "poolInfo.autoPoolSpecification"

# Which scheduling error a pool validation error becomes (by the property it names).
_AUTOSCALE_CODES = frozenset({e.InvalidAutoScalingSettings.code, e.AutoScalingFormulaSyntaxError.code})


def check_spec(spec: Doc, *, schedule: bool) -> Doc:
    """The autoPoolSpecification of a job's (or job schedule's) poolInfo, normalised."""
    lifetime = m.enum(spec, "poolLifetimeOption", LIFETIMES, required=True, prop=f"{_PROP}.poolLifetimeOption")
    if lifetime == "jobschedule" and not schedule:
        raise m.invalid(f"{_PROP}.poolLifetimeOption", lifetime,
                        "The jobschedule lifetime applies only to job schedules; a job's auto pool lives as long "
                        "as the job (poolLifetimeOption: job).")
    prefix = m.string(spec, "autoPoolIdPrefix", prop=f"{_PROP}.autoPoolIdPrefix", max_len=MAX_PREFIX)
    if prefix is not None and not _PREFIX.match(prefix):
        raise m.invalid(f"{_PROP}.autoPoolIdPrefix", prefix,
                        "The prefix can contain letters, digits, hyphens and underscores only.")
    keep = m.boolean(spec, "keepAlive", prop=f"{_PROP}.keepAlive")
    pool = m.obj(spec, "pool", required=True, prop=f"{_PROP}.pool")
    out: Doc = {"poolLifetimeOption": lifetime, "keepAlive": bool(keep), "pool": pool}
    if prefix:
        out["autoPoolIdPrefix"] = prefix
    return out


def spec_of(job_or_spec: Doc) -> Doc | None:
    """The autoPoolSpecification of a job's (or job specification's) poolInfo, if it has one."""
    info = job_or_spec.get("poolInfo") or {}
    spec = info.get("autoPoolSpecification")
    return spec if isinstance(spec, dict) else None


def new_pool_id(spec: Doc) -> str:
    suffix = str(uuid.uuid4()).upper()
    prefix = spec.get("autoPoolIdPrefix")
    return f"{prefix}_{suffix}" if prefix else suffix


def scheduling_error(exc: e.BatchError) -> Doc:
    """What a job shows in ``executionInfo.schedulingError`` when its auto pool cannot be created."""
    prop = exc.values.get("PropertyName", "")
    if exc.code in _AUTOSCALE_CODES or "autoScale" in prop:
        code = "InvalidAutoScaleFormulaInAutoPool"
    elif "applicationPackageReferences" in prop or exc.code == e.InvalidApplicationPackageReferences.code:
        code = "InvalidApplicationPackageReferencesInAutoPool"
    elif "certificateReferences" in prop:
        code = "InvalidCertificatesInAutoPool"
    else:
        code = "InvalidAutoPoolSettings"
    details = [{"name": k, "value": v} for k, v in exc.values.items()]
    return {"category": "usererror", "code": code,
            "message": f"The specified autopool settings are not valid: {exc.message}", "details": details}


def create(ctx: BatchContext, account: str, spec: Doc, base_url: str, now: str) -> Doc:
    """Store a new pool built from ``spec["pool"]`` as an added pool is (its certificate references
    checked, its autoscale formula evaluated), not committed; the BatchError if it cannot be made."""
    body: Any = spec.get("pool")
    if not isinstance(body, dict):
        raise m.missing("pool")
    pool_id = new_pool_id(spec)
    while ctx.store.get("pool", account, pool_id) is not None:  # a GUID collision: take another
        pool_id = new_pool_id(spec)
    body = {**body, "id": pool_id}
    doc = pools.new_pool(body, base_url, now)
    pools.complete_new_pool(ctx, account, body, doc, now)
    ctx.store.put("pool", account, doc)
    return doc


def usable(store: BatchStore, account: str, pool_id: str | None) -> bool:
    """Whether a kept auto pool still exists and is not being deleted (jobs of a schedule share it)."""
    doc = store.get("pool", account, pool_id) if pool_id else None
    return doc is not None and doc.get("state") == states.PoolState.ACTIVE.value


def delete(store: BatchStore, account: str, pool_id: str, now: str) -> tuple[Doc | None, list[Instruction]]:
    """Start deleting an auto pool whose lifetime ended (gone or already deleting: nothing to do).
    Returns the pool (stored, not committed) and the instructions the transition asks for."""
    doc = store.get("pool", account, pool_id)
    if doc is None or not states.POOL.allowed(doc, states.PoolState.DELETING):
        return None, []
    instructions = states.POOL.apply(doc, states.PoolState.DELETING, states.Context(now, "autopool"))
    touch(doc, now)
    store.put("pool", account, doc)
    return doc, instructions


def fail(job: Doc, exc: e.BatchError, now: str) -> None:
    """The job's auto pool could not be created: the job is completed with the scheduling error."""
    info = job.setdefault("executionInfo", {})
    info["schedulingError"] = scheduling_error(exc)
    states.JOB.apply(job, states.JobState.COMPLETED, states.Context(now, reason="AutoPoolCreationFailed"))
    info["endTime"] = now


def provide(ctx: BatchContext, account: str, job: Doc, base_url: str, now: str,
            schedule: Doc | None = None) -> Doc | None:
    """Give a new ``job`` with an auto pool specification its pool: a new one, or (lifetime
    ``jobschedule``) the one its job ``schedule`` keeps while that still exists. Returns the pool
    it created (stored, not committed), else None; a pool that cannot be made fails the job."""
    spec = spec_of(job)
    if spec is None:
        return None
    shared = schedule is not None and spec["poolLifetimeOption"] == "jobschedule"
    kept = schedule.get("_autoPoolId") if schedule is not None else None
    if shared and usable(ctx.store, account, kept):
        job.setdefault("executionInfo", {})["poolId"] = kept
        return None
    try:
        pool = create(ctx, account, spec, base_url, now)
    except e.BatchError as exc:
        fail(job, exc, now)
        return None
    job.setdefault("executionInfo", {})["poolId"] = pool["id"]
    if shared and schedule is not None:
        schedule["_autoPoolId"] = pool["id"]
    else:
        job["_autoPoolId"] = pool["id"]
    return pool
