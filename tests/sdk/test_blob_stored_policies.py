"""Stored access policies through azure-storage-blob 12: set_container_access_policy, then service
SAS tokens naming a policy (policy_id / si=) get their start, expiry and permissions from it, follow
its changes and are revoked with it.

Azure's rules ("Define a stored access policy"): at most 5 per container; each of start, expiry and
permissions may be given on the policy or on the SAS, never on both; removing the policy revokes
every SAS bound to it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.storage.blob import (
    AccessPolicy,
    BlobClient,
    BlobSasPermissions,
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)

from tests.blob.raw import request
from tests.helpers.server import LiveServer


@pytest.fixture
def container(service: BlobServiceClient) -> Iterator[ContainerClient]:
    c = service.create_container(f"p{uuid.uuid4().hex[:16]}")
    c.upload_blob("data.txt", b"payload")
    yield c
    c.delete_container()


def _now() -> datetime:
    return datetime.now(UTC)


def _blob_with(server: LiveServer, c: ContainerClient, token: str, name: str = "data.txt") -> BlobClient:
    return BlobClient(server.blob_url, c.container_name, name, credential=token)


def _code(call: object, *args: object, **kwargs: object) -> tuple[int | None, str | None]:
    assert callable(call)
    with pytest.raises(HttpResponseError) as e:
        call(*args, **kwargs)
    return e.value.status_code, e.value.error_code


def _token(server: LiveServer, c: ContainerClient, policy: str, **kwargs: Any) -> str:
    return generate_blob_sas(server.account, c.container_name, "data.txt", account_key=server.key,
                             policy_id=policy, **kwargs)


def test_a_sas_takes_its_terms_from_the_policy(server: LiveServer, container: ContainerClient) -> None:
    container.set_container_access_policy({"readers": AccessPolicy(
        permission=ContainerSasPermissions(read=True, list=True), start=_now() - timedelta(minutes=5),
        expiry=_now() + timedelta(hours=1))})
    blob = _blob_with(server, container, _token(server, container, "readers"))
    assert blob.download_blob().readall() == b"payload"
    assert _code(blob.upload_blob, b"x", overwrite=True) == (403, "AuthorizationPermissionMismatch")
    listing = generate_container_sas(server.account, container.container_name, account_key=server.key,
                                     policy_id="readers")
    lister = ContainerClient(server.blob_url, container.container_name, credential=listing)
    assert [b.name for b in lister.list_blobs()] == ["data.txt"]
    policies = container.get_container_access_policy()["signed_identifiers"]
    assert [(p.id, p.access_policy.permission) for p in policies] == [("readers", "rl")]


def test_changing_and_removing_the_policy_changes_and_revokes_the_sas(server: LiveServer,
                                                                    container: ContainerClient) -> None:
    expiry = _now() + timedelta(hours=1)
    container.set_container_access_policy({"team": AccessPolicy(permission="r", expiry=expiry)})
    blob = _blob_with(server, container, _token(server, container, "team"))
    assert _code(blob.upload_blob, b"new", overwrite=True) == (403, "AuthorizationPermissionMismatch")
    container.set_container_access_policy({"team": AccessPolicy(permission="rw", expiry=expiry)})
    blob.upload_blob(b"new", overwrite=True)  # the same SAS, new terms
    container.set_container_access_policy({})
    with pytest.raises(ClientAuthenticationError) as e:
        blob.download_blob()
    assert e.value.error_code == "AuthenticationFailed"
    container.set_container_access_policy({"team": AccessPolicy(permission="r", expiry=_now() - timedelta(hours=1))})
    assert _code(blob.download_blob) == (403, "AuthenticationFailed")  # the policy has expired


def test_terms_may_be_split_but_not_given_twice(server: LiveServer, container: ContainerClient) -> None:
    container.set_container_access_policy({"perm-only": AccessPolicy(permission="r"),
                                           "expiry-only": AccessPolicy(expiry=_now() + timedelta(hours=1))})
    split = _token(server, container, "perm-only", expiry=_now() + timedelta(hours=1))
    assert _blob_with(server, container, split).download_blob().readall() == b"payload"
    other = _token(server, container, "expiry-only", permission=BlobSasPermissions(read=True))
    assert _blob_with(server, container, other).download_blob().readall() == b"payload"
    twice = _token(server, container, "perm-only", permission=BlobSasPermissions(read=True),
                   expiry=_now() + timedelta(hours=1))
    assert _code(_blob_with(server, container, twice).download_blob) == (403, "AuthenticationFailed")
    no_expiry = _token(server, container, "perm-only")
    assert _code(_blob_with(server, container, no_expiry).download_blob) == (403, "AuthenticationFailed")
    unknown = _token(server, container, "nobody", permission=BlobSasPermissions(read=True),
                     expiry=_now() + timedelta(hours=1))
    assert _code(_blob_with(server, container, unknown).download_blob) == (403, "AuthenticationFailed")


def test_a_copy_source_sas_may_name_a_policy(server: LiveServer, container: ContainerClient) -> None:
    container.set_container_access_policy({"copy": AccessPolicy(permission="r", expiry=_now() + timedelta(hours=1))})
    source = f"{container.url}/data.txt?{_token(server, container, 'copy')}"
    target = container.get_blob_client("copied.txt")
    target.start_copy_from_url(source)
    assert target.download_blob().readall() == b"payload"


def test_acl_bodies_are_checked(server: LiveServer, container: ContainerClient) -> None:
    path, query = f"/{container.container_name}", "restype=container&comp=acl"
    six = "".join(f"<SignedIdentifier><Id>p{i}</Id></SignedIdentifier>" for i in range(6))
    r = request(server, "PUT", path, query=query, body=f"<SignedIdentifiers>{six}</SignedIdentifiers>".encode())
    assert (r.status, r.code) == (400, "InvalidXmlDocument")
    for policy in ("<Permission>rq</Permission>", "<Expiry>next tuesday</Expiry>"):
        body = f"<SignedIdentifiers><SignedIdentifier><Id>p</Id><AccessPolicy>{policy}</AccessPolicy>" \
               "</SignedIdentifier></SignedIdentifiers>"
        r = request(server, "PUT", path, query=query, body=body.encode())
        assert (r.status, r.code) == (400, "InvalidXmlNodeValue"), policy
    assert container.get_container_access_policy()["signed_identifiers"] == []
