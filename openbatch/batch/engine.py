"""The engine loop (being written): events -> domain transitions -> scheduler -> provider calls."""

from __future__ import annotations

from typing import Any

from openbatch.batch.domain.events import NullHooks
from openbatch.batch.store import BatchStore
from openbatch.config import Settings


class Engine(NullHooks):
    def __init__(self, settings: Settings, store: BatchStore, compute: Any):
        self.settings = settings
        self.store = store
        self.compute = compute
        self.ctx: Any = None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
