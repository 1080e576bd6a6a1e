"""The local tenant's identities and their data-plane role assignments.

Kept in ``{data dir}/identity/identities.json``, created on first start with one identity,
``openbatch-default``, holding every data role on every account (so ``openbatch env`` +
``DefaultAzureCredential`` just work). Edit the file (and restart) to add identities::

    {"tenantId": "...", "identityHeader": "...",
     "identities": [
       {"name": "openbatch-default", "clientId": "...", "objectId": "...", "clientSecret": "...",
        "roles": [{"role": "Storage Blob Data Owner", "scope": "*"}, ...]},
       {"name": "reader", "clientId": "...", "objectId": "...",
        "resourceId": "/subscriptions/.../providers/Microsoft.ManagedIdentity/userAssignedIdentities/reader",
        "roles": [{"role": "Storage Blob Data Reader", "scope": "devstoreaccount1"}]}]}

``clientSecret``: the identity may obtain tokens by client credentials (a service principal).
``resourceId``: the identity is a user-assigned managed identity pools may name. ``scope``: an
account name or ``*``. ``identityHeader``: the secret of the server's own managed-identity endpoint
(``IDENTITY_HEADER``), which issues tokens of ``openbatch-default``.
"""

from __future__ import annotations

import hmac
import os
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from openbatch.common.identity.tokens import DEFAULT_TENANT

STORAGE_READER = "Storage Blob Data Reader"
STORAGE_CONTRIBUTOR = "Storage Blob Data Contributor"
STORAGE_OWNER = "Storage Blob Data Owner"
BATCH_CONTRIBUTOR = "Azure Batch Data Contributor"
OWNER = "Owner"
CONTRIBUTOR = "Contributor"
# Which roles allow what (a role on the account; Owner/Contributor of the account as Azure's
# classic Batch AAD auth allows; they do not include storage data actions, as on Azure).
BLOB_READ_ROLES = frozenset({STORAGE_READER, STORAGE_CONTRIBUTOR, STORAGE_OWNER})
BLOB_WRITE_ROLES = frozenset({STORAGE_CONTRIBUTOR, STORAGE_OWNER})
BATCH_ROLES = frozenset({BATCH_CONTRIBUTOR, CONTRIBUTOR, OWNER})
DEFAULT_IDENTITY = "openbatch-default"
_FILE = Path("identity") / "identities.json"


def identities_file(data_dir: Path) -> Path:
    return Path(data_dir) / _FILE


class DirectoryError(ValueError):
    """The identities file cannot be used."""


@dataclass(frozen=True)
class Identity:
    name: str
    client_id: str
    object_id: str
    secret: str | None = None
    resource_id: str | None = None
    roles: Mapping[str, frozenset[str]] = field(default_factory=dict)  # role -> scopes


@dataclass
class Directory:
    tenant: str
    identity_header: str
    identities: list[Identity]

    def __post_init__(self) -> None:
        self._by_object = {i.object_id: i for i in self.identities}
        self._by_client = {i.client_id.lower(): i for i in self.identities}
        self._by_resource = {i.resource_id.lower(): i for i in self.identities if i.resource_id}

    def roles_of(self, object_id: str) -> Mapping[str, frozenset[str]]:
        identity = self._by_object.get(object_id)
        return identity.roles if identity else {}

    def by_client_id(self, client_id: str) -> Identity | None:
        return self._by_client.get(client_id.lower())

    def by_resource_id(self, resource_id: str) -> Identity | None:
        return self._by_resource.get(resource_id.lower())

    def by_name(self, name: str) -> Identity | None:
        return next((i for i in self.identities if i.name == name), None)

    def client_secret_matches(self, client_id: str, secret: str) -> Identity | None:
        identity = self.by_client_id(client_id)
        if identity is None or identity.secret is None:
            return None
        return identity if hmac.compare_digest(identity.secret.encode(), secret.encode()) else None

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Directory:
        path = Path(data_dir) / _FILE
        if not path.exists():
            _write(path, _default_document())
        try:
            document = orjson.loads(path.read_bytes())
            return _parse(document)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise DirectoryError(f"{path}: not a valid identities file ({type(exc).__name__}: {exc})") from None


def _default_document() -> dict[str, Any]:
    return {
        "tenantId": DEFAULT_TENANT,
        "identityHeader": secrets.token_urlsafe(24),
        "identities": [{
            "name": DEFAULT_IDENTITY, "clientId": str(uuid.uuid4()), "objectId": str(uuid.uuid4()),
            "clientSecret": secrets.token_urlsafe(32),
            "roles": [{"role": role, "scope": "*"} for role in (STORAGE_OWNER, BATCH_CONTRIBUTOR, OWNER)],
        }],
    }


def _write(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    os.replace(tmp, path)


def _parse(document: dict[str, Any]) -> Directory:
    identities = []
    for entry in document["identities"]:
        roles: dict[str, set[str]] = {}
        for assignment in entry.get("roles", []):
            roles.setdefault(str(assignment["role"]), set()).add(str(assignment.get("scope", "*")))
        identities.append(Identity(
            name=str(entry["name"]), client_id=str(entry["clientId"]),
            object_id=str(entry.get("objectId") or entry["clientId"]),
            secret=entry.get("clientSecret"), resource_id=entry.get("resourceId"),
            roles={role: frozenset(scopes) for role, scopes in roles.items()}))
    return Directory(tenant=str(document.get("tenantId") or DEFAULT_TENANT),
                     identity_header=str(document.get("identityHeader") or ""), identities=identities)


def add_identity(data_dir: Path, entry: dict[str, Any]) -> Directory:
    """Add (or replace, by name) one identity in the file; tests and tools use it before a start."""
    path = Path(data_dir) / _FILE
    Directory.load_or_create(data_dir)
    document = orjson.loads(path.read_bytes())
    document["identities"] = [i for i in document["identities"] if i.get("name") != entry["name"]] + [entry]
    _write(path, document)
    return _parse(document)
