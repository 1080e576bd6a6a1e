"""Node.js: @azure/identity's DefaultAzureCredential and @azure/storage-blob against the HTTPS server,
with only what `openbatch env` prints (NODE_EXTRA_CA_CERTS for the certificate). Skipped without
node and npm; the packages are installed once into ~/.cache/openbatch/node-identity."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.server import LiveServer

PACKAGES = ["@azure/identity@4.13.1", "@azure/storage-blob@12.32.0"]
PROBE = """
import { DefaultAzureCredential } from "@azure/identity";
import { BlobServiceClient } from "@azure/storage-blob";
const service = new BlobServiceClient(process.env.OPENBATCH_BLOB_URL, new DefaultAzureCredential());
const container = service.getContainerClient("fromnode");
await container.createIfNotExists();
await container.getBlockBlobClient("hello.txt").upload("from node", 9);
console.log("read:", (await container.getBlobClient("hello.txt").downloadToBuffer()).toString());
"""


def _packages() -> Path:
    root = Path(os.environ.get("OPENBATCH_TEST_NODE", Path.home() / ".cache" / "openbatch" / "node-identity"))
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = root / ".packages"
        if not stamp.exists() or stamp.read_text() != " ".join(PACKAGES):
            proc = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(root), *PACKAGES],
                                  capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                pytest.skip(f"npm install failed (no registry?): {proc.stderr[-300:]}")
            stamp.write_text(" ".join(PACKAGES))
    return root


@pytest.mark.skipif(not (shutil.which("node") and shutil.which("npm")), reason="node and npm are not installed")
def test_node_default_azure_credential_reads_and_writes_a_blob(https_server: LiveServer,
                                                               env_vars: dict[str, str]) -> None:
    root = _packages()
    script = root / "probe.mjs"
    script.write_text(PROBE)
    env = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    env.update({name: env_vars[name] for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "AZURE_TENANT_ID",
                                                   "NODE_EXTRA_CA_CERTS")})
    env["OPENBATCH_BLOB_URL"] = https_server.blob_url
    proc = subprocess.run(["node", str(script)], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "read: from node" in proc.stdout
