"""Small things Azure does that clients notice, through azure-storage-blob 12 and raw requests:
metadata names keep their case, a backslash in a blob name is a slash, a 416 says the size, block
ids must agree only with the blocks still uncommitted, If-None-Match: * cannot hold for a read,
operations this server does not serve say so, and the account is geo-redundant (account info,
service stats on the secondary endpoint)."""

from __future__ import annotations

import base64

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobBlock, BlobServiceClient, ContainerClient

from tests.blob.raw import request
from tests.helpers.server import LiveServer


def test_metadata_names_keep_their_case(service: BlobServiceClient, container: ContainerClient) -> None:
    meta = {"MyKey": "one", "lower": "two", "UPPER_case": "three"}
    blob = container.upload_blob("m", b"x", metadata=meta)
    assert blob.get_blob_properties().metadata == meta
    listed = next(iter(container.list_blobs(include=["metadata"])))
    assert listed.metadata == meta
    blob.set_blob_metadata({"CamelCase": "v"})
    assert blob.get_blob_properties().metadata == {"CamelCase": "v"}
    container.set_container_metadata({"ContainerKey": "v"})
    assert container.get_container_properties().metadata == {"ContainerKey": "v"}
    found = next(iter(service.list_containers(name_starts_with=container.container_name, include_metadata=True)))
    assert found.metadata == {"ContainerKey": "v"}


def test_a_backslash_in_a_blob_name_is_a_slash(container: ContainerClient) -> None:
    container.upload_blob("dir\\sub\\file.txt", b"data")
    assert [b.name for b in container.list_blobs()] == ["dir/sub/file.txt"]
    assert container.get_blob_client("dir/sub/file.txt").download_blob().readall() == b"data"
    assert container.get_blob_client("dir\\sub\\file.txt").download_blob().readall() == b"data"


def test_a_range_past_the_end_says_the_size(server: LiveServer, container: ContainerClient) -> None:
    container.upload_blob("empty", b"")
    container.upload_blob("three", b"abc")
    for name, size in (("empty", 0), ("three", 3)):
        r = request(server, "GET", f"/{container.container_name}/{name}", headers={"x-ms-range": "bytes=5-10"})
        assert (r.status, r.code, r.headers.get("content-range")) == (416, "InvalidRange", f"bytes */{size}")
    assert container.get_blob_client("empty").download_blob().readall() == b""


def test_block_ids_must_agree_only_with_uncommitted_blocks(container: ContainerClient) -> None:
    blob = container.get_blob_client("blocks")
    short, long_ = base64.b64encode(b"id-1").decode(), base64.b64encode(b"longer-id-0001").decode()
    blob.stage_block(short, b"first ")
    blob.commit_block_list([BlobBlock(short)])
    blob.stage_block(long_, b"second")  # a new length once nothing is uncommitted
    with pytest.raises(HttpResponseError) as e:
        blob.stage_block(base64.b64encode(b"id-2").decode(), b"x")  # but not next to a staged block
    assert e.value.error_code == "InvalidBlobOrBlock"
    blob.commit_block_list([BlobBlock(long_)])
    assert blob.download_blob().readall() == b"second"


def test_if_none_match_star_cannot_hold_for_a_read(server: LiveServer, container: ContainerClient) -> None:
    container.upload_blob("b", b"x")
    path = f"/{container.container_name}/b"
    for method in ("GET", "HEAD"):
        r = request(server, method, path, headers={"if-none-match": "*"})
        assert (r.status, r.code) == (400, "UnsatisfiableCondition"), method
    etag = request(server, "HEAD", path).headers["etag"]
    assert request(server, "GET", path, headers={"if-none-match": etag}).status == 304


@pytest.mark.parametrize(("method", "query"), [("PUT", "comp=expiry"), ("POST", "comp=query"),
                                               ("PUT", "comp=legalhold"), ("PUT", "comp=immutabilityPolicies")])
def test_operations_not_served_say_so(server: LiveServer, container: ContainerClient, method: str, query: str) -> None:
    container.upload_blob("b", b"x", overwrite=True)
    r = request(server, method, f"/{container.container_name}/b", query=query)
    assert (r.status, r.code) == (400, "UnsupportedQueryParameter")
    assert b"<QueryParameterName>comp</QueryParameterName>" in r.body and b"not supported" in r.body


def test_unknown_operations_stay_invalid(server: LiveServer, container: ContainerClient) -> None:
    r = request(server, "GET", f"/{container.container_name}/b", query="comp=nonsense")
    assert (r.status, r.code) == (400, "InvalidQueryParameterValue")
    r = request(server, "PUT", f"/{container.container_name}", query="restype=container&comp=rename")
    assert (r.status, r.code) == (400, "UnsupportedQueryParameter")


def test_a_geo_redundant_account(server: LiveServer, service: BlobServiceClient, container: ContainerClient) -> None:
    info = service.get_account_information()
    assert (info["sku_name"], info["account_kind"], info["is_hns_enabled"]) == ("Standard_RAGRS", "StorageV2", False)
    key = {"account_name": server.account, "account_key": server.key}
    # The SDK sends Get Blob Service Stats to its secondary host; with path-style URLs it keeps the
    # account's path, so a secondary host that is this endpoint's host:port serves it.
    secondary = BlobServiceClient(server.blob_url, credential=key, secondary_hostname=f"127.0.0.1:{server.blob_port}")
    stats = secondary.get_service_stats()
    assert stats["geo_replication"]["status"] == "live" and stats["geo_replication"]["last_sync_time"]
    r = request(server, "GET", "-secondary/", query="restype=service&comp=stats")
    assert r.status == 200 and b"<Status>live</Status>" in r.body
    container.upload_blob("replicated", b"x")
    mirror = ContainerClient(f"{server.blob_url}-secondary", container.container_name, credential=key)
    assert mirror.get_blob_client("replicated").download_blob().readall() == b"x"
    assert [b.name for b in mirror.list_blobs()] == ["replicated"]
    r = request(server, "PUT", f"-secondary/{container.container_name}/other", body=b"x",
                headers={"x-ms-blob-type": "BlockBlob"})
    assert (r.status, r.code) == (403, "AuthorizationFailure")
