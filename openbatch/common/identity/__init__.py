"""Entra ID-style identities for openbatch: the local token issuer, the verifier Blob, Batch and
ARM share, and the directory of identities with their role assignments.

Stable interface (other layers import only these names):

- :class:`SigningKey` ``.load_or_create(data_dir)``; :class:`TokenIssuer` ``(key, tenant).issue(
  object_id, app_id, audience) -> (token, expires_on)``;
- :class:`TokenVerifier` ``(key, issuer, roles_of, accept_any).verify(token, audiences) ->
  Principal`` raising :class:`TokenError` (``.reason`` in :data:`REASONS`, ``.detail``);
- :func:`storage_audiences` ``(account)``, :func:`batch_audiences`, :func:`arm_audiences`;
- :class:`Principal` ``.has_role(roles, account)``;
- :class:`Directory` ``.load_or_create(data_dir)``, :class:`Identity`; role names and sets;
- :class:`IdentityService`: all of the above for one data dir (``issuer``, ``verifier``,
  ``directory``); :func:`identity_service` ``(data_dir, accept_any)``: the one of this process.
"""

from __future__ import annotations

from openbatch.common.identity.directory import (
    BATCH_CONTRIBUTOR,
    BATCH_ROLES,
    BLOB_READ_ROLES,
    BLOB_WRITE_ROLES,
    CONTRIBUTOR,
    DEFAULT_IDENTITY,
    OWNER,
    STORAGE_CONTRIBUTOR,
    STORAGE_OWNER,
    STORAGE_READER,
    Directory,
    DirectoryError,
    Identity,
    add_identity,
)
from openbatch.common.identity.service import IdentityService, identity_service
from openbatch.common.identity.tokens import (
    ARM_RESOURCE,
    BATCH_RESOURCE,
    CLOCK_SKEW,
    DEFAULT_TENANT,
    REASONS,
    STORAGE_RESOURCE,
    Principal,
    SigningKey,
    TokenError,
    TokenIssuer,
    TokenVerifier,
    arm_audiences,
    batch_audiences,
    bearer_challenge,
    resource_of_scope,
    storage_audiences,
)

__all__ = [
    "ARM_RESOURCE", "BATCH_CONTRIBUTOR", "BATCH_RESOURCE", "BATCH_ROLES", "BLOB_READ_ROLES", "BLOB_WRITE_ROLES",
    "CLOCK_SKEW", "CONTRIBUTOR", "DEFAULT_IDENTITY", "DEFAULT_TENANT", "OWNER", "REASONS", "STORAGE_CONTRIBUTOR",
    "STORAGE_OWNER", "STORAGE_READER", "STORAGE_RESOURCE", "Directory", "DirectoryError", "Identity",
    "IdentityService", "Principal", "SigningKey", "TokenError", "TokenIssuer", "TokenVerifier", "add_identity",
    "arm_audiences", "batch_audiences", "bearer_challenge", "identity_service", "resource_of_scope", "storage_audiences",
]
