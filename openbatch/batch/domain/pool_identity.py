"""Pools with user-assigned managed identities, and what their nodes give tasks.

On Azure a pool's ``identity`` is set through the management plane (ARM); openbatch also takes it
on the data-plane Add Pool (documented in docs/identity.md), since it has no other place to come
from without ARM. Each ``userAssignedIdentities[].resourceId`` must name a managed identity of the
server's identities file (``resourceId``); the pool stores it with its ``clientId`` and
``principalId``, as Azure's Get Pool shows them.

Tasks on every node get the node's managed-identity endpoint in App Service style
(``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER``, which azure-identity's ManagedIdentityCredential
reads; IMDS at 169.254.169.254 cannot be served without root routing), answering tokens of the
pool's identities only (node/trust.py gives them the server's certificate). A task's own environment
settings override these.
"""

from __future__ import annotations

from openbatch.batch.domain import errors as e
from openbatch.batch.domain.common import BatchContext, Doc
from openbatch.common.identity import identity_service
from openbatch.common.identity.endpoints import pool_endpoint, pool_header


def check(ctx: BatchContext, body: Doc) -> Doc | None:
    """The pool's ``identity`` as stored, or None; unknown identities are 400 InvalidPropertyValue."""
    identity = body.get("identity")
    if identity is None:
        return None
    if not isinstance(identity, dict):
        raise e.InvalidPropertyValue("The value provided for one of the properties in the request body is invalid.",
                                     {"PropertyName": "identity"})
    kind = identity.get("type", "UserAssigned")
    if kind in ("None", "none"):
        return None
    entries = identity.get("userAssignedIdentities")
    if kind != "UserAssigned" or not isinstance(entries, list) or not entries:
        raise e.InvalidPropertyValue("The pool identity must be of type UserAssigned with userAssignedIdentities.",
                                     {"PropertyName": "identity.type", "PropertyValue": str(kind)[:64]})
    settings = ctx.settings
    directory = identity_service(settings.data_dir, settings.oauth == "accept-any").directory
    stored = []
    for entry in entries:
        resource_id = str((entry or {}).get("resourceId") or "") if isinstance(entry, dict) else ""
        found = directory.by_resource_id(resource_id)
        if found is None:
            raise e.InvalidPropertyValue(
                "The user assigned identity is not one of this server's managed identities (add it to "
                "identity/identities.json with its resourceId).",
                {"PropertyName": "identity.userAssignedIdentities.resourceId", "PropertyValue": resource_id[:300]})
        stored.append({"resourceId": found.resource_id, "clientId": found.client_id, "principalId": found.object_id})
    return {"type": "UserAssigned", "userAssignedIdentities": stored}


_RUN_ENV: dict[tuple[str, str, str], list[Doc]] = {}


def run_environment(ctx: BatchContext, account: str, pool_id: str) -> list[Doc]:
    """The environment settings every task of a pool's nodes starts with (made once per pool)."""
    key = (str(ctx.settings.data_dir), account, pool_id)
    found = _RUN_ENV.get(key)
    if found is None:
        if len(_RUN_ENV) > 4096:
            _RUN_ENV.clear()
        found = _RUN_ENV[key] = _run_environment(ctx, account, pool_id)
    return found


def _run_environment(ctx: BatchContext, account: str, pool_id: str) -> list[Doc]:
    settings = ctx.settings
    service = identity_service(settings.data_dir, settings.oauth == "accept-any")
    values = {"IDENTITY_ENDPOINT": pool_endpoint(settings.batch_url, account, pool_id),
              "IDENTITY_HEADER": pool_header(service, account, pool_id)}
    return [{"name": name, "value": value} for name, value in values.items()]
