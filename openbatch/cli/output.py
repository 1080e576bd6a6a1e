"""How the CLI prints resources: rich tables by default, the REST JSON shape with ``--output json``."""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


OutputOption = Annotated[
    OutputFormat, typer.Option("--output", "-o", help="table, or json (the REST shape, as the service returns it).")
]

Column = tuple[str, str]  # (header, dotted path into the REST-shaped document)

_STATE_STYLES = {
    "active": "green", "idle": "green", "steady": "green", "completed": "green", "success": "green",
    "running": "yellow", "resizing": "yellow", "preparing": "yellow", "creating": "yellow", "starting": "yellow",
    "waitingforstarttask": "yellow", "terminating": "yellow", "deleting": "red", "failure": "red",
    "starttaskfailed": "red", "unusable": "red", "offline": "red", "disabled": "red", "stopping": "yellow",
}


def console() -> Console:
    out = Console(highlight=False, soft_wrap=True)
    if not out.is_terminal:  # logs and pipes: wide tables rather than wrapped cells
        out.width = max(out.width, 200)
    return out


def as_rest(item: Any) -> dict[str, Any]:
    """The REST (camelCase) document of an SDK model, or the mapping itself."""
    if hasattr(item, "as_dict"):
        return dict(item.as_dict())
    if isinstance(item, Mapping):
        return dict(item)
    raise TypeError(f"cannot render {type(item).__name__}")


def pick(doc: Mapping[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list | dict):
        return escape(json.dumps(value, separators=(",", ":"), default=_json_default))
    text = str(value)
    style = _STATE_STYLES.get(text)
    return f"[{style}]{escape(text)}[/]" if style else escape(text)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return str(value)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def show_list(items: Iterable[Any], columns: list[Column], output: OutputFormat, title: str | None = None,
              limit: int = 0) -> int:
    """Print a list (its first ``limit`` items, 0: all); returns how many items there were."""
    docs = [as_rest(item) for item in items]
    count = len(docs)
    if limit:
        docs = docs[:limit]
    if output is OutputFormat.json:
        print_json(docs)
        return count
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for header, _ in columns:
        table.add_column(header, overflow="fold")
    for doc in docs:
        table.add_row(*(cell(pick(doc, path)) for _, path in columns))
    out = console()
    if docs:
        out.print(table)
    else:
        out.print(f"[dim]no {title.lower() if title else 'items'}[/]")
    return count


def flatten(doc: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, f"{name}.")
        else:
            yield name, value


def show_one(item: Any, output: OutputFormat) -> None:
    """One resource: every property as ``path  value`` (or the whole JSON document)."""
    doc = as_rest(item)
    if output is OutputFormat.json:
        print_json(doc)
        return
    table = Table(show_header=False, show_edge=False, pad_edge=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in flatten(doc):
        if name.startswith("odata.") or value in (None, [], {}):
            continue
        table.add_row(escape(name), cell(value))
    console().print(table)


def done(message: str) -> None:
    """A one-line confirmation of an action, on stdout."""
    console().print(f"[green]✓[/] {escape(message)}")


def note(message: str) -> None:
    """A hint on stderr (so it never mixes with ``--output json`` on stdout)."""
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[dim]{escape(message)}[/]")
