"""``openbatch quickstart``: the seed tutorial end to end, embedded or against a running server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobServiceClient

from openbatch.cli.inputs import FAST_POLL
from openbatch.quickstart import workflow
from openbatch.quickstart.texts import TEXTS
from tests.cli.helpers import cli
from tests.helpers.server import LiveServer

# The top three words of each input text, as the task program counts them (case-folded).
EXPECTED = {
    "taskdata0_OUTPUT.txt": "the (14), of (13), was (11)",
    "taskdata1_OUTPUT.txt": "a (6), of (6), it (5)",
    "taskdata2_OUTPUT.txt": "the (8), i (8), and (6)",
}


def run_quickstart(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENBATCH_")}
    env["OPENBATCH_DATA_DIR"] = str(cwd / "no-server-here")  # not a server someone runs on ~/.openbatch
    return subprocess.run([sys.executable, "-m", "openbatch", "quickstart", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)


def test_quickstart_embedded(tmp_path: Path) -> None:
    """No flags: an embedded server on free ports, the whole workflow, exit code 0, outputs printed."""
    proc = run_quickstart(cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for line in ("✓ Create containers application, input, output", "✓ Create pool PythonQuickstartPool",
                 "✓ Allocate the nodes and run the tasks", "✓ Download the outputs", "✓ Delete job"):
        assert line in proc.stdout, out
    for name, words in EXPECTED.items():
        assert name in proc.stdout and words in proc.stdout, out
    assert "done in" in proc.stdout
    assert "Traceback" not in out
    assert not list(tmp_path.iterdir())  # nothing left behind in the working directory


def test_quickstart_against_running_server_cleans_up(server: LiveServer, tmp_path: Path) -> None:
    proc = run_quickstart("--batch-url", server.batch_url, "--blob-url", server.blob_url, "--account",
                          server.account, "--key", server.key, "--nodes", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert server.batch_url in proc.stdout
    for name, words in EXPECTED.items():
        assert f"{name}" in proc.stdout and words in proc.stdout
    batch = BatchClient(server.batch_url, AzureNamedKeyCredential(server.account, server.key))
    assert [p.id for p in batch.list_pools()] == []
    assert [j.id for j in batch.list_jobs()] == []
    blob = BlobServiceClient(server.blob_url, credential={"account_name": server.account, "account_key": server.key})
    assert [c.name for c in blob.list_containers()] == []


def test_quickstart_keep_leaves_everything(server: LiveServer) -> None:
    batch = BatchClient(server.batch_url, AzureNamedKeyCredential(server.account, server.key))
    blob = BlobServiceClient(server.blob_url, credential={"account_name": server.account, "account_key": server.key})
    try:
        result = cli(None, "quickstart", "--batch-url", server.batch_url, "--blob-url", server.blob_url,
                     "--keep", "--pool-id", "KeptPool", "--job-id", "KeptJob", "--nodes", "1")
        assert result.exit_code == 0, result.output
        assert batch.get_pool("KeptPool").id == "KeptPool"
        assert {t.id for t in batch.list_tasks("KeptJob")} == {"Task0", "Task1", "Task2"}
        outputs = sorted(b.name for b in blob.get_container_client("output").list_blobs())
        assert outputs == sorted(EXPECTED)

        # A second run finds the containers: the step fails with the service's error code, exit code 1.
        again = cli(None, "quickstart", "--batch-url", server.batch_url, "--blob-url", server.blob_url)
        assert again.exit_code == 1
        assert "ContainerAlreadyExists" in again.output
        assert batch.get_pool("KeptPool").id == "KeptPool"  # what it did not create, it does not delete
    finally:
        _delete_all(batch, blob)


def _delete_all(batch: BatchClient, blob: BlobServiceClient) -> None:
    """Leave the module's server empty for the next test, whatever happened."""
    for job in batch.list_jobs():
        batch.begin_delete_job(job.id or "", polling_interval=FAST_POLL).result()
    for pool in batch.list_pools():
        batch.begin_delete_pool(pool.id or "", polling_interval=FAST_POLL).result()
    for container in blob.list_containers():
        blob.delete_container(container.name)


def test_quickstart_shows_the_failing_tasks_stderr(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task that fails: exit code 1, the task's stderr.txt printed, everything cleaned up."""
    failing = b"import sys\nsys.stderr.write('boom: cannot count words today\\n')\nsys.exit(3)\n"
    monkeypatch.setattr(workflow, "task_program", lambda: failing)
    result = cli(None, "quickstart", "--batch-url", server.batch_url, "--blob-url", server.blob_url, "--nodes", "1")
    assert result.exit_code == 1, result.output
    assert "boom: cannot count words today" in result.output
    assert "Task0 (taskdata0.txt) failed" in result.output
    assert "failed in" in result.output
    batch = BatchClient(server.batch_url, AzureNamedKeyCredential(server.account, server.key))
    assert [p.id for p in batch.list_pools()] == []


def test_quickstart_with_a_bad_key_fails_with_the_azure_code(server: LiveServer) -> None:
    result = cli(None, "quickstart", "--batch-url", server.batch_url, "--blob-url", server.blob_url,
                 "--key", "bm90IHRoZSBrZXkgYXQgYWxs")
    assert result.exit_code == 1
    assert "AuthenticationFailed" in result.output
    assert "Traceback" not in result.output


def test_quickstart_unreachable_server() -> None:
    result = cli(None, "quickstart", "--batch-url", "http://127.0.0.1:9", "--blob-url",
                 "http://127.0.0.1:9/devstoreaccount1")
    assert result.exit_code == 1
    assert "error:" in result.output and "ServiceRequestError" in result.output


def test_task_program_counts_and_uploads(server: LiveServer, tmp_path: Path) -> None:
    """The task program on its own: stdlib only, Put Blob with a container SAS to this server."""
    import datetime

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    blob = BlobServiceClient(server.blob_url, credential={"account_name": server.account, "account_key": server.key})
    blob.create_container("taskprogram")
    sas = generate_container_sas(server.account, "taskprogram", account_key=server.key,
                                 permission=ContainerSasPermissions(write=True),
                                 expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1))
    (tmp_path / "input.txt").write_text(TEXTS["taskdata2.txt"])
    (tmp_path / "prog.py").write_bytes(workflow.task_program())
    args = ["--filepath", "input.txt", "--numwords", "2", "--storageaccount", server.account,
            "--storagecontainer", "taskprogram", "--blobendpoint", server.blob_url]
    proc = subprocess.run(["python3", "prog.py", *args, "--sastoken", sas], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "input_OUTPUT.txt").read_text() == "the,8\ni,8\n"
    assert blob.get_blob_client("taskprogram", "input_OUTPUT.txt").download_blob().readall() == b"the,8\ni,8\n"

    denied = subprocess.run(["python3", "prog.py", *args, "--sastoken", "sv=2020-10-02&sig=bad"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert denied.returncode == 1
    assert "upload failed: HTTP 403" in denied.stderr
    assert "sig=" not in denied.stderr + denied.stdout  # no SAS in the task's logs
    blob.delete_container("taskprogram")


def test_embedded_server_starts_and_stops_cleanly() -> None:
    """The thread variant: both endpoints answer, then stop() ends the thread, frees the ports, removes the dir."""
    import socket
    import threading

    from openbatch.quickstart.embedded import EmbeddedServer

    before = {t.name for t in threading.enumerate()}
    with EmbeddedServer() as server:
        data_dir = server.data_dir
        assert data_dir.is_dir()
        batch = BatchClient(server.batch_url, AzureNamedKeyCredential(server.account, server.key))
        assert list(batch.list_pools()) == []
        blob = BlobServiceClient(server.blob_url, credential={"account_name": server.account,
                                                              "account_key": server.key})
        blob.create_container("embedded")
        ports = (server.settings.blob_port, server.settings.batch_port)
    assert not data_dir.exists()
    assert "openbatch-embedded" not in {t.name for t in threading.enumerate()} - before
    for port in ports:
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0
