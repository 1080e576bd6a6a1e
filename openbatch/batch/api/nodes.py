"""Batch nodes routes (being written)."""

from __future__ import annotations

from openbatch.batch.api.routing import Route

ROUTES: list[Route] = []
