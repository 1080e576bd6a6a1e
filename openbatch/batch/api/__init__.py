"""The Batch endpoint: an ASGI app over the routes of account, pools, nodes, jobs, tasks, files."""

from __future__ import annotations

import logging
from typing import Any

from openbatch.batch.api import (
    account,
    certificates,
    clock,
    files,
    jobs,
    nodes,
    pools,
    schedules,
    spot,
    tasks,
)
from openbatch.batch.api.routing import (
    BatchRequest,
    BatchResponse,
    Router,
    authenticate,
    error_response,
    new_request_id,
    parse_query,
)
from openbatch.batch.appstorage import BlobPackageStorage
from openbatch.batch.domain import errors as e
from openbatch.batch.domain.common import BatchContext
from openbatch.batch.store import BatchStore
from openbatch.config import Settings

log = logging.getLogger("openbatch.batch")


class BatchService:
    """Owns the Batch store, engine and compute provider; serves the REST API."""

    def __init__(self, settings: Settings, blob: Any = None):
        from openbatch.batch.engine import Engine

        self.settings = settings
        store = BatchStore(settings.data_dir / "batch" / "batch.db")
        compute = _compute_provider(settings)
        self.engine = Engine(settings, store, compute)
        self.ctx = BatchContext(settings=settings, store=store, hooks=self.engine, compute=compute,
                                samples=self.engine.autoscale,
                                packages=BlobPackageStorage(settings, blob) if blob is not None else None)
        self.engine.ctx = self.ctx
        test_routes = clock.ROUTES if settings.test_clock else []
        self.router = Router([*account.ROUTES, *pools.ROUTES, *nodes.ROUTES, *jobs.ROUTES, *tasks.ROUTES,
                              *files.ROUTES, *schedules.ROUTES, *certificates.ROUTES, *spot.ROUTES, *test_routes])

    async def start(self) -> None:
        await self.ctx.compute.start()
        await self.engine.start()

    async def stop(self) -> None:
        await self.engine.stop()
        await self.ctx.compute.stop()
        self.ctx.store.close()

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host") or f"{self.settings.host}:{self.settings.batch_port}"
        base_url = f"{scope.get('scheme', 'http')}://{host}"
        request_id = new_request_id()
        raw_path = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        pairs = parse_query(scope.get("query_string", b""))
        req = BatchRequest(
            ctx=self.ctx, method=scope["method"], path=scope["path"], raw_path=raw_path,
            query={k: v for k, v in reversed(pairs)}, query_pairs=pairs, headers=headers,
            base_url=base_url, request_id=request_id, receive=receive,
        )
        try:
            resp = await self._handle(req)
        except e.BatchError as exc:
            resp = error_response(request_id, base_url, exc)
        except Exception:  # a bug, not a client mistake: log it, answer as Azure would
            log.exception("unhandled error in %s %s", req.method, req.path)
            resp = error_response(request_id, base_url, e.BatchError("Server encountered an internal error."))
        await self._send(send, req, resp)

    async def _handle(self, req: BatchRequest) -> BatchResponse:
        from openbatch.batch.wire import versions

        handler, params, req.operation = self.router.match(req.method, req.raw_path)
        req.account = authenticate(self.ctx, req.method, req.headers, req.raw_path, req.query_pairs,
                                   secure=req.base_url.startswith("https:"))
        text = req.query.get("api-version")
        if not text:
            raise e.MissingRequiredQueryParameter(
                "A query parameter that's mandatory for this request is not specified.",
                {"QueryParameterName": "api-version"},
            )
        try:
            req.version = versions.parse_api_version(text)
        except ValueError:
            raise e.UnsupportedApiVersion(
                f"The API version {text} is not supported.", {"QueryParameterName": "api-version"}
            ) from None
        req.params = params
        return await handler(req)

    async def _send(self, send: Any, req: BatchRequest, resp: BatchResponse) -> None:
        headers = [(b"request-id", req.request_id.encode()), (b"dataserviceversion", b"3.0")]
        if resp.body or resp.stream is not None:
            headers.append((b"content-type", resp.content_type.encode()))
        client_id = req.headers.get("client-request-id")
        if client_id and req.headers.get("return-client-request-id", "").lower() == "true":
            headers.append((b"client-request-id", client_id.encode("latin-1")))
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers]
        if resp.stream is None:
            headers.append((b"content-length", str(len(resp.body)).encode()))
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            body = b"" if req.method == "HEAD" else resp.body
            await send({"type": "http.response.body", "body": body})
            return
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        if req.method != "HEAD":
            async for chunk in resp.stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


def _compute_provider(settings: Settings) -> Any:
    """The provider ``settings.compute`` names (lazy imports: Dask loads only when asked for)."""
    if settings.compute == "local":
        from openbatch.compute.local import LocalProvider

        return LocalProvider(settings)
    from openbatch.compute.dask import DaskProvider

    return DaskProvider(settings)


def build_batch_service(settings: Settings, blob: Any = None) -> BatchService:
    return BatchService(settings, blob)
