"""The Files API with azure-batch 15.x against a live server whose tasks really ran on a local node:
task files and node files — list (recursive, $filter, paging), download (whole, ocp-range, standard
Range -> 206), properties (HEAD headers), delete (recursive), and the errors: missing files,
paths that leave the directory, a task that never ran."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest

from tests.helpers.waiting import wait_for

POOL, JOB = "files-pool", "files-job"
WRITER = ("/bin/sh -c 'echo hello-stdout; echo oops >&2; mkdir -p out/sub; printf 0123456789 > out/digits.txt; "
          "echo nested > out/sub/n.txt; echo gone > out/sub/m.txt'")
TASK_DIR = f"workitems/{JOB}/job-1/writer"


@pytest.fixture(scope="module")
def node_id(client: BatchClient) -> str:
    client.create_pool(m.BatchPoolCreateOptions(
        id=POOL, vm_size="STANDARD_D2S_V3", target_dedicated_nodes=1, task_slots_per_node=2,
        virtual_machine_configuration=m.VirtualMachineConfiguration(
            image_reference=m.BatchVmImageReference(publisher="Canonical", offer="0001-com-ubuntu-server-jammy",
                                                    sku="22_04-lts"),
            node_agent_sku_id="batch.node.ubuntu 22.04"),
    ))
    nodes = wait_for(lambda: [n for n in client.list_nodes(POOL) if n.state == m.BatchNodeState.IDLE], "an idle node")
    client.create_job(m.BatchJobCreateOptions(id=JOB, pool_info=m.BatchPoolInfo(pool_id=POOL)))
    client.create_task(JOB, m.BatchTaskCreateOptions(id="writer", command_line=WRITER))
    wait_for(lambda: client.get_task(JOB, "writer").state == m.BatchTaskState.COMPLETED, "the task to complete")
    return str(nodes[0].id)


def read(chunks: Iterator[bytes]) -> bytes:
    return b"".join(chunks)


def fails(fn: Any, *args: Any, **kwargs: Any) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as info:
        result = fn(*args, **kwargs)
        if hasattr(result, "__iter__") and not isinstance(result, bytes | str):
            list(result)
    return info.value


def code(exc: HttpResponseError) -> str | None:
    """The Batch error code; for a streamed download the SDK raises before reading the body."""
    if exc.error is not None:
        return exc.error.code
    response: Any = exc.response
    return str(json.loads(response.read())["code"])


def test_task_ran_and_lists_its_files(client: BatchClient, node_id: str) -> None:
    task = client.get_task(JOB, "writer")
    assert task.execution_info and task.execution_info.exit_code == 0
    assert task.node_info and task.node_info.node_id == node_id
    top = {str(f.name): f for f in client.list_task_files(JOB, "writer")}
    assert {"stdout.txt", "stderr.txt", "wd"} <= set(top)
    stdout = top["stdout.txt"]
    assert top["wd"].is_directory is True and stdout.is_directory is False
    assert stdout.properties and stdout.properties.content_length == len(b"hello-stdout\n")
    assert stdout.url and stdout.url.endswith(f"/jobs/{JOB}/tasks/writer/files/stdout.txt")
    deep = {str(f.name) for f in client.list_task_files(JOB, "writer", recursive=True)}
    assert {"wd/out", "wd/out/digits.txt", "wd/out/sub", "wd/out/sub/n.txt"} <= deep
    paged = [str(f.name) for f in client.list_task_files(JOB, "writer", recursive=True, max_results=2)]
    assert sorted(paged) == sorted(deep)
    std = sorted(str(f.name) for f in client.list_task_files(JOB, "writer", filter="startswith(name, 'std')"))
    assert std == ["stderr.txt", "stdout.txt"]


def test_download_whole_and_ranges(client: BatchClient, node_id: str) -> None:
    assert read(client.download_task_file(JOB, "writer", "stdout.txt")) == b"hello-stdout\n"
    assert read(client.download_task_file(JOB, "writer", "stderr.txt")) == b"oops\n"
    assert read(client.download_task_file(JOB, "writer", "wd/out/digits.txt", ocp_range="bytes=2-5")) == b"2345"
    assert read(client.download_task_file(JOB, "writer", "wd/out/digits.txt", ocp_range="bytes=7-")) == b"789"
    exc = fails(client.download_task_file, JOB, "writer", "wd/out/digits.txt", ocp_range="bytes=50-60")
    assert exc.status_code == 400 and code(exc) == "InvalidRange"


def test_standard_range_header_gets_206(client: BatchClient, node_id: str) -> None:
    resp = client.send_request(HttpRequest(
        "GET", f"/jobs/{JOB}/tasks/writer/files/wd%2Fout%2Fdigits.txt?api-version=2025-06-01",
        headers={"Range": "bytes=-3"}), stream=True)
    assert resp.status_code == 206 and resp.read() == b"789"
    assert resp.headers["Content-Range"] == "bytes 7-9/10"
    assert resp.headers["Content-Type"] == "application/octet-stream"


def test_properties_from_head(client: BatchClient, node_id: str) -> None:
    props = client.get_task_file_properties(JOB, "writer", "wd/out/digits.txt")
    assert props.content_length == 10 and props.is_directory is False
    assert props.url and props.url.endswith("/files/wd/out/digits.txt") and props.last_modified is not None
    assert props.file_mode and props.file_mode.startswith("0")
    folder = client.get_task_file_properties(JOB, "writer", "wd/out")
    assert folder.is_directory is True
    resp = client.send_request(HttpRequest("HEAD", f"/jobs/{JOB}/tasks/writer/files/stdout.txt?api-version=2025-06-01"))
    assert resp.status_code == 200 and resp.headers["Content-Length"] == str(len(b"hello-stdout\n"))
    assert resp.headers["ocp-batch-file-isdirectory"] == "false" and "ocp-creation-time" in resp.headers
    assert resp.read() == b""


def test_missing_and_escaping_paths(client: BatchClient, node_id: str) -> None:
    exc = fails(client.download_task_file, JOB, "writer", "no-such-file.txt")
    assert exc.status_code == 404 and code(exc) == "FileNotFound"
    exc = fails(client.download_task_file, JOB, "writer", "../../../../../../etc/passwd")
    assert exc.status_code == 400 and code(exc) == "InvalidUri"
    exc = fails(client.get_task_file_properties, JOB, "writer", "../stdout.txt")
    assert exc.status_code == 400  # HEAD: no body to carry the code
    exc = fails(client.download_node_file, POOL, node_id, "../../etc/passwd")
    assert exc.status_code == 400 and code(exc) == "InvalidUri"
    exc = fails(client.list_task_files, JOB, "no-such-task")
    assert exc.status_code == 404 and code(exc) == "TaskNotFound"


def test_a_task_that_never_ran_has_no_files(client: BatchClient, node_id: str) -> None:
    client.create_job(m.BatchJobCreateOptions(id="files-idle", pool_info=m.BatchPoolInfo(pool_id="no-such-pool")))
    client.create_task("files-idle", m.BatchTaskCreateOptions(id="waiting", command_line="/bin/true"))
    exc = fails(client.list_task_files, "files-idle", "waiting")
    assert exc.status_code == 404 and code(exc) == "FileNotFound"


def test_node_files(client: BatchClient, node_id: str) -> None:
    top = {f.name for f in client.list_node_files(POOL, node_id)}
    assert {"shared", "startup", "workitems"} <= top
    data = read(client.download_node_file(POOL, node_id, f"{TASK_DIR}/stdout.txt"))
    assert data == b"hello-stdout\n"
    props = client.get_node_file_properties(POOL, node_id, f"{TASK_DIR}/wd/out/digits.txt")
    assert props.content_length == 10 and props.url
    assert props.url.endswith(f"/pools/{POOL}/nodes/{node_id}/files/{TASK_DIR}/wd/out/digits.txt")
    exc = fails(client.list_node_files, POOL, "no-such-node")
    assert exc.status_code == 404 and code(exc) == "NodeNotFound"
    exc = fails(client.list_node_files, "no-such-pool", node_id)
    assert exc.status_code == 404 and code(exc) == "PoolNotFound"


def test_delete_files(client: BatchClient, node_id: str) -> None:
    exc = fails(client.delete_task_file, JOB, "writer", "wd/out/sub")
    assert exc.status_code == 409  # a directory that is not empty needs recursive
    client.delete_task_file(JOB, "writer", "wd/out/sub/m.txt")
    client.delete_task_file(JOB, "writer", "wd/out/sub", recursive=True)
    names = {f.name for f in client.list_task_files(JOB, "writer", recursive=True)}
    assert "wd/out/sub" not in names and "wd/out/digits.txt" in names
    client.delete_node_file(POOL, node_id, f"{TASK_DIR}/stderr.txt")
    exc = fails(client.download_task_file, JOB, "writer", "stderr.txt")
    assert code(exc) == "FileNotFound"
    exc = fails(client.delete_task_file, JOB, "writer", "stderr.txt")
    assert exc.status_code == 404


def test_terminate_and_delete_running_tasks(client: BatchClient, node_id: str) -> None:
    client.create_tasks(JOB, [m.BatchTaskCreateOptions(id=name, command_line="/bin/sleep 60")
                              for name in ("sleeper-a", "sleeper-b")])
    wait_for(lambda: all(client.get_task(JOB, t).state == m.BatchTaskState.RUNNING
                         for t in ("sleeper-a", "sleeper-b")), "both sleepers to run")
    client.terminate_task(JOB, "sleeper-a")
    task = client.get_task(JOB, "sleeper-a")
    assert task.state == m.BatchTaskState.COMPLETED and task.execution_info
    assert task.execution_info.failure_info and task.execution_info.failure_info.code == "TaskEnded"
    client.delete_task(JOB, "sleeper-b")
    exc = fails(client.get_task, JOB, "sleeper-b")
    assert exc.status_code == 404 and code(exc) == "TaskNotFound"
    gone = f"workitems/{JOB}/job-1/sleeper-b"
    wait_for(lambda: gone not in {str(f.name) for f in client.list_node_files(POOL, node_id, recursive=True)},
             "the deleted task's directory to go")
    # both slots are free again: a new task runs at once
    client.create_task(JOB, m.BatchTaskCreateOptions(id="after", command_line="/bin/true"))
    wait_for(lambda: client.get_task(JOB, "after").state == m.BatchTaskState.COMPLETED, "the next task")
