"""Bearer tokens: openbatch's own RS256 issuer and the one verifier Blob, Batch and ARM share.

The signing key is an RSA key kept in ``{data dir}/identity/signing-key.pem`` (created on first
use, mode 0600). Tokens look like Entra ID's v1 access tokens (``iss``
``https://sts.windows.net/{tenant}/``, ``aud`` the resource asked for, ``oid``/``tid``/``appid``),
so programs that decode them see the usual claims.

:meth:`TokenVerifier.verify` checks, in this order: the token is three base64url parts of JSON
with ``alg`` RS256; the signature against the signing key (in ``accept_any`` mode a token that does
not verify is still accepted, unverified, and holds every role); the issuer (ours, or in
``accept_any`` mode also any Entra ID issuer form); ``nbf`` and ``exp`` with
:data:`CLOCK_SKEW` seconds of grace; the audience against the forms the caller accepts. Every
refusal is a :class:`TokenError` naming why, with Azure Storage's ``AuthenticationErrorDetail``
text; each protocol turns the reason into its own code. Tokens are never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

# The local tenant's id: a fixed GUID so tokens, `openbatch env` and configuration agree across restarts.
DEFAULT_TENANT = str(uuid.uuid5(uuid.NAMESPACE_DNS, "tenant.openbatch.local"))
CLOCK_SKEW = 300  # seconds of grace on nbf/exp (Entra ID's validators default to five minutes)
TOKEN_LIFETIME = 3600 * 24  # seconds; Entra ID gives managed identities 24 h tokens

STORAGE_RESOURCE = "https://storage.azure.com/"
BATCH_RESOURCE = "https://batch.core.windows.net/"
ARM_RESOURCE = "https://management.azure.com/"
# First-party application ids Entra ID also accepts as the audience of those resources.
STORAGE_APP_ID = "e406a681-f3d4-42a8-90b6-c2b029497af1"
BATCH_APP_ID = "ddbf3205-c6bd-46ae-8127-60eb93363864"
ARM_APP_ID = "797f4846-ba00-4fd7-ba43-dac1f8f63013"

# Why a token was refused -> Azure Storage's AuthenticationErrorDetail for it.
REASONS: dict[str, str] = {
    "malformed": "The access token is malformed.",
    "signature": "Signature validation failed. Signature is invalid.",
    "issuer": "Issuer validation failed. Issuer did not match.",
    "expired": "Lifetime validation failed. The token is expired.",
    "not_yet_valid": "Lifetime validation failed. The token is not yet valid.",
    "audience": "Audience validation failed. Audience did not match.",
}
_ISSUER_FORMS = (
    re.compile(r"https://sts\.windows\.net/[0-9A-Za-z.-]+/"),
    re.compile(r"https://sts\.chinacloudapi\.cn/[0-9A-Za-z.-]+/"),
    re.compile(r"https://login\.microsoftonline\.(com|us)/[0-9A-Za-z.-]+/v2\.0"),
    re.compile(r"https://login\.chinacloudapi\.cn/[0-9A-Za-z.-]+/v2\.0"),
)


class TokenError(Exception):
    """A bearer token was refused: ``reason`` is a key of :data:`REASONS`, ``detail`` its text."""

    def __init__(self, reason: str) -> None:
        super().__init__(REASONS[reason])
        self.reason = reason
        self.detail = REASONS[reason]


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for. ``roles``: role name -> the scopes it is held at
    (an account name, or ``*`` for every account)."""

    object_id: str
    tenant_id: str
    app_id: str
    audience: str
    expires_on: int
    roles: Mapping[str, frozenset[str]] = field(default_factory=dict)
    verified: bool = True  # False: not signed by openbatch, accepted by --oauth accept-any

    def has_role(self, roles: Collection[str], account: str) -> bool:
        """Whether the principal holds any of ``roles`` for ``account`` (a token accepted without
        verification holds every role: accept-any does not check roles, as Azurite's oauth mode)."""
        if not self.verified:
            return True
        for role in roles:
            scopes = self.roles.get(role)
            if scopes and ("*" in scopes or account in scopes):
                return True
        return False


def storage_audiences(account: str) -> frozenset[str]:
    """The audiences a Blob request for ``account`` accepts (global and account-specific forms)."""
    return _with_and_without_slash(STORAGE_RESOURCE, f"https://{account}.blob.core.windows.net",
                                   f"https://{account}.blob.core.windows.net/") | {STORAGE_APP_ID}


def batch_audiences() -> frozenset[str]:
    """Azure Batch wants the resource exactly, with its trailing slash (or the Batch app id)."""
    return frozenset({BATCH_RESOURCE, BATCH_APP_ID})


def arm_audiences() -> frozenset[str]:
    return _with_and_without_slash(ARM_RESOURCE, "https://management.core.windows.net/") | {ARM_APP_ID}


def _with_and_without_slash(*urls: str) -> frozenset[str]:
    return frozenset(u.rstrip("/") for u in urls) | frozenset(u.rstrip("/") + "/" for u in urls)


def bearer_challenge(tenant: str, resource: str) -> str:
    """The ``WWW-Authenticate`` value Azure sends with a 401 for a bearer token: where to get one
    (azure-storage-blob reads the tenant from ``authorization_uri``'s path) and for which resource."""
    return (f"Bearer authorization_uri=https://login.microsoftonline.com/{tenant}/oauth2/authorize "
            f"resource_id={resource.rstrip('/')}")


def resource_of_scope(scope: str) -> str:
    """The v1 resource of a v2 scope, as Entra ID sets ``aud``: ``https://storage.azure.com/.default`` ->
    ``https://storage.azure.com``, ``https://batch.core.windows.net//.default`` -> ``https://batch.core.windows.net/``."""
    return scope[: -len("/.default")] if scope.endswith("/.default") else scope


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SigningKey:
    """The RSA key tokens are signed with, kept in the data dir."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self.private = key
        self.public = key.public_key()
        der = self.public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = _b64(hashlib.sha256(der).digest()[:20])

    @classmethod
    def load_or_create(cls, data_dir: Path) -> SigningKey:
        path = Path(data_dir) / "identity" / "signing-key.pem"
        if path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{path} does not hold an RSA key")
            return cls(loaded)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        os.replace(tmp, path)
        return cls(key)

    def jwk(self) -> dict[str, Any]:
        numbers = self.public.public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "n": _b64(n), "e": _b64(e)}


class TokenIssuer:
    """Signs access tokens for the local tenant."""

    def __init__(self, key: SigningKey, tenant: str = DEFAULT_TENANT) -> None:
        self.key = key
        self.tenant = tenant
        self.issuer = f"https://sts.windows.net/{tenant}/"

    def issue(self, object_id: str, app_id: str, audience: str, lifetime: int = TOKEN_LIFETIME,
              now: float | None = None, **claims: Any) -> tuple[str, int]:
        """A signed token for ``audience`` and its expiry (Unix seconds)."""
        issued = int(time.time() if now is None else now)
        expires = issued + lifetime
        body = {"aud": audience, "iss": self.issuer, "iat": issued, "nbf": issued, "exp": expires,
                "oid": object_id, "sub": object_id, "tid": self.tenant, "appid": app_id, "azp": app_id,
                "idtyp": "app", "ver": "1.0", **claims}
        header = {"alg": "RS256", "typ": "JWT", "kid": self.key.kid, "x5t": self.key.kid}
        signing_input = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(body))}".encode()
        signature = self.key.private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input.decode()}.{_b64(signature)}", expires


# object id -> that principal's role assignments (role name -> scopes)
RolesOf = Callable[[str], Mapping[str, frozenset[str]]]


class TokenVerifier:
    """Verifies bearer tokens; ``roles_of(object_id)`` gives a principal's role assignments."""

    def __init__(self, key: SigningKey, issuer: str, roles_of: RolesOf | None = None,
                 accept_any: bool = False) -> None:
        self.key = key
        self.issuer = issuer
        self.roles_of: RolesOf = roles_of or (lambda _oid: {})
        self.accept_any = accept_any

    def verify(self, token: str, audiences: Collection[str], now: float | None = None) -> Principal:
        header, claims, signing_input, signature = _split(token)
        signed = header.get("alg") == "RS256" and self._signed(signing_input, signature)
        if not signed and not self.accept_any:
            raise TokenError("signature")
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not (issuer == self.issuer or (
                self.accept_any and any(form.fullmatch(issuer) for form in _ISSUER_FORMS))):
            raise TokenError("issuer")
        moment = time.time() if now is None else now
        expires, not_before = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(expires, int | float) or not isinstance(not_before, int | float):
            raise TokenError("malformed")
        if moment > expires + CLOCK_SKEW:
            raise TokenError("expired")
        if moment + CLOCK_SKEW < not_before:
            raise TokenError("not_yet_valid")
        audience = claims.get("aud")
        if not isinstance(audience, str) or audience not in audiences:
            raise TokenError("audience")
        object_id = str(claims.get("oid") or claims.get("sub") or "")
        return Principal(object_id=object_id, tenant_id=str(claims.get("tid", "")),
                         app_id=str(claims.get("appid") or claims.get("azp") or ""), audience=audience,
                         expires_on=int(expires), roles=self.roles_of(object_id), verified=signed)

    def _signed(self, signing_input: bytes, signature: bytes) -> bool:
        try:
            self.key.public.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True


def _split(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    parts = token.strip().split(".")
    if len(parts) != 3 or len(token) > 16384:
        raise TokenError("malformed")
    try:
        header = orjson.loads(_unb64(parts[0]))
        claims = orjson.loads(_unb64(parts[1]))
        signature = _unb64(parts[2])
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise TokenError("malformed") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TokenError("malformed")
    return header, claims, f"{parts[0]}.{parts[1]}".encode(), signature
