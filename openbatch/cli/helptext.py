"""Help without type noise: Typer (0.2x) prints ``<str>``, ``<int>``, ``<bool>`` next to every parameter;
people read the help text instead. Choices keep their values (``<table|json>``) and a metavar given to
an option stays (``--top N``); everything else shows no type."""

from __future__ import annotations

from typing import Any

import typer.core


def quiet_help() -> None:
    """Install the quieter type column on Typer's parameter classes (idempotent; a no-op where absent)."""
    for cls in (getattr(typer.core, "TyperArgument", None), getattr(typer.core, "TyperOption", None)):
        original = getattr(cls, "display_type_rich", None)
        if cls is None or original is None or getattr(original, "_openbatch_quiet", False):
            continue
        cls.display_type_rich = _quiet(original)


def _quiet(original: Any) -> Any:
    def display_type_rich(self: Any, ctx: Any) -> str:
        if getattr(self, "metavar", None) is not None or _is_choice(self):
            return str(original(self, ctx) or "")
        return ""

    display_type_rich._openbatch_quiet = True  # type: ignore[attr-defined]
    return display_type_rich


def _is_choice(param: Any) -> bool:
    descriptor = getattr(param, "type_descriptor", None)
    return bool(getattr(descriptor, "is_choice", False))
