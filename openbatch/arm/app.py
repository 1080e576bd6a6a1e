"""The management plane of Microsoft.Batch (Azure Resource Manager, path style) on ``--arm-port``.

``/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Batch/batchAccounts/{name}`` and
below: batch accounts (create and delete are long-running as on Azure: 202 with a ``Location`` to
poll; get, list by group and subscription, update, listKeys, regenerateKeys, syncAutoStorageKeys),
applications and their versions (create hands out a SAS ``storageUrl`` into the Blob endpoint,
activate, default version), pools in the ARM shape (arm/pools.py) over the same pools the Batch
data plane serves. How ARM accounts map to the server's accounts: arm/accounts.py.

Every request carries a bearer token for ``https://management.azure.com/`` (or
``https://management.core.windows.net/``) that openbatch's own issuer signed
(openbatch/common/identity); the identity needs the Owner or Contributor role for the account (or
``*``). Errors have ARM's shape ``{"error": {"code", "message"}}``; the Batch domain's errors keep
their codes and statuses.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

from openbatch.arm import pools as armpools
from openbatch.arm.accounts import AccountRegistry, ArmAccount
from openbatch.batch.domain import applications as apps
from openbatch.batch.domain import errors as e
from openbatch.batch.domain import pools
from openbatch.batch.domain.common import BatchContext, now_iso
from openbatch.batch.wire.errors import status_of
from openbatch.common.identity import (
    CONTRIBUTOR,
    OWNER,
    IdentityService,
    TokenError,
    arm_audiences,
    identity_service,
)
from openbatch.config import Settings

log = logging.getLogger("openbatch.arm")

Doc = dict[str, Any]
MAX_BODY = 4 * 1024 * 1024
_ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")
_MANAGE_ROLES = frozenset({OWNER, CONTRIBUTOR})
_TOKEN_CODES = {"expired": "ExpiredAuthenticationToken", "audience": "InvalidAuthenticationTokenAudience"}


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or []


@dataclass
class ArmRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    base_url: str
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Doc:
        if not self.body:
            return {}
        try:
            doc = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise ArmError(400, "InvalidRequestContent", "The request content is not valid JSON.") from None
        if not isinstance(doc, dict):
            raise ArmError(400, "InvalidRequestContent", "The request content must be a JSON object.")
        return doc

    @property
    def sub(self) -> str:
        return self.params["sub"]


Reply = tuple[int, Doc | None, list[tuple[str, str]]]
Handler = Callable[["ArmService", ArmRequest], Awaitable[Reply]]

_ACCT = "/subscriptions/{sub}/resourcegroups/{rg}/providers/microsoft.batch/batchaccounts/{name}"


def _pattern(text: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(text)) + "/?$", re.IGNORECASE)


def _json(status: int, doc: Doc | None, headers: list[tuple[str, str]] | None = None) -> Reply:
    return status, doc, headers or []


class ArmService:
    """See the module docstring. ``batch`` is the server's BatchService (its context and stores)."""

    def __init__(self, settings: Settings, batch: Any, identity: IdentityService | None = None):
        self.settings = settings
        self.batch = batch
        # the server's one issuer and verifier (--oauth accept-any: tokens of other issuers too, roles unchecked)
        self.identity = identity or identity_service(settings.data_dir, settings.oauth == "accept-any")
        self.registry = AccountRegistry(settings)
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = [
            (method, _pattern(path), handler) for method, path, handler in _ROUTES]

    @property
    def ctx(self) -> BatchContext:
        ctx: BatchContext = self.batch.ctx
        return ctx

    async def start(self) -> None:
        """Nothing to recover: the accounts were loaded when the service was built."""

    async def stop(self) -> None:
        """Nothing to flush: every change was written before it was answered."""

    # --- ASGI -------------------------------------------------------------------------------------

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host") or f"{self.settings.host}"
        req = ArmRequest(method=scope["method"], path=scope["path"], query=_query(scope.get("query_string", b"")),
                         headers=headers, body=b"", base_url=f"{scope.get('scheme', 'http')}://{host}")
        request_id = str(uuid.uuid4())
        try:
            req.body = await _read_body(receive)
            status, doc, extra = await self._handle(req)
        except ArmError as exc:
            status, doc, extra = exc.status, _error(exc.code, exc.message), exc.headers
        except e.BatchError as exc:
            status, doc, extra = status_of(exc), _error(exc.code, exc.message), []
        except Exception:  # a bug: logged, answered as ARM would
            log.exception("unhandled error in %s %s", req.method, req.path)
            status, doc, extra = 500, _error("InternalServerError", "The server encountered an internal error."), []
        body = orjson.dumps(doc) if doc is not None else b""
        out = [(b"x-ms-request-id", request_id.encode()), (b"x-ms-correlation-request-id", request_id.encode()),
               (b"content-length", str(len(body)).encode())]
        if doc is not None:
            out.append((b"content-type", b"application/json; charset=utf-8"))
        out += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, req: ArmRequest) -> Reply:
        principal = self._authenticate(req)
        matched = False
        for method, regex, handler in self.routes:
            found = regex.match(req.path)
            if found is None:
                continue
            matched = True
            if method == req.method:
                req.params = found.groupdict()
                if not req.query.get("api-version"):
                    raise ArmError(400, "MissingApiVersionParameter",
                                   "The api-version query parameter (?api-version=) is required for all requests.")
                scope = req.params.get("name", "*")
                if not principal.has_role(_MANAGE_ROLES, scope):
                    raise ArmError(403, "AuthorizationFailed",
                                   f"The client '{principal.object_id}' does not have authorization to perform "
                                   f"action '{req.method}' over scope '{req.path}'.")
                return await handler(self, req)
        if matched:
            raise ArmError(405, "MethodNotAllowed", f"The HTTP method '{req.method}' is not supported.")
        raise ArmError(404, "InvalidResourceType", "The resource type could not be found in the namespace "
                                                   "'Microsoft.Batch' for api version this server serves.")

    def _authenticate(self, req: ArmRequest) -> Any:
        value = req.headers.get("authorization", "")
        challenge = [("www-authenticate", f'Bearer authorization_uri="https://login.microsoftonline.com/'
                                          f'{self.identity.directory.tenant}", error="invalid_token", '
                                          f'error_description="The authentication failed because of missing '
                                          f"'Authorization' header.\"")]
        if not value:
            raise ArmError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.",
                           challenge)
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.", challenge)
        try:
            return self.identity.verifier.verify(token.strip(), arm_audiences())
        except TokenError as exc:
            code = _TOKEN_CODES.get(exc.reason, "InvalidAuthenticationToken")
            raise ArmError(401, code, f"The access token is invalid: {exc.detail}", challenge) from None

    # --- accounts -----------------------------------------------------------------------------------

    def account(self, req: ArmRequest) -> ArmAccount:
        found = self.registry.find(req.params["rg"], req.params["name"])
        if found is None:
            raise ArmError(404, "ResourceNotFound", f"The Resource 'Microsoft.Batch/batchAccounts/{req.params['name']}' "
                                                    f"under resource group '{req.params['rg']}' was not found.")
        return found

    def account_id(self, sub: str, account: ArmAccount) -> str:
        return f"/subscriptions/{sub}/resourceGroups/{account.resource_group}/providers/Microsoft.Batch/" \
               f"batchAccounts/{account.name}"

    def account_view(self, sub: str, account: ArmAccount) -> Doc:
        endpoint = self.settings.batch_url.split("://", 1)[-1]
        storage_group = account.storage_group or account.resource_group
        return {
            "id": self.account_id(sub, account), "name": account.name, "type": "Microsoft.Batch/batchAccounts",
            "location": account.location, "tags": account.tags, "identity": {"type": "None"},
            "properties": {
                "accountEndpoint": endpoint, "provisioningState": "Succeeded", "poolAllocationMode": "BatchService",
                "publicNetworkAccess": "Enabled",
                "autoStorage": {"storageAccountId": f"/subscriptions/{sub}/resourceGroups/{storage_group}/providers/"
                                                    f"Microsoft.Storage/storageAccounts/{account.name}",
                                "lastKeySync": account.last_key_sync or None, "authenticationMode": "StorageKeys"},
                "dedicatedCoreQuotaPerVMFamilyEnforced": False, "poolQuota": pools.MAX_POOL_NODES,
                "allowedAuthenticationModes": ["SharedKey", "AAD"],
            },
        }


async def _read_body(receive: Any) -> bytes:
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise ArmError(413, "RequestEntityTooLarge", "The request content is too large.")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _query(raw: bytes) -> dict[str, str]:
    return {k.lower(): v for k, v in parse_qsl(raw.decode("latin-1"), keep_blank_values=True)}


def _error(code: str, message: str) -> Doc:
    return {"error": {"code": code, "message": message}}


def _location(req: ArmRequest, resource_path: str, operation: str) -> list[tuple[str, str]]:
    url = f"{req.base_url}{resource_path}/operationResults/{operation}?api-version={req.query['api-version']}"
    return [("location", url), ("retry-after", "0")]


# --- account handlers ---------------------------------------------------------------------------------


def _storage_group(svc: ArmService, name: str, props: Doc) -> str:
    """The resource group autoStorage names; the storage account must be the account's own (module docstring)."""
    auto = props.get("autoStorage")
    if not isinstance(auto, dict) or not auto.get("storageAccountId"):
        return ""
    parts = str(auto["storageAccountId"]).strip("/").split("/")
    lowered = [p.lower() for p in parts]
    if len(parts) != 8 or lowered[4:7] != ["providers", "microsoft.storage", "storageaccounts"] or parts[7] != name:
        raise ArmError(400, "InvalidRequestBody", "On openbatch an account's auto-storage account is the storage "
                                                 f"account of the same name: storageAccountId must end in "
                                                 f"/providers/Microsoft.Storage/storageAccounts/{name}.")
    return parts[3]


async def create_account(svc: ArmService, req: ArmRequest) -> Reply:
    name, group = req.params["name"], req.params["rg"]
    body = req.json()
    if not _ACCOUNT_NAME.match(name):
        raise ArmError(400, "AccountNameInvalid", f"The account name '{name}' must be 3-24 lowercase letters or digits.")
    if not isinstance(body.get("location"), str) or not body["location"]:
        raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
    props: Doc = body["properties"] if isinstance(body.get("properties"), dict) else {}
    storage_group = _storage_group(svc, name, props)
    existing = svc.registry.accounts.get(name)
    if existing is not None and existing.resource_group.lower() != group.lower():
        raise ArmError(409, "AccountNameAlreadyTaken", f"The account name '{name}' is already taken.")
    tags = {str(k): str(v) for k, v in (body.get("tags") or {}).items()}
    if existing is None:
        account = svc.registry.create(group, name, body["location"], tags, storage_group)
    else:
        existing.tags, existing.storage_group = tags, storage_group or existing.storage_group
        svc.registry.update(existing)
        account = existing
    path = svc.account_id(req.sub, account)
    return _json(202, None, _location(req, path, "create"))


async def account_operation(svc: ArmService, req: ArmRequest) -> Reply:
    """The Location a long-running create or delete answered with: 200 when it is done (both are done
    by the time they are answered; a pool's deletion is not, see pool_operation)."""
    operation = req.params["op"].lower()
    found = svc.registry.find(req.params["rg"], req.params["name"])
    if operation == "delete":
        return _json(200, None) if found is None else _json(202, None, _location(req, req.path.rsplit(
            "/operationResults", 1)[0], "delete"))
    if found is None:
        return _json(404, _error("ResourceNotFound", "The account does not exist."))
    return _json(200, svc.account_view(req.sub, found))


async def get_account(svc: ArmService, req: ArmRequest) -> Reply:
    return _json(200, svc.account_view(req.sub, svc.account(req)))


async def update_account(svc: ArmService, req: ArmRequest) -> Reply:
    account = svc.account(req)
    body = req.json()
    if isinstance(body.get("tags"), dict):
        account.tags = {str(k): str(v) for k, v in body["tags"].items()}
    props: Doc = body["properties"] if isinstance(body.get("properties"), dict) else {}
    group = _storage_group(svc, account.name, props)
    if group:
        account.storage_group = group
    svc.registry.update(account)
    return _json(200, svc.account_view(req.sub, account))


async def delete_account(svc: ArmService, req: ArmRequest) -> Reply:
    account = svc.account(req)
    if not account.created:
        raise ArmError(409, "OperationNotAllowed", "A configured account (--account, OPENBATCH_ACCOUNTS, the "
                                                   "development account) cannot be deleted through ARM.")
    ctx = svc.ctx
    if ctx.store.all("pool", account.name) or ctx.store.all("job", account.name):
        raise ArmError(409, "AccountNotEmpty", "openbatch deletes an account only when it has no pools and no jobs.")
    for app in apps.list_applications(ctx, account.name):
        apps.delete_application(ctx, account.name, str(app["id"]))
    await ctx.store.flush()
    svc.registry.delete(account.name)
    return _json(202, None, _location(req, svc.account_id(req.sub, account), "delete"))


async def list_accounts(svc: ArmService, req: ArmRequest) -> Reply:
    group = req.params.get("rg")
    return _json(200, {"value": [svc.account_view(req.sub, a) for a in svc.registry.in_group(group)]})


def _keys(svc: ArmService, account: ArmAccount) -> Doc:
    primary, secondary = svc.registry.keys(account.name)
    return {"accountName": account.name, "primary": primary, "secondary": secondary}


async def list_keys(svc: ArmService, req: ArmRequest) -> Reply:
    return _json(200, _keys(svc, svc.account(req)))


async def regenerate_key(svc: ArmService, req: ArmRequest) -> Reply:
    account = svc.account(req)
    which = str(req.json().get("keyName", "")).lower()
    if which not in ("primary", "secondary"):
        raise ArmError(400, "InvalidRequestBody", "keyName must be Primary or Secondary.")
    if not account.created:
        raise ArmError(409, "OperationNotAllowed", "The keys of a configured account are configuration; "
                                                   "they cannot be regenerated through ARM.")
    svc.registry.regenerate(account.name, which)
    return _json(200, _keys(svc, account))


async def sync_auto_storage_keys(svc: ArmService, req: ArmRequest) -> Reply:
    account = svc.account(req)
    account.last_key_sync = now_iso()
    svc.registry.update(account)
    return _json(204, None)


# --- applications -------------------------------------------------------------------------------------


def _app_view(svc: ArmService, req: ArmRequest, doc: Doc) -> Doc:
    account = svc.account(req)
    return {"id": f"{svc.account_id(req.sub, account)}/applications/{doc['id']}", "name": doc["id"],
            "type": "Microsoft.Batch/batchAccounts/applications",
            "properties": {"displayName": doc.get("displayName"), "allowUpdates": doc.get("allowUpdates", True),
                           "defaultVersion": doc.get("defaultVersion")}}


def _version_view(svc: ArmService, req: ArmRequest, app: str, doc: Doc, upload: bool = True) -> Doc:
    account = svc.account(req)
    props: Doc = {"state": doc["state"], "format": doc.get("format"),
                  "lastActivationTime": doc.get("lastActivationTime")}
    if upload:
        props["storageUrl"], props["storageUrlExpiry"] = apps.upload_location(svc.ctx, account.name, doc)
    return {"id": f"{svc.account_id(req.sub, account)}/applications/{app}/versions/{doc['version']}",
            "name": doc["version"], "type": "Microsoft.Batch/batchAccounts/applications/versions",
            "properties": props}


def _refuse_pool_identity(req: ArmRequest) -> None:
    """A pool's ``identity`` is taken on the data plane only (never stored and ignored here)."""
    identity = req.json().get("identity")
    if identity is not None and str((identity or {}).get("type", "None")).lower() != "none":
        raise ArmError(400, "InvalidRequestBody", "openbatch takes a pool's identity on the Batch data plane "
                                                 "(Add Pool with identity), not through the management plane.")


def _props(req: ArmRequest) -> Doc:
    body = req.json()
    props = body.get("properties", {})
    if not isinstance(props, dict):
        raise ArmError(400, "InvalidRequestBody", "properties must be an object.")
    return props


async def put_application(svc: ArmService, req: ArmRequest) -> Reply:
    account = svc.account(req)
    doc = apps.put_application(svc.ctx, account.name, req.params["app"], _props(req), create=True)
    await svc.ctx.store.flush()
    return _json(200, _app_view(svc, req, doc))


async def patch_application(svc: ArmService, req: ArmRequest) -> Reply:
    account = svc.account(req)
    doc = apps.put_application(svc.ctx, account.name, req.params["app"], _props(req), create=False)
    await svc.ctx.store.flush()
    return _json(200, _app_view(svc, req, doc))


async def get_application(svc: ArmService, req: ArmRequest) -> Reply:
    account = svc.account(req)
    return _json(200, _app_view(svc, req, apps.get_application(svc.ctx, account.name, req.params["app"])))


async def list_applications(svc: ArmService, req: ArmRequest) -> Reply:
    account = svc.account(req)
    return _json(200, {"value": [_app_view(svc, req, d) for d in apps.list_applications(svc.ctx, account.name)]})


async def delete_application(svc: ArmService, req: ArmRequest) -> Reply:
    account = svc.account(req)
    apps.delete_application(svc.ctx, account.name, req.params["app"])
    await svc.ctx.store.flush()
    return _json(200, None)


async def put_version(svc: ArmService, req: ArmRequest) -> Reply:
    account = svc.account(req)
    doc = apps.create_version(svc.ctx, account.name, req.params["app"], req.params["version"])
    await svc.ctx.store.flush()
    return _json(200, _version_view(svc, req, req.params["app"], doc))


async def get_version(svc: ArmService, req: ArmRequest) -> Reply:
    account = svc.account(req)
    doc = apps.get_version(svc.ctx, account.name, req.params["app"], req.params["version"])
    return _json(200, _version_view(svc, req, req.params["app"], doc))


async def list_versions(svc: ArmService, req: ArmRequest) -> Reply:
    account = svc.account(req)
    apps.get_application(svc.ctx, account.name, req.params["app"])
    docs = apps.versions(svc.ctx, account.name, req.params["app"])
    return _json(200, {"value": [_version_view(svc, req, req.params["app"], d) for d in docs]})


async def activate_version(svc: ArmService, req: ArmRequest) -> Reply:
    account = svc.account(req)
    fmt = req.json().get("format")
    if not isinstance(fmt, str):
        raise ArmError(400, "InvalidRequestBody", "format is required (zip).")
    doc = apps.activate(svc.ctx, account.name, req.params["app"], req.params["version"], fmt)
    await svc.ctx.store.flush()
    return _json(200, _version_view(svc, req, req.params["app"], doc, upload=False))


async def delete_version(svc: ArmService, req: ArmRequest) -> Reply:
    account = svc.account(req)
    apps.delete_version(svc.ctx, account.name, req.params["app"], req.params["version"])
    await svc.ctx.store.flush()
    return _json(200, None)


# --- pools --------------------------------------------------------------------------------------------


def _pool_view(svc: ArmService, req: ArmRequest, doc: Doc) -> Doc:
    base = svc.account_id(req.sub, svc.account(req))
    return armpools.from_data_plane(doc, f"{base}/pools/{doc['id']}", f"{base}/applications")


async def create_pool(svc: ArmService, req: ArmRequest) -> Reply:
    """PUT: a new pool, or (as ARM's PUT is create-or-update) the given properties applied to the
    existing one; ``If-None-Match: *`` only creates (409 PoolExists), ``If-Match`` only updates (412)."""
    account = svc.account(req)
    _refuse_pool_identity(req)
    pool_id = req.params["pool"]
    existing = svc.ctx.store.get("pool", account.name, pool_id)
    if_match, if_none_match = req.headers.get("if-match"), req.headers.get("if-none-match")
    if existing is not None and if_none_match == "*":
        raise e.PoolExists("The specified pool already exists.")
    if if_match is not None and (existing is None or if_match not in ("*", existing.get("eTag"))):
        raise ArmError(412, "PreconditionFailed", "The pool does not exist or its ETag does not match If-Match.")
    if existing is not None:
        return await _apply_pool_properties(svc, req, account, pool_id, _props(req))
    body = armpools.to_data_plane(pool_id, _props(req))
    doc = await pools.add_pool(svc.ctx, account.name, body, svc.settings.batch_url)
    return _json(200, _pool_view(svc, req, doc))


async def get_pool(svc: ArmService, req: ArmRequest) -> Reply:
    account = svc.account(req)
    return _json(200, _pool_view(svc, req, pools.get_pool(svc.ctx, account.name, req.params["pool"])))


async def list_pools(svc: ArmService, req: ArmRequest) -> Reply:
    account = svc.account(req)
    docs = sorted(svc.ctx.store.all("pool", account.name), key=lambda d: str(d["id"]).lower())
    return _json(200, {"value": [_pool_view(svc, req, d) for d in docs]})


async def update_pool(svc: ArmService, req: ArmRequest) -> Reply:
    """PATCH: the properties given replace the pool's; scaleSettings resize it or (re)set its formula."""
    account = svc.account(req)
    _refuse_pool_identity(req)
    return await _apply_pool_properties(svc, req, account, req.params["pool"], _props(req))


async def _apply_pool_properties(svc: ArmService, req: ArmRequest, account: ArmAccount, pool_id: str,
                                 props: Doc) -> Reply:
    """Properties the pool already has as given are left alone (so a PUT of the same definition
    over a pool with nodes succeeds); the others are patched, the scale settings applied."""
    doc = pools.get_pool(svc.ctx, account.name, pool_id)
    body = armpools.unchanged_dropped(doc, armpools.to_data_plane(
        None, {k: v for k, v in props.items() if k != "scaleSettings"}))
    if body:
        await pools.patch_pool(svc.ctx, account.name, pool_id, body)
    scale: Doc = {}
    if props.get("scaleSettings") is not None:
        scale = armpools.scale_change(doc, armpools.to_data_plane(None, {"scaleSettings": props["scaleSettings"]}))
    if scale.get("enableAutoScale"):
        await pools.enable_autoscale(svc.ctx, account.name, pool_id, scale)
    elif scale:
        if doc.get("enableAutoScale"):
            await pools.disable_autoscale(svc.ctx, account.name, pool_id)
        await pools.resize_pool(svc.ctx, account.name, pool_id, scale)
    return _json(200, _pool_view(svc, req, pools.get_pool(svc.ctx, account.name, pool_id)))


async def delete_pool(svc: ArmService, req: ArmRequest) -> Reply:
    account = svc.account(req)
    pool_id = req.params["pool"]
    await pools.delete_pool(svc.ctx, account.name, pool_id)
    path = f"{svc.account_id(req.sub, account)}/pools/{pool_id}"
    return _json(202, None, _location(req, path, "delete"))


async def pool_operation(svc: ArmService, req: ArmRequest) -> Reply:
    account = svc.account(req)
    if svc.ctx.store.get("pool", account.name, req.params["pool"]) is None:
        return _json(200, None)
    return _json(202, None, [("location", f"{req.base_url}{req.path}?api-version={req.query['api-version']}"),
                             ("retry-after", "1")])


async def stop_resize(svc: ArmService, req: ArmRequest) -> Reply:
    account = svc.account(req)
    doc = await pools.stop_resize_pool(svc.ctx, account.name, req.params["pool"])
    return _json(200, _pool_view(svc, req, doc))


async def disable_autoscale(svc: ArmService, req: ArmRequest) -> Reply:
    account = svc.account(req)
    doc = await pools.disable_autoscale(svc.ctx, account.name, req.params["pool"])
    return _json(200, _pool_view(svc, req, doc))


_APP = _ACCT + "/applications/{app}"
_POOL = _ACCT + "/pools/{pool}"
_ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/subscriptions/{sub}/providers/microsoft.batch/batchaccounts", list_accounts),
    ("GET", "/subscriptions/{sub}/resourcegroups/{rg}/providers/microsoft.batch/batchaccounts", list_accounts),
    ("PUT", _ACCT, create_account),
    ("GET", _ACCT, get_account),
    ("PATCH", _ACCT, update_account),
    ("DELETE", _ACCT, delete_account),
    ("GET", _ACCT + "/operationresults/{op}", account_operation),
    ("POST", _ACCT + "/listkeys", list_keys),
    ("POST", _ACCT + "/regeneratekeys", regenerate_key),
    ("POST", _ACCT + "/syncautostoragekeys", sync_auto_storage_keys),
    ("GET", _ACCT + "/applications", list_applications),
    ("PUT", _APP, put_application),
    ("PATCH", _APP, patch_application),
    ("GET", _APP, get_application),
    ("DELETE", _APP, delete_application),
    ("GET", _APP + "/versions", list_versions),
    ("PUT", _APP + "/versions/{version}", put_version),
    ("GET", _APP + "/versions/{version}", get_version),
    ("DELETE", _APP + "/versions/{version}", delete_version),
    ("POST", _APP + "/versions/{version}/activate", activate_version),
    ("GET", _ACCT + "/pools", list_pools),
    ("PUT", _POOL, create_pool),
    ("GET", _POOL, get_pool),
    ("PATCH", _POOL, update_pool),
    ("DELETE", _POOL, delete_pool),
    ("GET", _POOL + "/operationresults/{op}", pool_operation),
    ("POST", _POOL + "/stopresize", stop_resize),
    ("POST", _POOL + "/disableautoscale", disable_autoscale),
]


def build_arm_service(settings: Settings, batch: Any) -> ArmService:
    return ArmService(settings, batch)
