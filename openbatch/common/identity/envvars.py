"""The environment variables that point Azure's credential chain (and TLS trust) at a server."""

from __future__ import annotations

from pathlib import Path

from openbatch.common.identity.directory import DEFAULT_IDENTITY, Directory, identities_file
from openbatch.common.identity.endpoints import MSI_PREFIX
from openbatch.common.tls import existing


def trust_variables(data_dir: Path) -> dict[str, str]:
    """Where the certificate of a server with ``--https`` is trusted: Python (requests, ssl), Node."""
    files = existing(data_dir)
    if files is None or files.ca is None or files.bundle is None:
        return {}
    return {"REQUESTS_CA_BUNDLE": str(files.bundle), "SSL_CERT_FILE": str(files.bundle),
            "NODE_EXTRA_CA_CERTS": str(files.ca)}


def identity_variables(data_dir: Path, batch_url: str, client_secret: bool = False) -> dict[str, str]:
    """Managed identity in App Service style (what DefaultAzureCredential picks up with nothing else
    set), the tenant and authority; with ``client_secret`` also the default identity's client id and
    secret (EnvironmentCredential, which then comes first in DefaultAzureCredential's chain)."""
    if not identities_file(data_dir).exists():
        return {}
    directory = Directory.load_or_create(data_dir)
    base = batch_url.rstrip("/")
    values = {"IDENTITY_ENDPOINT": f"{base}{MSI_PREFIX}token", "IDENTITY_HEADER": directory.identity_header,
              "AZURE_TENANT_ID": directory.tenant}
    if base.startswith("https://"):  # MSAL takes https authorities only
        values["AZURE_AUTHORITY_HOST"] = base
    default = directory.by_name(DEFAULT_IDENTITY)
    if client_secret and default is not None and default.secret:
        values.update(AZURE_CLIENT_ID=default.client_id, AZURE_CLIENT_SECRET=default.secret)
    return values
