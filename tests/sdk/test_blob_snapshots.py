"""Snapshots and versions through azure-storage-blob 12: create, read, list (include=snapshots /
versions, paged), delete (x-ms-delete-snapshots, one snapshot, one version), read-only rules,
versioning switched on in the service properties."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient, Metrics

from tests.blob.raw import request
from tests.cli.helpers import ok
from tests.helpers.server import LiveServer

VERSIONING_ON = (b'<?xml version="1.0" encoding="utf-8"?><StorageServiceProperties>'
                 b"<IsVersioningEnabled>true</IsVersioningEnabled></StorageServiceProperties>")
VERSIONING_OFF = VERSIONING_ON.replace(b"true", b"false")


@pytest.fixture
def versioning(server: LiveServer) -> Iterator[None]:
    r = request(server, "PUT", "/", query="restype=service&comp=properties", body=VERSIONING_ON)
    assert r.status == 202, r.body
    yield
    r = request(server, "PUT", "/", query="restype=service&comp=properties", body=VERSIONING_OFF)
    assert r.status == 202, r.body


def test_a_snapshot_keeps_the_blob_as_it_was(container: ContainerClient) -> None:
    blob = container.upload_blob("doc", b"version one", metadata={"v": "1"})
    before = blob.get_blob_properties()
    snap = blob.create_snapshot()
    assert snap["snapshot"].endswith("Z") and len(snap["snapshot"]) == 28
    assert snap["etag"] == before.etag and snap["last_modified"] == before.last_modified
    tagged = blob.create_snapshot(metadata={"label": "tagged"})
    blob.upload_blob(b"version two, longer", overwrite=True, metadata={"v": "2"})
    old = container.get_blob_client("doc", snapshot=snap["snapshot"])
    assert old.download_blob().readall() == b"version one"
    props = old.get_blob_properties()
    assert props.metadata == {"v": "1"} and props.size == 11 and props.snapshot == snap["snapshot"]
    assert container.get_blob_client("doc", snapshot=tagged).get_blob_properties().metadata == {"label": "tagged"}
    assert blob.download_blob().readall() == b"version two, longer"
    assert old.download_blob(offset=8, length=3).readall() == b"one"


def test_listing_with_snapshots_pages_through_every_record(container: ContainerClient) -> None:
    for name in ("a", "b", "c"):
        container.upload_blob(name, name.encode())
    snaps = [container.get_blob_client("b").create_snapshot()["snapshot"] for _ in range(3)]
    container.get_blob_client("b").create_snapshot(metadata={"x": "y"})
    assert [b.name for b in container.list_blobs()] == ["a", "b", "c"]
    listed = [(b.name, b.snapshot) for b in container.list_blobs(include=["snapshots"])]
    assert listed[:4] == [("a", None), ("b", snaps[0]), ("b", snaps[1]), ("b", snaps[2])]
    assert listed[5:] == [("b", None), ("c", None)] and len(listed) == 7
    paged = [(b.name, b.snapshot) for page in container.list_blobs(include=["snapshots"], results_per_page=2)
             .by_page() for b in page]
    assert paged == listed
    with_meta = {b.snapshot: b.metadata for b in container.list_blobs(include=["snapshots", "metadata"])
                 if b.name == "b"}
    assert {"x": "y"} in with_meta.values()


def test_deleting_blobs_with_snapshots(container: ContainerClient) -> None:
    blob = container.upload_blob("d", b"data")
    s1 = blob.create_snapshot()["snapshot"]
    s2 = blob.create_snapshot()["snapshot"]
    with pytest.raises(HttpResponseError) as e:
        blob.delete_blob()
    assert (e.value.status_code, e.value.error_code) == (409, "SnapshotsPresent")
    container.get_blob_client("d", snapshot=s1).delete_blob()
    with pytest.raises(ResourceNotFoundError):
        container.get_blob_client("d", snapshot=s1).get_blob_properties()
    assert [b.snapshot for b in container.list_blobs(include=["snapshots"])] == [s2, None]
    blob.delete_blob(delete_snapshots="only")
    assert blob.download_blob().readall() == b"data"
    assert [b.snapshot for b in container.list_blobs(include=["snapshots"])] == [None]
    blob.create_snapshot()
    blob.delete_blob(delete_snapshots="include")
    assert list(container.list_blobs(include=["snapshots"])) == []


def test_snapshots_are_read_only(container: ContainerClient, server: LiveServer) -> None:
    blob = container.upload_blob("ro", b"data")
    snap = blob.create_snapshot()["snapshot"]
    path = f"/{container.container_name}/ro"
    for method, query, headers in [("PUT", "comp=metadata", {"x-ms-meta-a": "b"}),
                                   ("PUT", "", {"x-ms-blob-type": "BlockBlob"}),
                                   ("PUT", "comp=snapshot", {})]:
        r = request(server, method, path, query=f"{query}&snapshot={snap}".lstrip("&"), headers=headers)
        assert (r.status, r.code) == (400, "InvalidQueryParameterValue"), (query, r.body)
    r = request(server, "GET", path, query="snapshot=yesterday")
    assert (r.status, r.code) == (400, "InvalidQueryParameterValue"), r.body
    r = request(server, "GET", path, query="snapshot=2001-01-01T00:00:00.0000000Z")
    assert (r.status, r.code) == (404, "BlobNotFound"), r.body
    r = request(server, "DELETE", path, query=f"snapshot={snap}", headers={"x-ms-delete-snapshots": "include"})
    assert r.status == 400, r.body
    r = request(server, "DELETE", path, headers={"x-ms-delete-snapshots": "some"})
    assert (r.status, r.code) == (400, "InvalidHeaderValue"), r.body
    assert container.get_blob_client("ro", snapshot=snap).download_blob().readall() == b"data"


def test_block_lists_and_copies_of_snapshots(container: ContainerClient) -> None:
    blob = container.get_blob_client("blocks")
    blob.stage_block("b1", b"one")
    blob.stage_block("b2", b"two")
    blob.commit_block_list(["b1", "b2"])
    snap = blob.create_snapshot()["snapshot"]
    blob.stage_block("b3", b"three")
    blob.commit_block_list(["b3"])
    committed, _ = container.get_blob_client("blocks", snapshot=snap).get_block_list("committed")
    assert [b.id for b in committed] == ["b1", "b2"]
    source = container.get_blob_client("blocks", snapshot=snap).url
    copy = container.get_blob_client("restored").start_copy_from_url(source)
    assert copy["copy_status"] == "success"
    assert container.download_blob("restored").readall() == b"onetwo"
    with pytest.raises(ResourceNotFoundError):
        container.get_blob_client("nope").create_snapshot()


@pytest.mark.usefixtures("versioning")
def test_versions_keep_every_write(container: ContainerClient) -> None:
    blob = container.get_blob_client("v")
    v1 = blob.upload_blob(b"first")["version_id"]
    v2 = blob.upload_blob(b"second", overwrite=True)["version_id"]
    v3 = blob.set_blob_metadata({"m": "3"})["version_id"]
    assert v1 and v2 and v3 and v1 < v2 < v3
    props = blob.get_blob_properties()
    assert props.version_id == v3 and props.is_current_version is True
    old = container.get_blob_client("v", version_id=v1)
    assert old.download_blob().readall() == b"first"
    assert old.get_blob_properties().is_current_version is not True
    assert container.get_blob_client("v", version_id=v2).get_blob_properties().metadata == {}
    assert container.get_blob_client("v", version_id=v3).download_blob().readall() == b"second"
    listed = [(b.name, b.version_id, b.is_current_version) for b in container.list_blobs(include=["versions"])]
    assert listed == [("v", v1, None), ("v", v2, None), ("v", v3, True)]
    assert [b.version_id for b in container.list_blobs()] == [v3]
    container.get_blob_client("v", version_id=v1).delete_blob()
    assert [b.version_id for b in container.list_blobs(include=["versions"])] == [v2, v3]
    blob.delete_blob()  # the current version becomes a previous one
    assert list(container.list_blobs()) == []
    assert [(b.version_id, b.is_current_version) for b in container.list_blobs(include=["versions"])] == [
        (v2, None), (v3, None)]
    with pytest.raises(ResourceNotFoundError):
        blob.download_blob()
    assert container.get_blob_client("v", version_id=v3).download_blob().readall() == b"second"
    restored = blob.start_copy_from_url(f"{blob.url}?versionid={v2}")  # (BlobClient.url names no version)
    assert restored["version_id"] and blob.download_blob().readall() == b"second"


@pytest.mark.usefixtures("versioning")
def test_versions_of_page_and_append_blobs(container: ContainerClient) -> None:
    app = container.get_blob_client("app")
    v1 = app.create_append_blob()["version_id"]
    app.append_block(b"abc")  # appends make no version
    assert [b.version_id for b in container.list_blobs(include=["versions"])] == [v1]
    v2 = app.create_append_blob()["version_id"]
    assert container.get_blob_client("app", version_id=v1).download_blob().readall() == b"abc"
    assert app.download_blob().readall() == b"" and v2 > v1
    with pytest.raises(ResourceExistsError):
        app.create_append_blob(if_none_match="*")


def test_versioning_is_switched_by_the_cli_and_kept_across_sdk_property_sets(
        service: BlobServiceClient, container: ContainerClient, server: LiveServer) -> None:
    assert "versioning off" in ok(server, "blob", "versioning").output
    ok(server, "blob", "versioning", "on")
    try:
        assert "versioning on" in ok(server, "blob", "versioning").output
        # The SDK's properties document has no IsVersioningEnabled: what it omits stays as it was.
        service.set_service_properties(hour_metrics=Metrics(enabled=False))
        blob = container.upload_blob("kept", b"1")
        blob.upload_blob(b"2", overwrite=True)
        assert len(list(container.list_blobs(include=["versions"]))) == 2
    finally:
        ok(server, "blob", "versioning", "off")
    blob.upload_blob(b"3", overwrite=True)
    assert blob.get_blob_properties().version_id is None
    assert len(list(container.list_blobs(include=["versions"]))) == 3  # kept versions stay
    assert "versioning off" in ok(server, "blob", "versioning").output
