"""The web dashboard: ``/`` and ``/ui/...`` of the batch port, everything else is the Batch REST API.

Server-rendered (Jinja2) pages over the same domain operations the REST API calls, live parts
refreshed by a small script of our own (static/ui.js) polling HTML fragments. Local and
unauthenticated like Azurite's: it listens where the batch endpoint listens. Read-only unless the
server runs with ``--ui-actions``.
"""

from __future__ import annotations

from typing import Any

from openbatch.config import Settings
from openbatch.ui.app import build_app
from openbatch.ui.rates import Rates


class Dashboard:
    """The batch endpoint with the dashboard in front: a ``server.Service``."""

    def __init__(self, settings: Settings, batch: Any, blob: Any):
        self.batch = batch
        self.blob = blob
        self.rates = Rates(batch.ctx, list(settings.accounts))
        self.web = build_app(settings, batch.ctx, blob, self.rates)

    async def start(self) -> None:
        await self.batch.start()
        self.rates.start()

    async def stop(self) -> None:
        await self.rates.stop()
        await self.batch.stop()

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/" or path == "/ui" or path.startswith("/ui/")):
            await self.web(scope, receive, send)
        else:
            await self.batch.app(scope, receive, send)
