"""bench/ui.py runs end to end at a tiny size, so the full (opt-in) 100,000-task run keeps working."""

from __future__ import annotations

import json
from pathlib import Path

from bench import ui as bench_ui


def test_bench_ui_smoke(tmp_path: Path) -> None:
    out = tmp_path / "ui.json"
    assert bench_ui.main(["--smoke", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["tasks"] == 500
    assert data["task pages: all"]["pages"] >= 10  # 50 a page, by following the next-page links
    assert data["task pages: failed only"]["pages"] >= 1  # one task in 50 fails: 10 of them
    assert all(v["max_ms"] > 0 for v in data.values() if isinstance(v, dict))
