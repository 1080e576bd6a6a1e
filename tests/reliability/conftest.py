from __future__ import annotations

import pytest

from tests.reliability import report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not report.FIGURES:
        return
    terminalreporter.section("reliability figures")
    for line in report.lines():
        terminalreporter.write_line(line)
    path = report.save()
    if path is not None:
        terminalreporter.write_line(f"written to {path}")
