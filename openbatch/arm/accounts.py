"""Batch accounts as the management plane sees them, and how they map to the server's accounts.

The server serves accounts (``settings.accounts``: a name and its keys, each both a Batch and a
storage account). The management plane adds two kinds of records over them:

- **configured** accounts (the dev account, ``--account``, ``OPENBATCH_ACCOUNTS``) appear in every
  subscription, in the resource group ``openbatch``; they cannot be deleted or have their keys
  regenerated through ARM (their keys are configuration);
- **created** accounts (PUT .../batchAccounts/{name}) get two fresh 512-bit keys and join
  ``settings.accounts`` at once, so SharedKey (Batch) and the Blob endpoint accept them; they are
  kept in ``{data dir}/arm/accounts.json`` (written to a temporary file and renamed: a create or a
  key regeneration that was answered survives the server being killed) and served again after a restart.

An account's auto-storage account is the storage account of the same name on this server's Blob
endpoint (that is where application packages go); ``autoStorage.storageAccountId`` may name it,
any other storage account is refused. The subscription id is not checked: one server is one tenant.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson

from openbatch.config import Account, Settings

CONFIGURED_GROUP = "openbatch"
DEFAULT_LOCATION = "local"


@dataclass
class ArmAccount:
    name: str
    resource_group: str
    location: str = DEFAULT_LOCATION
    tags: dict[str, str] = field(default_factory=dict)
    created: bool = True  # False: a configured account (see the module docstring)
    storage_group: str = ""  # the resource group autoStorage named (its own, by default)
    last_key_sync: str = ""

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "resourceGroup": self.resource_group, "location": self.location,
                "tags": self.tags, "storageGroup": self.storage_group, "lastKeySync": self.last_key_sync}


class AccountRegistry:
    """The management plane's accounts over ``settings.accounts`` (see the module docstring)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.path = settings.data_dir / "arm" / "accounts.json"
        self.configured = set(settings.accounts)
        self.accounts: dict[str, ArmAccount] = {
            name: ArmAccount(name, CONFIGURED_GROUP, created=False) for name in settings.accounts}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        for item in orjson.loads(self.path.read_bytes()):
            name = str(item["name"])
            if name in self.configured:
                continue
            self.settings.accounts[name] = Account(name, tuple(base64.b64decode(k) for k in item["keys"]))
            self.accounts[name] = ArmAccount(name, str(item["resourceGroup"]), str(item.get("location") or
                                             DEFAULT_LOCATION), dict(item.get("tags") or {}),
                                             storage_group=str(item.get("storageGroup") or ""),
                                             last_key_sync=str(item.get("lastKeySync") or ""))

    def _save(self) -> None:
        items = [{**a.record(), "keys": [base64.b64encode(k).decode() for k in self.settings.accounts[a.name].keys]}
                 for a in self.accounts.values() if a.created]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_suffix(".tmp")
        with open(temp, "wb") as fh:
            fh.write(orjson.dumps(items))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(temp, 0o600)  # keys
        os.replace(temp, self.path)

    def find(self, group: str, name: str) -> ArmAccount | None:
        account = self.accounts.get(name)
        if account is None or account.resource_group.lower() != group.lower():
            return None
        return account

    def in_group(self, group: str | None) -> list[ArmAccount]:
        return sorted((a for a in self.accounts.values() if group is None or a.resource_group.lower() == group.lower()),
                      key=lambda a: a.name)

    def create(self, group: str, name: str, location: str, tags: dict[str, str], storage_group: str) -> ArmAccount:
        account = ArmAccount(name, group, location or DEFAULT_LOCATION, tags, storage_group=storage_group)
        self.settings.accounts[name] = Account(name, (secrets.token_bytes(64), secrets.token_bytes(64)))
        self.accounts[name] = account
        self._save()
        return account

    def update(self, account: ArmAccount) -> None:
        if account.created:
            self._save()

    def delete(self, name: str) -> None:
        self.accounts.pop(name, None)
        self.settings.accounts.pop(name, None)
        self._save()

    def keys(self, name: str) -> tuple[str, str]:
        keys = self.settings.accounts[name].keys
        primary = base64.b64encode(keys[0]).decode()
        return primary, base64.b64encode(keys[1]).decode() if len(keys) > 1 else primary

    def regenerate(self, name: str, which: str) -> None:
        keys = list(self.settings.accounts[name].keys)
        while len(keys) < 2:
            keys.append(keys[0])
        keys[0 if which == "primary" else 1] = secrets.token_bytes(64)
        self.settings.accounts[name] = Account(name, tuple(keys))
        self._save()


