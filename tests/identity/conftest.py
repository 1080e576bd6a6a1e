"""A live server over HTTPS with identities of every kind, for the identity suites."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from openbatch.common.identity import (
    BATCH_CONTRIBUTOR,
    STORAGE_CONTRIBUTOR,
    STORAGE_READER,
    IdentityService,
    add_identity,
)
from tests.helpers.server import LiveServer

TASK_IDENTITY = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/" \
                "Microsoft.ManagedIdentity/userAssignedIdentities/task-reader"
TASK_WRITER = TASK_IDENTITY.replace("task-reader", "task-writer")
IDENTITIES: list[dict[str, Any]] = [
    {"name": "reader", "clientId": "11111111-0000-0000-0000-000000000001", "objectId": "o-reader",
     "clientSecret": "reader-secret", "roles": [{"role": STORAGE_READER, "scope": "devstoreaccount1"}]},
    {"name": "nobody", "clientId": "11111111-0000-0000-0000-000000000002", "objectId": "o-nobody",
     "clientSecret": "nobody-secret", "roles": []},
    {"name": "writer", "clientId": "11111111-0000-0000-0000-000000000003", "objectId": "o-writer",
     "clientSecret": "writer-secret", "roles": [{"role": STORAGE_CONTRIBUTOR, "scope": "*"},
                                                {"role": BATCH_CONTRIBUTOR, "scope": "*"}]},
    {"name": "task-reader", "clientId": "11111111-0000-0000-0000-000000000004", "objectId": "o-task-reader",
     "resourceId": TASK_IDENTITY, "roles": [{"role": STORAGE_READER, "scope": "devstoreaccount1"}]},
    {"name": "task-writer", "clientId": "11111111-0000-0000-0000-000000000005", "objectId": "o-task-writer",
     "resourceId": TASK_WRITER, "roles": [{"role": STORAGE_CONTRIBUTOR, "scope": "devstoreaccount1"}]},
]


@pytest.fixture(scope="package")
def https_server() -> Iterator[LiveServer]:
    root = Path(tempfile.mkdtemp(prefix="openbatch-identity-"))
    data = root / "data"
    for entry in IDENTITIES:
        add_identity(data, entry)
    server = LiveServer(data, ["--https"])
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="package")
def identity(https_server: LiveServer) -> IdentityService:
    """The server's own key and directory, to sign tokens the way it does (expired, for other audiences)."""
    return IdentityService(https_server.data_dir)


@pytest.fixture(scope="package")
def env_vars(https_server: LiveServer) -> dict[str, str]:
    """What `openbatch env --json` prints for the running server."""
    proc = subprocess.run([sys.executable, "-m", "openbatch", "env", "--json"], capture_output=True, text=True,
                          env={**os.environ, "OPENBATCH_DATA_DIR": str(https_server.data_dir)}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    values: dict[str, str] = orjson.loads(proc.stdout)
    return values
