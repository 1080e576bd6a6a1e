"""The pool/node/job/task/file/blob/env commands against a live server, including their error paths."""

from __future__ import annotations

import base64
import json
import shlex
import urllib.request
from pathlib import Path

import pytest

from openbatch.config import DEV_ACCOUNT, DEV_KEY
from tests.cli.helpers import as_json, fails, ok
from tests.helpers.server import LiveServer

OTHER_KEY = base64.b64encode(b"not the account key, but valid base64 all the same").decode()


# -- env -------------------------------------------------------------------------------------------


def test_env_prints_exports_and_connection_string() -> None:
    result = ok(None, "env", "--batch-url", "http://127.0.0.1:9", "--blob-url", "http://127.0.0.1:8/acct1",
                "--account", "acct1", "--key", DEV_KEY)
    exports = dict(line.removeprefix("export ").split("=", 1) for line in result.stdout.splitlines())
    assert exports["OPENBATCH_BATCH_URL"] == "http://127.0.0.1:9"
    assert exports["OPENBATCH_BLOB_URL"] == "http://127.0.0.1:8/acct1"
    assert exports["OPENBATCH_ACCOUNT"] == "acct1"
    assert shlex.split(exports["OPENBATCH_KEY"]) == [DEV_KEY]
    connection = shlex.split(exports["AZURE_STORAGE_CONNECTION_STRING"])[0]
    assert connection == (f"DefaultEndpointsProtocol=http;AccountName=acct1;AccountKey={DEV_KEY};"
                          "BlobEndpoint=http://127.0.0.1:8/acct1;")


def test_env_defaults_to_the_local_server_and_reads_the_environment() -> None:
    values = as_json(ok(None, "env", "--json", env={"OPENBATCH_BATCH_URL": "http://h:1"}))
    assert values["OPENBATCH_BATCH_URL"] == "http://h:1"
    assert values["OPENBATCH_BLOB_URL"] == f"http://127.0.0.1:10000/{DEV_ACCOUNT}"
    assert values["OPENBATCH_ACCOUNT"] == DEV_ACCOUNT
    assert values["OPENBATCH_KEY"] == DEV_KEY


def test_env_connection_string_works_with_the_blob_sdk(server: LiveServer) -> None:
    from azure.storage.blob import BlobServiceClient

    values = as_json(ok(server, "env", "--json"))
    client = BlobServiceClient.from_connection_string(values["AZURE_STORAGE_CONNECTION_STRING"])
    client.create_container("envcheck")
    assert [c.name for c in client.list_containers(name_starts_with="envcheck")] == ["envcheck"]
    client.delete_container("envcheck")


# -- errors ----------------------------------------------------------------------------------------


def test_unknown_pool_prints_pool_not_found(server: LiveServer) -> None:
    result = fails(server, "pool", "show", "no-such-pool")
    assert "PoolNotFound" in result.stderr
    assert result.stdout == ""


def test_unknown_job_and_task(server: LiveServer) -> None:
    assert "JobNotFound" in fails(server, "task", "list", "no-such-job").stderr
    assert "JobNotFound" in fails(server, "job", "show", "no-such-job").stderr


def test_bad_key_prints_authentication_failed(server: LiveServer) -> None:
    assert "AuthenticationFailed" in fails(server, "pool", "list", "--key", OTHER_KEY).stderr
    assert "AuthenticationFailed" in fails(server, "blob", "ls", env={"OPENBATCH_KEY": OTHER_KEY}).stderr


def test_key_that_is_not_base64(server: LiveServer) -> None:
    assert "not valid base64" in fails(server, "pool", "list", "--key", "not base64!").stderr
    assert "http://" in fails(server, "pool", "list", "--batch-url", "127.0.0.1:1").stderr


def test_unreachable_server_is_one_line() -> None:
    result = fails(None, "job", "list", "--batch-url", "http://127.0.0.1:9")
    assert "ServiceRequestError" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_usage_mistakes(server: LiveServer, tmp_path: Path) -> None:
    assert "--pool" in fails(server, "job", "create", "somejob").stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "not valid JSON" in fails(server, "pool", "create", "--json", str(bad)).stderr
    assert "PATH=URL" in fails(server, "task", "create", "j", "t", "--command", "x",
                               "--resource-file", "ftp://x").stderr
    assert "--image" in fails(server, "pool", "create", "p", "--image", "only:two").stderr


def test_service_validation_errors_are_shown(server: LiveServer) -> None:
    result = fails(server, "pool", "create", "bad pool id!")
    assert "Invalid" in result.stderr  # InvalidPropertyValue / InvalidRequestBody ... as the service says


# -- blob ------------------------------------------------------------------------------------------


def test_blob_round_trip(server: LiveServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.txt").write_text("beta\n")
    ok(server, "blob", "create", "roundtrip")
    ok(server, "blob", "upload", str(src / "a.txt"), "roundtrip", "--name", "renamed.txt")
    ok(server, "blob", "upload", str(src), "roundtrip", "--prefix", "dir/")

    table = ok(server, "blob", "ls", "roundtrip").stdout
    assert "renamed.txt" in table and "dir/sub/b.txt" in table
    names = [b["name"] for b in as_json(ok(server, "blob", "ls", "roundtrip", "--prefix", "dir/", "-o", "json"))]
    assert names == ["dir/a.txt", "dir/sub/b.txt"]
    assert "roundtrip" in [c["name"] for c in as_json(ok(server, "blob", "ls", "-o", "json"))]

    ok(server, "blob", "download", "roundtrip", "dir/sub/b.txt", str(tmp_path / "b.copy"))
    assert (tmp_path / "b.copy").read_text() == "beta\n"
    assert ok(server, "blob", "download", "roundtrip", "renamed.txt", "-").stdout == "alpha\n"

    url = ok(server, "blob", "sas", "roundtrip", "renamed.txt").stdout.strip()
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"alpha\n"

    ok(server, "blob", "rm", "roundtrip", "renamed.txt")
    assert "BlobNotFound" in fails(server, "blob", "rm", "roundtrip", "renamed.txt").stderr
    ok(server, "blob", "rm", "roundtrip", "--container")
    assert "ContainerNotFound" in fails(server, "blob", "ls", "roundtrip").stderr


def test_blob_upload_creates_container_on_request(server: LiveServer, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * (5 * 1024 * 1024))  # above the progress-bar threshold
    assert "ContainerNotFound" in fails(server, "blob", "upload", str(path), "autocreated").stderr
    ok(server, "blob", "upload", str(path), "autocreated", "--create")
    assert as_json(ok(server, "blob", "ls", "autocreated", "-o", "json"))[0]["size"] == path.stat().st_size
    ok(server, "blob", "rm", "autocreated", "--container")


# -- pools, nodes ----------------------------------------------------------------------------------


def test_pool_images(server: LiveServer) -> None:
    images = as_json(ok(server, "pool", "images", "-o", "json"))
    assert any(i["osType"] == "linux" for i in images)
    assert "batch.node" in ok(server, "pool", "images").stdout


def test_pool_lifecycle(server: LiveServer) -> None:
    ok(server, "pool", "create", "clipool", "--nodes", "1", "--slots", "2")
    pools = {p["id"]: p for p in as_json(ok(server, "pool", "list", "-o", "json"))}
    assert pools["clipool"]["taskSlotsPerNode"] == 2
    assert "clipool" in ok(server, "pool", "list").stdout
    assert "PoolExists" in fails(server, "pool", "create", "clipool").stderr

    ok(server, "pool", "resize", "clipool", "--nodes", "2", "--wait", "--timeout", "60")
    shown = as_json(ok(server, "pool", "show", "clipool", "-o", "json"))
    assert shown["targetDedicatedNodes"] == 2
    assert "targetDedicatedNodes" in ok(server, "pool", "show", "clipool").stdout

    nodes = as_json(ok(server, "node", "list", "clipool", "-o", "json"))
    assert len(nodes) == 2
    node_id = nodes[0]["id"]
    assert as_json(ok(server, "node", "show", "clipool", node_id, "-o", "json"))["id"] == node_id
    assert "NodeNotFound" in fails(server, "node", "show", "clipool", "no-such-node").stderr
    ok(server, "node", "delete", "clipool", node_id, "--wait", "--timeout", "60")
    assert node_id not in [n["id"] for n in as_json(ok(server, "node", "list", "clipool", "-o", "json"))]

    ok(server, "pool", "delete", "clipool", "--wait", "--timeout", "60")
    assert "PoolNotFound" in fails(server, "pool", "show", "clipool").stderr


def test_pool_create_from_rest_json(server: LiveServer, tmp_path: Path) -> None:
    image = as_json(ok(server, "pool", "images", "-o", "json"))[0]
    body = {
        "id": "jsonpool",
        "vmSize": "STANDARD_D2_V3",
        "virtualMachineConfiguration": {"imageReference": image["imageReference"],
                                        "nodeAgentSKUId": image["nodeAgentSKUId"]},
        "targetDedicatedNodes": 0,
        "metadata": [{"name": "owner", "value": "cli-test"}],
    }
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(body))
    ok(server, "pool", "create", "--json", str(path))
    shown = as_json(ok(server, "pool", "show", "jsonpool", "-o", "json"))
    assert shown["vmSize"].lower() == "standard_d2_v3"
    assert shown["metadata"] == [{"name": "owner", "value": "cli-test"}]
    ok(server, "pool", "delete", "jsonpool")


# -- jobs, tasks, files ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool(server: LiveServer) -> str:
    ok(server, "pool", "create", "taskpool", "--nodes", "1", "--slots", "4")
    return "taskpool"


def test_job_and_task_flow(server: LiveServer, pool: str) -> None:
    ok(server, "job", "create", "clijob", "--pool", pool, "--priority", "10")
    assert as_json(ok(server, "job", "show", "clijob", "-o", "json"))["priority"] == 10
    ok(server, "task", "create", "clijob", "hello", "--command",
       "/bin/sh -c 'echo hello $GREETING; echo oops >&2'", "--env", "GREETING=world")
    followed = ok(server, "task", "logs", "clijob", "hello", "--follow")
    assert followed.stdout == "hello world\n"
    assert ok(server, "task", "logs", "clijob", "hello", "--stderr").stdout == "oops\n"

    task = as_json(ok(server, "task", "show", "clijob", "hello", "-o", "json"))
    assert task["state"] == "completed" and task["executionInfo"]["exitCode"] == 0
    listed = ok(server, "task", "list", "clijob", "--state", "completed").stdout
    assert "hello" in listed
    assert as_json(ok(server, "task", "list", "clijob", "--state", "active", "-o", "json")) == []

    files = {f["name"] for f in as_json(ok(server, "file", "list", "clijob", "hello", "-o", "json"))}
    assert {"stdout.txt", "stderr.txt"} <= files
    assert ok(server, "file", "get", "clijob", "hello", "stdout.txt").stdout == "hello world\n"
    assert "tasks: 0 active" in ok(server, "job", "show", "clijob").stdout

    ok(server, "task", "delete", "clijob", "hello")
    assert "TaskNotFound" in fails(server, "task", "show", "clijob", "hello").stderr
    ok(server, "job", "terminate", "clijob", "--reason", "AllDone", "--wait", "--timeout", "60")
    job = as_json(ok(server, "job", "show", "clijob", "-o", "json"))
    assert job["state"] == "completed"
    assert job["executionInfo"]["terminateReason"] == "AllDone"
    ok(server, "job", "delete", "clijob", "--wait", "--timeout", "60")
    assert "JobNotFound" in fails(server, "job", "show", "clijob").stderr


def test_follow_prints_output_as_it_grows(server: LiveServer, pool: str) -> None:
    ok(server, "job", "create", "followjob", "--pool", pool)
    ok(server, "task", "create", "followjob", "slow", "--command",
       "/bin/sh -c 'echo one; sleep 0.5; echo two >&2; sleep 0.5; echo three'")
    assert ok(server, "task", "logs", "followjob", "slow", "-f").stdout == "one\nthree\n"
    assert ok(server, "task", "logs", "followjob", "slow", "--stderr").stdout == "two\n"
    ok(server, "job", "delete", "followjob")


def test_failed_task_and_terminate(server: LiveServer, pool: str) -> None:
    ok(server, "job", "create", "failjob", "--pool", pool)
    ok(server, "task", "create", "failjob", "bad", "--command", "/bin/sh -c 'exit 3'")
    ok(server, "task", "create", "failjob", "long", "--command", "/bin/sh -c 'sleep 60'")
    ok(server, "task", "logs", "failjob", "bad", "--follow")
    bad = as_json(ok(server, "task", "show", "failjob", "bad", "-o", "json"))
    assert bad["executionInfo"]["exitCode"] == 3 and bad["executionInfo"]["result"] == "failure"
    assert "failure" in ok(server, "task", "list", "failjob").stdout

    ok(server, "task", "terminate", "failjob", "long")
    ok(server, "task", "logs", "failjob", "long", "--follow")  # returns once the task completed
    assert as_json(ok(server, "task", "show", "failjob", "long", "-o", "json"))["state"] == "completed"
    ok(server, "job", "terminate", "failjob", "--wait")
    assert as_json(ok(server, "job", "show", "failjob", "-o", "json"))["executionInfo"]["terminateReason"] == \
        "UserTerminate"
    ok(server, "job", "delete", "failjob")


def test_tasks_from_rest_json(server: LiveServer, pool: str, tmp_path: Path) -> None:
    ok(server, "job", "create", "jsonjob", "--pool", pool)
    tasks = [{"id": f"t{i}", "commandLine": f"/bin/sh -c 'echo task {i}'"} for i in range(3)]
    (tmp_path / "tasks.json").write_text(json.dumps({"value": tasks}))
    (tmp_path / "one.json").write_text(json.dumps({"id": "single", "commandLine": "/bin/true"}))
    ok(server, "task", "create", "jsonjob", "--json", str(tmp_path / "tasks.json"))
    ok(server, "task", "create", "jsonjob", "--json", str(tmp_path / "one.json"))
    ids = sorted(t["id"] for t in as_json(ok(server, "task", "list", "jsonjob", "-o", "json")))
    assert ids == ["single", "t0", "t1", "t2"]
    assert ok(server, "task", "logs", "jsonjob", "t2", "-f").stdout == "task 2\n"
    assert "TaskExists" in fails(server, "task", "create", "jsonjob", "--json", str(tmp_path / "one.json")).stderr
    ok(server, "job", "delete", "jsonjob")


def test_job_from_rest_json(server: LiveServer, pool: str, tmp_path: Path) -> None:
    body = {"id": "restjob", "poolInfo": {"poolId": pool}, "onAllTasksComplete": "terminatejob",
            "metadata": [{"name": "k", "value": "v"}]}
    (tmp_path / "job.json").write_text(json.dumps(body))
    ok(server, "job", "create", "--json", str(tmp_path / "job.json"))
    job = as_json(ok(server, "job", "show", "restjob", "-o", "json"))
    assert job["poolInfo"]["poolId"] == pool and job["metadata"] == [{"name": "k", "value": "v"}]
    assert any(j["id"] == "restjob" for j in as_json(ok(server, "job", "list", "-o", "json")))
    assert "restjob" in ok(server, "job", "list").stdout
    ok(server, "job", "delete", "restjob")


def test_node_files(server: LiveServer, pool: str) -> None:
    ok(server, "job", "create", "nodefilejob", "--pool", pool)
    ok(server, "task", "create", "nodefilejob", "probe", "--command", "/bin/true")
    ok(server, "task", "logs", "nodefilejob", "probe", "--follow")
    node_id = as_json(ok(server, "task", "show", "nodefilejob", "probe", "-o", "json"))["nodeInfo"]["nodeId"]
    names = {f["name"] for f in as_json(ok(server, "file", "node-list", pool, node_id, "-o", "json"))}
    assert "shared" in names
    assert "FileNotFound" in fails(server, "file", "node-get", pool, node_id, "startup/none.txt").stderr
    ok(server, "job", "delete", "nodefilejob")
