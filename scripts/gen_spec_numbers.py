"""Generate openbatch/batch/wire/spec_numbers.py from Microsoft's Batch spec.

Usage: python scripts/gen_spec_numbers.py [path/to/BatchService-*.json]   (default: ../shared/specs/batch/)

The generated module lists, for every operation of the spec that takes a JSON body, where the
numbers of that body are (int32 / int64 / double properties, at any depth): the wire edge uses it
to read numbers sent as JSON strings as Azure's OData reader does. tests/batch/test_spec_numbers.py
checks that the committed module is what this script makes of the spec.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TARGET = REPO / "openbatch" / "batch" / "wire" / "spec_numbers.py"


def default_spec() -> Path | None:
    found = sorted((REPO.parent / "shared" / "specs" / "batch").glob("BatchService-*.json"))
    return found[-1] if found else None


def normal_path(path: str) -> str:
    """A route pattern without its parameter names: ``/pools/{poolId}`` -> ``/pools/{}``."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def _ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def _shape(schema: dict[str, Any]) -> str | None:
    """``int32`` / ``int64`` / ``double``, ``@Definition``, ``[...]`` for arrays; None for anything else."""
    name = _ref_name(schema)
    if name is not None:
        return f"@{name}"
    kind = schema.get("type")
    if kind == "integer":
        return str(schema.get("format") or "int64")
    if kind == "number":
        return "double"
    if kind == "array" and isinstance(schema.get("items"), dict):
        inner = _shape(schema["items"])
        return None if inner is None else f"[{inner}]"
    return None


def _properties(definitions: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Every definition's properties that have a shape (its allOf parents' included)."""
    raw: dict[str, dict[str, str]] = {}
    for name, definition in definitions.items():
        props = {}
        for parent in [definition, *definition.get("allOf", [])]:
            parent_name = _ref_name(parent)
            if parent_name is not None:
                props.update(definitions[parent_name].get("properties", {}))
            props.update(parent.get("properties", {}))
        raw[name] = {p: s for p, v in props.items() if (s := _shape(v)) is not None}
    return raw


def _ref_of(shape: str) -> str | None:
    leaf = shape.strip("[]")
    return leaf[1:] if leaf.startswith("@") else None


def _with_numbers(raw: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The definitions holding a number somewhere below, each with only the properties leading to one."""
    holds: set[str] = {name for name, props in raw.items() if any(_ref_of(s) is None for s in props.values())}
    grown = True
    while grown:
        before = len(holds)
        holds |= {name for name, props in raw.items() if any(_ref_of(s) in holds for s in props.values())}
        grown = len(holds) > before
    return {name: {p: s for p, s in raw[name].items() if _ref_of(s) is None or _ref_of(s) in holds}
            for name in sorted(holds)}


def _bodies(spec: dict[str, Any], kept: dict[str, dict[str, str]]) -> dict[str, str]:
    bodies = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []) if method != "parameters" else []:
                name = _ref_name(parameter.get("schema", {})) if parameter.get("in") == "body" else None
                if name in kept:
                    bodies[f"{method.upper()} {normal_path(path)}"] = str(name)
    return bodies


def tables(spec: dict[str, Any]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """(operation -> body definition, definition -> {property: shape}): only what request bodies reach
    and what leads to a number."""
    kept = _with_numbers(_properties(spec["definitions"]))
    bodies = _bodies(spec, kept)
    reachable: set[str] = set()
    todo = list(bodies.values())
    while todo:
        name = todo.pop()
        if name not in reachable:
            reachable.add(name)
            todo += [ref for s in kept[name].values() if (ref := _ref_of(s)) is not None]
    return bodies, {name: kept[name] for name in reachable}


def render(spec_name: str, bodies: dict[str, str], kept: dict[str, dict[str, str]]) -> str:
    lines = [
        f'"""Where the numbers are in Batch request bodies: generated from {spec_name}.',
        "",
        "Do not edit: run ``python scripts/gen_spec_numbers.py``. ``BODIES`` maps an operation",
        "(``METHOD /path/{}``) to its body's definition; ``SHAPES`` maps a definition to its properties that",
        "are numbers (``int32``, ``int64``, ``double``), objects holding numbers (``@Definition``) or arrays",
        "of either (``[...]``).",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "BODIES: dict[str, str] = {",
        *[f'    "{op}": "{name}",' for op, name in sorted(bodies.items())],
        "}",
        "",
        "SHAPES: dict[str, dict[str, str]] = {",
    ]
    for name in sorted(kept):
        lines.append(f'    "{name}": {{')
        lines += [f'        "{prop}": "{shape}",' for prop, shape in sorted(kept[name].items())]
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines) + "\n"


def generate(spec_path: Path) -> str:
    spec = json.loads(spec_path.read_text())
    return render(spec_path.name, *tables(spec))


def main() -> int:
    spec_path = Path(sys.argv[1]) if len(sys.argv) > 1 else default_spec()
    if spec_path is None:
        print("no spec found beside the checkout (../shared/specs/batch); pass its path", file=sys.stderr)
        return 2
    TARGET.write_text(generate(spec_path))
    print(f"wrote {TARGET.relative_to(REPO)} from {spec_path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
