"""Compute node rules: get, list, node counts, reboot, reimage, disable/enable scheduling.

Node documents (kind "node", parent = pool id) are created, changed and removed by the engine;
these operations only request changes, through ``states.NODE``, and hand the instructions a
transition returns (RestartNode, StopNodeTasks) to the engine after the commit.

What a node on this host cannot do is refused with a clear 409 rather than faked: remote login
and node users (nodes are directories and processes on the server's host, not machines to log in
to), uploading Batch service logs, and deallocate/start (nodes are never deallocated).
"""

from __future__ import annotations

from typing import Any, NoReturn

from openbatch.batch.domain import errors as e
from openbatch.batch.domain.common import BatchContext, Doc, now_iso
from openbatch.batch.domain.instructions import Instruction
from openbatch.batch.domain.pools import active_pool, get_pool, page
from openbatch.batch.domain.states import NODE, Context, NodeState, SchedulingState
from openbatch.batch.wire import models as m

RESTART_OPTIONS = ("requeue", "terminate", "taskcompletion", "retaineddata")
DISABLE_OPTIONS = ("requeue", "terminate", "taskcompletion")

# NodeState -> the NodeCounts property (the spec's camelCase names).
_COUNT_KEYS: dict[str, str] = {
    "creating": "creating", "idle": "idle", "offline": "offline", "preempted": "preempted",
    "rebooting": "rebooting", "reimaging": "reimaging", "running": "running", "starting": "starting",
    "starttaskfailed": "startTaskFailed", "leavingpool": "leavingPool", "unknown": "unknown",
    "unusable": "unusable", "waitingforstarttask": "waitingForStartTask", "upgradingos": "upgradingOS",
    "deallocated": "deallocated", "deallocating": "deallocating",
}

NOT_ON_THIS_HOST = ("openbatch nodes are directories and processes on the server's host, not machines to log in "
                    "to: {what} is not supported. Use the files API to read node and task files.")


# --- read ------------------------------------------------------------------------------------


def get_node(ctx: BatchContext, account: str, pool_id: str, node_id: str) -> Doc:
    get_pool(ctx, account, pool_id)
    node = ctx.store.get("node", account, node_id, parent=pool_id)
    if node is None:
        raise e.NodeNotFound("The specified node does not exist.")
    return node


def list_nodes(ctx: BatchContext, account: str, pool_id: str, accept: Any, after: str | None,
               limit: int) -> tuple[list[Doc], str | None]:
    get_pool(ctx, account, pool_id)
    return page([n for n in ctx.store.all("node", account, pool_id) if accept(n)], after, limit)


def _zero_counts() -> dict[str, int]:
    return {**dict.fromkeys(_COUNT_KEYS.values(), 0), "total": 0}


def pool_node_counts(ctx: BatchContext, account: str, pool: Doc) -> Doc:
    """Dedicated and low-priority node counts by state for one pool."""
    dedicated, low = _zero_counts(), _zero_counts()
    for node in ctx.store.all("node", account, str(pool["id"])):
        counts = dedicated if node.get("isDedicated", True) else low
        key = _COUNT_KEYS.get(str(node.get("state")), "unknown")
        counts[key] += 1
        counts["total"] += 1
    return {"poolId": pool["id"], "dedicated": dedicated, "lowPriority": low}


def list_node_counts(ctx: BatchContext, account: str, accept: Any, after: str | None,
                     limit: int) -> tuple[list[Doc], str | None]:
    """Per-pool node counts, filtered (``poolId``) and paged by pool id."""
    pools, next_key = page([p for p in ctx.store.all("pool", account) if accept({"poolId": p["id"]})], after, limit)
    return [pool_node_counts(ctx, account, p) for p in pools], next_key


# --- change ----------------------------------------------------------------------------------


def _node_of_active_pool(ctx: BatchContext, account: str, pool_id: str, node_id: str) -> Doc:
    active_pool(ctx, account, pool_id)
    return get_node(ctx, account, pool_id, node_id)


async def _commit(ctx: BatchContext, account: str, pool_id: str, node: Doc, instructions: list[Instruction],
                  *, pool_changed: bool = False) -> Doc:
    ctx.store.put("node", account, node, parent=pool_id)
    await ctx.store.flush()
    if instructions:
        ctx.hooks.perform(account, instructions)
    if pool_changed:
        ctx.hooks.pool_changed(account, get_pool(ctx, account, pool_id))
    return node


async def restart_node(ctx: BatchContext, account: str, pool_id: str, node_id: str, body: Doc,
                       *, reimage: bool) -> Doc:
    """Reboot or reimage: the node goes rebooting / reimaging; the engine restarts it (start task reruns)."""
    key = "nodeReimageOption" if reimage else "nodeRebootOption"
    option = m.enum(body, key, RESTART_OPTIONS) or "requeue"
    node = _node_of_active_pool(ctx, account, pool_id, node_id)
    to = NodeState.REIMAGING if reimage else NodeState.REBOOTING
    if not NODE.allowed(node, to):
        verb = "reimaged" if reimage else "rebooted"
        raise e.OperationInvalidForCurrentState(
            f"The node cannot be {verb} while it is {node['state']}.", {"NodeState": str(node["state"])})
    instructions = NODE.apply(node, to, Context(now_iso(), option))
    return await _commit(ctx, account, pool_id, node, instructions)


async def disable_scheduling(ctx: BatchContext, account: str, pool_id: str, node_id: str, body: Doc) -> Doc:
    """No new tasks on the node. Idle nodes go offline at once; running ones too unless the option is
    taskcompletion (then the engine takes the node offline when its tasks finish)."""
    option = m.enum(body, "nodeDisableSchedulingOption", DISABLE_OPTIONS) or "requeue"
    node = _node_of_active_pool(ctx, account, pool_id, node_id)
    if node.get("schedulingState") == SchedulingState.DISABLED:
        return node
    node["schedulingState"] = SchedulingState.DISABLED.value
    instructions: list[Instruction] = []
    state = node["state"]
    if state == NodeState.IDLE or (state == NodeState.RUNNING and option != "taskcompletion"):
        instructions = NODE.apply(node, NodeState.OFFLINE, Context(now_iso(), option))
    return await _commit(ctx, account, pool_id, node, instructions, pool_changed=True)


async def enable_scheduling(ctx: BatchContext, account: str, pool_id: str, node_id: str) -> Doc:
    node = _node_of_active_pool(ctx, account, pool_id, node_id)
    if node.get("schedulingState", SchedulingState.ENABLED) == SchedulingState.ENABLED:
        return node
    node["schedulingState"] = SchedulingState.ENABLED.value
    instructions: list[Instruction] = []
    if node["state"] == NodeState.OFFLINE:
        busy = int(node.get("runningTasksCount") or 0) > 0
        instructions = NODE.apply(node, NodeState.RUNNING if busy else NodeState.IDLE, Context(now_iso(), "enable"))
    return await _commit(ctx, account, pool_id, node, instructions, pool_changed=True)


# --- what a node on this host does not do -----------------------------------------------------


def refuse(ctx: BatchContext, account: str, pool_id: str, node_id: str, what: str) -> NoReturn:
    """Check the node exists (404s first, as Azure), then refuse the operation (409)."""
    get_node(ctx, account, pool_id, node_id)
    raise e.OperationInvalidForCurrentState(NOT_ON_THIS_HOST.format(what=what))


def upload_logs(ctx: BatchContext, account: str, pool_id: str, node_id: str, body: Doc) -> NoReturn:
    m.string(body, "containerUrl", required=True)
    m.date_time(body, "startTime", required=True)
    m.date_time(body, "endTime")
    get_node(ctx, account, pool_id, node_id)
    raise e.OperationInvalidForCurrentState(
        "Uploading Batch service logs is not supported by openbatch: there is no node agent log to upload. "
        "The server's own log is in its data directory.")


def start_node(ctx: BatchContext, account: str, pool_id: str, node_id: str) -> NoReturn:
    node = get_node(ctx, account, pool_id, node_id)
    raise e.OperationInvalidForCurrentState(
        f"You can start a compute node only if it has been deallocated; the node is {node['state']}.")


def deallocate_node(ctx: BatchContext, account: str, pool_id: str, node_id: str, body: Doc) -> NoReturn:
    m.enum(body, "nodeDeallocateOption", RESTART_OPTIONS)
    get_node(ctx, account, pool_id, node_id)
    raise e.OperationInvalidForCurrentState(
        "Deallocating compute nodes is not supported by openbatch: nodes on this host have no VM to deallocate. "
        "Disable scheduling on the node or remove it from the pool instead.")


def get_extension(ctx: BatchContext, account: str, pool_id: str, node_id: str, name: str) -> NoReturn:
    get_node(ctx, account, pool_id, node_id)
    raise e.ResourceNotFound(f"The specified extension {name!r} does not exist on the node: "
                             "openbatch nodes have no VM extensions.")
