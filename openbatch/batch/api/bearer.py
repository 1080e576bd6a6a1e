"""Bearer tokens (Microsoft Entra ID) on the Batch endpoint.

The account is the first label of the Host header when it names an account served here (as in
``https://{account}.{region}.batch.azure.com``), else the first configured account. The token must
be openbatch's own (signature, issuer, lifetime with 5 minutes of skew, audience
``https://batch.core.windows.net/``; ``--oauth accept-any`` skips the signature, see
docs/identity.md), and its principal must hold Azure Batch Data Contributor, Contributor or Owner on
the account. A refused token is 401 ``AuthenticationFailed`` with the reason in
``AuthenticationErrorDetail`` and a ``WWW-Authenticate: Bearer`` challenge; a missing role is 403
``AuthorizationFailure``.
"""

from __future__ import annotations

from typing import ClassVar

from openbatch.batch.domain import errors as e
from openbatch.batch.domain.common import BatchContext
from openbatch.common.identity import (
    BATCH_RESOURCE,
    BATCH_ROLES,
    TokenError,
    batch_audiences,
    identity_service,
)

_MESSAGE = ("Server failed to authenticate the request. Make sure the value of Authorization header is formed "
            "correctly including the signature.")


class BearerRefused(e.BatchError):
    """401 with Azure's challenge (the renderer reads ``status`` and ``headers``)."""

    code: ClassVar[str] = "AuthenticationFailed"
    status = 401

    def __init__(self, detail: str, tenant: str, error_description: str) -> None:
        super().__init__(_MESSAGE, {"AuthenticationErrorDetail": detail})
        self.headers = [("WWW-Authenticate", f'Bearer authorization_uri="https://login.microsoftonline.com/{tenant}", '
                                             f'error="invalid_token", error_description="{error_description}", '
                                             f'resource_id="{BATCH_RESOURCE}"')]


class RoleMissing(e.BatchError):
    code: ClassVar[str] = "AuthorizationFailure"
    status = 403


def account_of(ctx: BatchContext, headers: dict[str, str]) -> str:
    host = headers.get("host", "").split(":", 1)[0].split(".", 1)[0].lower()
    return host if host in ctx.settings.accounts else next(iter(ctx.settings.accounts))


def authenticate_bearer(ctx: BatchContext, headers: dict[str, str], token: str) -> str:
    """The account a bearer request acts on, once its token and its principal's role are checked."""
    settings = ctx.settings
    service = identity_service(settings.data_dir, settings.oauth == "accept-any")
    try:
        principal = service.verifier.verify(token, batch_audiences())
    except TokenError as exc:
        raise BearerRefused(exc.detail, service.directory.tenant, exc.reason.replace("_", " ")) from None
    account = account_of(ctx, headers)
    if not principal.has_role(BATCH_ROLES, account):
        raise RoleMissing("This request is not authorized to perform this operation.",
                          {"AuthorizationErrorDetail": f"The principal {principal.object_id} holds none of "
                                                       f"{', '.join(sorted(BATCH_ROLES))} on account {account}."})
    return account
