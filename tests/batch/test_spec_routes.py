"""Every operation of Microsoft's Batch spec has a route here, and the wire's table of where the
numbers are in request bodies is the one the spec gives (scripts/gen_spec_numbers.py).

A spec operation without a route would answer the generic ``ResourceNotFound`` (or
``MethodNotAllowed``), which no Azure client expects: each must be served, or refused with
Azure's own error for that resource. The spec is read from beside the checkout
(``../shared/specs/batch``), as the fuzz suite does.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from openbatch.batch.api import BatchService
from openbatch.batch.api.routing import operation_key
from openbatch.config import Settings

REPO = Path(__file__).resolve().parents[2]
SPECS = sorted((REPO.parent / "shared" / "specs" / "batch").glob("BatchService-*.json"))
if not SPECS:
    pytest.skip("the Batch spec (../shared/specs/batch) is not beside the checkout", allow_module_level=True)


def _spec_operations() -> set[str]:
    spec = json.loads(SPECS[-1].read_text())
    return {operation_key(method.upper(), path) for path, ops in spec["paths"].items()
            for method in ops if method != "parameters"}


def test_every_spec_operation_has_a_route(tmp_path: Path) -> None:
    service = BatchService(Settings(data_dir=tmp_path / "data"))
    try:
        missing = sorted(_spec_operations() - service.router.operations())
    finally:
        service.ctx.store.close()
    assert missing == []


def test_the_number_table_is_the_specs() -> None:
    location = REPO / "scripts" / "gen_spec_numbers.py"
    module_spec = importlib.util.spec_from_file_location("gen_spec_numbers", location)
    assert module_spec is not None and module_spec.loader is not None
    generator = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(generator)
    committed = (REPO / "openbatch" / "batch" / "wire" / "spec_numbers.py").read_text()
    assert generator.generate(SPECS[-1]) == committed, "run python scripts/gen_spec_numbers.py"
