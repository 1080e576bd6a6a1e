"""Figures the reliability suites measure (request counts, kill points, latencies, RSS), shown at
the end of the pytest run and written as JSON to ``$OPENBATCH_RELIABILITY_REPORT`` when set."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FIGURES: dict[str, dict[str, Any]] = {}


def record(suite: str, **figures: Any) -> None:
    """Add (or update) figures of one suite."""
    FIGURES.setdefault(suite, {}).update(figures)


def lines() -> list[str]:
    return [f"{suite}: {json.dumps(figures, default=str)}" for suite, figures in FIGURES.items()]


def save() -> Path | None:
    target = os.environ.get("OPENBATCH_RELIABILITY_REPORT")
    if not target or not FIGURES:
        return None
    path = Path(target)
    old: dict[str, Any] = {}
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = {}
    path.write_text(json.dumps({**old, **FIGURES}, indent=2, default=str))
    return path
