"""Batch task routes: parse, call one domain operation in batch/domain/tasks.py, render."""

from __future__ import annotations

from openbatch.batch.api.jobs import body_of, changed, guard, list_filter, max_results
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
from openbatch.batch.domain import tasks
from openbatch.batch.domain.common import Doc


async def add_task(req: BatchRequest) -> BatchResponse:
    body = await body_of(req, "task.add")
    doc = await tasks.add_task(req.ctx, req.account, req.params["jobId"], body, req.base_url)
    return created(req, doc, str(doc["url"]))


async def add_task_collection(req: BatchRequest) -> BatchResponse:
    from openbatch.batch.wire import versions

    body = await body_of(req, "taskcollection")
    results = await tasks.add_task_collection(req.ctx, req.account, req.params["jobId"], body.get("value"),
                                              req.base_url)
    out = {
        "odata.metadata": metadata_url(req, "taskaddresult", False),
        "value": [versions.from_internal("taskaddresult", r, req.version) for r in results],
    }
    return BatchResponse(200, dumps(out))


async def list_tasks(req: BatchRequest) -> BatchResponse:
    from openbatch.batch.wire import odata

    flt = list_filter(req, "task", odata.TASK_FILTER_PROPERTIES)
    state = flt.equalities().get("state") if flt is not None else None
    docs, token = tasks.list_tasks(req.ctx, req.account, req.params["jobId"], match=flt, state=state,
                                   after=req.seq_skiptoken(), limit=max_results(req))
    link = next_link(req, str(token)) if token is not None else None
    if req.query.get("$select"):
        return listing(req, "task", "tasks", docs, link)
    return _fast_listing(req, docs, link)


def _fast_listing(req: BatchRequest, docs: list[Doc], link: str | None) -> BatchResponse:
    """``routing.listing`` for a page of tasks without $select, without its per-document copies:
    the documents were just read from the store, so their internal keys are dropped in place."""
    from openbatch.batch.wire import versions

    for doc in docs:
        for key in [k for k in doc if k[0] == "_"]:
            del doc[key]
    value = docs if req.version >= versions.LATEST else [versions.from_internal("task", d, req.version)
                                                         for d in docs]
    body: Doc = {"odata.metadata": metadata_url(req, "tasks", False), "value": value}
    if link:
        body["odata.nextLink"] = link
    return BatchResponse(200, dumps(body))


async def get_task(req: BatchRequest) -> BatchResponse:
    doc = tasks.get_task(req.ctx, req.account, req.params["jobId"], req.params["taskId"])
    return check_conditions(req, doc, read=True) or entity(req, "task", "tasks", doc)


async def update_task(req: BatchRequest) -> BatchResponse:
    body = await body_of(req, "task.update")
    doc = await tasks.update_task(req.ctx, req.account, req.params["jobId"], req.params["taskId"], body,
                                  guard(req))
    return changed(200, doc)


async def delete_task(req: BatchRequest) -> BatchResponse:
    await tasks.delete_task(req.ctx, req.account, req.params["jobId"], req.params["taskId"], guard(req))
    return no_content(200)


async def terminate_task(req: BatchRequest) -> BatchResponse:
    doc = await tasks.terminate_task(req.ctx, req.account, req.params["jobId"], req.params["taskId"], guard(req))
    return changed(204, doc)


async def reactivate_task(req: BatchRequest) -> BatchResponse:
    doc = await tasks.reactivate_task(req.ctx, req.account, req.params["jobId"], req.params["taskId"],
                                      guard(req))
    return changed(204, doc)


async def list_subtasks(req: BatchRequest) -> BatchResponse:
    """Only multi-instance tasks have subtasks (engine_multi.py)."""
    value = tasks.list_subtasks(req.ctx, req.account, req.params["jobId"], req.params["taskId"])
    return BatchResponse(200, dumps({"odata.metadata": metadata_url(req, "subtaskinformations", False),
                                     "value": value}))


ROUTES: list[Route] = [
    Route("POST", "/jobs/{jobId}/tasks", add_task),
    Route("GET", "/jobs/{jobId}/tasks", list_tasks),
    Route("POST", "/jobs/{jobId}/addtaskcollection", add_task_collection),
    Route("GET", "/jobs/{jobId}/tasks/{taskId}", get_task),
    Route("PUT", "/jobs/{jobId}/tasks/{taskId}", update_task),
    Route("DELETE", "/jobs/{jobId}/tasks/{taskId}", delete_task),
    Route("POST", "/jobs/{jobId}/tasks/{taskId}/terminate", terminate_task),
    Route("POST", "/jobs/{jobId}/tasks/{taskId}/reactivate", reactivate_task),
    Route("GET", "/jobs/{jobId}/tasks/{taskId}/subtasksinfo", list_subtasks),
]
