"""Pool rules: add, get, list, patch, update properties, resize, stop resize, remove nodes, autoscale, delete.

Pools are documents in the modern wire shape (kind "pool"). Operations validate the request,
change the document (states only through ``states.POOL`` / ``states.ALLOCATION`` / ``states.NODE``),
commit, and then tell the engine: ``hooks.pool_changed`` when the pool's size or state changed
(the engine creates or removes node documents until the pool matches its targets, then moves the
allocation state to steady; on ``stopping`` it stops where it is; on ``deleting`` it removes
every node and then the pool), ``hooks.perform`` for the instructions a transition returned.

Autoscale: the formula is checked when it is set (``AutoScalingFormulaSyntaxError``) and
evaluated at once (pool add, enable) and then every ``autoScaleEvaluationInterval`` (the engine's
timer, ``engine_autoscale.py``, calls :func:`autoscale_pool`). Each run is kept as the pool's
``autoScaleRun``; a run without error sets the pool's targets (and how shrinking treats running
tasks, ``$NodeDeallocationOption``) and resizes it. The schedule's start is kept as
``_autoScaleStart`` (service-clock seconds): enabling with an interval starts a new schedule.
Evaluate runs a formula without applying it. The language is ``domain/autoscale/``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from openbatch.batch.domain import applications, images
from openbatch.batch.domain import autoscale as a
from openbatch.batch.domain import certificates as certs
from openbatch.batch.domain import errors as e
from openbatch.batch.domain import pool_identity as pid
from openbatch.batch.domain import tasks as t
from openbatch.batch.domain.autoscale import errors as ae
from openbatch.batch.domain.common import BatchContext, Doc, check_id, now_iso, touch
from openbatch.batch.domain.instructions import Instruction
from openbatch.batch.domain.states import (
    ALLOCATION,
    NODE,
    POOL,
    AllocationState,
    Context,
    NodeState,
    PoolState,
)
from openbatch.batch.wire import models as m
from openbatch.common import clock

MIN_RESIZE_TIMEOUT = timedelta(minutes=5)
DEFAULT_RESIZE_TIMEOUT = "PT15M"
MIN_EVAL_INTERVAL = timedelta(minutes=5)
MAX_EVAL_INTERVAL = timedelta(hours=168)
MAX_FORMULA = 8192
MAX_REMOVE = 100
# Nodes share this host: a pool may ask for at most this many (dedicated + low-priority). Azure
# bounds pools by the account's core quota instead; a typo here must not exhaust the machine.
MAX_POOL_NODES = 1000
DEALLOCATION_OPTIONS = ("requeue", "terminate", "taskcompletion", "retaineddata")
COMMUNICATION_MODES = ("default", "classic", "simplified")

# Properties patch may change at any time, and those Azure lets change only while the pool is empty.
_PATCH_ANYTIME = ("startTask", "certificateReferences", "applicationPackageReferences", "metadata",
                  "targetNodeCommunicationMode")
_PATCH_WHEN_EMPTY = ("displayName", "vmSize", "taskSlotsPerNode", "taskSchedulingPolicy",
                     "enableInterNodeCommunication", "virtualMachineConfiguration", "networkConfiguration",
                     "userAccounts", "mountConfiguration", "upgradePolicy", "resourceTags")


# --- validation of the pieces ----------------------------------------------------------------


def check_start_task(body: Doc, key: str = "startTask") -> Doc | None:
    """A start task: commandLine required; resource files, environment, identity, retries checked."""
    task = m.obj(body, key)
    if task is None:
        return None
    t.check_command_line(task, prop=f"{key}.commandLine")
    m.resource_files(task, prop=f"{key}.resourceFiles")
    t.check_environment(task, "environmentSettings", prop=f"{key}.environmentSettings", unique=True)
    identity = m.user_identity(task, prop=f"{key}.userIdentity")
    m.integer(task, "maxTaskRetryCount", lo=-1, prop=f"{key}.maxTaskRetryCount")
    m.boolean(task, "waitForSuccess", prop=f"{key}.waitForSuccess")
    if task.get("containerSettings") is not None:
        raise m.invalid(f"{key}.containerSettings", "containerSettings",
                        "Container tasks are not supported by openbatch: tasks run as processes on the host.")
    out = {**task, "maxTaskRetryCount": task.get("maxTaskRetryCount", 0),
           "waitForSuccess": task.get("waitForSuccess", True)}
    if identity is not None:
        out["userIdentity"] = identity
    return out


def _check_packages(body: Doc, key: str = "applicationPackageReferences") -> list[Doc] | None:
    """The references' shape; whether they name active packages of the account is
    ``applications.check_pool_references`` (409 InvalidApplicationPackageReferences)."""
    refs = m.objects(body, key, max_items=10)
    for ref in refs or []:
        m.string(ref, "applicationId", required=True, prop=f"{key}.applicationId")
        m.string(ref, "version", prop=f"{key}.version")
    return refs


def _check_user_accounts(body: Doc) -> list[Doc] | None:
    accounts = m.objects(body, "userAccounts")
    if accounts is None:
        return None
    out = []
    for account in accounts:
        m.string(account, "name", required=True, prop="userAccounts.name")
        m.string(account, "password", required=True, prop="userAccounts.password")
        m.enum(account, "elevationLevel", ("nonadmin", "admin"), prop="userAccounts.elevationLevel")
        out.append({k: v for k, v in account.items() if k != "password"})  # never returned
    return out


def _check_scheduling_policy(body: Doc) -> Doc | None:
    policy = m.obj(body, "taskSchedulingPolicy")
    if policy is None:
        return None
    fill = m.enum(policy, "nodeFillType", ("spread", "pack"), required=True, prop="taskSchedulingPolicy.nodeFillType")
    return {**policy, "nodeFillType": fill}


def _check_vm(body: Doc, required: bool) -> Doc | None:
    if body.get("cloudServiceConfiguration") is not None:
        raise m.invalid("cloudServiceConfiguration", "cloudServiceConfiguration",
                        "Cloud service configuration pools are no longer supported; use virtualMachineConfiguration.")
    vm = m.obj(body, "virtualMachineConfiguration", required=required)
    return images.check_virtual_machine_configuration(vm) if vm is not None else None


def _check_node_settings(body: Doc, required: bool) -> Doc:
    """The properties that shape a pool's nodes (add, and patch of an empty pool)."""
    out: Doc = {}
    m.string(body, "displayName", max_len=1024)
    size = m.string(body, "vmSize", required=required)
    if size is not None:
        out["vmSize"] = size.lower()
    vm = _check_vm(body, required)
    if vm is not None:
        out["virtualMachineConfiguration"] = vm
    m.integer(body, "taskSlotsPerNode", lo=1, hi=256)
    policy = _check_scheduling_policy(body)
    if policy is not None:
        out["taskSchedulingPolicy"] = policy
    m.boolean(body, "enableInterNodeCommunication")
    m.obj(body, "networkConfiguration")
    m.obj(body, "upgradePolicy")
    m.obj(body, "resourceTags")
    users = _check_user_accounts(body)
    if users is not None:
        out["userAccounts"] = users
    if m.array(body, "mountConfiguration"):
        raise m.invalid("mountConfiguration", "mountConfiguration",
                        "Mounting file systems on nodes is not supported by openbatch.")
    return out


def _check_common(body: Doc) -> Doc:
    """The properties patch, update properties and add share."""
    out: Doc = {}
    start = check_start_task(body)
    if start is not None:
        out["startTask"] = start
    m.objects(body, "certificateReferences")
    _check_packages(body)
    metadata = m.name_value_pairs(body, "metadata")
    if metadata is not None:
        out["metadata"] = metadata
    mode = m.enum(body, "targetNodeCommunicationMode", COMMUNICATION_MODES)
    if mode is not None:
        out["targetNodeCommunicationMode"] = mode
    return out


def _formula_text(body: Doc) -> str:
    formula = m.string(body, "autoScaleFormula", required=True)
    assert formula is not None
    if len(formula) > MAX_FORMULA:
        raise e.AutoScaleFormulaTooLong(
            f"The specified autoscale formula is longer than {MAX_FORMULA} characters.",
            {"PropertyName": "autoScaleFormula", "PropertyValue": f"{len(formula)} characters"})
    return formula


def _compile(text: str) -> a.Formula:
    """The checked formula, or AutoScalingFormulaSyntaxError quoting the first bad statement."""
    try:
        return a.compile_formula(text)
    except a.FormulaSyntaxError as exc:
        raise e.AutoScalingFormulaSyntaxError(ae.SYNTAX_MESSAGE, {"Message": str(exc.problems[0])}) from None


def _check_autoscale(body: Doc) -> tuple[Doc, a.Formula]:
    out: Doc = {}
    text = _formula_text(body)
    out["autoScaleFormula"] = text
    interval = m.duration(body, "autoScaleEvaluationInterval", lo=MIN_EVAL_INTERVAL, hi=MAX_EVAL_INTERVAL)
    out["autoScaleEvaluationInterval"] = m.format_duration(interval) if interval is not None else "PT15M"
    return out, _compile(text)


def _refuse_mixed_sizing(body: Doc, autoscale: bool) -> None:
    """Fixed targets with autoscale, or autoscale settings without it, would be ignored: refused."""
    if autoscale:
        for key in ("targetDedicatedNodes", "targetLowPriorityNodes"):
            if body.get(key):
                raise e.InvalidAutoScalingSettings(
                    f"The property {key} must not be specified when enableAutoScale is true.", {"PropertyName": key})
        return
    for key in ("autoScaleFormula", "autoScaleEvaluationInterval"):
        if body.get(key) is not None:
            raise e.InvalidAutoScalingSettings(
                f"The property {key} must not be specified when enableAutoScale is false.", {"PropertyName": key})


def _targets(body: Doc) -> tuple[int | None, int | None]:
    """targetDedicatedNodes / targetLowPriorityNodes (None when absent), within MAX_POOL_NODES together."""
    dedicated = m.integer(body, "targetDedicatedNodes", lo=0, hi=MAX_POOL_NODES)
    low = m.integer(body, "targetLowPriorityNodes", lo=0, hi=MAX_POOL_NODES)
    if (dedicated or 0) + (low or 0) > MAX_POOL_NODES:
        raise m.invalid("targetLowPriorityNodes", low,
                        f"A pool may have at most {MAX_POOL_NODES} nodes (dedicated and low-priority together) "
                        "on openbatch.")
    return dedicated, low


def _resize_timeout(body: Doc) -> str:
    timeout = m.duration(body, "resizeTimeout", lo=MIN_RESIZE_TIMEOUT)
    return m.format_duration(timeout) if timeout is not None else DEFAULT_RESIZE_TIMEOUT


# --- add ---------------------------------------------------------------------------------------

_ADD_KEYS = ("displayName", "networkConfiguration", "certificateReferences", "applicationPackageReferences",
             "upgradePolicy", "resourceTags")


def new_pool(body: Doc, base_url: str, now: str) -> Doc:
    """Validate an add request and build the pool document (pure)."""
    pool_id = check_id(body.get("id"))
    settings = _check_node_settings(body, required=True)
    common = _check_common(body)
    dedicated, low = (n or 0 for n in _targets(body))
    autoscale = bool(m.boolean(body, "enableAutoScale"))
    _refuse_mixed_sizing(body, autoscale)
    doc: Doc = {
        "id": pool_id, "url": f"{base_url}/pools/{pool_id}", "creationTime": now,
        "state": PoolState.ACTIVE.value, "stateTransitionTime": now,
        "allocationState": (AllocationState.RESIZING if dedicated + low else AllocationState.STEADY).value,
        "allocationStateTransitionTime": now,
        **m.only(body, _ADD_KEYS),
        "resizeTimeout": _resize_timeout(body),
        "currentDedicatedNodes": 0, "currentLowPriorityNodes": 0,
        "targetDedicatedNodes": dedicated, "targetLowPriorityNodes": low,
        "enableAutoScale": autoscale,
        "enableInterNodeCommunication": bool(body.get("enableInterNodeCommunication", False)),
        "taskSlotsPerNode": body.get("taskSlotsPerNode") or 1,
        "taskSchedulingPolicy": {"nodeFillType": "spread"},
        "targetNodeCommunicationMode": "default", "currentNodeCommunicationMode": "classic",
        **settings, **common,
    }
    if autoscale:
        doc.update(_check_autoscale(body)[0])
    touch(doc, now)
    return doc


def complete_new_pool(ctx: BatchContext, account: str, body: Doc, doc: Doc, now: str) -> None:
    """What a new pool (``new_pool``) needs from the account before it is stored: its certificate
    references checked, and its autoscale formula evaluated once (a pool added, an auto pool made)."""
    refs = certs.check_references(ctx.store, account, body)
    if refs is not None:
        doc["certificateReferences"] = refs
    identity = pid.check(ctx, body)
    if identity is not None:
        doc["identity"] = identity
    applications.check_pool_references(ctx, account, doc.get("applicationPackageReferences"))
    if doc["enableAutoScale"]:
        doc["_autoScaleStart"] = clock.SERVICE.time()
        _autoscale(ctx, account, doc, _compile(doc["autoScaleFormula"]), now)


async def add_pool(ctx: BatchContext, account: str, body: Doc, base_url: str) -> Doc:
    now = now_iso()
    doc = new_pool(body, base_url, now)
    existing = ctx.store.get("pool", account, doc["id"])
    if existing is not None:
        if existing["state"] == PoolState.DELETING:
            raise e.PoolBeingDeleted("The specified pool has been marked for deletion and is being reclaimed.")
        raise e.PoolExists("The specified pool already exists.")
    complete_new_pool(ctx, account, body, doc, now)
    ctx.store.put("pool", account, doc)
    await ctx.store.flush()
    ctx.hooks.pool_changed(account, doc)
    return doc


# --- read ------------------------------------------------------------------------------------


def get_pool(ctx: BatchContext, account: str, pool_id: str) -> Doc:
    doc = ctx.store.get("pool", account, pool_id)
    if doc is None:
        raise e.PoolNotFound("The specified pool does not exist.")
    return doc


def active_pool(ctx: BatchContext, account: str, pool_id: str) -> Doc:
    """The pool, refusing with PoolBeingDeleted when it is being deleted."""
    doc = get_pool(ctx, account, pool_id)
    if doc["state"] == PoolState.DELETING:
        raise e.PoolBeingDeleted("The specified pool has been marked for deletion and is being reclaimed.")
    return doc


def page(docs: list[Doc], after: str | None, limit: int) -> tuple[list[Doc], str | None]:
    """One page of ``docs`` ordered by lower-cased id, after the key ``after``; the next key or None."""
    ordered = sorted(docs, key=lambda d: str(d["id"]).lower())
    if after:
        ordered = [d for d in ordered if str(d["id"]).lower() > after.lower()]
    if len(ordered) > limit:
        return ordered[:limit], str(ordered[limit - 1]["id"]).lower()
    return ordered, None


def list_pools(ctx: BatchContext, account: str, accept: Any, after: str | None,
               limit: int) -> tuple[list[Doc], str | None]:
    """Pools ``accept`` (a compiled $filter) takes, one page at a time."""
    return page([d for d in ctx.store.all("pool", account) if accept(d)], after, limit)


def node_count(ctx: BatchContext, account: str, pool_id: str) -> int:
    return len(ctx.store.all("node", account, pool_id))


# --- change ----------------------------------------------------------------------------------


async def _commit(ctx: BatchContext, account: str, doc: Doc, now: str,
                  instructions: list[Instruction] | None = None) -> Doc:
    """Store the changed pool, commit, then hand the engine the instructions and the news."""
    touch(doc, now)
    ctx.store.put("pool", account, doc)
    await ctx.store.flush()
    if instructions:
        ctx.hooks.perform(account, instructions)
    ctx.hooks.pool_changed(account, doc)
    return doc


async def patch_pool(ctx: BatchContext, account: str, pool_id: str, body: Doc) -> Doc:
    """Replace the properties present in ``body``; nodes' shape only while the pool is empty."""
    doc = active_pool(ctx, account, pool_id)
    common = _check_common(body)
    settings = _check_node_settings(body, required=False)
    refs = certs.check_references(ctx.store, account, body)
    if refs is not None:
        common["certificateReferences"] = refs
    applications.check_pool_references(ctx, account, body.get("applicationPackageReferences"))
    shaping = [k for k in _PATCH_WHEN_EMPTY if body.get(k) is not None]
    if shaping and (node_count(ctx, account, pool_id) or doc["currentDedicatedNodes"] + doc["currentLowPriorityNodes"]):
        raise e.OperationInvalidForCurrentState(
            f"The property {shaping[0]} can be updated only when the pool has no nodes.",
            {"PropertyName": shaping[0]})
    for key in (*_PATCH_ANYTIME, *_PATCH_WHEN_EMPTY):
        if body.get(key) is not None:
            doc[key] = settings.get(key, common.get(key, body[key]))
    if body.get("metadata") == []:
        doc.pop("metadata", None)
    return await _commit(ctx, account, doc, now_iso())


async def update_pool_properties(ctx: BatchContext, account: str, pool_id: str, body: Doc) -> Doc:
    """Replace all updatable properties: absent means removed (startTask) or default."""
    doc = active_pool(ctx, account, pool_id)
    # certificateReferences was required too until certificates left the API (2025-06-01).
    for key in ("applicationPackageReferences", "metadata"):
        m.array(body, key, required=True)
    common = _check_common(body)
    body = {**body, "certificateReferences": certs.check_references(ctx.store, account, body)}
    applications.check_pool_references(ctx, account, body.get("applicationPackageReferences"))
    for key in ("startTask", "metadata"):
        if common.get(key):
            doc[key] = common[key]
        else:
            doc.pop(key, None)
    for key in ("certificateReferences", "applicationPackageReferences"):
        if body.get(key):
            doc[key] = body[key]
        else:
            doc.pop(key, None)
    doc["targetNodeCommunicationMode"] = common.get("targetNodeCommunicationMode", "default")
    return await _commit(ctx, account, doc, now_iso())


def _steady_or_refuse(doc: Doc) -> None:
    if doc["allocationState"] != AllocationState.STEADY:
        raise e.PoolBeingResized("The specified pool is being resized.",
                                 {"AllocationState": str(doc["allocationState"])})


async def resize_pool(ctx: BatchContext, account: str, pool_id: str, body: Doc) -> Doc:
    doc = active_pool(ctx, account, pool_id)
    dedicated, low = _targets(body)
    timeout = _resize_timeout(body)
    option = m.enum(body, "nodeDeallocationOption", DEALLOCATION_OPTIONS) or "requeue"
    if doc.get("enableAutoScale"):
        raise e.AutoScaleEnabled("The pool is configured for automatic scaling and cannot be resized manually.")
    _steady_or_refuse(doc)
    now = now_iso()
    doc["targetDedicatedNodes"] = dedicated or 0
    doc["targetLowPriorityNodes"] = low or 0
    doc["resizeTimeout"] = timeout
    doc["_nodeDeallocationOption"] = option
    doc.pop("resizeErrors", None)
    instructions = ALLOCATION.apply(doc, AllocationState.RESIZING, Context(now, "resize"))
    return await _commit(ctx, account, doc, now, instructions)


async def stop_resize_pool(ctx: BatchContext, account: str, pool_id: str) -> Doc:
    """resizing -> stopping (the engine settles at the current size, then steady); otherwise nothing to stop."""
    doc = active_pool(ctx, account, pool_id)
    if doc["allocationState"] != AllocationState.RESIZING:
        return doc
    now = now_iso()
    instructions = ALLOCATION.apply(doc, AllocationState.STOPPING, Context(now, "stopresize"))
    return await _commit(ctx, account, doc, now, instructions)


async def remove_nodes(ctx: BatchContext, account: str, pool_id: str, body: Doc) -> Doc:
    doc = active_pool(ctx, account, pool_id)
    node_ids = m.strings(body, "nodeList", required=True, max_items=MAX_REMOVE)
    assert node_ids is not None
    if not node_ids:
        raise m.invalid("nodeList", "[]", "At least one node must be specified.")
    timeout = _resize_timeout(body)
    option = m.enum(body, "nodeDeallocationOption", DEALLOCATION_OPTIONS) or "requeue"
    _steady_or_refuse(doc)
    nodes = []
    for node_id in dict.fromkeys(n.lower() for n in node_ids):
        node = ctx.store.get("node", account, node_id, parent=pool_id)
        if node is None:
            raise e.NodeNotFound("The specified node does not exist.", {"NodeId": node_id})
        nodes.append(node)
    now = now_iso()
    instructions = []
    for node in nodes:
        if node["state"] == NodeState.LEAVING_POOL:
            continue
        key = "targetDedicatedNodes" if node.get("isDedicated", True) else "targetLowPriorityNodes"
        doc[key] = max(0, int(doc.get(key) or 0) - 1)
        instructions += NODE.apply(node, NodeState.LEAVING_POOL, Context(now, option))
        ctx.store.put("node", account, node, parent=pool_id)
    doc["resizeTimeout"] = timeout
    instructions += ALLOCATION.apply(doc, AllocationState.RESIZING, Context(now, "removenodes"))
    return await _commit(ctx, account, doc, now, instructions)


async def delete_pool(ctx: BatchContext, account: str, pool_id: str) -> Doc:
    """active -> deleting; the engine removes the nodes and then the pool document."""
    doc = active_pool(ctx, account, pool_id)
    now = now_iso()
    instructions = POOL.apply(doc, PoolState.DELETING, Context(now, "delete"))
    return await _commit(ctx, account, doc, now, instructions)


# --- autoscale -------------------------------------------------------------------------------


def _environment(ctx: BatchContext, account: str, doc: Doc) -> a.Environment:
    now = clock.now()
    return a.Environment(
        now=now, history=ctx.samples.history(account, doc, now.timestamp()),
        dedicated=int(doc.get("targetDedicatedNodes") or 0), low_priority=int(doc.get("targetLowPriorityNodes") or 0),
        current={"$CurrentDedicatedNodes": float(doc.get("currentDedicatedNodes") or 0),
                 "$CurrentLowPriorityNodes": float(doc.get("currentLowPriorityNodes") or 0),
                 "$TaskSlotsPerNode": float(doc.get("taskSlotsPerNode") or 1)},
        max_nodes=MAX_POOL_NODES,
    )


def _run_error(code: str, message: str, details: list[str]) -> Doc:
    return {"code": code, "message": message, "values": [{"name": "Message", "value": d} for d in details]}


def _syntax_run(exc: a.FormulaSyntaxError) -> Doc:
    """The run of a formula that does not parse: its error lists every bad statement."""
    problems = [str(p) for p in exc.problems]
    return {"timestamp": clock.iso8601(clock.now()), "error": _run_error(ae.SYNTAX_ERROR, ae.SYNTAX_MESSAGE, problems)}


def _run(ctx: BatchContext, account: str, doc: Doc, formula: a.Formula) -> tuple[Doc, a.Outcome]:
    """An AutoScaleRun of ``formula`` on the pool (nothing is changed)."""
    env = _environment(ctx, account, doc)
    outcome = a.evaluate(formula, env)
    run: Doc = {"timestamp": clock.iso8601(env.now), "results": outcome.results}
    if outcome.error is not None:
        run["error"] = _run_error(outcome.error.code, outcome.error.summary, [outcome.error.detail])
    return run, outcome


def _autoscale(ctx: BatchContext, account: str, doc: Doc, formula: a.Formula, now: str) -> list[Instruction]:
    """Evaluate the pool's formula, keep the run, and resize to its targets when it succeeded."""
    run, outcome = _run(ctx, account, doc, formula)
    doc["autoScaleRun"] = run
    if outcome.error is not None:
        return []
    doc["_nodeDeallocationOption"] = outcome.option
    targets = (outcome.dedicated, outcome.low_priority)
    if targets == (doc.get("targetDedicatedNodes"), doc.get("targetLowPriorityNodes")):
        return []
    if doc["allocationState"] == AllocationState.STOPPING:
        return []  # a stop resize is settling: the next evaluation applies the targets
    doc["targetDedicatedNodes"], doc["targetLowPriorityNodes"] = targets
    doc.pop("resizeErrors", None)
    return ALLOCATION.apply(doc, AllocationState.RESIZING, Context(now, "autoscale"))


async def enable_autoscale(ctx: BatchContext, account: str, pool_id: str, body: Doc) -> Doc:
    """Set (or change) the formula and interval, evaluate at once; a given interval restarts the schedule."""
    doc = active_pool(ctx, account, pool_id)
    enabled = bool(doc.get("enableAutoScale"))
    if enabled and body.get("autoScaleFormula") is None and body.get("autoScaleEvaluationInterval") is None:
        raise m.missing("autoScaleFormula")  # "You must specify at least one of these properties"
    if enabled and body.get("autoScaleFormula") is None:
        body = {**body, "autoScaleFormula": doc.get("autoScaleFormula")}
    new_schedule = not enabled or body.get("autoScaleEvaluationInterval") is not None
    if enabled and body.get("autoScaleEvaluationInterval") is None:
        body = {**body, "autoScaleEvaluationInterval": doc.get("autoScaleEvaluationInterval")}
    settings, formula = _check_autoscale(body)
    _steady_or_refuse(doc)
    now = now_iso()
    doc.update(settings, enableAutoScale=True)
    if new_schedule:
        doc["_autoScaleStart"] = clock.SERVICE.time()
    instructions = _autoscale(ctx, account, doc, formula, now)
    return await _commit(ctx, account, doc, now, instructions)


async def disable_autoscale(ctx: BatchContext, account: str, pool_id: str) -> Doc:
    """Stop evaluating: the pool keeps the targets the last run gave it."""
    doc = active_pool(ctx, account, pool_id)
    for key in ("autoScaleFormula", "autoScaleEvaluationInterval", "autoScaleRun", "_autoScaleStart"):
        doc.pop(key, None)
    doc["enableAutoScale"] = False
    return await _commit(ctx, account, doc, now_iso())


def evaluate_autoscale(ctx: BatchContext, account: str, pool_id: str, body: Doc) -> Doc:
    """An AutoScaleRun of the formula in ``body`` on the pool, not applied. A formula with syntax
    errors gives a run whose error lists each bad statement."""
    doc = active_pool(ctx, account, pool_id)
    text = _formula_text(body)
    if not doc.get("enableAutoScale"):
        raise e.AutoScaleNotEnabled("Automatic scaling is not enabled on the specified pool.")
    try:
        formula = a.compile_formula(text)
    except a.FormulaSyntaxError as exc:
        return _syntax_run(exc)
    return _run(ctx, account, doc, formula)[0]


async def autoscale_pool(ctx: BatchContext, account: str, pool_id: str) -> None:
    """The periodic evaluation (called by the engine when the pool's interval comes round)."""
    doc = ctx.store.get("pool", account, pool_id)
    if doc is None or doc["state"] == PoolState.DELETING or not doc.get("enableAutoScale"):
        return
    now = now_iso()
    try:
        formula = a.compile_formula(str(doc.get("autoScaleFormula") or ""))
    except a.FormulaSyntaxError as exc:  # stored by an older openbatch that did not check formulas
        doc["autoScaleRun"] = _syntax_run(exc)
        await _commit(ctx, account, doc, now)
        return
    instructions = _autoscale(ctx, account, doc, formula, now)
    await _commit(ctx, account, doc, now, instructions)


# --- statistics --------------------------------------------------------------------------------


def lifetime_statistics(url: str, start: str, now: str) -> Doc:
    """Pool statistics with every measure zero: openbatch does not meter node usage."""
    zero_resources = {k: 0.0 for k in ("avgCPUPercentage", "avgMemoryGiB", "peakMemoryGiB", "avgDiskGiB",
                                       "peakDiskGiB", "diskReadGiB", "diskWriteGiB", "networkReadGiB",
                                       "networkWriteGiB")}
    return {
        "url": url, "startTime": start, "lastUpdateTime": now,
        "usageStats": {"startTime": start, "lastUpdateTime": now, "dedicatedCoreTime": "PT0S"},
        "resourceStats": {"startTime": start, "lastUpdateTime": now, "diskReadIOps": 0, "diskWriteIOps": 0,
                          **zero_resources},
    }


CLUSTER_METADATA = "openbatch.cluster"  # a pool's metadata naming the cluster its nodes go to (docs/compute.md)


def cluster_of(pool: Doc) -> str:
    """The cluster a pool's metadata names ("" none: the server's default place for nodes)."""
    for item in pool.get("metadata") or ():
        if item.get("name") == CLUSTER_METADATA:
            return str(item.get("value") or "")
    return ""
