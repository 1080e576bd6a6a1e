"""The dashboard's pure helpers: what a page may show and how a filter reads."""

from __future__ import annotations

from openbatch.ui import views


def test_redact_hides_sas_signatures_and_internal_keys() -> None:
    doc = {"_seq": 4, "resourceFiles": [{"httpUrl": "http://h/c/b?sv=2024&sig=abc%2Bdef&se=1"}],
           "outputFiles": [{"destination": {"container": {"containerUrl": "http://h/c?SIG=zzz"}}}],
           "commandLine": "echo signature"}
    shown = views.redact(doc)
    assert "_seq" not in shown
    assert shown["resourceFiles"][0]["httpUrl"] == "http://h/c/b?sv=2024&sig=REDACTED&se=1"
    assert shown["outputFiles"][0]["destination"]["container"]["containerUrl"] == "http://h/c?SIG=REDACTED"
    assert shown["commandLine"] == "echo signature"
    assert doc["_seq"] == 4  # the stored document is not changed


def test_task_filter_reads_states_and_exit_codes() -> None:
    assert views.TaskFilter.parse("failed", "").query() == "state=failed"
    assert views.TaskFilter.parse("running", " -3 ").query() == "state=running&exit=-3"
    assert views.TaskFilter.parse("bogus", "1; drop").query() == ""


def test_progress_and_chart() -> None:
    p = views.progress({"active": 1, "running": 1, "completed": 2, "succeeded": 1, "failed": 1})
    assert (p["total"], p["succeeded"], p["failed"], p["running"], p["done"]) == (4, 25.0, 25.0, 25.0, 50.0)
    c = views.chart([0.0, 2.0, 1.0], width=100, height=50)
    assert c["peak"] == 2.0 and c["points"].split()[1] == "50.0,10.0"
