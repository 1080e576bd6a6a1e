"""The dashboard's blob browser: containers, prefixes (``/`` as the delimiter), a blob's properties
and metadata, and its download, read through the blob service the Blob endpoint uses."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from openbatch.blob.models import Blob
from openbatch.common.conditions import Conditions
from openbatch.ui import views

if TYPE_CHECKING:
    from openbatch.ui.app import Ui

PAGE = 200


def routes(ui: Ui) -> list[Route]:
    base = "/ui/{account}"

    async def containers(request: Request) -> Response:
        account = ui.account(request)
        marker = request.query_params.get("marker", "")
        items, nxt = ui.blob.blobs.list_containers(account, "", marker, PAGE)
        rows = []
        for c in items:
            count, size = ui.blob.blobs.container_usage(account, c.name)
            rows.append({"name": c.name, "blobs": count, "bytes": size, "metadata": c.metadata,
                         "public": c.public_access or "private", "modified": views.us_iso(c.modified_us)})
        return ui.render("containers.html", account=account, containers=rows, next_marker=nxt)

    async def listing(request: Request) -> Response:
        account = ui.account(request)
        container = str(request.path_params["container"])
        prefix = request.query_params.get("prefix", "")
        marker = request.query_params.get("marker", "")
        c = ui.blob.blobs.container(account, container)
        items, nxt = ui.blob.blobs.list_blobs(account, container, prefix, "/", marker, PAGE, False)
        prefixes = [i for i in items if isinstance(i, str)]
        blobs = [i for i in items if isinstance(i, Blob)]
        crumbs = _crumbs(prefix)
        return ui.render("container.html", account=account, container=c.name, metadata=c.metadata,
                         prefix=prefix, prefixes=prefixes, blobs=blobs, next_marker=nxt, crumbs=crumbs,
                         us_iso=views.us_iso)

    async def blob(request: Request) -> Response:
        account = ui.account(request)
        container, name = str(request.path_params["container"]), str(request.path_params["name"])
        b = ui.blob.blobs.blob(account, container, name, Conditions())
        return ui.render("blob.html", account=account, container=container, blob=b, us_iso=views.us_iso,
                         crumbs=_crumbs(name.rsplit("/", 1)[0] + "/" if "/" in name else ""))

    async def download(request: Request) -> Response:
        account = ui.account(request)
        container, name = str(request.path_params["container"]), str(request.path_params["name"])
        plan = ui.blob.blobs.open_read(account, container, name, None, Conditions())
        headers = {"content-length": str(plan.length), "x-content-type-options": "nosniff",
                   "content-disposition": f"attachment; filename*=UTF-8''{quote(name.rsplit('/', 1)[-1])}"}
        inline = ui.blob.blobs.inline_bytes(plan)
        if inline is not None:
            return Response(inline, media_type="application/octet-stream", headers=headers)
        return StreamingResponse(ui.blob.blobs.stream(plan), media_type="application/octet-stream",
                                 headers=headers)

    g = ui.guarded
    return [
        Route(base + "/blobs/", g(containers)),
        Route(base + "/blobs/{container}/", g(listing)),
        Route(base + "/blob/{container}/{name:path}", g(blob)),
        Route(base + "/download/{container}/{name:path}", g(download)),
    ]


def _crumbs(prefix: str) -> list[tuple[str, str]]:
    """(label, prefix) for each level of ``prefix`` (``a/b/`` -> ``a/``, ``a/b/``)."""
    out: list[tuple[str, str]] = []
    acc = ""
    for part in [p for p in prefix.split("/") if p]:
        acc += part + "/"
        out.append((part, acc))
    return out
