"""Block blob operations through azure-storage-blob 12: upload, download, ranges, properties,
metadata, MD5, conditional headers, copy, hostile names."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

from tests.blob.raw import request
from tests.helpers.server import LiveServer

MIB = 1 << 20


@pytest.fixture(scope="module")
def service(server: LiveServer) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(
        server.connection_string, max_single_put_size=4 * MIB, max_block_size=4 * MIB,
        max_single_get_size=4 * MIB, max_chunk_get_size=4 * MIB,
    )


@pytest.fixture
def container(service: BlobServiceClient) -> Iterator[ContainerClient]:
    c = service.create_container(f"b{uuid.uuid4().hex[:16]}")
    yield c
    c.delete_container()


def test_upload_download_properties(container: ContainerClient) -> None:
    data = b"hello, openbatch\n" * 100
    blob = container.upload_blob(
        "dir/hello.txt", data, metadata={"kind": "greeting"},
        content_settings=ContentSettings(content_type="text/plain", content_language="en",
                                         cache_control="no-cache", content_disposition="inline",
                                         content_encoding="identity"),
    )
    assert blob.download_blob().readall() == data
    props = blob.get_blob_properties()
    assert props.size == len(data)
    assert props.blob_type == "BlockBlob"
    assert props.metadata == {"kind": "greeting"}
    cs = props.content_settings
    assert (cs.content_type, cs.content_language, cs.cache_control, cs.content_disposition, cs.content_encoding) == (
        "text/plain", "en", "no-cache", "inline", "identity")
    assert bytes(cs.content_md5) == hashlib.md5(data).digest()
    assert props.etag.startswith('"0x') and props.creation_time and props.last_modified
    assert props.server_encrypted is True
    assert props.lease.state == "available"


def test_empty_blob(container: ContainerClient) -> None:
    blob = container.upload_blob("empty", b"")
    assert blob.download_blob().readall() == b""
    assert blob.get_blob_properties().size == 0


def test_overwrite_rules(container: ContainerClient) -> None:
    blob = container.upload_blob("o", b"first")
    with pytest.raises(ResourceExistsError) as e:
        container.upload_blob("o", b"second")
    assert e.value.error_code == "BlobAlreadyExists"
    created = blob.get_blob_properties().creation_time
    container.upload_blob("o", b"third", overwrite=True)
    assert blob.download_blob().readall() == b"third"
    assert blob.get_blob_properties().creation_time == created


def test_missing_blob_and_container(container: ContainerClient, service: BlobServiceClient) -> None:
    with pytest.raises(ResourceNotFoundError) as e:
        container.get_blob_client("nope").download_blob()
    assert e.value.error_code == "BlobNotFound"
    assert not container.get_blob_client("nope").exists()
    with pytest.raises(ResourceNotFoundError) as e2:
        service.get_blob_client("nosuchcontainer9", "x").upload_blob(b"data")
    assert e2.value.error_code == "ContainerNotFound"
    with pytest.raises(ResourceNotFoundError) as e3:
        container.get_blob_client("nope").delete_blob()
    assert e3.value.error_code == "BlobNotFound"


def test_set_properties_and_metadata(container: ContainerClient) -> None:
    blob = container.upload_blob("p", b"data", metadata={"a": "1"})
    etag = blob.get_blob_properties().etag
    blob.set_http_headers(ContentSettings(content_type="application/json", cache_control="max-age=5"))
    props = blob.get_blob_properties()
    assert props.content_settings.content_type == "application/json"
    assert props.content_settings.cache_control == "max-age=5"
    assert props.content_settings.content_md5 is None  # Set Blob Properties replaces all content headers
    assert props.etag != etag
    blob.set_blob_metadata({"b": "2", "c": "three"})
    assert blob.get_blob_properties().metadata == {"b": "2", "c": "three"}
    blob.set_blob_metadata({})
    assert blob.get_blob_properties().metadata == {}
    assert blob.download_blob().readall() == b"data"


def test_invalid_metadata_name(container: ContainerClient) -> None:
    with pytest.raises(HttpResponseError) as e:
        container.upload_blob("m", b"x", metadata={"1bad": "v"})
    assert e.value.error_code == "InvalidMetadata"


def test_delete_blob(container: ContainerClient) -> None:
    blob = container.upload_blob("d", b"bye")
    blob.delete_blob()
    assert not blob.exists()
    assert [b.name for b in container.list_blobs()] == []


def test_ranges(container: ContainerClient) -> None:
    data = bytes(range(256)) * 64  # 16 KiB
    blob = container.upload_blob("r", data)
    assert blob.download_blob(offset=10, length=100).readall() == data[10:110]
    assert blob.download_blob(offset=16000).readall() == data[16000:]
    assert blob.download_blob(offset=16000, length=10_000).readall() == data[16000:]
    with pytest.raises(HttpResponseError) as e:
        blob.download_blob(offset=len(data), length=5)
    assert e.value.status_code == 416 and e.value.error_code == "InvalidRange"


def test_range_headers_raw(server: LiveServer, container: ContainerClient) -> None:
    data = b"0123456789" * 10
    container.upload_blob("rr", data)
    path = f"/{container.container_name}/rr"
    r = request(server, "GET", path, headers={"x-ms-range": "bytes=5-14"})
    assert r.status == 206 and r.body == data[5:15]
    assert r.headers["content-range"] == "bytes 5-14/100"
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["x-ms-blob-content-md5"]  # whole-blob MD5 on partial reads
    r = request(server, "GET", path, headers={"range": "bytes=90-"})
    assert r.status == 206 and r.body == data[90:]
    r = request(server, "GET", path, headers={"x-ms-range": "bytes=100-200"})
    assert r.status == 416 and r.code == "InvalidRange"
    r = request(server, "GET", path, headers={"x-ms-range": "bytes=0-3", "x-ms-range-get-content-md5": "true"})
    assert r.status == 206 and r.headers["content-md5"] == __import__("base64").b64encode(
        hashlib.md5(data[:4]).digest()).decode()
    r = request(server, "GET", path)
    assert r.status == 200 and r.body == data and r.headers["content-md5"]
    r = request(server, "HEAD", path)
    assert r.status == 200 and r.body == b"" and r.headers["content-length"] == "100"
    r = request(server, "GET", path, query="snapshot=2024-01-01T00:00:00.0000000Z")
    assert r.status == 404 and r.code == "BlobNotFound"  # no such snapshot


def test_md5_checked_and_returned(server: LiveServer, container: ContainerClient) -> None:
    data = os.urandom(5000)
    blob = container.upload_blob("md5", data, validate_content=True)
    assert blob.download_blob(validate_content=True).readall() == data
    wrong = hashlib.md5(b"something else").digest()
    with pytest.raises(HttpResponseError) as e:
        container.upload_blob("md5-bad", data, content_settings=ContentSettings(content_md5=wrong))
    assert e.value.status_code == 400 and e.value.error_code == "Md5Mismatch"
    assert not container.get_blob_client("md5-bad").exists()
    import base64

    r = request(server, "PUT", f"/{container.container_name}/md5-raw", body=b"abc",
                headers={"x-ms-blob-type": "BlockBlob", "content-md5": base64.b64encode(wrong).decode()})
    assert r.status == 400 and r.code == "Md5Mismatch"
    r = request(server, "PUT", f"/{container.container_name}/md5-raw", body=b"abc",
                headers={"x-ms-blob-type": "BlockBlob", "content-md5": "not base64!"})
    assert r.status == 400 and r.code == "InvalidHeaderValue"
    assert not container.get_blob_client("md5-raw").exists()


def test_large_upload_in_blocks_and_parallel_download(container: ContainerClient) -> None:
    data = os.urandom(24 * MIB + 12345)
    blob = container.upload_blob("large", data, max_concurrency=4)
    assert blob.get_blob_properties().size == len(data)
    committed, _ = blob.get_block_list("committed")
    assert len(committed) == 7
    assert blob.download_blob(max_concurrency=4).readall() == data
    assert blob.download_blob(offset=5 * MIB - 7, length=MIB).readall() == data[5 * MIB - 7: 6 * MIB - 7]


def test_single_put_of_a_large_body(service: BlobServiceClient, server: LiveServer, container: ContainerClient) -> None:
    data = os.urandom(20 * MIB)
    one_shot = BlobServiceClient.from_connection_string(server.connection_string, max_single_put_size=64 * MIB)
    blob = one_shot.get_blob_client(container.container_name, "single")
    blob.upload_blob(data)
    assert blob.get_block_list("committed")[0] == []  # Put Blob leaves no committed blocks
    assert bytes(blob.get_blob_properties().content_settings.content_md5) == hashlib.md5(data).digest()
    assert blob.download_blob().readall() == data


def test_conditional_reads(container: ContainerClient) -> None:
    blob = container.upload_blob("c", b"conditional")
    props = blob.get_blob_properties()
    # Azure answers a failed If-None-Match / If-Modified-Since read with 304 + ConditionNotMet,
    # which the SDK raises as ResourceModifiedError (as its own recorded tests expect).
    with pytest.raises(ResourceModifiedError) as e304:
        blob.download_blob(etag=props.etag, match_condition=MatchConditions.IfModified)
    assert e304.value.status_code == 304 and e304.value.error_code == "ConditionNotMet"
    with pytest.raises(ResourceModifiedError) as e:
        blob.download_blob(etag='"0x1234"', match_condition=MatchConditions.IfNotModified)
    assert e.value.error_code == "ConditionNotMet"
    assert blob.download_blob(etag=props.etag, match_condition=MatchConditions.IfNotModified).readall() == b"conditional"
    future = datetime.now(UTC) + timedelta(hours=1)
    past = datetime.now(UTC) - timedelta(hours=1)
    with pytest.raises(HttpResponseError) as head304:
        blob.get_blob_properties(if_modified_since=future)
    assert head304.value.status_code == 304
    assert blob.get_blob_properties(if_modified_since=past).size == 11
    with pytest.raises(ResourceModifiedError):
        blob.download_blob(if_unmodified_since=past)


def test_conditional_writes(container: ContainerClient) -> None:
    blob = container.upload_blob("w", b"v1")
    etag = blob.get_blob_properties().etag
    blob.upload_blob(b"v2", overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified)
    with pytest.raises(ResourceModifiedError) as e:
        blob.upload_blob(b"v3", overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified)
    assert e.value.error_code == "ConditionNotMet"
    assert blob.download_blob().readall() == b"v2"
    with pytest.raises(ResourceModifiedError):
        blob.set_blob_metadata({"x": "y"}, etag=etag, match_condition=MatchConditions.IfNotModified)
    with pytest.raises(ResourceModifiedError):
        blob.delete_blob(etag=etag, match_condition=MatchConditions.IfNotModified)
    new = blob.get_blob_properties().etag
    with pytest.raises(ResourceModifiedError):
        blob.delete_blob(etag=new, match_condition=MatchConditions.IfModified)
    blob.delete_blob(etag=new, match_condition=MatchConditions.IfNotModified)
    # If-Match on a blob that does not exist fails; If-None-Match: * creates.
    with pytest.raises(ResourceModifiedError):
        blob.upload_blob(b"v4", overwrite=True, etag=new, match_condition=MatchConditions.IfNotModified)
    blob.upload_blob(b"v5")  # overwrite=False sends If-None-Match: *
    assert blob.download_blob().readall() == b"v5"


def test_copy_blob(container: ContainerClient, service: BlobServiceClient) -> None:
    data = os.urandom(6 * MIB)
    src = container.upload_blob("src", data, metadata={"origin": "src"},
                                content_settings=ContentSettings(content_type="application/x-test"))
    dst = container.get_blob_client("dst")
    result = dst.start_copy_from_url(src.url)
    assert result["copy_status"] == "success" and result["copy_id"]
    props = dst.get_blob_properties()
    assert props.copy.status == "success" and props.copy.id == result["copy_id"]
    assert props.copy.source == src.url
    assert props.copy.progress == f"{len(data)}/{len(data)}"
    assert props.metadata == {"origin": "src"}
    assert props.content_settings.content_type == "application/x-test"
    assert dst.download_blob().readall() == data
    # The copy is independent of its source.
    src.upload_blob(b"changed", overwrite=True)
    assert dst.download_blob().readall() == data
    src.delete_blob()
    assert dst.download_blob(offset=MIB, length=10).readall() == data[MIB: MIB + 10]
    # Metadata given with the copy replaces the source's; sync copy and Put Blob From URL work too.
    other = service.create_container(f"b{uuid.uuid4().hex[:16]}")
    target = other.get_blob_client("copied")
    target.start_copy_from_url(dst.url, metadata={"new": "meta"}, requires_sync=True)
    assert target.get_blob_properties().metadata == {"new": "meta"}
    from_url = other.get_blob_client("from-url")
    from_url.upload_blob_from_url(dst.url)
    assert from_url.download_blob().readall() == data
    with pytest.raises(ResourceNotFoundError):
        other.get_blob_client("x").start_copy_from_url(container.get_blob_client("missing").url)
    with pytest.raises(HttpResponseError) as e:
        other.get_blob_client("y").start_copy_from_url(dst.url, source_etag='"0x1"',
                                                        source_match_condition=MatchConditions.IfNotModified)
    assert e.value.status_code == 412 and e.value.error_code == "SourceConditionNotMet"
    other.delete_container()


HOSTILE = [
    "%2F", "a%2Fb", "%252e%252e", "日本語/ファイル.txt", "emoji😀/🔥", "x" * 1024, "sp ace", "q?x#y&z=1",
    "trail/", "back\\..\\slash", "a//b", "+plus+", "semi;colon", "'quote\"", "<xml>&amp;", "tab\tname",
    "dots.../...", "NUL-like\x01char",
]


def test_hostile_names_are_data(server: LiveServer, container: ContainerClient) -> None:
    for name in HOSTILE:
        container.upload_blob(name, name.encode("utf-8"))
    for name in HOSTILE:
        assert container.download_blob(name).readall() == name.encode("utf-8"), name
    # Azure stores a backslash in a blob name as a slash
    assert sorted(b.name for b in container.list_blobs()) == sorted(n.replace("\\", "/") for n in HOSTILE)
    too_long = "y" * 1025
    with pytest.raises(HttpResponseError) as e:
        container.upload_blob(too_long, b"x")
    assert e.value.status_code == 400
    _assert_no_name_on_disk(server.data_dir, ["日本語", "emoji", "xxxxxxxx", "plus", "slash", "quote"])


def test_unnormalized_paths_are_names_not_paths(server: LiveServer, container: ContainerClient) -> None:
    """Dot segments the SDK would normalize away reach the server raw and stay blob names."""
    c = container.container_name
    escapes = ["../../../../etc/passwd-openbatch", "..", ".", "./a", "a/../../b", "..%2F..%2Fx"]
    for raw in escapes:
        r = request(server, "PUT", f"/{c}/{raw}", body=b"payload", headers={"x-ms-blob-type": "BlockBlob"})
        assert r.status == 201, (raw, r.body)
    names = {b.name for b in container.list_blobs()}
    assert names == {"../../../../etc/passwd-openbatch", "..", ".", "./a", "a/../../b", "../../x"}
    r = request(server, "GET", f"/{c}/../../../../etc/passwd-openbatch")
    assert r.status == 200 and r.body == b"payload"
    assert not Path("/etc/passwd-openbatch").exists()
    assert not any("passwd" in p.name for p in server.data_dir.parent.rglob("*"))
    r = request(server, "PUT", "/../x", query="restype=container")
    assert r.status == 400 and r.code == "InvalidResourceName"
    r = request(server, "GET", f"/{c}/%ff%fe")
    assert r.status == 400


def _assert_no_name_on_disk(root: Path, fragments: list[str]) -> None:
    for path in root.rglob("*"):
        for fragment in fragments:
            assert fragment not in path.name, path
