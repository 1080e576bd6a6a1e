"""``openbatch env``: the shell exports an SDK user (or this CLI) needs to reach a server."""

from __future__ import annotations

import json
import shlex
import sys
from typing import Annotated

import typer

from openbatch.cli.connection import (
    ENV_ACCOUNT,
    ENV_BATCH_URL,
    ENV_BLOB_URL,
    ENV_KEY,
    AccountOption,
    BatchUrlOption,
    BlobUrlOption,
    Connection,
    KeyOption,
)
from openbatch.common.instance import default_data_dir, running_endpoints


def variables(conn: Connection) -> dict[str, str]:
    """openbatch's own variables, the storage connection string, and the names ``az batch`` reads."""
    return {
        ENV_BATCH_URL: conn.batch_url,
        ENV_BLOB_URL: conn.blob_url,
        ENV_ACCOUNT: conn.account,
        ENV_KEY: conn.key,
        "AZURE_STORAGE_CONNECTION_STRING": conn.connection_string,
        "AZURE_BATCH_ENDPOINT": conn.batch_url,
        "AZURE_BATCH_ACCOUNT": conn.account,
        "AZURE_BATCH_ACCESS_KEY": conn.key,
    }


def identity_and_trust(batch_url: str, client_secret: bool) -> dict[str, str]:
    """The running server's identity endpoints and the trust of its certificate (docs/identity.md)."""
    data_dir = default_data_dir()
    running = running_endpoints(data_dir)
    if running is None or running.batch_url.rstrip("/") != batch_url.rstrip("/"):
        return {}
    # lazy: the identity modules load cryptography (~90 ms), which other commands do not need
    from openbatch.common.identity.envvars import identity_variables, trust_variables

    return {**identity_variables(data_dir, running.batch_url, client_secret), **trust_variables(data_dir)}


def env(
    batch_url: BatchUrlOption = None, blob_url: BlobUrlOption = None, account: AccountOption = None,
    key: KeyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON object instead of shell exports.")] = False,
    client_secret: Annotated[bool, typer.Option(
        "--client-secret", help="Also AZURE_CLIENT_ID/AZURE_CLIENT_SECRET of the default identity (client "
        "credentials; see docs/identity.md for MSAL's instance discovery).")] = False,
) -> None:
    """Print the exports (and the storage connection string) that point SDKs and this CLI at a server.

    Use it as ``eval "$(openbatch env)"``. Then, in Python::

        BatchClient(os.environ["OPENBATCH_BATCH_URL"],
                    AzureNamedKeyCredential(os.environ["OPENBATCH_ACCOUNT"], os.environ["OPENBATCH_KEY"]))
        BlobServiceClient.from_connection_string(os.environ["AZURE_STORAGE_CONNECTION_STRING"])

    With a server running on this data dir, also its managed-identity endpoint (IDENTITY_ENDPOINT,
    IDENTITY_HEADER: ``DefaultAzureCredential()`` then works) and, with ``--https``, the files that
    trust its certificate (REQUESTS_CA_BUNDLE, SSL_CERT_FILE, NODE_EXTRA_CA_CERTS).
    """
    conn = Connection.resolve(batch_url, blob_url, account, key)
    values = {**variables(conn), **identity_and_trust(conn.batch_url, client_secret)}
    if as_json:
        sys.stdout.write(json.dumps(values, indent=2) + "\n")
        return
    lines = [f"export {name}={shlex.quote(value)}" for name, value in values.items()]
    sys.stdout.write("\n".join(lines) + "\n")
