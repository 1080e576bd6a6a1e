"""Dashboard actions (only with ``serve --ui-actions``): terminate/delete a job, reactivate a task,
resize a pool, reboot a node, through the same domain operations the REST API calls.

The dashboard has no login (like Azurite's), so a POST is taken only from a page of this server:
its ``Origin`` must be this server's own (a page elsewhere cannot make the browser act here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from openbatch.batch.domain import errors as e
from openbatch.batch.domain import jobs, nodes, pools, tasks

if TYPE_CHECKING:
    from openbatch.ui.app import Handler, Ui


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    host = request.headers.get("host", "")
    if origin is None:  # browsers send Origin on every form POST; anything else is not a page of ours
        return False
    return origin == f"{request.url.scheme}://{host}"


def routes(ui: Ui) -> list[Route]:
    base = "/ui/{account}"

    def action(run: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            if not ui.actions:
                return ui.render("error.html", status=403, code="ActionsDisabled", account="",
                                 message="Actions are off: start the server with openbatch serve --ui-actions.")
            if not _same_origin(request):
                return ui.render("error.html", status=403, code="CrossOriginRefused", account="",
                                 message="Actions are taken only from this server's own pages.")
            return await run(request)

        return ui.guarded(handle)

    def back(request: Request, path: str) -> RedirectResponse:
        return RedirectResponse(f"/ui/{quote(ui.account(request))}/{path}", status_code=303)

    async def terminate_job(request: Request) -> Response:
        job_id = str(request.path_params["job"])
        await jobs.terminate_job(ui.ctx, ui.account(request), job_id, {})
        return back(request, f"jobs/{quote(job_id)}")

    async def delete_job(request: Request) -> Response:
        await jobs.delete_job(ui.ctx, ui.account(request), str(request.path_params["job"]))
        return back(request, "")

    async def reactivate_task(request: Request) -> Response:
        job_id, task_id = str(request.path_params["job"]), str(request.path_params["task"])
        await tasks.reactivate_task(ui.ctx, ui.account(request), job_id, task_id)
        return back(request, f"jobs/{quote(job_id)}/tasks/{quote(task_id)}")

    async def resize_pool(request: Request) -> Response:
        pool_id = str(request.path_params["pool"])
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        text = (form.get("target") or [""])[0].strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 6):
            raise e.InvalidPropertyValue("The target number of nodes must be a whole number.",
                                         {"PropertyName": "targetDedicatedNodes", "PropertyValue": text[:20]})
        await pools.resize_pool(ui.ctx, ui.account(request), pool_id, {"targetDedicatedNodes": int(text)})
        return back(request, f"pools/{quote(pool_id)}")

    async def reboot_node(request: Request) -> Response:
        pool_id, node_id = str(request.path_params["pool"]), str(request.path_params["node"])
        await nodes.restart_node(ui.ctx, ui.account(request), pool_id, node_id, {}, reimage=False)
        return back(request, f"pools/{quote(pool_id)}")

    return [
        Route(base + "/jobs/{job}/terminate", action(terminate_job), methods=["POST"]),
        Route(base + "/jobs/{job}/delete", action(delete_job), methods=["POST"]),
        Route(base + "/jobs/{job}/tasks/{task}/reactivate", action(reactivate_task), methods=["POST"]),
        Route(base + "/pools/{pool}/resize", action(resize_pool), methods=["POST"]),
        Route(base + "/pools/{pool}/nodes/{node}/reboot", action(reboot_node), methods=["POST"]),
    ]
