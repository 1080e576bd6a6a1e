"""Preempting a Spot/low-priority node (openbatch's own operation; Azure preempts on its own).

Only a node with ``isDedicated: false`` can be preempted; it goes ``preempted`` through
``states.NODE`` and the engine (engine_spot.py) requeues what ran there and restores the node later.
"""

from __future__ import annotations

from openbatch.batch.domain import errors as e
from openbatch.batch.domain.common import BatchContext, Doc, now_iso
from openbatch.batch.domain.nodes import get_node
from openbatch.batch.domain.pools import active_pool
from openbatch.batch.domain.states import NODE, Context, NodeState


async def preempt_node(ctx: BatchContext, account: str, pool_id: str, node_id: str) -> Doc:
    active_pool(ctx, account, pool_id)
    node = get_node(ctx, account, pool_id, node_id)
    if node.get("isDedicated", True):
        raise e.OperationInvalidForCurrentState(
            "Only Spot/low-priority nodes (isDedicated false) can be preempted; this node is dedicated.",
            {"NodeId": node_id})
    if node.get("state") == NodeState.PREEMPTED:
        return node
    if not NODE.allowed(node, NodeState.PREEMPTED):
        raise e.OperationInvalidForCurrentState(
            f"The node cannot be preempted while it is {node['state']}.", {"NodeState": str(node["state"])})
    instructions = NODE.apply(node, NodeState.PREEMPTED, Context(now_iso(), "preempted"))
    ctx.store.put("node", account, node, parent=pool_id)
    await ctx.store.flush()
    ctx.hooks.perform(account, instructions)
    return node
