"""The runnable seed tutorials in examples/, each run as a user would: a subprocess against a live server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential

from openbatch.config import DEV_KEY
from openbatch.quickstart.texts import TEXTS
from openbatch.quickstart.workflow import task_program
from tests.helpers.server import LiveServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PYTHON_TUTORIAL = EXAMPLES / "python_tutorial"
DOTNET_FLOW = EXAMPLES / "dotnet_flow"


def run_example(script: Path, server: LiveServer, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OPENBATCH_BATCH_URL": server.batch_url,
        "OPENBATCH_BLOB_URL": server.blob_url,
        "OPENBATCH_ACCOUNT": server.account,
        "OPENBATCH_KEY": server.key,
    }
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=240)


def batch_client(server: LiveServer) -> BatchClient:
    return BatchClient(server.batch_url, AzureNamedKeyCredential(server.account, server.key))


def test_examples_share_the_quickstart_program_and_data() -> None:
    """The example is standalone, so it carries copies: they must stay what the quickstart ships."""
    assert (PYTHON_TUTORIAL / "python_tutorial_task.py").read_bytes() == task_program()
    for name, text in TEXTS.items():
        assert (PYTHON_TUTORIAL / "data" / name).read_text() == text
    for script in (PYTHON_TUTORIAL / "python_tutorial_client.py", DOTNET_FLOW / "dotnet_flow.py"):
        assert f'EMULATOR_KEY = "{DEV_KEY}"' in script.read_text()


def test_python_tutorial(server: LiveServer, tmp_path: Path) -> None:
    proc = run_example(PYTHON_TUTORIAL / "python_tutorial_client.py", server, "--timeout", "120", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Success! All tasks reached the 'Completed' state" in proc.stdout
    for index in range(3):
        assert f"Task [Task{index}] stdout: Uploading file" in proc.stdout, out
        assert f"Downloaded blob [taskdata{index}_OUTPUT.txt]" in proc.stdout
    assert (tmp_path / "tutorial_output" / "taskdata0_OUTPUT.txt").read_text() == "the,14\nof,13\nwas,11\n"
    assert "    a,6" in proc.stdout  # file contents printed
    assert proc.stdout.rstrip().endswith("Done.")
    assert [p.id for p in batch_client(server).list_pools()] == []


def test_dotnet_flow_reuses_an_existing_pool(server: LiveServer, tmp_path: Path) -> None:
    first = run_example(DOTNET_FLOW / "dotnet_flow.py", server, "--keep-pool", "--timeout", "120", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "All tasks reached state Completed." in first.stdout
    assert "Success! All tasks completed successfully" in first.stdout
    assert "ozymandias_UPPER.txt: OZYMANDIAS, BY PERCY BYSSHE SHELLEY (1818)" in first.stdout
    assert "the_tyger_UPPER.txt: THE TYGER, BY WILLIAM BLAKE (1794)" in first.stdout
    assert "already existed" not in first.stdout
    assert [p.id for p in batch_client(server).list_pools()] == ["DotNetFlowPool"]

    second = run_example(DOTNET_FLOW / "dotnet_flow.py", server, "--timeout", "120", cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "The pool DotNetFlowPool already existed when we tried to create it" in second.stdout
    assert "Success! All tasks completed successfully" in second.stdout
    client = batch_client(server)
    assert [p.id for p in client.list_pools()] == []
    assert [j.id for j in client.list_jobs()] == []


def test_dotnet_flow_reports_failures_and_exits_non_zero(server: LiveServer, tmp_path: Path) -> None:
    """Point the output container SAS at nothing writable: the uploads fail, the flow says so."""
    script = tmp_path / "dotnet_flow_broken.py"
    source = (DOTNET_FLOW / "dotnet_flow.py").read_text()
    broken = source.replace("permission=ContainerSasPermissions(write=True)", "permission=ContainerSasPermissions(read=True)")
    assert broken != source
    script.write_text(broken.replace('INPUT_DIR = Path(__file__).resolve().parent / "InputFiles"',
                                     f"INPUT_DIR = Path({str(DOTNET_FLOW / 'InputFiles')!r})"))
    proc = run_example(script, server, "--timeout", "120", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "All tasks reached state Completed." in proc.stdout
    assert "WARNING: Task [Task0] encountered a failure" in proc.stdout
    assert [p.id for p in batch_client(server).list_pools()] == []
