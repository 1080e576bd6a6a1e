"""Job schedule routes: parse, call one operation of ``domain/schedules.py``, render. Nothing else.

(The jobs of a schedule, ``GET /jobschedules/{id}/jobs``, are listed by api/jobs.py.)
"""

from __future__ import annotations

from openbatch.batch.api.jobs import body_of, guard
from openbatch.batch.api.pools import page_args, page_response, query_filter
from openbatch.batch.api.routing import (
    BatchRequest,
    BatchResponse,
    Route,
    check_conditions,
    created,
    entity,
    no_content,
)
from openbatch.batch.domain import errors as e
from openbatch.batch.domain import schedules
from openbatch.batch.domain.common import Doc, now_iso
from openbatch.batch.wire import odata


def _with_stats(req: BatchRequest, doc: Doc) -> Doc:
    expand = req.query.get("$expand", "")
    if "stats" not in [part.strip().lower() for part in expand.split(",")]:
        return doc
    return {**doc, "stats": schedules.statistics(req.ctx, req.account, doc, now_iso())}


def _check_force(req: BatchRequest) -> None:
    """``force`` (delete, terminate): openbatch never waits on nodes that cannot answer, so both
    values end the same way; anything but a boolean is refused as Azure refuses it."""
    value = req.query.get("force")
    if value is not None and value.lower() not in ("true", "false"):
        raise e.InvalidQueryParameterValue(
            "The value for one of the query parameters specified in the request URI is invalid: force.",
            {"QueryParameterName": "force", "QueryParameterValue": value[:256]})


def _id(req: BatchRequest) -> str:
    return req.params["scheduleId"]


def _action(status: int, doc: Doc, action: str) -> BatchResponse:
    return no_content(status, doc, f"{doc['url']}/{action}")


async def add_schedule(req: BatchRequest) -> BatchResponse:
    body = await body_of(req, "jobschedule.add")
    doc = await schedules.add_schedule(req.ctx, req.account, body, req.base_url)
    return created(req, doc, str(doc["url"]))


async def list_schedules(req: BatchRequest) -> BatchResponse:
    accept = query_filter(req, odata.JOB_SCHEDULE_FILTER_PROPERTIES, "jobschedule")
    after, limit = page_args(req)
    docs, next_key = schedules.list_schedules(req.ctx, req.account, accept, after, limit)
    return page_response(req, "jobschedule", "jobschedules", [_with_stats(req, d) for d in docs], next_key)


async def get_schedule(req: BatchRequest) -> BatchResponse:
    doc = schedules.get_schedule(req.ctx, req.account, _id(req))
    return check_conditions(req, doc, read=True) or entity(req, "jobschedule", "jobschedules", _with_stats(req, doc))


async def schedule_exists(req: BatchRequest) -> BatchResponse:
    doc = schedules.get_schedule(req.ctx, req.account, _id(req))
    return check_conditions(req, doc, read=True) or no_content(200, doc)


async def patch_schedule(req: BatchRequest) -> BatchResponse:
    body = await body_of(req, "jobschedule.patch")
    doc = await schedules.patch_schedule(req.ctx, req.account, _id(req), body, req.base_url, guard(req))
    return no_content(200, doc, str(doc["url"]))


async def update_schedule(req: BatchRequest) -> BatchResponse:
    body = await body_of(req, "jobschedule.update")
    doc = await schedules.update_schedule(req.ctx, req.account, _id(req), body, req.base_url, guard(req))
    return no_content(200, doc, str(doc["url"]))


async def delete_schedule(req: BatchRequest) -> BatchResponse:
    _check_force(req)
    await schedules.delete_schedule(req.ctx, req.account, _id(req), guard(req))
    return no_content(202)


async def disable_schedule(req: BatchRequest) -> BatchResponse:
    return _action(204, await schedules.disable_schedule(req.ctx, req.account, _id(req), guard(req)), "disable")


async def enable_schedule(req: BatchRequest) -> BatchResponse:
    return _action(204, await schedules.enable_schedule(req.ctx, req.account, _id(req), guard(req)), "enable")


async def terminate_schedule(req: BatchRequest) -> BatchResponse:
    _check_force(req)
    doc = await schedules.terminate_schedule(req.ctx, req.account, _id(req), guard(req))
    return _action(202, doc, "terminate")


ROUTES: list[Route] = [
    Route("POST", "/jobschedules", add_schedule),
    Route("GET", "/jobschedules", list_schedules),
    Route("GET", "/jobschedules/{scheduleId}", get_schedule),
    Route("HEAD", "/jobschedules/{scheduleId}", schedule_exists),
    Route("PATCH", "/jobschedules/{scheduleId}", patch_schedule),
    Route("PUT", "/jobschedules/{scheduleId}", update_schedule),
    Route("DELETE", "/jobschedules/{scheduleId}", delete_schedule),
    Route("POST", "/jobschedules/{scheduleId}/disable", disable_schedule),
    Route("POST", "/jobschedules/{scheduleId}/enable", enable_schedule),
    Route("POST", "/jobschedules/{scheduleId}/terminate", terminate_schedule),
]
