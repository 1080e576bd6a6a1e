"""Who may do what: SharedKey (both keys), SAS (blob, container, account), anonymous public reads."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.storage.blob import (
    AccountSasPermissions,
    BlobClient,
    BlobSasPermissions,
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    ResourceTypes,
    generate_account_sas,
    generate_blob_sas,
    generate_container_sas,
)

from tests.blob.raw import request
from tests.helpers.server import LiveServer

KEY1 = base64.b64encode(b"first key of the second account!").decode()
KEY2 = base64.b64encode(b"its secondary key, also accepted").decode()


@pytest.fixture(scope="module")
def two_key_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = LiveServer(Path(tmp_path_factory.mktemp("auth")) / "data",
                     extra_args=["--account", f"second:{KEY1}:{KEY2}"]).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def service(server: LiveServer) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(server.connection_string)


def _later(hours: int = 1) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


def _container(service: BlobServiceClient, public: str | None = None) -> ContainerClient:
    return service.create_container(f"a{uuid.uuid4().hex[:16]}", public_access=public)


def _status(exc: pytest.ExceptionInfo[HttpResponseError]) -> tuple[int | None, str | None]:
    return exc.value.status_code, exc.value.error_code


def test_both_keys_of_an_account_work(two_key_server: LiveServer) -> None:
    url = f"http://127.0.0.1:{two_key_server.blob_port}/second"
    for key in (KEY1, KEY2):
        svc = BlobServiceClient(url, credential={"account_name": "second", "account_key": key})
        name = f"k{uuid.uuid4().hex[:12]}"
        svc.create_container(name).upload_blob("b", key.encode())
        assert svc.get_blob_client(name, "b").download_blob().readall() == key.encode()
    wrong = base64.b64encode(b"not a key of this account at all").decode()
    bad = BlobServiceClient(url, credential={"account_name": "second", "account_key": wrong})
    with pytest.raises(ClientAuthenticationError) as e:
        list(bad.list_containers())
    assert e.value.status_code == 403 and e.value.error_code == "AuthenticationFailed"


def test_wrong_key_and_mismatched_account(server: LiveServer, service: BlobServiceClient) -> None:
    wrong = base64.b64encode(b"x" * 64).decode()
    bad = BlobServiceClient(server.blob_url, credential={"account_name": server.account, "account_key": wrong})
    with pytest.raises(ClientAuthenticationError) as e:
        bad.create_container("neverscreated")
    assert e.value.error_code == "AuthenticationFailed"
    assert not service.get_container_client("neverscreated").exists()
    # Signed for another account than the URL names.
    r = request(server, "GET", "/", query="comp=list",
                headers={"authorization": "SharedKey otheraccount:AAAA"}, sign=False)
    assert r.status == 403 and r.code == "AuthenticationFailed"
    r = request(server, "GET", "/", query="comp=list", headers={"authorization": "Bearer abc"}, sign=False)
    assert r.status == 403 and r.code == "AuthenticationFailed"
    # A signature over different content fails: tamper with a signed header after signing.
    r = request(server, "GET", "/", query="comp=list", key=wrong)
    assert r.status == 403


def test_anonymous_access_follows_public_level(server: LiveServer, service: BlobServiceClient) -> None:
    private = _container(service)
    blob_level = _container(service, "blob")
    container_level = _container(service, "container")
    for c in (private, blob_level, container_level):
        c.upload_blob("file.txt", b"public?")
    anon = {c: ContainerClient.from_container_url(c.url) for c in (private, blob_level, container_level)}
    # Private: nothing.
    with pytest.raises(HttpResponseError) as e:
        anon[private].download_blob("file.txt")
    assert _status(e) == (403, "AuthorizationFailure")
    with pytest.raises(HttpResponseError):
        list(anon[private].list_blobs())
    # Blob level: read blobs, not list.
    assert anon[blob_level].download_blob("file.txt").readall() == b"public?"
    assert anon[blob_level].get_blob_client("file.txt").get_blob_properties().size == 7
    with pytest.raises(HttpResponseError) as e:
        list(anon[blob_level].list_blobs())
    assert e.value.status_code == 403
    # Container level: read and list.
    assert anon[container_level].download_blob("file.txt").readall() == b"public?"
    assert [b.name for b in anon[container_level].list_blobs()] == ["file.txt"]
    assert anon[container_level].get_container_properties().public_access == "container"
    # Never writes or deletes.
    for c in (blob_level, container_level):
        with pytest.raises(HttpResponseError) as e:
            anon[c].upload_blob("new", b"x")
        assert e.value.status_code == 403
        with pytest.raises(HttpResponseError):
            anon[c].delete_blob("file.txt")
    with pytest.raises(HttpResponseError):
        BlobServiceClient(server.blob_url).create_container("anonymouscontainer")
    assert blob_level.get_blob_client("file.txt").exists()


def test_blob_sas_permissions(server: LiveServer, service: BlobServiceClient) -> None:
    container = _container(service)
    blob = container.upload_blob("data.bin", b"secret data")
    read = generate_blob_sas(server.account, container.container_name, "data.bin", account_key=server.key,
                             permission=BlobSasPermissions(read=True), expiry=_later())
    reader = BlobClient.from_blob_url(f"{blob.url}?{read}")
    assert reader.download_blob().readall() == b"secret data"
    assert reader.get_blob_properties().size == 11
    with pytest.raises(HttpResponseError) as e:
        reader.upload_blob(b"overwrite", overwrite=True)
    assert _status(e) == (403, "AuthorizationPermissionMismatch")
    with pytest.raises(HttpResponseError) as e:
        reader.delete_blob()
    assert _status(e) == (403, "AuthorizationPermissionMismatch")
    # A blob SAS is for that blob only.
    other = container.get_blob_client("other.bin")
    with pytest.raises(HttpResponseError) as e:
        BlobClient.from_blob_url(f"{other.url}?{read}").download_blob()
    assert e.value.status_code == 403
    # Write/create SAS uploads (also in blocks) and may not read.
    write = generate_blob_sas(server.account, container.container_name, "up.bin", account_key=server.key,
                              permission=BlobSasPermissions(create=True, write=True), expiry=_later())
    writer = BlobClient.from_blob_url(f"{container.url}/up.bin?{write}", max_single_put_size=1024,
                                      max_block_size=1024)
    writer.upload_blob(b"u" * 5000)
    assert container.download_blob("up.bin").readall() == b"u" * 5000
    with pytest.raises(HttpResponseError) as e:
        writer.download_blob()
    assert _status(e) == (403, "AuthorizationPermissionMismatch")


def test_sas_time_and_signature_are_checked(server: LiveServer, service: BlobServiceClient) -> None:
    container = _container(service)
    blob = container.upload_blob("t", b"t")
    expired = generate_blob_sas(server.account, container.container_name, "t", account_key=server.key,
                                permission=BlobSasPermissions(read=True), expiry=_later(-1))
    with pytest.raises(HttpResponseError) as e:
        BlobClient.from_blob_url(f"{blob.url}?{expired}").download_blob()
    assert _status(e) == (403, "AuthenticationFailed")
    good = generate_blob_sas(server.account, container.container_name, "t", account_key=server.key,
                             permission=BlobSasPermissions(read=True), expiry=_later())
    tampered = good.replace("sp=r", "sp=rwd")
    with pytest.raises(HttpResponseError) as e:
        BlobClient.from_blob_url(f"{blob.url}?{tampered}").delete_blob()
    assert _status(e) == (403, "AuthenticationFailed")
    assert blob.exists()


def test_sas_response_header_overrides(server: LiveServer, service: BlobServiceClient) -> None:
    container = _container(service)
    blob = container.upload_blob("report.csv", b"a,b\n")
    sas = generate_blob_sas(server.account, container.container_name, "report.csv", account_key=server.key,
                            permission=BlobSasPermissions(read=True), expiry=_later(),
                            content_disposition="attachment; filename=r.csv", content_type="text/csv")
    props = BlobClient.from_blob_url(f"{blob.url}?{sas}").get_blob_properties()
    assert props.content_settings.content_disposition == "attachment; filename=r.csv"
    assert props.content_settings.content_type == "text/csv"


def test_container_sas(server: LiveServer, service: BlobServiceClient) -> None:
    container = _container(service)
    container.upload_blob("in/1.txt", b"1")
    rl = generate_container_sas(server.account, container.container_name, account_key=server.key,
                                permission=ContainerSasPermissions(read=True, list=True), expiry=_later())
    client = ContainerClient.from_container_url(f"{container.url}?{rl}")
    assert [b.name for b in client.list_blobs()] == ["in/1.txt"]
    assert client.download_blob("in/1.txt").readall() == b"1"
    with pytest.raises(HttpResponseError) as e:
        client.upload_blob("out/2.txt", b"2")
    assert _status(e) == (403, "AuthorizationPermissionMismatch")
    # The task-output pattern: a write-only container SAS.
    w = generate_container_sas(server.account, container.container_name, account_key=server.key,
                               permission=ContainerSasPermissions(write=True), expiry=_later())
    writer = ContainerClient.from_container_url(f"{container.url}?{w}")
    writer.upload_blob("out/2.txt", b"2")
    with pytest.raises(HttpResponseError) as e:
        list(writer.list_blobs())
    assert _status(e) == (403, "AuthorizationPermissionMismatch")
    # A container SAS cannot manage containers.
    with pytest.raises(HttpResponseError) as e:
        writer.delete_container()
    assert e.value.status_code == 403
    assert container.exists()


def test_account_sas(server: LiveServer, service: BlobServiceClient) -> None:
    sas = generate_account_sas(server.account, server.key,
                               resource_types=ResourceTypes(service=True, container=True, object=True),
                               permission=AccountSasPermissions(read=True, write=True, list=True, create=True),
                               expiry=_later())
    client = BlobServiceClient(server.blob_url, credential=sas)
    name = f"a{uuid.uuid4().hex[:16]}"
    container = client.create_container(name)
    container.upload_blob("x", b"via account sas")
    assert container.download_blob("x").readall() == b"via account sas"
    assert name in [c.name for c in client.list_containers(name_starts_with=name)]
    with pytest.raises(HttpResponseError) as e:
        container.delete_blob("x")
    assert _status(e) == (403, "AuthorizationPermissionMismatch")
    objects_only = generate_account_sas(server.account, server.key, resource_types=ResourceTypes(object=True),
                                        permission=AccountSasPermissions(read=True, list=True), expiry=_later())
    with pytest.raises(HttpResponseError) as e:
        list(BlobServiceClient(server.blob_url, credential=objects_only).list_containers())
    assert e.value.status_code == 403


def test_copy_source_must_be_readable(server: LiveServer, service: BlobServiceClient) -> None:
    container = _container(service)
    src = container.upload_blob("src", b"copy me")
    w = generate_container_sas(server.account, container.container_name, account_key=server.key,
                               permission=ContainerSasPermissions(write=True, create=True), expiry=_later())
    dst = BlobClient.from_blob_url(f"{container.url}/dst?{w}")
    with pytest.raises(HttpResponseError) as e:
        dst.start_copy_from_url(src.url)  # a SAS-authorized copy cannot read a private source
    assert e.value.status_code == 403 and e.value.error_code == "CannotVerifyCopySource"
    r = generate_blob_sas(server.account, container.container_name, "src", account_key=server.key,
                          permission=BlobSasPermissions(read=True), expiry=_later())
    dst.start_copy_from_url(f"{src.url}?{r}")
    assert container.download_blob("dst").readall() == b"copy me"
    # With the account key, a source of the same account needs nothing more.
    container.get_blob_client("dst2").start_copy_from_url(src.url)
    assert container.download_blob("dst2").readall() == b"copy me"
    with pytest.raises(HttpResponseError) as e:
        container.get_blob_client("dst3").start_copy_from_url("https://elsewhere.example.com/c/b")
    assert e.value.error_code == "CannotVerifyCopySource"
