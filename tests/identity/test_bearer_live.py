"""Bearer tokens on a live server over HTTPS: azure-identity's credentials, and every refusal."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from azure.batch import BatchClient
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
from azure.identity import ClientSecretCredential, DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.blob import BlobClient, BlobSasPermissions, BlobServiceClient, generate_blob_sas

from openbatch.common.identity import IdentityService
from tests.helpers.server import LiveServer
from tests.identity.conftest import IDENTITIES

CONTAINER = "bearer"
_IDS = {i["name"]: i for i in IDENTITIES}
_TRUST = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
_IDENTITY = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "AZURE_TENANT_ID", "AZURE_AUTHORITY_HOST")


@pytest.fixture()
def environ(env_vars: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Only what `openbatch env` prints for identity and trust, as a user's shell would have it."""
    for name in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_USERNAME", "MSI_ENDPOINT", "IMDS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name in (*_TRUST, *_IDENTITY):
        monkeypatch.setenv(name, env_vars[name])
    yield env_vars


@pytest.fixture(scope="module")
def container(https_server: LiveServer) -> str:
    service = BlobServiceClient(https_server.blob_url, credential=https_server.key,
                                connection_verify=str(https_server.data_dir / "tls" / "ca.pem"))
    service.create_container(CONTAINER)
    service.get_blob_client(CONTAINER, "seed.txt").upload_blob(b"seed")
    return CONTAINER


def _client(https_server: LiveServer) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=https_server.data_dir / "tls" / "ca.pem"),
                        timeout=30)


def _token(identity: IdentityService, who: str, audience: str, **kw: int) -> str:
    entry = _IDS[who]
    token, _ = identity.issuer.issue(entry["objectId"], entry["clientId"], audience, **kw)
    return token


def _blob(https_server: LiveServer, token: str, method: str = "GET", path: str = f"/{CONTAINER}/seed.txt",
          content: bytes | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "x-ms-version": "2023-11-03", "x-ms-blob-type": "BlockBlob"}
    with _client(https_server) as client:
        return client.request(method, https_server.blob_url + path, headers=headers, content=content)


def _detail(response: httpx.Response) -> str:
    text = response.text
    return text.split("<AuthenticationErrorDetail>", 1)[-1].split("</AuthenticationErrorDetail>", 1)[0]


def test_env_prints_the_identity_endpoint_and_the_trust_files(env_vars: dict[str, str], https_server: LiveServer) -> None:
    assert env_vars["IDENTITY_ENDPOINT"] == f"{https_server.batch_url}/openbatch/identity/token"
    assert env_vars["AZURE_AUTHORITY_HOST"] == https_server.batch_url
    assert env_vars["REQUESTS_CA_BUNDLE"] == env_vars["SSL_CERT_FILE"]
    assert "BEGIN CERTIFICATE" in Path(env_vars["NODE_EXTRA_CA_CERTS"]).read_text()
    assert "AZURE_CLIENT_SECRET" not in env_vars  # only with --client-secret


def test_default_credential_reads_and_writes_blobs_and_lists_pools(environ: dict[str, str], https_server: LiveServer,
                                                                   container: str) -> None:
    credential = DefaultAzureCredential()
    service = BlobServiceClient(https_server.blob_url, credential=credential)
    blob = service.get_blob_client(container, "from-default.txt")
    blob.upload_blob(b"default identity", overwrite=True)
    assert blob.download_blob().readall() == b"default identity"
    assert [p.id for p in BatchClient(https_server.batch_url, credential).list_pools()] == []


def test_client_secret_credential_of_a_reader_reads_but_cannot_write(environ: dict[str, str], https_server: LiveServer,
                                                                     container: str) -> None:
    reader = _IDS["reader"]
    credential = ClientSecretCredential(environ["AZURE_TENANT_ID"], reader["clientId"], reader["clientSecret"],
                                        authority=environ["AZURE_AUTHORITY_HOST"], disable_instance_discovery=True)
    service = BlobServiceClient(https_server.blob_url, credential=credential)
    assert service.get_blob_client(container, "seed.txt").download_blob().readall() == b"seed"
    with pytest.raises(HttpResponseError) as err:
        service.get_blob_client(container, "reader.txt").upload_blob(b"no")
    assert err.value.status_code == 403 and getattr(err.value, "error_code", None) == "AuthorizationPermissionMismatch"
    with pytest.raises(HttpResponseError) as err:  # no Batch role
        list(BatchClient(https_server.batch_url, credential).list_pools())
    assert err.value.status_code == 403
    wrong = ClientSecretCredential(environ["AZURE_TENANT_ID"], reader["clientId"], "not-the-secret",
                                   authority=environ["AZURE_AUTHORITY_HOST"], disable_instance_discovery=True)
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        wrong.get_token("https://storage.azure.com/.default")


def test_managed_identity_credential_with_a_client_id(environ: dict[str, str], https_server: LiveServer,
                                                      container: str) -> None:
    credential = ManagedIdentityCredential(client_id=_IDS["reader"]["clientId"])
    blob = BlobServiceClient(https_server.blob_url, credential=credential).get_blob_client(container, "seed.txt")
    assert blob.download_blob().readall() == b"seed"


def test_blob_refuses_another_audience_an_expired_and_a_tampered_token(https_server: LiveServer, container: str,
                                                                       identity: IdentityService) -> None:
    tenant = identity.directory.tenant
    cases = {
        "Audience validation failed": _token(identity, "writer", "https://batch.core.windows.net/"),
        "The token is expired": _token(identity, "writer", "https://storage.azure.com", lifetime=60,
                                       now=int(datetime.now(UTC).timestamp()) - 3600),
        "Signature validation failed": _tampered(_token(identity, "reader", "https://storage.azure.com"), "o-writer"),
    }
    for detail, token in cases.items():
        response = _blob(https_server, token)
        assert response.status_code == 401, response.text
        assert response.headers["x-ms-error-code"] == "InvalidAuthenticationInfo"
        assert detail in _detail(response)
        assert response.headers["www-authenticate"] == (
            f"Bearer authorization_uri=https://login.microsoftonline.com/{tenant}/oauth2/authorize "
            f"resource_id=https://storage.azure.com")
        assert token not in response.text


def test_blob_roles_reader_reads_only_and_nobody_nothing(https_server: LiveServer, container: str,
                                                         identity: IdentityService) -> None:
    reader = _token(identity, "reader", "https://devstoreaccount1.blob.core.windows.net")  # account-specific form
    assert _blob(https_server, reader).content == b"seed"
    refused = _blob(https_server, reader, "PUT", f"/{container}/x.txt", b"x")
    assert refused.status_code == 403 and refused.headers["x-ms-error-code"] == "AuthorizationPermissionMismatch"
    nobody = _blob(https_server, _token(identity, "nobody", "https://storage.azure.com/"))
    assert nobody.status_code == 403 and nobody.headers["x-ms-error-code"] == "AuthorizationPermissionMismatch"
    writer = _token(identity, "writer", "https://storage.azure.com/")
    assert _blob(https_server, writer, "PUT", f"/{container}/w.txt", b"w").status_code == 201


def test_batch_refuses_bad_tokens_with_a_challenge_and_identities_without_the_role(
        https_server: LiveServer, identity: IdentityService) -> None:
    def pools(token: str) -> httpx.Response:
        with _client(https_server) as client:
            return client.get(f"{https_server.batch_url}/pools", params={"api-version": "2024-07-01.20.0"},
                              headers={"Authorization": f"Bearer {token}"})

    assert pools(_token(identity, "writer", "https://batch.core.windows.net/")).status_code == 200
    for token, detail in (
        (_token(identity, "writer", "https://storage.azure.com/"), "Audience validation failed"),
        (_token(identity, "writer", "https://batch.core.windows.net"), "Audience validation failed"),  # no slash
        (_token(identity, "writer", "https://batch.core.windows.net/", lifetime=1, now=1_000_000), "expired"),
        (_tampered(_token(identity, "nobody", "https://batch.core.windows.net/"), "o-writer"), "Signature"),
    ):
        response = pools(token)
        assert response.status_code == 401
        body = response.json()
        assert body["code"] == "AuthenticationFailed" and detail in body["values"][0]["value"]
        assert response.headers["www-authenticate"].startswith(
            f'Bearer authorization_uri="https://login.microsoftonline.com/{identity.directory.tenant}"')
    refused = pools(_token(identity, "nobody", "https://batch.core.windows.net/"))
    assert refused.status_code == 403 and refused.json()["code"] == "AuthorizationFailure"


def test_user_delegation_key_and_sas(https_server: LiveServer, container: str, identity: IdentityService,
                                     env_vars: dict[str, str]) -> None:
    reader = _IDS["reader"]
    credential = ClientSecretCredential(env_vars["AZURE_TENANT_ID"], reader["clientId"], reader["clientSecret"],
                                        authority=env_vars["AZURE_AUTHORITY_HOST"], disable_instance_discovery=True,
                                        connection_verify=env_vars["REQUESTS_CA_BUNDLE"])
    ca = str(https_server.data_dir / "tls" / "ca.pem")
    service = BlobServiceClient(https_server.blob_url, credential=credential, connection_verify=ca)
    now = datetime.now(UTC)
    key = service.get_user_delegation_key(now - timedelta(minutes=1), now + timedelta(hours=1))
    assert key.signed_oid == "o-reader" and key.signed_tid == identity.directory.tenant
    read_sas = generate_blob_sas(https_server.account, container, "seed.txt", user_delegation_key=key,
                                 permission=BlobSasPermissions(read=True), expiry=now + timedelta(hours=1))
    url = f"{https_server.blob_url}/{container}/seed.txt"
    assert BlobClient.from_blob_url(f"{url}?{read_sas}", connection_verify=ca).download_blob().readall() == b"seed"
    tampered = read_sas.replace("sp=r", "sp=rw")
    with pytest.raises(ClientAuthenticationError):
        BlobClient.from_blob_url(f"{url}?{tampered}", connection_verify=ca).download_blob()
    # the SAS grants no more than its signer's role: a reader's key cannot sign a write
    write_sas = generate_blob_sas(https_server.account, container, "ud.txt", user_delegation_key=key,
                                  permission=BlobSasPermissions(write=True, create=True),
                                  expiry=now + timedelta(hours=1))
    with pytest.raises(HttpResponseError) as err:
        BlobClient.from_blob_url(f"{https_server.blob_url}/{container}/ud.txt?{write_sas}",
                                 connection_verify=ca).upload_blob(b"x")
    assert getattr(err.value, "error_code", None) == "AuthorizationPermissionMismatch"
    with pytest.raises(HttpResponseError) as err:  # keys are for bearer tokens only
        BlobServiceClient(https_server.blob_url, credential=https_server.key,
                          connection_verify=ca).get_user_delegation_key(now, now + timedelta(hours=1))
    assert err.value.status_code == 403
    with pytest.raises(HttpResponseError) as err:  # at most seven days
        service.get_user_delegation_key(now, now + timedelta(days=8))
    assert err.value.status_code == 400


def test_bearer_over_plain_http(server: LiveServer) -> None:
    """The SDKs refuse to send a token over http (azure-storage-blob when the client is made, azure-core's
    bearer policy on each request); openbatch's blob endpoint refuses one that comes anyway."""
    token, _ = IdentityService(server.data_dir).issuer.issue("o", "c", "https://storage.azure.com")
    with pytest.raises(ValueError, match="only supported with HTTPS"):
        BlobServiceClient(server.blob_url, credential=_Static(token))
    with pytest.raises(ServiceRequestError, match="non-TLS"):
        list(BatchClient(server.batch_url, _Static(token)).list_pools())
    response = httpx.get(f"{server.blob_url}?comp=list", headers={"Authorization": f"Bearer {token}",
                                                                    "x-ms-version": "2023-11-03"})
    assert response.status_code == 403 and "requires HTTPS" in response.text
    batch_token, _ = IdentityService(server.data_dir).issuer.issue("o", "c", "https://batch.core.windows.net/")
    response = httpx.get(f"{server.batch_url}/pools", params={"api-version": "2024-07-01.20.0"},
                         headers={"Authorization": f"Bearer {batch_token}"})
    assert response.status_code == 403 and "requires HTTPS" in response.json()["values"][0]["value"]


class _Static:
    """A credential handing out one token (a user's own, say)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(datetime.now(UTC).timestamp()) + 3600)


def _tampered(token: str, oid: str) -> str:
    header, body, signature = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["oid"] = oid
    return ".".join((header, base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode(), signature))


def test_accept_any_takes_a_token_of_another_issuer_but_still_checks_audience_and_expiry(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", ["--https", "--oauth", "accept-any"]).start()
    try:
        foreign = IdentityService(tmp_path / "elsewhere").issuer  # another key, as a real tenant's would be
        foreign.issuer = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/"
        good, _ = foreign.issue("someone", "app", "https://storage.azure.com/")
        assert _blob(server, good, "GET", "?comp=list").status_code == 200
        wrong_audience, _ = foreign.issue("someone", "app", "https://batch.core.windows.net/")
        assert _blob(server, wrong_audience, "GET", "?comp=list").status_code == 401
        expired, _ = foreign.issue("someone", "app", "https://storage.azure.com/", lifetime=1, now=1_000_000)
        assert _blob(server, expired, "GET", "?comp=list").status_code == 401
        foreign.issuer = "https://evil.example/"
        odd_issuer, _ = foreign.issue("someone", "app", "https://storage.azure.com/")
        assert "Issuer validation failed" in _detail(_blob(server, odd_issuer, "GET", "?comp=list"))
    finally:
        server.stop()
