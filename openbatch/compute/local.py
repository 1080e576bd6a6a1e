"""Local compute provider (being written): nodes as directories + processes on this machine."""

from __future__ import annotations

from openbatch.config import Settings


class LocalProvider:
    def __init__(self, settings: Settings):
        self.settings = settings

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
