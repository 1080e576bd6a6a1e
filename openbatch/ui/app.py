"""Dashboard routes: account overview, pool, job, task pages and their live fragments.

Each handler reads through ``views`` (the domain operations the REST API calls) and renders a
template; ``?part=NAME`` answers only that live fragment, which static/ui.js polls. The blob
browser is in blobs.py, the actions (``--ui-actions``) in actions.py.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from openbatch.batch.domain import errors as e
from openbatch.batch.domain import files
from openbatch.batch.domain.common import BatchContext, parse_iso
from openbatch.batch.wire.errors import status_of
from openbatch.blob.errors import BlobError
from openbatch.config import Settings
from openbatch.ui import actions, blobs, views
from openbatch.ui.rates import Rates

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"ui.css": "text/css", "ui.js": "text/javascript"}
TAIL_START = 64 * 1024  # bytes of an output file the first tail read shows
TAIL_MAX = 256 * 1024  # bytes one tail read returns at most
TAIL_STREAMS = ("stdout.txt", "stderr.txt")
SECURITY_HEADERS = {
    # Every asset comes from this server: the page can reach nothing else (inline style attributes draw the bars and the heat map; no inline script).
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # no-referrer would make form POSTs send Origin: null
    "cache-control": "no-store",
}

Handler = Callable[[Request], Awaitable[Response]]


def duration(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    seconds = (parse_iso(end) - parse_iso(start)).total_seconds()
    return f"{seconds:.2f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


class Ui:
    """The dashboard's state: the Batch context, the blob service, the rates, the templates."""

    def __init__(self, settings: Settings, ctx: BatchContext, blob: Any, rates: Rates):
        self.settings = settings
        self.ctx = ctx
        self.blob = blob
        self.rates = rates
        self.actions = settings.ui_actions
        self.env = Environment(loader=PackageLoader("openbatch.ui", "templates"),
                               autoescape=select_autoescape(default=True, default_for_string=True))
        self.env.globals.update(actions=self.actions, accounts=list(settings.accounts), quote=quote,
                                human_bytes=views.human_bytes, heat_color=views.heat_color, duration=duration,
                                node_states=views.NODE_STATES, task_states=views.TASK_STATES,
                                job_states=views.JOB_STATES)
        self.env.filters["pretty"] = lambda value: json.dumps(value, indent=2, sort_keys=True, default=str)

    def render(self, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(**values)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def account(self, request: Request) -> str:
        account = str(request.path_params["account"])
        if account not in self.settings.accounts:
            raise e.BatchError(f"No account {account} on this server.")  # rendered as 500 -> below as 404
        return account

    def guarded(self, handler: Handler) -> Handler:
        """Domain and blob errors become an error page with the status the REST API would answer."""

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except e.BatchError as exc:
                status = status_of(exc)
                return self.render("error.html", status=404 if status == 500 else status, code=exc.code,
                                   message=exc.message, account=request.path_params.get("account", ""))
            except BlobError as exc:
                return self.render("error.html", status=exc.status or 404, code=exc.code, message=exc.message,
                                   account=request.path_params.get("account", ""))

        return run

    # --- pages ---------------------------------------------------------------------------------

    async def root(self, request: Request) -> Response:
        first = next(iter(self.settings.accounts))
        return RedirectResponse(f"/ui/{quote(first)}/", status_code=302)

    async def static(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        if name not in STATIC_FILES:
            return Response("not found", status_code=404)
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers={"cache-control": "no-cache"})

    async def overview(self, request: Request) -> Response:
        account = self.account(request)
        values: dict[str, Any] = {
            "account": account,
            "pools": views.pool_rows(self.ctx, account),
            "node_states_count": views.node_states(self.ctx, account),
            "jobs": views.job_rows(self.ctx, account),
            "job_states_count": views.job_states(self.ctx, account),
            "rate": self.rates.current(account),
            "chart": views.chart(self.rates.series(account)),
            "containers": self._containers(account),
        }
        part = request.query_params.get("part")
        return self.render("overview_live.html" if part == "live" else "overview.html", **values)

    def _containers(self, account: str) -> list[dict[str, Any]]:
        items, _ = self.blob.blobs.list_containers(account, "", "", 200)
        rows = []
        for c in items:
            count, size = self.blob.blobs.container_usage(account, c.name)
            rows.append({"name": c.name, "blobs": count, "bytes": size})
        return rows

    async def pool(self, request: Request) -> Response:
        account = self.account(request)
        view = views.pool_view(self.ctx, account, str(request.path_params["pool"]))
        history = self.rates.resize_history(account, str(view.pool["id"]))
        part = request.query_params.get("part")
        return self.render("pool_live.html" if part == "live" else "pool.html", account=account, view=view,
                           history=history)

    async def job(self, request: Request) -> Response:
        account = self.account(request)
        job_id = str(request.path_params["job"])
        job = views.job_view(self.ctx, account, job_id)
        flt = views.TaskFilter.parse(request.query_params.get("state", ""), request.query_params.get("exit", ""))
        after = _int(request.query_params.get("after", ""))
        part = request.query_params.get("part")
        values: dict[str, Any] = {"account": account, "job": job, "flt": flt}
        if part != "tasks":  # the counts read every task of the job: the task table alone does not need them
            counts = views.job_counts(self.ctx, account, job_id)
            values.update(counts=counts, progress=views.progress(counts), rate=self.rates.current(account, job_id),
                          chart=views.chart(self.rates.series(account, job_id)))
        if part == "counts":
            return self.render("job_counts.html", **values)
        values["page"] = views.task_page(self.ctx, account, job_id, flt, after)
        return self.render("job_tasks.html" if part == "tasks" else "job.html", **values)

    async def task(self, request: Request) -> Response:
        account = self.account(request)
        job_id, task_id = str(request.path_params["job"]), str(request.path_params["task"])
        task = views.task_view(self.ctx, account, job_id, task_id)
        entries: list[dict[str, Any]] = []
        try:
            loc = files.task_location(self.ctx, account, job_id, task_id, self.settings.batch_url)
            entries, _ = await files.list_files(self.ctx, loc, recursive=True, match=None, after=0, limit=200)
        except e.BatchError:
            entries = []
        part = request.query_params.get("part")
        return self.render("task_live.html" if part == "live" else "task.html", account=account, job_id=job_id,
                           task=task, files=[f for f in entries if not f["isDirectory"]])

    async def tail(self, request: Request) -> Response:
        """The end of a task's stdout/stderr from ``offset`` on (the last 64 KiB the first time):
        ``{text, offset, done}``; the page asks again from ``offset`` while the task runs."""
        account = self.account(request)
        job_id, task_id = str(request.path_params["job"]), str(request.path_params["task"])
        stream = str(request.path_params["stream"])
        if stream not in TAIL_STREAMS:
            return JSONResponse({"error": "no such stream"}, status_code=404)
        task = views.task_view(self.ctx, account, job_id, task_id)
        done = task.get("state") == "completed"
        offset = _int(request.query_params.get("offset", ""), -1)
        try:
            loc = files.task_location(self.ctx, account, job_id, task_id, self.settings.batch_url)
            opened = await files.open_file(self.ctx, loc, stream)
        except e.BatchError:
            return JSONResponse({"text": "", "offset": max(offset, 0), "done": done, "missing": True},
                                headers=SECURITY_HEADERS)
        size = opened.info.size
        start = offset if 0 <= offset <= size else max(0, size - TAIL_START)
        if start >= size:
            opened.close()
            return JSONResponse({"text": "", "offset": size, "done": done}, headers=SECURITY_HEADERS)
        end = min(size, start + TAIL_MAX)
        data = b"".join([chunk async for chunk in files.read(opened, stream, start, end - 1)])
        # A character cut at the end waits for the next read (its bytes are read again from offset).
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        text = decoder.decode(data, final=done and end == size)
        pending = len(decoder.getstate()[0])
        return JSONResponse({"text": text, "offset": start + len(data) - pending, "done": done,
                             "skipped": start if offset < 0 else 0}, headers=SECURITY_HEADERS)

    async def task_file(self, request: Request) -> Response:
        """A file of the task's directory, as the Files API would send it (attachment unless text)."""
        account = self.account(request)
        job_id, task_id = str(request.path_params["job"]), str(request.path_params["task"])
        name = str(request.path_params["path"])
        loc = files.task_location(self.ctx, account, job_id, task_id, self.settings.batch_url)
        opened = await files.open_file(self.ctx, loc, name)
        headers = {**SECURITY_HEADERS, "content-length": str(opened.info.size)}
        if not name.endswith(".txt"):
            headers["content-disposition"] = f"attachment; filename*=UTF-8''{quote(name.rsplit('/', 1)[-1])}"
        if not opened.info.size:
            opened.close()
            return Response(b"", headers=headers)
        return StreamingResponse(files.read(opened, name, 0, None), headers=headers,
                                 media_type="text/plain; charset=utf-8" if name.endswith(".txt")
                                 else "application/octet-stream")


def _int(text: str, default: int = 0) -> int:
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else default


def build_app(settings: Settings, ctx: BatchContext, blob: Any, rates: Rates) -> Starlette:
    ui = Ui(settings, ctx, blob, rates)
    g = ui.guarded
    base = "/ui/{account}"
    task = base + "/jobs/{job}/tasks/{task}"
    routes = [
        Route("/", ui.root),
        Route("/ui", ui.root),
        Route("/ui/", ui.root),
        Route("/ui/static/{name}", ui.static),
        Route(base + "/", g(ui.overview)),
        Route(base + "/pools/{pool}", g(ui.pool)),
        Route(base + "/jobs/{job}", g(ui.job)),
        Route(task, g(ui.task)),
        Route(task + "/tail/{stream}", g(ui.tail)),
        Route(task + "/files/{path:path}", g(ui.task_file)),
        *blobs.routes(ui),
        *actions.routes(ui),
    ]
    return Starlette(routes=routes)
