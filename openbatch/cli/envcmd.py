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


def env(
    batch_url: BatchUrlOption = None, blob_url: BlobUrlOption = None, account: AccountOption = None,
    key: KeyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON object instead of shell exports.")] = False,
) -> None:
    """Print the exports (and the storage connection string) that point SDKs and this CLI at a server.

    Use it as ``eval "$(openbatch env)"``. Then, in Python::

        BatchClient(os.environ["OPENBATCH_BATCH_URL"],
                    AzureNamedKeyCredential(os.environ["OPENBATCH_ACCOUNT"], os.environ["OPENBATCH_KEY"]))
        BlobServiceClient.from_connection_string(os.environ["AZURE_STORAGE_CONNECTION_STRING"])
    """
    values = variables(Connection.resolve(batch_url, blob_url, account, key))
    if as_json:
        sys.stdout.write(json.dumps(values, indent=2) + "\n")
        return
    lines = [f"export {name}={shlex.quote(value)}" for name, value in values.items()]
    sys.stdout.write("\n".join(lines) + "\n")
