"""Batch routes (placeholder until the Batch service lands): 404 in the Batch JSON error shape."""

from __future__ import annotations

import json
import uuid
from typing import Any

from openbatch.config import Settings


class BatchService:
    def __init__(self, settings: Settings, blob: Any) -> None:
        self.settings = settings

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = json.dumps({
            "odata.metadata": f"{self.settings.batch_url}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",
            "code": "ResourceNotFound",
            "message": {"lang": "en-US", "value": "The specified resource does not exist."},
        }).encode()
        await send({"type": "http.response.start", "status": 404, "headers": [
            (b"content-type", b"application/json;odata=minimalmetadata"),
            (b"request-id", str(uuid.uuid4()).encode()),
        ]})
        await send({"type": "http.response.body", "body": body})

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def build_batch_service(settings: Settings, blob: Any) -> BatchService:
    return BatchService(settings, blob)
