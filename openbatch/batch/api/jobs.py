"""Batch job routes: parse, call one domain operation in batch/domain/jobs.py, render."""

from __future__ import annotations

from collections.abc import Callable, Collection
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
from openbatch.batch.domain import jobs
from openbatch.batch.domain.common import Doc

# --- helpers the task and file routes share ------------------------------------------------------


def list_filter(req: BatchRequest, kind: str, properties: Collection[str]) -> Any:
    """The compiled ``$filter`` (None when absent), old api-version names translated."""
    from openbatch.batch.wire import odata, versions

    text = req.query.get("$filter", "")
    if not text.strip():
        return None
    try:
        return odata.parse_filter(versions.filter_to_internal(text, req.version, kind), properties)
    except odata.ODataError as exc:
        raise e.InvalidQueryParameterValue(
            f"The value for one of the query parameters specified in the request URI is invalid: {exc}",
            {"QueryParameterName": "$filter", "QueryParameterValue": text},
        ) from None


def max_results(req: BatchRequest) -> int:
    return req.int_query("maxresults", 1000, 1, 1000)


def guard(req: BatchRequest) -> Callable[[Doc], None]:
    """If-Match / If-None-Match / If-(Un)Modified-Since for a write: 412 when they do not hold."""

    def check(doc: Doc) -> None:
        check_conditions(req, doc, read=False)

    return check


async def body_of(req: BatchRequest, kind: str, *, optional: bool = False) -> Doc:
    """The JSON body in the modern shape (``{}`` for an optional, empty body)."""
    from openbatch.batch.wire import versions

    data = await req.json(optional=optional)
    return versions.to_internal(kind, data, req.version)


def changed(status: int, doc: Doc) -> BatchResponse:
    return no_content(status, doc, str(doc.get("url") or ""))


# --- routes --------------------------------------------------------------------------------------


async def add_job(req: BatchRequest) -> BatchResponse:
    doc = await jobs.add_job(req.ctx, req.account, await body_of(req, "job.add"), req.base_url)
    return created(req, doc, str(doc["url"]))


async def list_jobs(req: BatchRequest) -> BatchResponse:
    from openbatch.batch.wire import odata

    flt = list_filter(req, "job", odata.JOB_FILTER_PROPERTIES)
    docs, token = jobs.list_jobs(req.ctx, req.account, match=flt, after=req.query.get("$skiptoken", "").lower(),
                                 limit=max_results(req), schedule_id=req.params.get("scheduleId"))
    return listing(req, "job", "jobs", docs, next_link(req, token) if token else None)


async def get_job(req: BatchRequest) -> BatchResponse:
    doc = jobs.get_job(req.ctx, req.account, req.params["jobId"])
    return check_conditions(req, doc, read=True) or entity(req, "job", "jobs", doc)


async def job_exists(req: BatchRequest) -> BatchResponse:
    doc = jobs.get_job(req.ctx, req.account, req.params["jobId"])
    return check_conditions(req, doc, read=True) or no_content(200, doc)


async def patch_job(req: BatchRequest) -> BatchResponse:
    body = await body_of(req, "job.patch")
    return changed(200, await jobs.patch_job(req.ctx, req.account, req.params["jobId"], body, guard(req)))


async def update_job(req: BatchRequest) -> BatchResponse:
    body = await body_of(req, "job.update")
    return changed(200, await jobs.update_job(req.ctx, req.account, req.params["jobId"], body, guard(req)))


async def delete_job(req: BatchRequest) -> BatchResponse:
    await jobs.delete_job(req.ctx, req.account, req.params["jobId"], guard(req))
    return no_content(202)


async def disable_job(req: BatchRequest) -> BatchResponse:
    body = await body_of(req, "job", optional=True)
    return changed(202, await jobs.disable_job(req.ctx, req.account, req.params["jobId"], body, guard(req)))


async def enable_job(req: BatchRequest) -> BatchResponse:
    return changed(202, await jobs.enable_job(req.ctx, req.account, req.params["jobId"], guard(req)))


async def terminate_job(req: BatchRequest) -> BatchResponse:
    body = await body_of(req, "job", optional=True)
    return changed(202, await jobs.terminate_job(req.ctx, req.account, req.params["jobId"], body, guard(req)))


async def task_counts(req: BatchRequest) -> BatchResponse:
    from openbatch.batch.wire import versions

    counts = jobs.task_counts(req.ctx, req.account, req.params["jobId"])
    body = {"odata.metadata": metadata_url(req, "taskcounts", True),
            **versions.from_internal("taskcounts", counts, req.version)}
    return BatchResponse(200, dumps(body))


async def prep_release_status(req: BatchRequest) -> BatchResponse:
    from openbatch.batch.wire import odata

    flt = list_filter(req, "preparationandreleasetaskstatus", odata.JOB_PREP_RELEASE_FILTER_PROPERTIES)
    docs, token = jobs.prep_release_status(req.ctx, req.account, req.params["jobId"], match=flt,
                                           after=req.query.get("$skiptoken", "").lower(), limit=max_results(req))
    return listing(req, "preparationandreleasetaskstatus", "jobpreparationandreleasetaskstatuslist", docs,
                   next_link(req, token) if token else None)


ROUTES: list[Route] = [
    Route("POST", "/jobs", add_job),
    Route("GET", "/jobs", list_jobs),
    Route("GET", "/jobschedules/{scheduleId}/jobs", list_jobs),
    Route("GET", "/jobs/{jobId}", get_job),
    Route("HEAD", "/jobs/{jobId}", job_exists),
    Route("PATCH", "/jobs/{jobId}", patch_job),
    Route("PUT", "/jobs/{jobId}", update_job),
    Route("DELETE", "/jobs/{jobId}", delete_job),
    Route("POST", "/jobs/{jobId}/disable", disable_job),
    Route("POST", "/jobs/{jobId}/enable", enable_job),
    Route("POST", "/jobs/{jobId}/terminate", terminate_job),
    Route("GET", "/jobs/{jobId}/taskcounts", task_counts),
    Route("GET", "/jobs/{jobId}/jobpreparationandreleasetaskstatus", prep_release_status),
]
