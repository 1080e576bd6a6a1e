"""The CLI for people (issue 12): watch, --top, --state, failures, auth details, tracebacks, help,
endpoint discovery from the data dir, node reboot, blob download into a new directory."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openbatch import __version__
from openbatch.cli.connection import Connection
from openbatch.cli.main import app
from openbatch.common.instance import running_endpoints
from tests.cli.helpers import as_json, cli, fails, ok
from tests.helpers.server import LiveServer
from tests.helpers.waiting import wait_for

OTHER_KEY = base64.b64encode(b"a key of the right shape that is not the account's").decode()


@pytest.fixture(scope="module")
def pool(server: LiveServer) -> str:
    ok(server, "pool", "create", "peoplepool", "--nodes", "1", "--slots", "4")
    return "peoplepool"


def _only_data_dir(server: LiveServer) -> dict[str, str]:
    """No URL, account or key anywhere: only the data dir the server runs on."""
    return {"OPENBATCH_DATA_DIR": str(server.data_dir), "OPENBATCH_BATCH_URL": "", "OPENBATCH_BLOB_URL": "",
            "OPENBATCH_ACCOUNT": "", "OPENBATCH_KEY": ""}


def test_commands_find_the_server_running_on_the_data_dir(server: LiveServer) -> None:
    wait_for(lambda: running_endpoints(server.data_dir), "serve to write its endpoints")  # just after it binds
    values = as_json(ok(None, "env", "--json", env=_only_data_dir(server)))
    assert values["OPENBATCH_BATCH_URL"] == server.batch_url
    assert values["OPENBATCH_BLOB_URL"] == server.blob_url
    ok(server, "blob", "create", "viadatadir")
    assert "viadatadir" in ok(None, "blob", "ls", env=_only_data_dir(server)).stdout
    endpoints = json.loads((server.data_dir / "endpoints.json").read_text())
    assert server.proc is not None and endpoints["pid"] == server.proc.pid
    assert "key" not in json.dumps(endpoints).lower()


def test_a_data_dir_without_a_server_means_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "endpoints.json").write_text(json.dumps({"batchUrl": "http://127.0.0.1:1", "blobUrl": "http://x:2",
                                                         "account": "a", "pid": 1}))
    values = as_json(ok(None, "env", "--json", env={"OPENBATCH_DATA_DIR": str(tmp_path)}))
    assert values["OPENBATCH_BATCH_URL"] == "http://127.0.0.1:10100"  # a stale file: nobody holds the lock


def test_version_and_short_help() -> None:
    assert ok(None, "--version").stdout.strip() == f"openbatch {__version__}"
    assert "Usage" in ok(None, "-h").stdout
    assert "--top" in ok(None, "task", "list", "-h").stdout


def test_help_has_no_type_noise_and_groups_the_connection_options() -> None:
    text = CliRunner().invoke(app, ["task", "list", "--help"], env={"COLUMNS": "160"}).stdout
    for noise in ("<str>", "<int>", "<bool>", "<float>", "TEXT", "INTEGER"):
        assert noise not in text, text
    assert "<active|preparing|running|completed>" in text
    assert "Connection" in text and text.count("--batch-url") == 1


def test_unknown_state_is_rejected(server: LiveServer) -> None:
    result = cli(server, "task", "list", "somejob", "--state", "finished")
    assert result.exit_code == 2
    assert "finished" in result.output and "completed" in result.output


def test_task_list_top_and_failed(server: LiveServer, pool: str) -> None:
    ok(server, "job", "create", "topjob", "--pool", pool)
    tasks = [{"id": f"t{i:02d}", "commandLine": f"/bin/sh -c 'exit {1 if i % 4 == 0 else 0}'"} for i in range(12)]
    path = server.data_dir.parent / "toptasks.json"
    path.write_text(json.dumps(tasks))
    ok(server, "task", "create", "topjob", "--json", str(path))
    wait_for(lambda: len(as_json(ok(server, "task", "list", "topjob", "--state", "completed", "-o", "json"))) == 12,
             "the tasks to complete")
    limited = ok(server, "task", "list", "topjob", "--top", "5", "-o", "json")
    assert len(as_json(limited)) == 5
    assert "--top" in limited.stderr  # says more are there
    assert len(as_json(ok(server, "task", "list", "topjob", "--top", "0", "-o", "json"))) == 12
    failed = {t["id"] for t in as_json(ok(server, "task", "list", "topjob", "--failed", "-o", "json"))}
    assert failed == {"t00", "t04", "t08"}


def test_job_watch_reports_failures_and_exits(server: LiveServer, pool: str) -> None:
    from azure.batch import models

    ok(server, "job", "create", "watchjob", "--pool", pool)
    tasks = [{"id": "good", "commandLine": "/bin/sh -c 'sleep 0.3'"},
             {"id": "bad", "commandLine": "/bin/sh -c 'sleep 0.3; exit 3'"}]
    path = server.data_dir.parent / "watchtasks.json"
    path.write_text(json.dumps(tasks))
    ok(server, "task", "create", "watchjob", "--json", str(path))
    # Terminate when done only now: a job with no tasks yet would complete at once.
    client = Connection(server.batch_url, server.blob_url, server.account, server.key).batch()
    client.update_job("watchjob", models.BatchJobUpdateOptions({"onAllTasksComplete": "terminatejob"}))
    result = cli(server, "job", "watch", "watchjob", "--interval", "0.2")
    assert result.exit_code == 1, result.output  # a task failed
    assert "task bad failed with exit code 3" in result.stdout
    assert "job completed: 2/2 completed (1 succeeded, 1 failed)" in result.stdout


def test_job_watch_exits_when_all_tasks_completed(server: LiveServer, pool: str) -> None:
    ok(server, "job", "create", "watchopen", "--pool", pool)
    ok(server, "task", "create", "watchopen", "only", "--command", "/bin/true")
    result = ok(server, "job", "watch", "watchopen", "--interval", "0.2")
    assert "all tasks completed (the job is still active): 1/1 completed" in result.stdout


def test_task_logs_show_the_failure_when_there_is_no_output(server: LiveServer, pool: str) -> None:
    ok(server, "job", "create", "failjob", "--pool", pool)
    missing = f"{server.blob_url}/nosuchcontainer/nosuchblob"
    ok(server, "task", "create", "failjob", "nofile", "--command", "/bin/true", "--resource-file", missing)
    wait_for(lambda: as_json(ok(server, "task", "show", "failjob", "nofile", "-o", "json"))["state"] == "completed",
             "the task to fail")
    result = cli(server, "task", "logs", "failjob", "nofile")
    assert "task nofile failed: " in result.stderr
    assert "nosuchblob" in result.stderr  # the failureInfo details: the resource URL


def test_authentication_detail_tells_account_from_key(server: LiveServer) -> None:
    wrong_key = fails(server, "pool", "list", "--key", OTHER_KEY).stderr
    assert "MAC signature" in wrong_key
    wrong_account = fails(server, "pool", "list", "--account", "nosuchaccount").stderr
    assert "account" in wrong_account.split("(HTTP 403)")[1] and "MAC signature" not in wrong_account
    blob_account = fails(server, "blob", "ls", "--account", "nosuchaccount",
                         "--blob-url", server.blob_url.rsplit("/", 1)[0] + "/nosuchaccount").stderr
    assert "nosuchaccount is not served here" in blob_account
    assert "MAC signature" in fails(server, "blob", "ls", "--key", OTHER_KEY).stderr


def test_no_traceback_without_debug(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Connection) -> None:
        raise RuntimeError("an SDK surprise")

    monkeypatch.setattr(Connection, "batch", broken)
    result = fails(server, "pool", "list")
    assert "unexpected RuntimeError: an SDK surprise" in result.stderr and "--debug" in result.stderr
    debug = CliRunner().invoke(app, ["--debug", "pool", "list"], env={"OPENBATCH_BATCH_URL": server.batch_url})
    assert isinstance(debug.exception, RuntimeError)


def test_node_reboot(server: LiveServer, pool: str) -> None:
    def idle_node() -> str | None:
        nodes = as_json(ok(server, "node", "list", pool, "-o", "json"))
        return next((n["id"] for n in nodes if n["state"] == "idle"), None)

    node_id = wait_for(idle_node, "an idle node")
    assert "rebooted node" in ok(server, "node", "reboot", pool, node_id, "--wait").stdout
    wait_for(idle_node, "the node back after its reboot")
    assert "--kind" in fails(server, "node", "reboot", pool, node_id, "--kind", "gently").stderr


def test_blob_download_into_a_directory_that_does_not_exist(server: LiveServer, tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("hello")
    ok(server, "blob", "upload", str(tmp_path / "hello.txt"), "dlcontainer", "--name", "deep/hello.txt", "--create")
    ok(server, "blob", "download", "dlcontainer", "deep/hello.txt", f"{tmp_path}/new/dir/")
    assert (tmp_path / "new" / "dir" / "hello.txt").read_text() == "hello"
    ok(server, "blob", "download", "dlcontainer", "deep/hello.txt", str(tmp_path / "other" / "name.txt"))
    assert (tmp_path / "other" / "name.txt").read_text() == "hello"
