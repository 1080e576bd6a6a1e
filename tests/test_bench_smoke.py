"""Each benchmark runs end to end at tiny sizes, so the full (opt-in) runs keep working."""

from __future__ import annotations

import json

import pytest

from bench import __main__ as bench_main
from bench import azurite

NAMES = ["spawn", "tasks", "blob", "scale", "quickstart"]


@pytest.mark.parametrize("name", NAMES)
def test_benchmark_smoke(name, tmp_path):
    # The default tests download nothing big: Azurite (~360 MB from npm) is compared against only
    # when a full benchmark run has installed it already.
    extra = ["--no-azurite"] if name == "blob" and not azurite.installed() else []
    assert bench_main.main([name, "--smoke", "--out", str(tmp_path), *extra]) == 0
    (result,) = tmp_path.glob(f"{name}-*.json")
    data = json.loads(result.read_text())
    assert data["machine"]["cores"] >= 1
    # CPU times come from /proc in 10 ms ticks: a smoke run's few requests may spend less than one
    cpu = [row for row in data["rows"] if "CPU" in str(row[0])]
    numbers = [v for row in data["rows"] if row not in cpu for v in row[1:] if isinstance(v, int | float)]
    assert numbers and all(v > 0 for v in numbers), data["rows"]
    assert all(v >= 0 for row in cpu for v in row[1:] if isinstance(v, int | float)), cpu
    if name == "blob" and not extra:
        assert all(isinstance(row[2], float) for row in data["rows"]), "Azurite figures are missing"
