"""Microsoft's azure-batch 15 hello-world pattern over HTTPS: DefaultAzureCredential for Batch and Blob,
only environment variables set, runs the seed tutorial's workflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from openbatch.quickstart.texts import TEXTS
from tests.helpers.server import LiveServer

SCRIPT = Path(__file__).with_name("identity_tutorial.py")
# The parts of the environment a user's shell has anyway (no Azure or openbatch settings).
_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


def test_the_tutorial_with_default_azure_credential(https_server: LiveServer, env_vars: dict[str, str]) -> None:
    env = {name: os.environ[name] for name in _KEEP if name in os.environ}
    env.update({name: env_vars[name] for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "AZURE_TENANT_ID",
                                                   "AZURE_AUTHORITY_HOST", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")})
    env.update(OPENBATCH_BATCH_URL=https_server.batch_url, OPENBATCH_BLOB_URL=https_server.blob_url,
               PYTHONPATH=str(SCRIPT.parents[2]))
    assert not any("KEY" in name or "CONNECTION_STRING" in name for name in env)
    proc = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert proc.stdout.rstrip().endswith("Done."), out
    for index in range(len(TEXTS)):
        assert f"Task [Task{index}] stdout: Uploading file" in proc.stdout, out
    assert "Downloaded blob [taskdata0_OUTPUT.txt]: the,14 of,13 was,11" in proc.stdout, out
