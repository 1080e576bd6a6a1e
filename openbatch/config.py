"""Settings: data dir, host/ports, accounts, compute provider."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEFAULT_BLOB_PORT = 10000
DEFAULT_BATCH_PORT = 10100
# Slow and broken clients (see openbatch/transport.py): the timeouts are HTTP.sys's defaults, which
# Azure's front ends answer with (HeaderWait, EntityBody, IdleConnection: two minutes each).
DEFAULT_HEADER_TIMEOUT = 120.0
DEFAULT_BODY_TIMEOUT = 120.0
DEFAULT_KEEP_ALIVE_TIMEOUT = 120.0
# Far above what one machine's SDK clients open (a requests pool keeps 10 connections per host, an
# aiohttp session 100; our tests run 100 concurrent clients from 127.0.0.1), far below the
# thousands of descriptors a server has, so one client cannot take them all. 0: no limit.
DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 512
# A DNS name: dot-separated labels of letters, digits and inner hyphens (underscores tolerated).
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\.?")


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
    # The management plane (ARM, openbatch/arm) on its own port; 0: not served.
    arm_port: int = 0
    accounts: dict[str, Account] = field(default_factory=lambda: accounts_from(None, None))
    compute: str = "local"  # local | dask://HOST:PORT | dask-local:N (compute/dask.py)
    # dask: where node directories live on each worker's host ("": dask-local under the data dir,
    # an attached cluster under each worker's local directory).
    dask_node_root: str = ""
    # local: nodes in namespaces of their own over an overlay of / (node/isolation.py): auto (when
    # root on Linux and the kernel allows it; what `openbatch serve` defaults to), on (refuse to
    # start otherwise) or off.
    node_isolation: str = "off"
    # dask: a JSON file naming more clusters (schedulers or cluster managers) that pools choose by
    # their metadata ``openbatch.cluster`` (compute/dask_cluster.py load_clusters).
    dask_clusters: str = ""
    # The address nodes and clients reach this server at (a name or IP, no port): what the URLs the
    # server hands out carry (auto-storage SAS URLs, AZ_BATCH_ACCOUNT_URL). Empty: ``host``, or
    # 127.0.0.1 when ``host`` is a wildcard (0.0.0.0, ::).
    advertise_host: str = ""
    # Public base URLs (what the server tells clients and tasks); derived from host/port when empty.
    blob_url: str = ""
    batch_url: str = ""
    # Seconds a client has for its request headers, and between two pieces of a request body;
    # seconds an idle keep-alive connection stays open; connections one client address may hold.
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT
    max_connections_per_client: int = DEFAULT_MAX_CONNECTIONS_PER_CLIENT
    # Tests only: serve /openbatch/clock on the batch endpoint, to move the service's clock forward.
    test_clock: bool = False
    # The web dashboard at / of the batch endpoint (openbatch/ui), and whether it may change anything.
    ui: bool = True
    ui_actions: bool = False
    # HTTPS on both endpoints: ``https`` with a certificate made in the data dir (openbatch/common/tls.py),
    # or the PEM files ``cert_file``/``key_file`` (either turns HTTPS on).
    https: bool = False
    cert_file: str = ""
    key_file: str = ""
    # Bearer tokens: "" (verified against openbatch's own issuer) or "accept-any" (docs/identity.md).
    oauth: str = ""

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        for name in ("header_timeout", "body_timeout", "keep_alive_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name.replace('_', ' ')} must be a positive number of seconds, got {value}")
        if self.max_connections_per_client < 0:
            raise ConfigError("max connections per client must be 0 (no limit) or more")
        self.advertise_host = self.advertise_host.strip()
        url_host = _advertised(self.advertise_host) if self.advertise_host else _url_host(self.host)
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError("--cert and --key go together: give both PEM files")
        if self.oauth not in ("", "accept-any"):
            raise ConfigError(f"--oauth must be accept-any (or not given), got {self.oauth!r}")
        self.https = self.https or bool(self.cert_file)
        scheme = "https" if self.https else "http"
        if not self.blob_url:
            self.blob_url = f"{scheme}://{url_host}:{self.blob_port}"
        if not self.batch_url:
            self.batch_url = f"{scheme}://{url_host}:{self.batch_port}"

    @classmethod
    def from_env(cls, data_dir: Path | None = None, **kw: object) -> Settings:
        if data_dir is None:
            data_dir = Path(os.environ.get("OPENBATCH_DATA_DIR", Path.home() / ".openbatch"))
        return cls(data_dir=data_dir, **kw)  # type: ignore[arg-type]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, bracketed or not) names this machine's loopback only."""
    bare = host.strip().strip("[]").lower()
    if bare == "localhost" or bare.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _advertised(host: str) -> str:
    """The host part of the URLs for an ``--advertise-host`` value: a DNS name, an IPv4 address or an
    IPv6 address (bracketed or not); a scheme, port, path or wildcard address is refused."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        if not _HOST_NAME.fullmatch(host):
            raise ConfigError(f"advertised host must be a host name or an IP address without scheme or "
                              f"port, got {host!r}") from None
        return host
    if address.is_unspecified:
        raise ConfigError(f"advertised host {host!r} is a wildcard address: name the address nodes reach")
    return f"[{address}]" if address.version == 6 else str(address)
