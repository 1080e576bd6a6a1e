"""The token endpoints Azure's credential chain calls, served on the batch port.

- OAuth2 client credentials at the authority ``{batch url}`` (``AZURE_AUTHORITY_HOST``), the
  paths MSAL asks for: ``GET /{tenant}/v2.0/.well-known/openid-configuration``,
  ``POST /{tenant}/oauth2/v2.0/token`` (also ``/{tenant}/oauth2/token``, v1),
  ``GET /{tenant}/discovery/v2.0/keys`` and ``GET /common/discovery/instance``;
- managed identity in App Service style (``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER``):
  ``GET /openbatch/identity/token`` with the server's header secret (tokens of any configured
  identity, ``openbatch-default`` unless ``client_id``/``principal_id``/``mi_res_id`` names
  another), and ``GET /openbatch/identity/pools/{pool}/token`` with the pool's header secret (the
  node's endpoint: tokens of the pool's user-assigned identities only).

Errors are the shapes MSAL and azure-identity read (``error``/``error_description`` with AADSTS
codes; ``statusCode``/``message`` for managed identity). Secrets and tokens are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson

from openbatch.common.identity.directory import DEFAULT_IDENTITY, Identity
from openbatch.common.identity.service import IdentityService
from openbatch.common.identity.tokens import resource_of_scope

MSI_PREFIX = "/openbatch/identity/"
MAX_FORM = 64 * 1024
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
# pool id -> the resource ids of its user-assigned identities (None: no such pool)
PoolIdentities = Callable[[str, str], "list[str] | None"]


def pool_header(service: IdentityService, account: str, pool_id: str) -> str:
    """The ``IDENTITY_HEADER`` secret of one pool's nodes (derived: nothing to store)."""
    return hmac.new(service.directory.identity_header.encode(), f"pool\n{account}\n{pool_id}".encode(),
                    hashlib.sha256).hexdigest()


def pool_endpoint(batch_url: str, account: str, pool_id: str) -> str:
    return f"{batch_url.rstrip('/')}{MSI_PREFIX}pools/{account}/{pool_id}/token"


class IdentityEndpoints:
    """ASGI app in front of ``inner`` (the batch endpoint): answers the identity paths, passes the rest."""

    def __init__(self, service: IdentityService, inner: ASGIApp, pool_identities: PoolIdentities | None = None):
        self.service = service
        self.inner = inner
        self.pool_identities = pool_identities
        self.tenant_prefix = f"/{service.directory.tenant}/"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path.startswith(MSI_PREFIX) or path.startswith(self.tenant_prefix)
                or path == "/common/discovery/instance"):
            await self.inner(scope, receive, send)
            return
        status, body = await self._handle(scope, receive, path)
        headers = [(b"content-type", b"application/json; charset=utf-8"), (b"cache-control", b"no-store"),
                   (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: dict[str, Any], receive: Any, path: str) -> tuple[int, bytes]:
        method = scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        base = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
        tenant = self.service.directory.tenant
        if path.startswith(MSI_PREFIX) and method == "GET":
            return self._managed(path[len(MSI_PREFIX):], headers, query)
        if path == "/common/discovery/instance" and method == "GET":
            return 200, orjson.dumps(self._instance(base, tenant))
        rest = path[len(self.tenant_prefix):]
        if rest == "v2.0/.well-known/openid-configuration" and method == "GET":
            return 200, orjson.dumps(self._openid(base, tenant))
        if rest in ("discovery/v2.0/keys", "discovery/keys") and method == "GET":
            return 200, orjson.dumps({"keys": [self.service.key.jwk()]})
        if rest in ("oauth2/v2.0/token", "oauth2/token") and method == "POST":
            form = await _form(receive)
            return self._client_credentials(form, v1=rest == "oauth2/token")
        return 404, orjson.dumps({"error": "not_found", "error_description": "No such identity endpoint."})

    @staticmethod
    def _instance(base: str, tenant: str) -> dict[str, Any]:
        host = base.split("://", 1)[-1]
        return {"tenant_discovery_endpoint": f"{base}/{tenant}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}]}

    @staticmethod
    def _openid(base: str, tenant: str) -> dict[str, Any]:
        return {
            "issuer": f"{base}/{tenant}/v2.0",
            "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
            "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "tenant_region_scope": None,
            "cloud_instance_name": "microsoftonline.com",
        }

    def _client_credentials(self, form: dict[str, str], v1: bool) -> tuple[int, bytes]:
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "AADSTS70003: openbatch issues tokens by client "
                                "credentials only (grant_type=client_credentials).")
        client_id = form.get("client_id", "")
        if self.service.directory.by_client_id(client_id) is None:
            return _oauth_error(400, "unauthorized_client", f"AADSTS700016: Application with identifier "
                                f"'{client_id[:64]}' was not found in the directory.")
        identity = self.service.directory.client_secret_matches(client_id, form.get("client_secret", ""))
        if identity is None:
            return _oauth_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        if v1:
            resource = form.get("resource", "")
        else:
            scopes = [s for s in form.get("scope", "").split() if s not in ("openid", "profile", "offline_access")]
            resource = resource_of_scope(scopes[0]) if len(scopes) == 1 else ""
        if not resource:
            return _oauth_error(400, "invalid_scope", "AADSTS1002012: The provided value for scope is not valid: "
                                "client credentials take one scope, RESOURCE/.default.")
        token, expires = self._issue(identity, resource)
        lifetime = expires - self._now()
        return 200, orjson.dumps({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                                  "access_token": token})

    def _managed(self, rest: str, headers: dict[str, str], query: dict[str, str]) -> tuple[int, bytes]:
        secret = headers.get("x-identity-header", "")
        parts = rest.split("/")
        if rest == "token":
            expected = self.service.directory.identity_header
            allowed: list[Identity] | None = None
        elif len(parts) == 4 and parts[0] == "pools" and parts[3] == "token" and self.pool_identities is not None:
            account, pool_id = parts[1], parts[2]
            expected = pool_header(self.service, account, pool_id)
            ids = self.pool_identities(account, pool_id)
            allowed = [i for i in (self.service.directory.by_resource_id(r) for r in ids or []) if i is not None]
        else:
            return _msi_error(404, "No such managed identity endpoint.")
        if not expected or not hmac.compare_digest(secret.encode(), expected.encode()):
            return _msi_error(401, "The X-IDENTITY-HEADER header is missing or does not match.")
        resource = query.get("resource", "")
        if not resource:
            return _msi_error(400, "The resource parameter is required.")
        identity = self._pick(query, allowed)
        if identity is None:
            return _msi_error(400, "No managed identity matches the request (give client_id, principal_id or "
                              "mi_res_id of an identity this endpoint serves).")
        token, expires = self._issue(identity, resource)
        return 200, orjson.dumps({"access_token": token, "expires_on": str(expires), "resource": resource,
                                  "token_type": "Bearer", "client_id": identity.client_id})

    def _pick(self, query: dict[str, str], allowed: list[Identity] | None) -> Identity | None:
        directory = self.service.directory
        if query.get("client_id"):
            found = directory.by_client_id(query["client_id"])
        elif query.get("principal_id") or query.get("object_id"):
            oid = query.get("principal_id") or query.get("object_id") or ""
            found = next((i for i in directory.identities if i.object_id == oid), None)
        elif query.get("mi_res_id") or query.get("msi_res_id"):
            found = directory.by_resource_id(query.get("mi_res_id") or query.get("msi_res_id") or "")
        elif allowed is None:
            found = directory.by_name(DEFAULT_IDENTITY)
        else:  # a node with one user-assigned identity uses it; with several the caller must choose
            found = allowed[0] if len(allowed) == 1 else None
        if found is None or (allowed is not None and found not in allowed):
            return None
        return found

    def _issue(self, identity: Identity, resource: str) -> tuple[str, int]:
        return self.service.issuer.issue(identity.object_id, identity.client_id, resource)

    @staticmethod
    def _now() -> int:
        return int(time.time())


async def _form(receive: Any) -> dict[str, str]:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_FORM or not message.get("more_body"):
            break
    return dict(parse_qsl(body[:MAX_FORM].decode("utf-8", "replace"), keep_blank_values=True))


def _oauth_error(status: int, error: str, description: str) -> tuple[int, bytes]:
    return status, orjson.dumps({"error": error, "error_description": description, "error_codes": [
        int(description[6:description.index(":")]) if description.startswith("AADSTS") else 0]})


def _msi_error(status: int, message: str) -> tuple[int, bytes]:
    return status, orjson.dumps({"statusCode": status, "message": message})
