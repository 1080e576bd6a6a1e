"""Pool routes: parse, call one operation of ``domain/pools.py``, render. Nothing else."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openbatch.batch.api.routing import (
    BatchRequest,
    BatchResponse,
    Route,
    check_conditions,
    created,
    dumps,
    entity,
    listing,
    metadata_url,
    next_link,
    no_content,
)
from openbatch.batch.domain import errors as e
from openbatch.batch.domain import pools
from openbatch.batch.domain.common import Doc, now_iso
from openbatch.batch.wire import odata, versions

# --- helpers the other api modules of this family share -------------------------------------


async def body_of(req: BatchRequest, kind: str | None = None, *, optional: bool = False) -> Doc:
    """The JSON request body in the modern shape (``kind`` for versions.to_internal); ``optional``
    bodies may be absent (actions such as reboot send none)."""
    data = await req.json(optional=optional)
    return versions.to_internal(kind, data, req.version) if kind else data


def query_filter(req: BatchRequest, properties: Mapping[str, str], kind: str | None = None) -> odata.Filter:
    """The compiled ``$filter`` (old property names translated), or InvalidQueryParameterValue."""
    text = req.query.get("$filter", "")
    try:
        return odata.parse_filter(versions.filter_to_internal(text, req.version, kind), properties)
    except odata.ODataError as exc:
        raise e.InvalidQueryParameterValue(
            f"The value for one of the query parameters specified in the request URI is invalid: {exc}",
            {"QueryParameterName": "$filter", "QueryParameterValue": text[:256]},
        ) from None


def page_args(req: BatchRequest, maximum: int = 1000) -> tuple[str | None, int]:
    """($skiptoken, maxresults) of a list request."""
    return req.query.get("$skiptoken") or None, req.int_query("maxresults", maximum, 1, maximum)


def page_response(req: BatchRequest, kind: str, entity_set: str, docs: list[Doc],
                  next_key: str | None) -> BatchResponse:
    return listing(req, kind, entity_set, docs, next_link(req, next_key) if next_key else None)


def plain_page_response(req: BatchRequest, entity_set: str, docs: list[Doc], next_key: str | None) -> BatchResponse:
    """A list whose items have the same shape in every api-version (no translation, no $select)."""
    body: dict[str, Any] = {"odata.metadata": metadata_url(req, entity_set, False), "value": docs}
    if next_key:
        body["odata.nextLink"] = next_link(req, next_key)
    return BatchResponse(200, dumps(body))


def pool_location(req: BatchRequest, pool_id: str) -> str:
    return f"{req.base_url}/pools/{pool_id}"


# --- pools -----------------------------------------------------------------------------------


def _with_stats(req: BatchRequest, doc: Doc) -> Doc:
    expand = req.query.get("$expand", "")
    if "stats" not in [part.strip().lower() for part in expand.split(",")]:
        return doc
    return {**doc, "stats": pools.lifetime_statistics(f"{doc['url']}/stats", doc["creationTime"], now_iso())}


async def add_pool(req: BatchRequest) -> BatchResponse:
    body = await body_of(req, "pool")
    doc = await pools.add_pool(req.ctx, req.account, body, req.base_url)
    return created(req, doc, pool_location(req, doc["id"]))


async def list_pools(req: BatchRequest) -> BatchResponse:
    accept = query_filter(req, odata.POOL_FILTER_PROPERTIES, "pool")
    after, limit = page_args(req)
    docs, next_key = pools.list_pools(req.ctx, req.account, accept, after, limit)
    return page_response(req, "pool", "pools", [_with_stats(req, d) for d in docs], next_key)


async def get_pool(req: BatchRequest) -> BatchResponse:
    doc = pools.get_pool(req.ctx, req.account, req.params["poolId"])
    return check_conditions(req, doc, read=True) or entity(req, "pool", "pools", _with_stats(req, doc))


async def pool_exists(req: BatchRequest) -> BatchResponse:
    doc = pools.get_pool(req.ctx, req.account, req.params["poolId"])
    return check_conditions(req, doc, read=True) or no_content(200, doc)


async def delete_pool(req: BatchRequest) -> BatchResponse:
    check_conditions(req, pools.get_pool(req.ctx, req.account, req.params["poolId"]), read=False)
    await pools.delete_pool(req.ctx, req.account, req.params["poolId"])
    return no_content(202)


async def patch_pool(req: BatchRequest) -> BatchResponse:
    pool_id = req.params["poolId"]
    check_conditions(req, pools.get_pool(req.ctx, req.account, pool_id), read=False)
    body = await body_of(req, "pool.patch")
    doc = await pools.patch_pool(req.ctx, req.account, pool_id, body)
    return no_content(200, doc, pool_location(req, doc["id"]))


async def update_properties(req: BatchRequest) -> BatchResponse:
    pool_id = req.params["poolId"]
    body = await body_of(req, "pool.update")
    doc = await pools.update_pool_properties(req.ctx, req.account, pool_id, body)
    return no_content(204, doc, pool_location(req, doc["id"]))


async def resize(req: BatchRequest) -> BatchResponse:
    pool_id = req.params["poolId"]
    check_conditions(req, pools.get_pool(req.ctx, req.account, pool_id), read=False)
    body = await body_of(req, "pool.resize")
    doc = await pools.resize_pool(req.ctx, req.account, pool_id, body)
    return no_content(202, doc, pool_location(req, doc["id"]))


async def stop_resize(req: BatchRequest) -> BatchResponse:
    pool_id = req.params["poolId"]
    check_conditions(req, pools.get_pool(req.ctx, req.account, pool_id), read=False)
    doc = await pools.stop_resize_pool(req.ctx, req.account, pool_id)
    return no_content(202, doc, pool_location(req, doc["id"]))


async def remove_nodes(req: BatchRequest) -> BatchResponse:
    pool_id = req.params["poolId"]
    check_conditions(req, pools.get_pool(req.ctx, req.account, pool_id), read=False)
    body = await body_of(req)
    doc = await pools.remove_nodes(req.ctx, req.account, pool_id, body)
    return no_content(202, doc, pool_location(req, doc["id"]))


async def enable_autoscale(req: BatchRequest) -> BatchResponse:
    pool_id = req.params["poolId"]
    check_conditions(req, pools.get_pool(req.ctx, req.account, pool_id), read=False)
    body = await body_of(req, optional=True)
    doc = await pools.enable_autoscale(req.ctx, req.account, pool_id, body)
    return no_content(200, doc, pool_location(req, doc["id"]))


async def disable_autoscale(req: BatchRequest) -> BatchResponse:
    doc = await pools.disable_autoscale(req.ctx, req.account, req.params["poolId"])
    return no_content(200, doc, pool_location(req, doc["id"]))


async def evaluate_autoscale(req: BatchRequest) -> BatchResponse:
    pool_id = req.params["poolId"]
    body = await body_of(req)
    run = pools.evaluate_autoscale(req.ctx, req.account, pool_id, body)
    out: dict[str, Any] = {
        "odata.metadata": metadata_url(req, "Microsoft.Azure.Batch.Protocol.Entities.AutoScaleRun", False), **run}
    return BatchResponse(200, dumps(out), [("DataServiceId", pool_location(req, pool_id))])


async def upgrade_os(req: BatchRequest) -> BatchResponse:
    """``/upgradeos`` (api-versions up to 2017): only for cloud service pools, which are refused here."""
    pools.active_pool(req.ctx, req.account, req.params["poolId"])
    raise e.OperationInvalidForCurrentState(
        "Upgrading the OS applies only to cloud service configuration pools, which openbatch does not support.")


ROUTES: list[Route] = [
    Route("POST", "/pools", add_pool),
    Route("GET", "/pools", list_pools),
    Route("GET", "/pools/{poolId}", get_pool),
    Route("HEAD", "/pools/{poolId}", pool_exists),
    Route("DELETE", "/pools/{poolId}", delete_pool),
    Route("PATCH", "/pools/{poolId}", patch_pool),
    Route("POST", "/pools/{poolId}/updateproperties", update_properties),
    Route("POST", "/pools/{poolId}/resize", resize),
    Route("POST", "/pools/{poolId}/stopresize", stop_resize),
    Route("POST", "/pools/{poolId}/removenodes", remove_nodes),
    Route("POST", "/pools/{poolId}/enableautoscale", enable_autoscale),
    Route("POST", "/pools/{poolId}/disableautoscale", disable_autoscale),
    Route("POST", "/pools/{poolId}/evaluateautoscale", evaluate_autoscale),
    Route("POST", "/pools/{poolId}/upgradeos", upgrade_os),
]
