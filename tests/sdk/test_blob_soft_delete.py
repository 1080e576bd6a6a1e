"""Soft delete and undelete through azure-storage-blob 12, on a server whose clock the tests move.

Azure's rules ("Soft delete for blobs", "Soft delete for containers", Undelete Blob, Restore
Container): with the account's DeleteRetentionPolicy on (1-365 days), a deleted blob, snapshot or
container is kept for that long and can be restored; an overwritten blob keeps its previous state as
a soft-deleted snapshot; include=deleted lists what is kept (Deleted, DeletedTime,
RemainingRetentionDays); after the retention nothing is left. Azure enables container soft delete
through its management plane; openbatch applies the same policy (docs/support-matrix.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient, RetentionPolicy

from tests.blob.raw import request
from tests.helpers.server import LiveServer

TEST_CLOCK = True
DAY = 86400


@pytest.fixture(scope="module")
def service(server: LiveServer) -> Iterator[BlobServiceClient]:
    client = BlobServiceClient.from_connection_string(server.connection_string)
    client.set_service_properties(delete_retention_policy=RetentionPolicy(enabled=True, days=7))
    yield client
    client.set_service_properties(delete_retention_policy=RetentionPolicy(enabled=False))


@pytest.fixture
def container(service: BlobServiceClient) -> ContainerClient:
    return service.create_container(f"s{uuid.uuid4().hex[:16]}")


def _listed(c: ContainerClient, *include: str) -> list[tuple[str, str | None, bool]]:
    return [(b.name, b.snapshot, bool(b.deleted)) for b in c.list_blobs(include=list(include))]


def test_a_deleted_blob_is_kept_and_undeleted(server: LiveServer, container: ContainerClient) -> None:
    blob = container.upload_blob("doc.txt", b"precious", metadata={"k": "v"}, tags={"t": "1"})
    r = request(server, "DELETE", f"/{container.container_name}/doc.txt")
    assert (r.status, r.headers["x-ms-delete-type-permanent"]) == (202, "false")
    assert not blob.exists()
    assert _listed(container) == []
    deleted = next(iter(container.list_blobs(include=["deleted"])))
    assert (deleted.name, deleted.deleted, deleted.remaining_retention_days) == ("doc.txt", True, 7)
    assert deleted.deleted_time is not None
    server.advance_clock(2 * DAY)
    assert next(iter(container.list_blobs(include=["deleted"]))).remaining_retention_days == 5
    blob.undelete_blob()
    assert blob.download_blob().readall() == b"precious"
    assert blob.get_blob_properties().metadata == {"k": "v"} and blob.get_blob_tags() == {"t": "1"}
    assert _listed(container, "deleted") == [("doc.txt", None, False)]


def test_overwrites_and_snapshots_are_kept(container: ContainerClient) -> None:
    blob = container.upload_blob("b", b"one")
    blob.upload_blob(b"two", overwrite=True)
    kept = [(n, s is not None, d) for n, s, d in _listed(container, "deleted", "snapshots")]
    assert kept == [("b", True, True), ("b", False, False)]  # the state before the write, soft-deleted
    blob.undelete_blob()  # on a live blob: its soft-deleted snapshots come back
    snapshot = next(s for _, s, _ in _listed(container, "snapshots") if s)
    assert container.get_blob_client("b", snapshot=snapshot).download_blob().readall() == b"one"
    blob.delete_blob(delete_snapshots="include")
    assert _listed(container, "snapshots") == []
    assert {d for _, _, d in _listed(container, "deleted", "snapshots")} == {True}
    blob.undelete_blob()
    assert sorted(s is not None for _, s, _ in _listed(container, "snapshots")) == [False, True]


def test_a_name_deleted_twice(container: ContainerClient) -> None:
    blob = container.upload_blob("n", b"first")
    blob.delete_blob()
    container.upload_blob("n", b"second")
    blob.delete_blob()
    blob.undelete_blob()
    assert blob.download_blob().readall() == b"second"
    snapshots = [s for _, s, _ in _listed(container, "snapshots") if s]
    assert [container.get_blob_client("n", snapshot=s).download_blob().readall() for s in snapshots] == [b"first"]


def test_nothing_is_kept_past_the_retention(server: LiveServer, container: ContainerClient) -> None:
    blob = container.upload_blob("gone", b"x")
    blob.delete_blob()
    server.advance_clock(7 * DAY + 1)
    assert _listed(container, "deleted") == []
    with pytest.raises(ResourceNotFoundError) as e:
        blob.undelete_blob()
    assert e.value.error_code == "BlobNotFound"


def test_containers_are_kept_and_restored(server: LiveServer, service: BlobServiceClient) -> None:
    name = f"s{uuid.uuid4().hex[:16]}"
    c = service.create_container(name)
    c.upload_blob("inside", b"kept")
    c.delete_container()
    assert not c.exists()
    deleted = [x for x in service.list_containers(name_starts_with=name, include_deleted=True)]
    assert [(x.name, x.deleted) for x in deleted] == [(name, True)] and deleted[0].version
    assert list(service.list_containers(name_starts_with=name)) == []
    again = service.create_container(name)  # the name is free at once
    with pytest.raises(ResourceExistsError) as e:
        service.undelete_container(name, deleted[0].version)
    assert e.value.error_code == "ContainerAlreadyExists"
    again.delete_container()
    versions = {x.version for x in service.list_containers(name_starts_with=name, include_deleted=True)}
    assert len(versions) == 2
    restored = service.undelete_container(name, deleted[0].version)
    assert restored.get_blob_client("inside").download_blob().readall() == b"kept"
    with pytest.raises(ResourceNotFoundError):
        service.undelete_container(name, "nosuchversion")
    restored.delete_container()
    server.advance_clock(8 * DAY)
    assert list(service.list_containers(name_starts_with=name, include_deleted=True)) == []


def test_without_the_policy_deletes_are_permanent(server: LiveServer, service: BlobServiceClient) -> None:
    service.set_service_properties(delete_retention_policy=RetentionPolicy(enabled=False))
    try:
        c = service.create_container(f"s{uuid.uuid4().hex[:16]}")
        blob = c.upload_blob("b", b"x")
        r = request(server, "DELETE", f"/{c.container_name}/b")
        assert r.headers["x-ms-delete-type-permanent"] == "true"
        with pytest.raises(ResourceNotFoundError):
            blob.undelete_blob()
        assert _listed(c, "deleted") == []
    finally:
        service.set_service_properties(delete_retention_policy=RetentionPolicy(enabled=True, days=7))


@pytest.mark.parametrize("days", [0, 366])
def test_retention_days_are_checked(service: BlobServiceClient, days: int) -> None:
    with pytest.raises(HttpResponseError) as e:
        service.set_service_properties(delete_retention_policy=RetentionPolicy(enabled=True, days=days))
    assert (e.value.status_code, e.value.error_code) == (400, "InvalidXmlNodeValue")
