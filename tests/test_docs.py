"""Every SDK snippet in docs/sdk.md runs against a live server, so the docs stay true."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.venvs import ensure_venv

DOC = Path(__file__).resolve().parents[1] / "docs" / "sdk.md"
SNIPPETS = re.findall(r"```python\n# sdk: (\w+)\n(.*?)```", DOC.read_text(), flags=re.S)
PYTHON_FOR = {"blob12": None, "batch15": None, "batch14": "batch14", "legacy": "legacy"}
# What each snippet must print (a SAS URL or blob list, task output read back through the Files API, an exit code).
EXPECT = {"blob12": "hello.txt?", "batch15": "task 0 on tvm-", "batch14": "hello", "legacy": ("taskdata1.txt", "0")}


def test_doc_has_every_generation():
    assert sorted({kind for kind, _ in SNIPPETS}) == ["batch14", "batch15", "blob12", "legacy"]


@pytest.mark.parametrize(("kind", "code"), SNIPPETS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(SNIPPETS)])
def test_snippet_runs(server, kind, code):
    venv = PYTHON_FOR[kind]
    python = str(ensure_venv(venv)) if venv else sys.executable
    env = {
        **os.environ,
        "OPENBATCH_BATCH_URL": server.batch_url,
        "OPENBATCH_BLOB_URL": server.blob_url,
        "OPENBATCH_ACCOUNT": server.account,
        "OPENBATCH_KEY": server.key,
        "AZURE_STORAGE_CONNECTION_STRING": server.connection_string,
        "PYTHONWARNINGS": "ignore",
    }
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    own = re.search(r"^# prints: (.*)$", code, flags=re.M)  # a snippet may say what it prints
    expected = own.group(1) if own else EXPECT[kind]
    assert any(e in proc.stdout for e in (expected if isinstance(expected, tuple) else (expected,))), proc.stdout
