"""Preempting a Spot node (not part of Azure's API: Azure preempts on its own; here a test or
``openbatch node preempt`` says when). ``POST /openbatch/pools/{poolId}/nodes/{nodeId}/preempt``,
signed like every other request, answers 202 with the node as it is now (state ``preempted``)."""

from __future__ import annotations

from openbatch.batch.api.nodes import node_body
from openbatch.batch.api.routing import BatchRequest, BatchResponse, Route, dumps
from openbatch.batch.domain import spot


async def preempt(req: BatchRequest) -> BatchResponse:
    node = await spot.preempt_node(req.ctx, req.account, req.params["poolId"], req.params["nodeId"])
    return BatchResponse(202, dumps(node_body(node)))


ROUTES: list[Route] = [
    Route("POST", "/openbatch/pools/{poolId}/nodes/{nodeId}/preempt", preempt),
]
