"""Probes of a non-admin task attacking the server (root) through the files it controls.

Every directory a non-admin task can write — its task directory, its working directory, the
startup directory of a non-admin start task — may hold links and files the task planted, or that
one of its leftover processes swaps while the server works there. None of it may make the server
write, chown, read or upload a file outside the node, nor take the node down. Each test here is
a way that once worked; they drive a live server through azure-batch 15 as a user would.

The task account only differs from the server's when the server runs as root (as in CI).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.batch.models._models import BatchNodeRebootOptions  # not exported by 15.1
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from tests.helpers.pools import IMAGE
from tests.helpers.server import LiveServer
from tests.helpers.waiting import alive, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="non-admin tasks run as another account only when the "
                                "server runs as root; as any other user there is no privilege to escape")

SECRET = b"root's secret, never to be read by a task\n"
ROOT_CONTENT = b"a file of root's\n"
MARK = "openbatch-escape-probe"  # in the command line of every leftover process these tests start
POLL: Any = 0.2


@pytest.fixture(scope="module", autouse=True)
def _no_probes_left() -> Iterator[None]:
    """The probes' background loops escape every kill but the node's: end them whatever happens."""
    yield
    _kill_probes()


@pytest.fixture(scope="module")
def blobs(server: LiveServer) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(server.connection_string)


@pytest.fixture
def victim() -> Iterator[Path]:
    """A directory only root may enter, holding root's files: what an escape would reach."""
    top = Path(tempfile.mkdtemp(prefix="openbatch-victim-"))
    (top / "root-file").write_bytes(ROOT_CONTENT)
    (top / "secret").write_bytes(SECRET)
    (top / "secret").chmod(0o600)
    yield top
    shutil.rmtree(top, ignore_errors=True)


def _kill_probes() -> None:
    for proc in psutil.process_iter(["cmdline"]):
        if any(MARK in part for part in proc.info["cmdline"] or []):
            proc.kill()


def _untouched(path: Path, content: bytes = ROOT_CONTENT) -> None:
    st = path.lstat()
    assert stat.S_ISREG(st.st_mode) and st.st_uid == 0, f"{path} was replaced or chowned"
    assert path.read_bytes() == content, f"{path} was written by the server"


def sh(script: str) -> str:
    return f"/bin/sh -c '{script}'"


def background(perl: str) -> str:
    """A shell snippet leaving the Perl loop ``perl`` running (no quotes in it: q{} and qq{}) in a
    session of its own, so no group or session kill reaches it, with the probe mark in its
    command line. Perl, not the shell, so that it swaps files thousands of times a second."""
    return f'setsid /usr/bin/perl -e "while (1) {{ {perl} }}" {MARK} >/dev/null 2>&1 &'


def swap_file(name: str, link_to: Path) -> str:
    """Perl: ``name`` is a regular file (``public``) that becomes a link to ``link_to`` for an
    instant, again and again."""
    return (f"open(F, q{{>{name}.f}}); print F qq{{public\\n}}; close(F); symlink(q{{{link_to}}}, q{{{name}.l}}); "
            f"rename(q{{{name}.l}}, q{{{name}}}); rename(q{{{name}.f}}, q{{{name}}}); for (1..50) {{}}")


def make_pool(client: BatchClient, pool_id: str, slots: int = 1, **kwargs: Any) -> str:
    client.create_pool(m.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v3", virtual_machine_configuration=IMAGE,
                                                target_dedicated_nodes=1, task_slots_per_node=slots, **kwargs))
    client.create_job(m.BatchJobCreateOptions(id=pool_id, pool_info=m.BatchPoolInfo(pool_id=pool_id)))

    def ready() -> str | None:
        nodes = list(client.list_nodes(pool_id))
        return nodes[0].id if len(nodes) == 1 and nodes[0].state in ("idle", "starttaskfailed") else None

    return str(wait_for(ready, f"pool {pool_id}"))


def drop_pool(client: BatchClient, pool_id: str) -> None:
    client.begin_delete_job(pool_id, polling_interval=POLL).result()
    client.begin_delete_pool(pool_id, polling_interval=POLL).result()


def completed(client: BatchClient, job_id: str, *task_ids: str, timeout: float = 60) -> list[m.BatchTask]:
    def check() -> list[m.BatchTask] | None:
        found = [client.get_task(job_id, t) for t in task_ids]
        return found if all(t.state == m.BatchTaskState.COMPLETED for t in found) else None

    return list(wait_for(check, f"{job_id}: {task_ids} to complete", timeout))


def info(task: m.BatchTask) -> m.BatchTaskExecutionInfo:
    assert task.execution_info is not None
    return task.execution_info


def retried(task_id: str, script: str, retries: int = 1, **kwargs: Any) -> m.BatchTaskCreateOptions:
    return m.BatchTaskCreateOptions(id=task_id, command_line=sh(script),
                                    constraints=m.BatchTaskConstraints(max_task_retry_count=retries), **kwargs)


def container_url(server: LiveServer, blobs: BlobServiceClient, name: str) -> str:
    blobs.create_container(name)
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    sas = generate_container_sas(server.account, name, account_key=server.key, expiry=expiry,
                                 permission=ContainerSasPermissions(read=True, write=True, create=True, list=True))
    return f"{server.blob_url}/{name}?{sas}"


def output(pattern: str, url: str, path: str | None = None) -> m.OutputFile:
    return m.OutputFile(file_pattern=pattern,
                        destination=m.OutputFileDestination(container=m.OutputFileBlobContainerDestination(
                            container_url=url, path=path)),
                        upload_options=m.OutputFileUploadConfiguration(
                            upload_condition=m.OutputFileUploadCondition.TASK_COMPLETION))


def test_a_linked_stdout_is_replaced_on_retry_not_followed(client: BatchClient, victim: Path) -> None:
    make_pool(client, "stdout-link")
    target = victim / "root-file"
    client.create_task("stdout-link", retried("t", f"if [ -e tried ]; then echo second; exit 0; fi; touch tried; "
                                              f"rm -f $AZ_BATCH_TASK_DIR/stdout.txt $AZ_BATCH_TASK_DIR/stderr.txt; "
                                              f"ln -s {target} $AZ_BATCH_TASK_DIR/stdout.txt; "
                                              f"ln -s {target} $AZ_BATCH_TASK_DIR/stderr.txt; exit 1"))
    (task,) = completed(client, "stdout-link", "t")
    assert info(task).exit_code == 0 and info(task).retry_count == 1, info(task)
    _untouched(target)
    assert b"".join(client.download_task_file("stdout-link", "t", "stdout.txt")) == b"second\n"
    drop_pool(client, "stdout-link")


def test_a_linked_upload_log_is_not_followed(client: BatchClient, blobs: BlobServiceClient, server: LiveServer,
                                             victim: Path) -> None:
    make_pool(client, "log-link")
    url = container_url(server, blobs, "log-link")
    target = victim / "root-file"
    client.create_task("log-link", m.BatchTaskCreateOptions(
        id="t", output_files=[output("out.txt", url)],
        command_line=sh(f"ln -s {target} $AZ_BATCH_TASK_DIR/fileuploadout.txt; "
                        f"ln -s {target} $AZ_BATCH_TASK_DIR/fileuploaderr.txt; echo data > out.txt")))
    (task,) = completed(client, "log-link", "t")
    assert info(task).exit_code == 0 and info(task).failure_info is None, info(task)
    assert blobs.get_blob_client("log-link", "out.txt").download_blob().readall() == b"data\n"
    _untouched(target)
    drop_pool(client, "log-link")


def test_a_non_admin_start_task_cannot_plant_links_for_its_rerun(client: BatchClient, victim: Path) -> None:
    target = victim / "root-file"
    start = m.BatchStartTask(command_line=sh(
        f"rm -f $AZ_BATCH_NODE_STARTUP_DIR/stdout.txt; ln -s {target} $AZ_BATCH_NODE_STARTUP_DIR/stdout.txt; "
        f"rm -rf $AZ_BATCH_NODE_STARTUP_DIR/wd/sub; ln -s {victim} $AZ_BATCH_NODE_STARTUP_DIR/wd/sub; echo ran"),
        wait_for_success=True)
    node = make_pool(client, "start-link", start_task=start)
    first = wait_for(lambda: client.get_node("start-link", node).start_task_info, "the start task to run")
    client.begin_reboot_node("start-link", node, BatchNodeRebootOptions(node_reboot_kind="requeue"),
                             polling_interval=POLL).result()

    def rebooted() -> bool:
        n = client.get_node("start-link", node)
        info = n.start_task_info
        return (n.state == "idle" and info is not None and info.end_time is not None
                and info.start_time is not None and info.start_time > first.start_time)

    wait_for(rebooted, "the node to reboot and rerun its start task")
    _untouched(target)
    assert sorted(p.name for p in victim.iterdir()) == ["root-file", "secret"]
    info = client.get_node("start-link", node).start_task_info
    assert info is not None and info.exit_code == 0, info
    with pytest.raises(HttpResponseError):  # the task planted its link again: it leads out of the node
        b"".join(client.download_node_file("start-link", node, "startup/stdout.txt"))
    drop_pool(client, "start-link")


def test_resource_files_are_not_written_through_a_directory_swapped_for_a_link(
        client: BatchClient, blobs: BlobServiceClient, server: LiveServer, victim: Path) -> None:
    make_pool(client, "fetch-link", slots=4)
    url = container_url(server, blobs, "fetch-link")
    blobs.get_blob_client("fetch-link", "input.txt").upload_blob(b"downloaded bytes\n")
    source = url.replace("/fetch-link?", "/fetch-link/input.txt?")
    swap = (f"rename(q{{d}}, q{{d.real}}); symlink(q{{{victim}}}, q{{d}}); "
            f"unlink(q{{d}}); rename(q{{d.real}}, q{{d}});")
    ids = [f"t{i}" for i in range(12)]
    client.create_tasks("fetch-link", [retried(
        task_id, f"if [ -e tried ]; then exit 0; fi; touch tried; {background(swap)} "
                 f"ln -sf {victim}/root-file planted; sleep 0.2; exit 1",
        resource_files=[m.ResourceFile(http_url=source, file_path=f"d/{name}") for name in ("a", "b", "c", "e")]
        + [m.ResourceFile(http_url=source, file_path="planted")]) for task_id in ids])
    done = completed(client, "fetch-link", *ids, timeout=120)
    _kill_probes()
    assert sorted(p.name for p in victim.iterdir()) == ["root-file", "secret"], "root wrote through a link"
    _untouched(victim / "root-file")
    assert all(info(t).retry_count == 1 for t in done), [info(t) for t in done]
    drop_pool(client, "fetch-link")


def test_what_a_task_leaves_running_is_killed_when_it_ends(client: BatchClient) -> None:
    make_pool(client, "leftovers")
    client.create_task("leftovers", m.BatchTaskCreateOptions(
        id="group", command_line=sh("sleep 97 & echo $! > $AZ_BATCH_TASK_DIR/pid; exit 0")))
    # Job control puts the background job in a process group of its own, still in the task's session.
    client.create_task("leftovers", m.BatchTaskCreateOptions(
        id="session", command_line=sh("set -m; sleep 96 & echo $! > $AZ_BATCH_TASK_DIR/pid; exit 0")))
    completed(client, "leftovers", "group", "session")
    for task_id in ("group", "session"):
        pid = int(b"".join(client.download_task_file("leftovers", task_id, "pid")))
        wait_for(lambda pid=pid: not alive(pid), f"the leftover process of {task_id} to be killed", timeout=10)
    drop_pool(client, "leftovers")


def test_uploads_never_follow_a_file_swapped_for_a_link(client: BatchClient, blobs: BlobServiceClient,
                                                        server: LiveServer, victim: Path) -> None:
    make_pool(client, "upload-race", slots=4)
    url = container_url(server, blobs, "upload-race")
    secret = victim / "secret"
    flip = swap_file("out.txt", secret) + swap_file("sub/out.txt", secret)
    ids = [f"t{i}" for i in range(24)]
    client.create_tasks("upload-race", [m.BatchTaskCreateOptions(
        id=task_id, command_line=sh(f"mkdir -p sub; echo public > out.txt; {background(flip)} sleep 0.2"),
        output_files=[output("out.txt", url, f"{task_id}/out.txt"), output("**/*.txt", url, f"{task_id}/all")])
        for task_id in ids])
    completed(client, "upload-race", *ids, timeout=120)
    _kill_probes()
    uploaded = 0
    for blob in blobs.get_container_client("upload-race").list_blobs():
        data = blobs.get_blob_client("upload-race", blob.name).download_blob().readall()
        assert data != SECRET, f"{blob.name} holds root's secret"
        uploaded += 1
    assert uploaded >= len(ids), "the regular out.txt files should have been uploaded"
    drop_pool(client, "upload-race")


def test_a_task_churning_its_files_during_a_retry_does_not_take_its_node_down(client: BatchClient) -> None:
    node = make_pool(client, "churn", slots=2)
    churn = "while :; do mkdir -p c/a/b c/d; touch c/a/b/1 c/a/b/2 c/d/3 c/4; rm -rf c; done"
    ids = [f"churn{i}" for i in range(6)]
    client.create_tasks("churn", [retried(task_id, f"if [ -e tried ]; then exit 0; fi; touch tried; "
                                                   f"setsid /bin/sh -c \"{churn}\" {MARK} >/dev/null 2>&1 & "
                                                   f"sleep 0.3; exit 1", retries=2)
                                  for task_id in ids])
    done = completed(client, "churn", *ids, timeout=90)
    _kill_probes()
    assert all(info(t).exit_code == 0 for t in done), [info(t) for t in done]
    assert client.get_node("churn", node).state in ("idle", "running")
    client.create_task("churn", m.BatchTaskCreateOptions(id="after", command_line="/bin/true"))
    (after,) = completed(client, "churn", "after")
    assert info(after).exit_code == 0
    drop_pool(client, "churn")


def _code(exc: HttpResponseError) -> str:
    """The Batch error code of a failed download (azure-batch 15 leaves a streamed error body unread)."""
    if exc.error is not None and exc.error.code:
        return str(exc.error.code)
    try:
        return str(json.loads(exc.response.read())["code"])
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        return f"{exc.status_code} ({type(err).__name__})"


def test_the_files_api_serves_what_it_checked(client: BatchClient, victim: Path) -> None:
    make_pool(client, "files-race")
    secret = victim / "secret"
    flip = swap_file("race", secret)
    client.create_task("files-race", m.BatchTaskCreateOptions(
        id="t", command_line=sh(f"echo public > race; {background(flip)} exit 0")))
    completed(client, "files-race", "t")
    served, refused = 0, Counter[str]()
    deadline = time.monotonic() + 60
    while served + refused.total() < 1500 and time.monotonic() < deadline:
        try:
            data = b"".join(client.download_task_file("files-race", "t", "wd/race"))
        except HttpResponseError as exc:
            refused[_code(exc)] += 1
            continue
        assert data != SECRET, "the Files API served root's secret"
        served += 1
    _kill_probes()
    assert served > 0, f"nothing served; refused: {refused}"
    assert set(refused) <= {"InvalidUri", "FileNotFound"}, refused  # a link out of the node, or mid-swap
    drop_pool(client, "files-race")


def test_file_listings_do_not_report_what_a_link_points_at_outside(client: BatchClient, victim: Path) -> None:
    big = victim / "big"
    big.write_bytes(b"x" * 123_457)
    make_pool(client, "list-link")
    client.create_task("list-link", m.BatchTaskCreateOptions(
        id="t", command_line=sh(f"ln -s {big} outside; ln -s {victim} outdir; echo inside > here; ln -s here inlink")))
    completed(client, "list-link", "t")
    for recursive in (True, False):
        files = {f.name: f for f in client.list_task_files("list-link", "t", recursive=recursive)}
        sizes = {name: f.properties.content_length for name, f in files.items() if f.properties}
        assert 123_457 not in sizes.values(), sizes
        assert not any(name.startswith("wd/outdir/") for name in files), files
    props = client.get_task_file_properties("list-link", "t", "wd/inlink")
    assert props.content_length == len("inside\n")  # a link inside the node still reads as its target
    with pytest.raises(HttpResponseError):
        client.get_task_file_properties("list-link", "t", "wd/outside")
    drop_pool(client, "list-link")


def test_a_bare_program_name_is_found_as_the_task_account_finds_it(client: BatchClient) -> None:
    top = Path(tempfile.mkdtemp(prefix="openbatch-path-"))
    try:
        top.chmod(0o755)
        closed, usable = top / "closed", top / "usable"
        for directory, mode, text in ((closed, 0o700, "closed"), (usable, 0o755, "usable")):
            directory.mkdir(mode=0o755)
            program = directory / "probe-prog"
            program.write_text(f"#!/bin/sh\necho {text}\n")
            program.chmod(mode)  # root may run both; the task account only the second
        make_pool(client, "path-lookup")
        client.create_task("path-lookup", m.BatchTaskCreateOptions(
            id="t", command_line="probe-prog",
            environment_settings=[m.EnvironmentSetting(name="PATH", value=f"{closed}:{usable}:/usr/bin:/bin")]))
        (task,) = completed(client, "path-lookup", "t")
        assert info(task).exit_code == 0 and info(task).failure_info is None, info(task)
        assert b"".join(client.download_task_file("path-lookup", "t", "stdout.txt")) == b"usable\n"
        drop_pool(client, "path-lookup")
    finally:
        shutil.rmtree(top, ignore_errors=True)
