"""Blob routes (placeholder until the Blob service lands)."""

from __future__ import annotations

from typing import Any

from openbatch.config import Settings


class BlobService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 501, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def build_blob_service(settings: Settings) -> BlobService:
    return BlobService(settings)
