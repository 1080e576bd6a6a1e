"""The event log's adding-up and its request targets (no server: the formatting and the window)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from openbatch.common.eventlog import EngineEvents, JsonFormatter, safe_target


def test_query_values_are_left_out_except_harmless_ones() -> None:
    target = safe_target("/devstoreaccount1/c/b", b"sv=2024-01-01&se=2030&sp=r&sig=abc%2Fdef%3D&comp=block&x=secret")
    assert target == "/devstoreaccount1/c/b?sv&se&sp&sig&comp=block&x"
    assert safe_target("/pools", "api-version=2025-06-01&$filter=state eq 'x'") == \
        "/pools?api-version=2025-06-01&$filter"
    assert safe_target("/pools", b"") == "/pools"


def test_a_burst_of_completions_is_one_line_with_a_few_failures_named(caplog: pytest.LogCaptureFixture) -> None:
    events = EngineEvents(window=5)

    async def burst() -> None:
        for i in range(1000):
            failed = i % 100 == 0
            events.task_completed("job1", f"t{i}", 1 if failed else 0, "failure" if failed else "success",
                                  "FailureExitCode" if failed else None)
        for i in range(8):
            events.node_state("pool1", f"n{i}", "starting", "idle")
        events.flush()

    with caplog.at_level(logging.INFO, logger="openbatch.events"):
        asyncio.run(burst())
    lines = [r.getMessage() for r in caplog.records]
    assert "1,000 tasks completed (10 failed) in the last 5 s" in lines
    assert "pool pool1: nodes now 8 idle" in lines
    named = [line for line in lines if line.startswith("task job1/")]
    assert named == [f"task job1/t{i} failed with exit code 1 (FailureExitCode)" for i in range(0, 500, 100)]
    assert len(lines) == 7


def test_verbose_names_every_event_and_start_task_failures_always(caplog: pytest.LogCaptureFixture) -> None:
    events = EngineEvents()
    events.verbose = True
    with caplog.at_level(logging.INFO, logger="openbatch.events"):
        events.task_completed("j", "t1", 0, "success")
        events.node_state("p", "n1", "idle", "running")
        events.node_state("p", "n2", "waitingforstarttask", "starttaskfailed",
                          {"exitCode": 3, "failureInfo": {"code": "FailureExitCode"}})
        events.shutdown()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:3] == ["task j/t1 completed with exit code 0", "node n1 of pool p: idle -> running",
                         "node n2 of pool p: start task failed with exit code 3 (FailureExitCode)"]
    assert lines[3].startswith("shutting down after ") and "1 tasks succeeded" in lines[3]


def test_json_lines_carry_the_fields() -> None:
    record = logging.LogRecord("openbatch.events", logging.INFO, __file__, 1, "task j/t failed", None, None)
    record.fields = {"event": "task.failed", "exitCode": 2}
    doc = json.loads(JsonFormatter().format(record))
    assert doc["message"] == "task j/t failed" and doc["event"] == "task.failed" and doc["exitCode"] == 2
