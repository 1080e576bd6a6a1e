"""Account routes: supported images / node agent SKUs, node counts, applications, usage and lifetime stats."""

from __future__ import annotations

from collections.abc import Callable

from openbatch.batch.api.pools import page_args, page_response, plain_page_response, query_filter
from openbatch.batch.api.routing import BatchRequest, BatchResponse, Route, dumps, int_skiptoken, metadata_url
from openbatch.batch.domain import applications, images, jobs, nodes, pools
from openbatch.batch.domain.common import Doc, now_iso
from openbatch.batch.wire import odata, versions

NODE_AGENT_SKU_FILTER_PROPERTIES = {"id": "String", "osType": "String"}


def _page_of(items: list[Doc], after: str | None, limit: int) -> tuple[list[Doc], str | None]:
    """Index paging for fixed lists (the skiptoken is the next index; any other token is refused)."""
    start = int_skiptoken(after)
    end = start + limit
    return items[start:end], (str(end) if end < len(items) else None)


async def list_supported_images(req: BatchRequest) -> BatchResponse:
    accept = query_filter(req, odata.SUPPORTED_IMAGE_FILTER_PROPERTIES)
    after, limit = page_args(req)
    docs, next_key = _page_of([i for i in images.supported_images() if accept(i)], after, limit)
    return page_response(req, "supportedimage", "supportedimages", docs, next_key)


async def list_node_agent_skus(req: BatchRequest) -> BatchResponse:
    accept = query_filter(req, NODE_AGENT_SKU_FILTER_PROPERTIES)
    after, limit = page_args(req)
    skus = [s for s in versions.node_agent_skus(images.supported_images()) if accept(s)]
    docs, next_key = _page_of(skus, after, limit)
    return page_response(req, "nodeagentsku", "nodeagentskus", docs, next_key)


async def list_pool_node_counts(req: BatchRequest) -> BatchResponse:
    accept = query_filter(req, odata.POOL_NODE_COUNTS_FILTER_PROPERTIES)
    after, limit = page_args(req, maximum=10)
    docs, next_key = nodes.list_node_counts(req.ctx, req.account, accept, after, limit)
    return plain_page_response(req, "poolnodecounts", docs, next_key)


async def list_applications(req: BatchRequest) -> BatchResponse:
    after, limit = page_args(req)
    docs = [applications.summary(req.ctx, req.account, a) for a in applications.list_applications(req.ctx, req.account)]
    page, next_key = _page_of(docs, after, limit)
    return plain_page_response(req, "applications", page, next_key)


async def get_application(req: BatchRequest) -> BatchResponse:
    app = applications.get_application(req.ctx, req.account, req.params["applicationId"])
    body = {"odata.metadata": metadata_url(req, "applications", True), **applications.summary(req.ctx, req.account, app)}
    return BatchResponse(200, dumps(body))


async def list_pool_usage_metrics(req: BatchRequest) -> BatchResponse:
    """Always empty: openbatch does not meter node usage."""
    query_filter(req, odata.POOL_USAGE_METRICS_FILTER_PROPERTIES)
    page_args(req)
    return page_response(req, "poolusagemetrics", "poolusagemetrics", [], None)


def _lifetime(req: BatchRequest, kind: str, path: str, entity_set: str,
              statistics: Callable[[str, str, str], Doc]) -> BatchResponse:
    """Account-wide statistics of api-versions before 2023, since the oldest ``kind`` entity: every measure zero."""
    created = [str(d["creationTime"]) for d in req.ctx.store.all(kind, req.account)]
    now = now_iso()
    stats = statistics(f"{req.base_url}/{path}", min(created, default=now), now)
    return BatchResponse(200, dumps({"odata.metadata": metadata_url(req, entity_set, True), **stats}))


async def pool_lifetime_statistics(req: BatchRequest) -> BatchResponse:
    return _lifetime(req, "pool", "lifetimepoolstats", "poolstats", pools.lifetime_statistics)


async def job_lifetime_statistics(req: BatchRequest) -> BatchResponse:
    return _lifetime(req, "job", "lifetimejobstats", "jobstats", jobs.lifetime_statistics)


ROUTES: list[Route] = [
    Route("GET", "/supportedimages", list_supported_images),
    Route("GET", "/nodeagentskus", list_node_agent_skus),
    Route("GET", "/nodecounts", list_pool_node_counts),
    Route("GET", "/applications", list_applications),
    Route("GET", "/applications/{applicationId}", get_application),
    Route("GET", "/poolusagemetrics", list_pool_usage_metrics),
    Route("GET", "/lifetimepoolstats", pool_lifetime_statistics),
    Route("GET", "/lifetimejobstats", job_lifetime_statistics),
]
