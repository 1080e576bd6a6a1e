"""Compute node routes: parse, call one operation of ``domain/nodes.py``, render. Nothing else.

(The node files routes, ``/pools/{poolId}/nodes/{nodeId}/files...``, live in api/files.py.)
"""

from __future__ import annotations

from openbatch.batch.api.pools import body_of, page_args, page_response, query_filter
from openbatch.batch.api.routing import BatchRequest, BatchResponse, Route, dumps, entity, no_content
from openbatch.batch.domain import node_users, nodes
from openbatch.batch.domain.common import Doc
from openbatch.batch.wire import odata

# ComputeNode's properties in the spec: what a node's body carries (its document also keeps the
# engine's bookkeeping, such as the pool it belongs to, which is no property of a node on the wire).
NODE_FIELDS = frozenset({
    "id", "url", "state", "schedulingState", "stateTransitionTime", "lastBootTime", "allocationTime", "ipAddress",
    "affinityId", "vmSize", "totalTasksRun", "runningTasksCount", "runningTaskSlotsCount", "totalTasksSucceeded",
    "recentTasks", "startTask", "startTaskInfo", "certificateReferences", "errors", "isDedicated",
    "endpointConfiguration", "nodeAgentInfo", "virtualMachineInfo",
})


def node_body(doc: Doc) -> Doc:
    return {k: v for k, v in doc.items() if k in NODE_FIELDS}


def _ids(req: BatchRequest) -> tuple[str, str]:
    return req.params["poolId"], req.params["nodeId"]


def _location(req: BatchRequest) -> str:
    pool_id, node_id = _ids(req)
    return f"{req.base_url}/pools/{pool_id}/nodes/{node_id}"


async def list_nodes(req: BatchRequest) -> BatchResponse:
    accept = query_filter(req, odata.NODE_FILTER_PROPERTIES, "node")
    after, limit = page_args(req)
    docs, next_key = nodes.list_nodes(req.ctx, req.account, req.params["poolId"], accept, after, limit)
    return page_response(req, "node", "nodes", [node_body(d) for d in docs], next_key)


async def get_node(req: BatchRequest) -> BatchResponse:
    return entity(req, "node", "nodes", node_body(nodes.get_node(req.ctx, req.account, *_ids(req))))


async def reboot(req: BatchRequest) -> BatchResponse:
    body = await body_of(req, optional=True)
    await nodes.restart_node(req.ctx, req.account, *_ids(req), body, reimage=False)
    return no_content(202, location=_location(req))


async def reimage(req: BatchRequest) -> BatchResponse:
    body = await body_of(req, optional=True)
    await nodes.restart_node(req.ctx, req.account, *_ids(req), body, reimage=True)
    return no_content(202, location=_location(req))


async def disable_scheduling(req: BatchRequest) -> BatchResponse:
    body = await body_of(req, optional=True)
    await nodes.disable_scheduling(req.ctx, req.account, *_ids(req), body)
    return no_content(200, location=_location(req))


async def enable_scheduling(req: BatchRequest) -> BatchResponse:
    await nodes.enable_scheduling(req.ctx, req.account, *_ids(req))
    return no_content(200, location=_location(req))


async def start(req: BatchRequest) -> BatchResponse:
    nodes.start_node(req.ctx, req.account, *_ids(req))


async def deallocate(req: BatchRequest) -> BatchResponse:
    body = await body_of(req, optional=True)
    nodes.deallocate_node(req.ctx, req.account, *_ids(req), body)


async def remote_login_settings(req: BatchRequest) -> BatchResponse:
    address, port = await node_users.remote_login(req.ctx, req.account, *_ids(req))
    body = {"odata.metadata": f"{req.base_url}/$metadata#Microsoft.Azure.Batch.Protocol.Entities."
                              "ComputeNodeGetRemoteLoginSettingsResult",
            "remoteLoginIPAddress": address, "remoteLoginPort": port}
    return BatchResponse(200, dumps(body))


async def remote_desktop(req: BatchRequest) -> BatchResponse:
    nodes.refuse(req.ctx, req.account, *_ids(req), "remote desktop")


async def add_node_user(req: BatchRequest) -> BatchResponse:
    body = await body_of(req)
    await node_users.add_user(req.ctx, req.account, *_ids(req), body)
    return no_content(201, location=f"{_location(req)}/users/{body.get('name', '')}")


async def update_node_user(req: BatchRequest) -> BatchResponse:
    body = await body_of(req)
    await node_users.update_user(req.ctx, req.account, *_ids(req), req.params["userName"], body)
    return no_content(200, location=f"{_location(req)}/users/{req.params['userName']}")


async def delete_node_user(req: BatchRequest) -> BatchResponse:
    await node_users.delete_user(req.ctx, req.account, *_ids(req), req.params["userName"])
    return no_content(200)


async def upload_logs(req: BatchRequest) -> BatchResponse:
    body = await body_of(req)
    nodes.upload_logs(req.ctx, req.account, *_ids(req), body)


async def list_extensions(req: BatchRequest) -> BatchResponse:
    nodes.get_node(req.ctx, req.account, *_ids(req))
    page_args(req)
    return page_response(req, "node", "extensions", [], None)


async def get_extension(req: BatchRequest) -> BatchResponse:
    nodes.get_extension(req.ctx, req.account, *_ids(req), req.params["extensionName"])


_NODE = "/pools/{poolId}/nodes/{nodeId}"

ROUTES: list[Route] = [
    Route("GET", "/pools/{poolId}/nodes", list_nodes),
    Route("GET", _NODE, get_node),
    Route("POST", f"{_NODE}/reboot", reboot),
    Route("POST", f"{_NODE}/reimage", reimage),
    Route("POST", f"{_NODE}/disablescheduling", disable_scheduling),
    Route("POST", f"{_NODE}/enablescheduling", enable_scheduling),
    Route("POST", f"{_NODE}/start", start),
    Route("POST", f"{_NODE}/deallocate", deallocate),
    Route("GET", f"{_NODE}/remoteloginsettings", remote_login_settings),
    Route("GET", f"{_NODE}/rdp", remote_desktop),
    Route("POST", f"{_NODE}/users", add_node_user),
    Route("PUT", f"{_NODE}/users/{{userName}}", update_node_user),
    Route("DELETE", f"{_NODE}/users/{{userName}}", delete_node_user),
    Route("POST", f"{_NODE}/uploadbatchservicelogs", upload_logs),
    Route("GET", f"{_NODE}/extensions", list_extensions),
    Route("GET", f"{_NODE}/extensions/{{extensionName}}", get_extension),
]
