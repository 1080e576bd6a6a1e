"""One data dir's identity machinery: key, issuer, directory and verifier, built once per server."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from openbatch.common.identity.directory import Directory
from openbatch.common.identity.tokens import SigningKey, TokenIssuer, TokenVerifier


class IdentityService:
    """The issuer, verifier and directory of one server (``accept_any``: ``--oauth accept-any``)."""

    def __init__(self, data_dir: Path, accept_any: bool = False) -> None:
        self.data_dir = data_dir
        self.directory = Directory.load_or_create(data_dir)
        self.accept_any = accept_any

    # The RSA key is made (~0.2 s) or read on first use: a server that never sees a token never pays.
    @cached_property
    def key(self) -> SigningKey:
        return SigningKey.load_or_create(self.data_dir)

    @cached_property
    def issuer(self) -> TokenIssuer:
        return TokenIssuer(self.key, self.directory.tenant)

    @cached_property
    def verifier(self) -> TokenVerifier:
        return TokenVerifier(self.key, self.issuer.issuer, self.directory.roles_of, self.accept_any)


_SERVICES: dict[tuple[Path, bool], IdentityService] = {}


def identity_service(data_dir: Path, accept_any: bool = False) -> IdentityService:
    """The one :class:`IdentityService` of a data dir in this process, made on first need (a server
    that never sees a bearer token never loads the key)."""
    key = (Path(data_dir).resolve(), accept_any)
    service = _SERVICES.get(key)
    if service is None:
        service = _SERVICES[key] = IdentityService(key[0], accept_any)
    return service
