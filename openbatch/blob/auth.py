"""Who may do what on the Blob endpoint: SharedKey, SAS, anonymous public reads.

Each operation has a :class:`Rule`: the SAS permissions it needs (any of the letters) and the
container public-access level that lets anonymous clients call it. Signatures are checked in
constant time (``sharedkey.matches`` / ``sas``); keys, signatures and SAS query strings are never
logged or echoed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from openbatch.blob.errors import BlobError
from openbatch.common import sharedkey
from openbatch.config import Account


@dataclass(frozen=True)
class Rule:
    """Authorization needs of one operation.

    ``service_sas`` / ``account_sas``: SAS permission letters of which one is needed (None: that
    kind of SAS cannot authorize the operation). ``public``: "blob" when anonymous clients may
    call it on containers with blob or container public access, "container" when only container
    public access allows it, None when never.
    """

    service_sas: str | None
    account_sas: str | None
    public: str | None = None


@dataclass(frozen=True)
class Grant:
    """How a request was authorized."""

    kind: str  # "key" | "sas" | "anonymous"
    overrides: dict[str, str] = field(default_factory=dict)  # SAS response header overrides


class AuthRequest(Protocol):
    method: str
    raw_path: str
    account: str
    container: str
    blob: str | None
    headers: dict[str, str]
    query: dict[str, str]
    pairs: list[tuple[str, str]]
    client_ip: str
    scheme: str


PublicAccessLookup = Callable[[str, str], "str | None"]


def _sas_error(exc: Exception) -> BlobError:
    code = str(getattr(exc, "code", "AuthenticationFailed"))
    message = str(getattr(exc, "message", "")) or None
    status = int(getattr(exc, "status", 403))
    if code == "AuthenticationFailed":
        return BlobError(code, status=status, AuthenticationErrorDetail=message or "")
    return BlobError(code, message, status=status)


class Authorizer:
    """Authorizes Blob requests for the configured accounts."""

    def __init__(self, accounts: Mapping[str, Account], public_access: PublicAccessLookup) -> None:
        self.accounts = accounts
        self.public_access = public_access

    def authorize(self, req: AuthRequest, rule: Rule) -> Grant:
        authorization = req.headers.get("authorization")
        if authorization is not None:
            self._shared_key(req, authorization)
            return Grant("key")
        from openbatch.common import sas

        if sas.is_sas(req.query):
            return self._sas(req, rule)
        return self._anonymous(req, rule)

    def _account(self, name: str) -> Account:
        account = self.accounts.get(name)
        if account is None:
            raise BlobError("AuthenticationFailed", AuthenticationErrorDetail=f"The account {name[:64]} is not served here.")
        return account

    def _shared_key(self, req: AuthRequest, authorization: str) -> None:
        try:  # Azure checks the signed date before the signature
            sharedkey.check_request_date(req.headers, sharedkey.BLOB_DATE_HEADERS)
        except sharedkey.RequestDateError as exc:
            raise BlobError("AuthenticationFailed", AuthenticationErrorDetail=exc.detail) from None
        parsed = sharedkey.parse_authorization(authorization)
        if parsed is None or parsed[0] != "SharedKey":
            raise BlobError("AuthenticationFailed", AuthenticationErrorDetail="The Authorization header is not a "
                            "well formed SharedKey header.")
        _, name, signature = parsed
        if name != req.account:
            raise BlobError("AuthenticationFailed", AuthenticationErrorDetail="The account in the Authorization "
                            "header does not match the account in the request URL.")
        account = self._account(name)
        if not sharedkey.matches(account, signature, sharedkey.blob_candidates(req.method, req.headers, name, req.raw_path, req.pairs)):
            raise BlobError("AuthenticationFailed", AuthenticationErrorDetail="The MAC signature found in the HTTP "
                            "request is not the same as any computed signature.")

    def _sas(self, req: AuthRequest, rule: Rule) -> Grant:
        from openbatch.common import sas

        account = self._account(req.account)
        try:
            access = sas.verify_blob_sas(req.query, account, req.container, req.blob,
                                         client_ip=req.client_ip, scheme=req.scheme)
        except sas.SasError as exc:
            raise _sas_error(exc) from None
        needed = rule.account_sas if access.resource == "account" else rule.service_sas
        if needed is None or not access.permissions.intersection(needed):
            raise BlobError("AuthorizationPermissionMismatch")
        return Grant("sas", dict(access.overrides))

    def _anonymous(self, req: AuthRequest, rule: Rule) -> Grant:
        if rule.public is not None and req.account in self.accounts and req.container:
            level = self.public_access(req.account, req.container)
            if level == "container" or (level == "blob" and rule.public == "blob"):
                return Grant("anonymous")
        raise BlobError("AuthorizationFailure",
                        "Server failed to authenticate the request: no credentials were given and the resource "
                        "is not public.")

    def authorize_copy_source(self, grant: Grant, account: str, source: tuple[str, str, str],
                              source_query: dict[str, str], client_ip: str, scheme: str) -> None:
        """May a copy into ``account`` (authorized by ``grant``) read ``source``?"""
        src_account, src_container, src_blob = source
        from openbatch.common import sas

        if sas.is_sas(source_query):
            try:
                access = sas.verify_blob_sas(source_query, self._account(src_account), src_container, src_blob,
                                             client_ip=client_ip, scheme=scheme)
            except sas.SasError as exc:
                raise BlobError("CannotVerifyCopySource", exc.message, status=exc.status) from None
            if "r" not in access.permissions:
                raise BlobError("CannotVerifyCopySource", "The copy source SAS does not grant read.", status=403)
            return
        if grant.kind == "key" and src_account == account:
            return
        if src_account in self.accounts and self.public_access(src_account, src_container) in ("blob", "container"):
            return
        raise BlobError("CannotVerifyCopySource", "Server failed to authenticate the request to read the copy "
                        "source. Give the source URL a SAS with read permission.", status=403)
