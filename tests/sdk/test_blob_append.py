"""Append blobs through azure-storage-blob 12: create, Append Block with its conditions, seal,
properties and listings, and what other blob types may not do to them (and they to others)."""

from __future__ import annotations

import os

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError
from azure.storage.blob import BlobType, ContainerClient, ContentSettings

from tests.blob.raw import request
from tests.helpers.server import LiveServer

MIB = 1 << 20


def test_blocks_are_appended_in_order_with_offsets_and_counts(container: ContainerClient) -> None:
    blob = container.get_blob_client("log.txt")
    created = blob.create_append_blob(metadata={"kind": "log"},
                                      content_settings=ContentSettings(content_type="text/plain"))
    assert created["etag"]
    offsets = []
    for n, piece in enumerate([b"first\n", b"second line\n", os.urandom(5 * MIB + 3), b"last\n"]):
        done = blob.append_block(piece)
        offsets.append(int(done["blob_append_offset"]))
        assert done["blob_committed_block_count"] == n + 1
        assert done["content_md5"]
    assert offsets == [0, 6, 18, 18 + 5 * MIB + 3]
    data = blob.download_blob().readall()
    assert data.startswith(b"first\nsecond line\n") and data.endswith(b"last\n") and len(data) == 23 + 5 * MIB + 3
    props = blob.get_blob_properties()
    assert props.blob_type == BlobType.APPENDBLOB
    assert props.append_blob_committed_block_count == 4
    assert props.metadata == {"kind": "log"} and props.content_settings.content_type == "text/plain"
    assert not props.is_append_blob_sealed
    listed = next(iter(container.list_blobs()))
    assert listed.blob_type == BlobType.APPENDBLOB and listed.size == len(data)


def test_an_empty_append_blob_reads_empty_and_create_replaces(container: ContainerClient) -> None:
    blob = container.get_blob_client("a")
    blob.create_append_blob()
    assert blob.download_blob().readall() == b""
    blob.append_block(b"x")
    blob.create_append_blob()  # Put Blob again: an empty blob
    assert blob.download_blob().readall() == b""
    assert blob.get_blob_properties().append_blob_committed_block_count == 0
    with pytest.raises(ResourceExistsError):
        blob.create_append_blob(if_none_match="*")


def test_append_conditions(container: ContainerClient) -> None:
    blob = container.get_blob_client("c")
    blob.create_append_blob()
    blob.append_block(b"12345", appendpos_condition=0, maxsize_condition=10)
    with pytest.raises(HttpResponseError) as e:
        blob.append_block(b"6", appendpos_condition=3)
    assert (e.value.status_code, e.value.error_code) == (412, "AppendPositionConditionNotMet")
    with pytest.raises(HttpResponseError) as e:
        blob.append_block(b"678901", maxsize_condition=10)
    assert (e.value.status_code, e.value.error_code) == (412, "MaxBlobSizeConditionNotMet")
    etag = blob.append_block(b"67890", appendpos_condition=5, maxsize_condition=10)["etag"]
    with pytest.raises(ResourceModifiedError) as m:
        blob.append_block(b"x", etag='"0x1"', match_condition=MatchConditions.IfNotModified)
    assert m.value.error_code == "ConditionNotMet"
    assert blob.get_blob_properties().etag == etag
    assert blob.download_blob().readall() == b"1234567890"


def test_seal_stops_appends_and_keeps_etag(container: ContainerClient, server: LiveServer) -> None:
    blob = container.get_blob_client("s")
    blob.create_append_blob()
    blob.append_block(b"abc")
    etag = blob.get_blob_properties().etag
    with pytest.raises(HttpResponseError) as e:
        blob.seal_append_blob(appendpos_condition=2)
    assert e.value.error_code == "AppendPositionConditionNotMet"
    sealed = blob.seal_append_blob(appendpos_condition=3)
    assert sealed["blob_sealed"] is True and sealed["etag"] == etag
    blob.seal_append_blob()  # idempotent
    with pytest.raises(HttpResponseError) as e:
        blob.append_block(b"more")
    assert (e.value.status_code, e.value.error_code) == (409, "BlobIsSealed")
    props = blob.get_blob_properties()
    assert props.is_append_blob_sealed is True and props.etag == etag
    blob.set_blob_metadata({"still": "writable"})  # metadata and properties may change
    r = request(server, "GET", f"/{container.container_name}", query="restype=container&comp=list")
    assert b"<Sealed>true</Sealed>" in r.body
    blob.create_append_blob()  # a sealed blob may be overwritten
    blob.append_block(b"new")
    assert blob.download_blob().readall() == b"new"


def test_blob_types_do_not_mix(container: ContainerClient) -> None:
    container.upload_blob("block", b"block blob")
    with pytest.raises(HttpResponseError) as e:
        container.get_blob_client("block").append_block(b"x")
    assert (e.value.status_code, e.value.error_code) == (409, "InvalidBlobType")
    with pytest.raises(HttpResponseError) as e:
        container.get_blob_client("block").seal_append_blob()
    assert e.value.error_code == "InvalidBlobType"
    app = container.get_blob_client("app")
    app.create_append_blob()
    with pytest.raises(HttpResponseError) as e:
        app.stage_block("b1", b"x")
    assert e.value.error_code == "InvalidBlobType"
    with pytest.raises(HttpResponseError) as e:
        app.commit_block_list([])
    assert e.value.error_code == "InvalidBlobType"
    with pytest.raises(HttpResponseError) as e:
        app.get_block_list()
    assert e.value.error_code == "InvalidBlobType"
    with pytest.raises(HttpResponseError) as e:
        container.get_blob_client("nothing").append_block(b"x")
    assert e.value.error_code == "BlobNotFound"


def test_upload_blob_as_append_blob(container: ContainerClient) -> None:
    data = os.urandom(9 * MIB + 11)
    blob = container.upload_blob("up", data, blob_type=BlobType.APPENDBLOB)  # 4 MiB blocks
    assert blob.download_blob().readall() == data
    assert blob.get_blob_properties().append_blob_committed_block_count == 3


def test_create_refuses_a_body_and_a_tier(container: ContainerClient, server: LiveServer) -> None:
    path = f"/{container.container_name}/x"
    r = request(server, "PUT", path, body=b"data", headers={"x-ms-blob-type": "AppendBlob"})
    assert (r.status, r.code) == (400, "InvalidHeaderValue"), r.body
    r = request(server, "PUT", path, headers={"x-ms-blob-type": "AppendBlob", "x-ms-access-tier": "Cool"})
    assert (r.status, r.code) == (400, "AccessTierNotSupportedForBlobType"), r.body
    r = request(server, "PUT", path, headers={"x-ms-blob-type": "AppendBlob"})
    assert r.status == 201
    r = request(server, "PUT", path, query="comp=appendblock", headers={"content-length": "0"})
    assert (r.status, r.code) == (400, "InvalidHeaderValue"), r.body
    r = request(server, "PUT", path, query="comp=appendblock", body=b"x",
                headers={"x-ms-blob-condition-appendpos": "minus one"})
    assert (r.status, r.code) == (400, "InvalidHeaderValue"), r.body
    assert container.get_blob_client("x").download_blob().readall() == b""
