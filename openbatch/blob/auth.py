"""Who may do what on the Blob endpoint: SharedKey, bearer tokens, SAS, anonymous public reads.

:data:`OPERATIONS` is the one table of who may call each operation: the SAS permission letters it
needs and the container public-access level that lets anonymous clients call it. Signatures are
checked in constant time (``sharedkey.matches`` / ``sas``); keys, signatures and SAS query strings
are never logged or echoed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from openbatch.blob.errors import BlobError
from openbatch.common import delegation, sas, sharedkey
from openbatch.common.identity import (
    BLOB_READ_ROLES,
    BLOB_WRITE_ROLES,
    STORAGE_RESOURCE,
    IdentityService,
    Principal,
    TokenError,
    bearer_challenge,
    storage_audiences,
)
from openbatch.config import Account


@dataclass(frozen=True)
class Rule:
    """Authorization needs of one operation.

    ``service_sas`` / ``account_sas``: SAS permission letters of which one is needed (None: that
    kind of SAS cannot authorize the operation). ``replace``: for operations that create a blob,
    the letters of which one is needed instead when the blob already exists (Azure's create
    permission only creates: overwriting takes write). ``public``: "blob" when anonymous clients
    may call it on containers with blob or container public access, "container" when only
    container public access allows it, None when never.
    """

    service_sas: str | None
    account_sas: str | None
    public: str | None = None
    replace: str | None = None


_READ_BLOB = Rule("r", "r", public="blob")
_WRITE_BLOB = Rule("w", "w")

# Operation (the BlobApi handler of that name) -> who may call it. Letters from Azure's "Create an
# account SAS" table (Blob service operations) and the "Create a service SAS" permissions: a service
# SAS cannot read or write container properties, metadata or ACLs, nor create, delete or lease
# containers; neither kind of SAS reaches the container ACL (not in the account SAS table).
OPERATIONS: dict[str, Rule] = {
    # service level (an account SAS with srt=s)
    "list_containers": Rule(None, "l"),
    "get_service_properties": Rule(None, "r"),
    "set_service_properties": Rule(None, "w"),
    "get_service_stats": Rule(None, "r"),
    "account_info": Rule("racwdl", "racwdlup"),  # Azure's docs name no letters: Azurite's
    # Blob Batch: any letter lets the batch in; each sub-request is authorized on its own (Azurite's)
    "submit_batch": Rule("".join(sorted(sas.SERVICE_PERMISSIONS)), "".join(sorted(sas.ACCOUNT_PERMISSIONS))),
    # containers
    "create_container": Rule(None, "cw"),
    "container_properties": Rule(None, "r", public="container"),  # also Get Container Metadata
    "delete_container": Rule(None, "d"),
    "set_container_metadata": Rule(None, "w"),
    "get_container_acl": Rule(None, None),
    "set_container_acl": Rule(None, None),
    "list_blobs": Rule("l", "l", public="container"),
    "lease_container": Rule(None, "w"),
    "break_lease_container": Rule(None, "wd"),  # delete allows breaking a lease (2017-07-29 and later)
    # blobs
    "put_blob": Rule("cw", "cw", replace="w"),  # also Copy Blob (a Put Blob with x-ms-copy-source)
    "put_block": _WRITE_BLOB,
    "put_block_list": _WRITE_BLOB,
    "get_block_list": _READ_BLOB,
    "get_blob": _READ_BLOB,
    "blob_properties": _READ_BLOB,
    "blob_metadata": _READ_BLOB,
    "set_blob_metadata": _WRITE_BLOB,
    "set_blob_properties": _WRITE_BLOB,
    "set_blob_tier": _WRITE_BLOB,
    "delete_blob": Rule("d", "d"),
    "undelete_blob": _WRITE_BLOB,  # Azure's tables name no letter; Azurite's choice
    "restore_container": Rule(None, "w"),
    "lease_blob": _WRITE_BLOB,
    "get_blob_tags": Rule("t", "t"),
    "set_blob_tags": Rule("t", "t"),
    "find_blobs_by_tags": Rule("f", "f"),  # account-wide: an account SAS only (a service SAS names a container)
    "break_lease_blob": Rule("wd", "wd"),
    "snapshot_blob": Rule("cw", "cw"),
    "abort_copy": _WRITE_BLOB,
    "append_block": Rule("aw", "aw"),  # also Append Block From URL
    "seal_append_blob": _WRITE_BLOB,
    "put_page": _WRITE_BLOB,  # update, clear and From URL
    "get_page_ranges": _READ_BLOB,
    # the source of Copy Blob, authorized by its own SAS (or public access, or the key of its account)
    "copy_source": _READ_BLOB,
    # bearer tokens only (Microsoft Entra ID sign-in): no SAS, no key
    "get_user_delegation_key": Rule(None, None),
}
# Operations a bearer token with a read role may call although they are not GET/HEAD: a Blob Batch
# (each sub-request is authorized on its own) and Get User Delegation Key (every data role may).
_BEARER_READS = {"batch", "userdelegationkey"}


@dataclass(frozen=True)
class Grant:
    """How a request was authorized."""

    kind: str  # "key" | "bearer" | "sas" | "anonymous"
    overrides: dict[str, str] = field(default_factory=dict)  # SAS response header overrides
    may_replace: bool = True  # False: the SAS may create the target blob but not overwrite it
    principal: Principal | None = None  # bearer: who the token speaks for

    @property
    def replace_guard(self) -> Callable[[], None] | None:
        """What the store must call before it overwrites an existing blob (None: nothing to check)."""
        return None if self.may_replace else _refuse_replace


def _refuse_replace() -> None:
    raise BlobError("AuthorizationPermissionMismatch")


def _public_allows(rule: Rule, level: str | None) -> bool:
    """Whether a container's public-access ``level`` lets anonymous clients call ``rule``'s operation."""
    return rule.public is not None and (level == "container" or (level == "blob" and rule.public == "blob"))


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
# (account, container, signed identifier) -> the container's stored access policy of that id, if any
StoredPolicyLookup = Callable[[str, str, str], "sas.StoredPolicy | None"]


def _sas_error(exc: Exception) -> BlobError:
    code = str(getattr(exc, "code", "AuthenticationFailed"))
    message = str(getattr(exc, "message", "")) or None
    status = int(getattr(exc, "status", 403))
    if code == "AuthenticationFailed":
        return BlobError(code, status=status, AuthenticationErrorDetail=message or "")
    return BlobError(code, message, status=status)


class Authorizer:
    """Authorizes Blob requests for the configured accounts."""

    def __init__(self, accounts: Mapping[str, Account], public_access: PublicAccessLookup,
                 stored_policy: StoredPolicyLookup | None = None,
                 identity: Callable[[], IdentityService] | None = None) -> None:
        self.accounts = accounts
        self.public_access = public_access
        self.stored_policy = stored_policy
        self.identity = identity  # made on the first bearer token or user delegation SAS

    def _policies(self, account: str, container: str) -> sas.PolicyLookup | None:
        """The stored access policies a service SAS on ``container`` may name (si)."""
        lookup = self.stored_policy
        if lookup is None or not container:
            return None
        return lambda identifier: lookup(account, container, identifier)

    def authorize(self, req: AuthRequest, rule: Rule) -> Grant:
        authorization = req.headers.get("authorization")
        if authorization is not None:
            if authorization[:7].lower() == "bearer ":
                return self._bearer(req, authorization[7:].strip())
            self._shared_key(req, authorization)
            return Grant("key")
        if sas.is_sas(req.query):
            return self._sas(req, rule)
        return self._anonymous(req, rule)

    def _identity(self) -> IdentityService:
        if self.identity is None:
            raise BlobError("AuthenticationFailed", AuthenticationErrorDetail="Bearer tokens are not accepted here.")
        return self.identity()

    def _bearer(self, req: AuthRequest, token: str) -> Grant:
        """A Microsoft Entra ID token (openbatch's own issuer): signature, issuer, lifetime, audience, then
        the principal's data role on the account. Over HTTPS only, as Azure Storage accepts them."""
        self._account(req.account)
        service = self._identity()
        if req.scheme != "https":
            raise BlobError("AuthenticationFailed", AuthenticationErrorDetail="Authentication with bearer tokens "
                            "requires HTTPS (serve with --https).")
        try:
            principal = service.verifier.verify(token, storage_audiences(req.account))
        except TokenError as exc:
            err = BlobError("InvalidAuthenticationInfo", status=401, AuthenticationErrorDetail=exc.detail)
            err.headers.append(("www-authenticate", bearer_challenge(service.directory.tenant, STORAGE_RESOURCE)))
            raise err from None
        write = req.method not in ("GET", "HEAD") and req.query.get("comp") not in _BEARER_READS
        if not principal.has_role(BLOB_WRITE_ROLES if write else BLOB_READ_ROLES, req.account):
            raise BlobError("AuthorizationPermissionMismatch")
        return Grant("bearer", principal=principal)

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
        account = self._account(req.account)
        try:
            access = sas.verify_blob_sas(req.query, account, req.container, req.blob,
                                         client_ip=req.client_ip, scheme=req.scheme,
                                         policy=self._policies(req.account, req.container))
        except sas.SasError as exc:
            raise _sas_error(exc) from None
        needed = rule.account_sas if access.resource == "account" else rule.service_sas
        if needed is None:  # e.g. Get Container Properties with a container SAS
            raise BlobError("AuthorizationFailure")
        if not access.permissions.intersection(needed):
            raise BlobError("AuthorizationPermissionMismatch")
        if delegation.is_user_delegation(req.query):  # no more than its signer's roles allow now
            write = req.method not in ("GET", "HEAD")
            roles = self._identity().directory.roles_of(req.query.get("skoid", ""))
            if not any(role in roles and roles[role] & {"*", req.account}
                       for role in (BLOB_WRITE_ROLES if write else BLOB_READ_ROLES)):
                raise BlobError("AuthorizationPermissionMismatch")
        may_replace = rule.replace is None or bool(access.permissions.intersection(rule.replace))
        return Grant("sas", dict(access.overrides), may_replace)

    def _anonymous(self, req: AuthRequest, rule: Rule) -> Grant:
        if (rule.public is not None and req.account in self.accounts and req.container
                and _public_allows(rule, self.public_access(req.account, req.container))):
            return Grant("anonymous")
        raise BlobError("AuthorizationFailure",
                        "Server failed to authenticate the request: no credentials were given and the resource "
                        "is not public.")

    def authorize_copy_source(self, grant: Grant, account: str, source: tuple[str, str, str],
                              source_query: dict[str, str], client_ip: str, scheme: str) -> None:
        """May a copy into ``account`` (authorized by ``grant``) read ``source``?"""
        src_account, src_container, src_blob = source
        rule = OPERATIONS["copy_source"]
        if sas.is_sas(source_query):
            try:
                access = sas.verify_blob_sas(source_query, self._account(src_account), src_container, src_blob,
                                             client_ip=client_ip, scheme=scheme,
                                             policy=self._policies(src_account, src_container))
            except sas.SasError as exc:
                raise BlobError("CannotVerifyCopySource", exc.message, status=exc.status) from None
            needed = rule.account_sas if access.resource == "account" else rule.service_sas
            if not needed or not access.permissions.intersection(needed):
                raise BlobError("CannotVerifyCopySource", "The copy source SAS does not grant read.", status=403)
            return
        if grant.kind in ("key", "bearer") and src_account == account:
            return
        if src_account in self.accounts and _public_allows(rule, self.public_access(src_account, src_container)):
            return
        raise BlobError("CannotVerifyCopySource", "Server failed to authenticate the request to read the copy "
                        "source. Give the source URL a SAS with read permission.", status=403)
