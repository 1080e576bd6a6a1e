"""Settings: data dir, host/ports, accounts, compute provider."""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field
from pathlib import Path

DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEFAULT_BLOB_PORT = 10000
DEFAULT_BATCH_PORT = 10100


class ConfigError(ValueError):
    """A setting given by the user cannot be used."""


@dataclass(frozen=True)
class Account:
    """A storage + batch account: one name, one or two base64 keys."""

    name: str
    keys: tuple[bytes, ...]

    @property
    def primary_key(self) -> str:
        return base64.b64encode(self.keys[0]).decode()


def parse_account(spec: str) -> Account:
    """Parse ``name:key`` (the key may be followed by ``:key2`` for a secondary key)."""
    name, sep, rest = spec.strip().partition(":")
    if not sep or not name or not rest:
        raise ConfigError(f"account must be NAME:KEY, got {name or '?'}:<...>")
    if not (3 <= len(name) <= 24 and name.isalnum() and name.islower()):
        raise ConfigError(f"account name {name!r} must be 3-24 lowercase letters or digits")
    keys = []
    for part in rest.split(":"):
        try:
            keys.append(base64.b64decode(part, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise ConfigError(f"key of account {name!r} is not valid base64") from exc
    return Account(name=name, keys=tuple(keys))


def accounts_from(specs: list[str] | None, env: str | None) -> dict[str, Account]:
    """The accounts to serve: the dev account plus ``--account`` flags and ``OPENBATCH_ACCOUNTS``."""
    accounts = {DEV_ACCOUNT: parse_account(f"{DEV_ACCOUNT}:{DEV_KEY}")}
    for spec in [*(s for s in (env or "").split(";") if s.strip()), *(specs or [])]:
        account = parse_account(spec)
        accounts[account.name] = account
    return accounts


@dataclass
class Settings:
    data_dir: Path
    host: str = "127.0.0.1"
    blob_port: int = DEFAULT_BLOB_PORT
    batch_port: int = DEFAULT_BATCH_PORT
    accounts: dict[str, Account] = field(default_factory=lambda: accounts_from(None, None))
    compute: str = "local"
    # Public base URLs (what the server tells clients and tasks); derived from host/port when empty.
    blob_url: str = ""
    batch_url: str = ""

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        if not self.blob_url:
            self.blob_url = f"http://{_url_host(self.host)}:{self.blob_port}"
        if not self.batch_url:
            self.batch_url = f"http://{_url_host(self.host)}:{self.batch_port}"

    @classmethod
    def from_env(cls, data_dir: Path | None = None, **kw: object) -> Settings:
        if data_dir is None:
            data_dir = Path(os.environ.get("OPENBATCH_DATA_DIR", Path.home() / ".openbatch"))
        return cls(data_dir=data_dir, **kw)  # type: ignore[arg-type]


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
