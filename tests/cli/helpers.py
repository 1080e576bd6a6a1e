"""Running the CLI in-process (typer's CliRunner) against a live server."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner, Result

from openbatch.cli.main import app
from tests.helpers.server import LiveServer

NO_DATA_DIR = "/nonexistent/openbatch-test-data-dir"


def server_env(server: LiveServer) -> dict[str, str]:
    return {
        "OPENBATCH_BATCH_URL": server.batch_url,
        "OPENBATCH_BLOB_URL": server.blob_url,
        "OPENBATCH_ACCOUNT": server.account,
        "OPENBATCH_KEY": server.key,
    }


def cli(server: LiveServer | None, *args: str, env: dict[str, str] | None = None) -> Result:
    """``openbatch ARGS`` with the server's connection in the environment; never a traceback."""
    # No server on the default data dir (~/.openbatch) joins in: the data dir is the server's, or none.
    data_dir = {"OPENBATCH_DATA_DIR": str(server.data_dir if server else NO_DATA_DIR)}
    full_env = {**data_dir, **(server_env(server) if server else {}), **(env or {})}
    result = CliRunner().invoke(app, list(args), env=full_env)
    assert "Traceback" not in result.output, result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"openbatch {' '.join(args)} raised {result.exception!r}\n{result.output}")
    return result


def ok(server: LiveServer | None, *args: str, env: dict[str, str] | None = None) -> Result:
    result = cli(server, *args, env=env)
    assert result.exit_code == 0, f"openbatch {' '.join(args)} -> {result.exit_code}\n{result.output}"
    return result


def fails(server: LiveServer | None, *args: str, env: dict[str, str] | None = None) -> Result:
    """A command that must fail: exit code 1, an ``error:`` line on stderr, nothing on stdout."""
    result = cli(server, *args, env=env)
    assert result.exit_code == 1, f"openbatch {' '.join(args)} -> {result.exit_code}\n{result.output}"
    assert "error:" in result.stderr, result.output
    return result


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)
