"""Page blobs through azure-storage-blob 12: create, Put Page (update / clear), Get Page Ranges (and
diffs against snapshots), resize, sequence numbers and their conditions, 512-byte alignment."""

from __future__ import annotations

import os

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceModifiedError
from azure.storage.blob import (
    BlobType,
    ContainerClient,
    ContentSettings,
    SequenceNumberAction,
)

from tests.blob.raw import request
from tests.helpers.server import LiveServer

MIB = 1 << 20


def _ranges(blob: object) -> list[tuple[int, int]]:
    return [(r["start"], r["end"]) for r in blob.get_page_ranges()[0]]  # type: ignore[attr-defined]


def test_pages_are_written_read_and_listed(container: ContainerClient) -> None:
    blob = container.get_blob_client("disk.vhd")
    blob.create_page_blob(64 * 1024, sequence_number=7, metadata={"kind": "disk"},
                          content_settings=ContentSettings(content_type="application/x-vhd"))
    props = blob.get_blob_properties()
    assert props.blob_type == BlobType.PAGEBLOB and props.size == 64 * 1024
    assert props.page_blob_sequence_number == 7 and props.metadata == {"kind": "disk"}
    assert blob.download_blob().readall() == bytes(64 * 1024)  # unwritten pages read as zeros
    assert _ranges(blob) == []
    a, b = os.urandom(1024), os.urandom(512)
    done = blob.upload_page(a, offset=2048, length=1024)
    assert done["blob_sequence_number"] == 7 and done["content_md5"]
    blob.upload_page(b, offset=3072, length=512)  # adjacent: one range
    blob.upload_page(b, offset=10240, length=512)
    assert _ranges(blob) == [(2048, 3583), (10240, 10751)]
    data = blob.download_blob().readall()
    assert data[2048:3072] == a and data[3072:3584] == b and data[10240:10752] == b
    assert data[:2048] == bytes(2048) and data[3584:10240] == bytes(10240 - 3584)
    assert blob.download_blob(offset=3000, length=200).readall() == (a + b)[952:1152]
    blob.clear_page(offset=2560, length=512)
    assert _ranges(blob) == [(2048, 2559), (3072, 3583), (10240, 10751)]
    assert blob.download_blob(offset=2048, length=1536).readall() == a[:512] + bytes(512) + b
    assert [(r.start, r.end) for r in blob.list_page_ranges(results_per_page=2)] == _ranges(blob)
    window = blob.get_page_ranges(offset=3072, length=8192)[0]
    assert [(r["start"], r["end"]) for r in window] == [(3072, 3583), (10240, 10751)]
    listed = next(iter(container.list_blobs()))
    assert listed.blob_type == BlobType.PAGEBLOB and listed.page_blob_sequence_number == 7


def test_upload_blob_as_page_blob(container: ContainerClient) -> None:
    data = os.urandom(6 * MIB)
    blob = container.upload_blob("pb", data, blob_type=BlobType.PAGEBLOB)
    assert blob.download_blob().readall() == data
    assert _ranges(blob) == [(0, len(data) - 1)]


def test_alignment_and_bounds(container: ContainerClient, server: LiveServer) -> None:
    blob = container.get_blob_client("al")
    blob.create_page_blob(4096)
    path = f"/{container.container_name}/al"
    for rng, body in [("bytes=1-512", b"x" * 512), ("bytes=0-510", b"x" * 511), ("bytes=4096-4607", b"x" * 512)]:
        r = request(server, "PUT", path, query="comp=page", body=body,
                    headers={"x-ms-page-write": "update", "x-ms-range": rng})
        assert (r.status, r.code) == (416, "InvalidPageRange"), (rng, r.body)
    r = request(server, "PUT", path, query="comp=page", body=b"x" * 512,
                headers={"x-ms-page-write": "update", "x-ms-range": "bytes=0-1023"})
    assert (r.status, r.code) == (416, "InvalidPageRange"), r.body  # body and range differ
    r = request(server, "PUT", path, query="comp=page", body=b"x" * 512, headers={"x-ms-range": "bytes=0-511"})
    assert (r.status, r.code) == (400, "MissingRequiredHeader"), r.body
    r = request(server, "PUT", path, query="comp=page", body=b"x" * 512, headers={"x-ms-page-write": "update"})
    assert (r.status, r.code) == (400, "MissingRequiredHeader"), r.body
    r = request(server, "PUT", path, query="comp=page", body=b"x" * 512,
                headers={"x-ms-page-write": "clear", "x-ms-range": "bytes=0-511"})
    assert (r.status, r.code) == (400, "InvalidHeaderValue"), r.body  # a clear carries no body
    for size in ("1000", "-512", "lots"):
        r = request(server, "PUT", f"/{container.container_name}/bad", headers={
            "x-ms-blob-type": "PageBlob", "x-ms-blob-content-length": size})
        assert (r.status, r.code) == (400, "InvalidHeaderValue"), (size, r.body)
    r = request(server, "PUT", f"/{container.container_name}/bad", headers={"x-ms-blob-type": "PageBlob"})
    assert (r.status, r.code) == (400, "MissingRequiredHeader"), r.body
    assert _ranges(blob) == [] and not container.get_blob_client("bad").exists()


def test_sequence_numbers_and_their_conditions(container: ContainerClient) -> None:
    blob = container.get_blob_client("seq")
    blob.create_page_blob(1024)
    assert blob.set_sequence_number(SequenceNumberAction.Update, 5)["blob_sequence_number"] == 5
    assert blob.set_sequence_number(SequenceNumberAction.Max, 3)["blob_sequence_number"] == 5
    assert blob.set_sequence_number(SequenceNumberAction.Max, 9)["blob_sequence_number"] == 9
    assert blob.set_sequence_number(SequenceNumberAction.Increment)["blob_sequence_number"] == 10
    page = b"p" * 512
    for cond in ({"if_sequence_number_lt": 10}, {"if_sequence_number_lte": 9}, {"if_sequence_number_eq": 11}):
        with pytest.raises(HttpResponseError) as e:
            blob.upload_page(page, offset=0, length=512, **cond)
        assert (e.value.status_code, e.value.error_code) == (412, "SequenceNumberConditionNotMet"), cond
        with pytest.raises(HttpResponseError) as e:
            blob.clear_page(offset=0, length=512, **cond)
        assert e.value.error_code == "SequenceNumberConditionNotMet"
    blob.upload_page(page, offset=0, length=512, if_sequence_number_lt=11, if_sequence_number_lte=10,
                     if_sequence_number_eq=10)
    assert _ranges(blob) == [(0, 511)]
    with pytest.raises(ResourceModifiedError):
        blob.upload_page(page, offset=512, length=512, etag='"0x1"',
                         match_condition=MatchConditions.IfNotModified)


def test_resize_keeps_content_settings_and_drops_pages(container: ContainerClient) -> None:
    blob = container.get_blob_client("rs")
    blob.create_page_blob(4096, content_settings=ContentSettings(content_type="text/x-pages", cache_control="c"))
    blob.upload_page(b"a" * 1024, offset=0, length=1024)
    blob.upload_page(b"b" * 1024, offset=3072, length=1024)
    done = blob.resize_blob(2048)
    assert done["blob_sequence_number"] == 0
    props = blob.get_blob_properties()
    assert props.size == 2048 and props.content_settings.content_type == "text/x-pages"
    assert props.content_settings.cache_control == "c"
    assert _ranges(blob) == [(0, 1023)]
    blob.resize_blob(8192)
    data = blob.download_blob().readall()
    assert data == b"a" * 1024 + bytes(8192 - 1024)  # the cut pages do not come back
    blob.resize_blob(512)
    assert blob.download_blob().readall() == b"a" * 512
    with pytest.raises(HttpResponseError) as e:
        blob.resize_blob(1000)
    assert (e.value.status_code, e.value.error_code) == (400, "InvalidHeaderValue")
    container.upload_blob("blk", b"block")
    with pytest.raises(HttpResponseError) as e:
        container.get_blob_client("blk").resize_blob(512)
    assert e.value.error_code == "InvalidBlobType"
    with pytest.raises(HttpResponseError) as e:
        container.get_blob_client("blk").upload_page(b"x" * 512, offset=0, length=512)
    assert e.value.error_code == "InvalidBlobType"


def test_page_range_diff_against_snapshots(container: ContainerClient) -> None:
    blob = container.get_blob_client("diff")
    blob.create_page_blob(16 * 1024)
    blob.upload_page(b"1" * 2048, offset=0, length=2048)
    blob.upload_page(b"2" * 1024, offset=8192, length=1024)
    first = blob.create_snapshot()
    blob.upload_page(b"3" * 512, offset=512, length=512)  # inside written pages
    blob.upload_page(b"4" * 512, offset=12288, length=512)  # new pages
    blob.clear_page(offset=8192, length=512)  # half of the second run
    pages, cleared = blob.get_page_ranges(previous_snapshot_diff=first)
    assert [(r["start"], r["end"]) for r in pages] == [(512, 1023), (12288, 12799)]
    assert [(r["start"], r["end"]) for r in cleared] == [(8192, 8703)]
    second = blob.create_snapshot()
    pages, cleared = blob.get_page_ranges(previous_snapshot_diff=second)
    assert pages == [] and cleared == []
    listed = list(blob.list_page_ranges(previous_snapshot=first))
    assert [(r.start, r.end, r.cleared) for r in listed] == [(512, 1023, False), (8192, 8703, True),
                                                               (12288, 12799, False)]
    # The diff between two snapshots, read from the later one.
    later = container.get_blob_client("diff", snapshot=second["snapshot"])
    pages, cleared = later.get_page_ranges(previous_snapshot_diff=first)
    assert [(r["start"], r["end"]) for r in pages] == [(512, 1023), (12288, 12799)]
    old = container.get_blob_client("diff", snapshot=first["snapshot"])
    assert old.download_blob(offset=512, length=512).readall() == b"1" * 512
    assert [(r["start"], r["end"]) for r in old.get_page_ranges()[0]] == [(0, 2047), (8192, 9215)]
    with pytest.raises(HttpResponseError) as e:
        blob.get_page_ranges(previous_snapshot_diff="2001-01-01T00:00:00.0000000Z")
    assert e.value.error_code == "PreviousSnapshotNotFound"
    blob.delete_blob(delete_snapshots="include")
