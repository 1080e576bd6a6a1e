"""The server's certificate, trusted by the tasks of its nodes.

A server with ``--https`` and a certificate of its own making tells the node host where the CA
bundle is (``OPENBATCH_NODE_TRUST``: the system's CAs plus openbatch's). Each node gets a copy in
``{node root}/certs/openbatch-ca-bundle.pem`` (inside the node: an isolated node sees only its own
directory), and every task starts with ``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE`` and
``NODE_EXTRA_CA_CERTS`` naming it (a task's own environment settings override them). Nodes whose
host has no such variable (a Dask worker elsewhere) get nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from openbatch.node.layout import CERTS, NodeLayout

ENV_NODE_TRUST = "OPENBATCH_NODE_TRUST"
BUNDLE_NAME = "openbatch-ca-bundle.pem"


def bundle_path(layout: NodeLayout) -> Path:
    return layout.root / CERTS / BUNDLE_NAME


def install(layout: NodeLayout) -> None:
    """Copy the server's CA bundle into the node (when there is one), readable by every task account."""
    source = os.environ.get(ENV_NODE_TRUST, "")
    if not source or not os.path.isfile(source):
        return
    target = bundle_path(layout)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.parent.chmod(0o755)
    tmp = target.with_name(BUNDLE_NAME + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(Path(source).read_bytes())
    os.replace(tmp, target)


def task_variables(layout: NodeLayout) -> dict[str, str]:
    """The trust variables of the node's tasks (empty when the node has no bundle)."""
    path = bundle_path(layout)
    if not path.is_file():
        return {}
    return {"SSL_CERT_FILE": str(path), "REQUESTS_CA_BUNDLE": str(path), "NODE_EXTRA_CA_CERTS": str(path)}
