"""Blob index tags through azure-storage-blob 12: set_blob_tags / get_blob_tags, tags on upload,
block lists and copies (x-ms-tags), find_blobs_by_tags account-wide and in a container, and
x-ms-if-tags conditions (if_tags_match_condition) on the operations that take them.

Azure's rules ("Manage and find Azure Blob data with blob index tags", Set Blob Tags, Find Blobs by
Tags): at most 10 tags, keys 1-128 and values 0-256 characters of letters, digits, space and
+ - . / : = _; setting tags leaves ETag and Last-Modified alone; a write of new content replaces
them; find expressions join "key" op 'value' comparisons with AND only (ranges on one key,
@container account-wide); conditions also take <>, OR and parentheses.
"""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from azure.core.exceptions import HttpResponseError, ResourceModifiedError
from azure.storage.blob import BlobBlock, BlobServiceClient, ContainerClient

from tests.blob.raw import request
from tests.helpers.server import LiveServer


def _code(call: object, *args: object, **kwargs: object) -> tuple[int | None, str | None]:
    assert callable(call)
    with pytest.raises(HttpResponseError) as e:
        call(*args, **kwargs)
    return e.value.status_code, e.value.error_code


def test_set_and_get_tags(container: ContainerClient) -> None:
    blob = container.upload_blob("b", b"x")
    before = blob.get_blob_properties()
    tags = {"project": "openbatch", "Stage": "raw data", "n": "0042", "path/to:x": "a=b_c+d-e.f"}
    blob.set_blob_tags(tags)
    assert blob.get_blob_tags() == tags
    after = blob.get_blob_properties()
    assert (after.etag, after.last_modified) == (before.etag, before.last_modified)
    assert after.tag_count == 4
    listed = {b.name: (b.tag_count, b.tags) for b in container.list_blobs(include=["tags"])}
    assert listed == {"b": (4, tags)}
    assert next(iter(container.list_blobs())).tag_count == 4
    blob.set_blob_tags({})
    assert blob.get_blob_tags() == {}
    assert blob.get_blob_properties().tag_count is None


def test_writes_of_new_content_replace_the_tags(container: ContainerClient) -> None:
    blob = container.upload_blob("b", b"x", tags={"a": "1"})
    assert blob.get_blob_tags() == {"a": "1"}
    blob.set_blob_metadata({"m": "v"})  # not new content: the tags stay
    assert blob.get_blob_tags() == {"a": "1"}
    blob.upload_blob(b"y", overwrite=True)
    assert blob.get_blob_tags() == {}
    blob.stage_block("YmxvY2s=", b"z")
    blob.commit_block_list([BlobBlock("YmxvY2s=")], tags={"committed": "yes"})
    assert blob.get_blob_tags() == {"committed": "yes"}
    copy = container.get_blob_client("copy")
    copy.upload_blob(b"old", tags={"stale": "1"})
    copy.start_copy_from_url(blob.url, tags={"copied": "yes"})
    assert copy.get_blob_tags() == {"copied": "yes"}
    copy.start_copy_from_url(blob.url)
    assert copy.get_blob_tags() == {}
    snapshot = blob.create_snapshot()
    blob.set_blob_tags({"after": "snapshot"})
    assert container.get_blob_client("b", snapshot=snapshot["snapshot"]).get_blob_tags() == {"committed": "yes"}


def test_find_blobs_by_tags(service: BlobServiceClient, container: ContainerClient) -> None:
    other = service.create_container(f"t{uuid.uuid4().hex[:16]}")
    try:
        project = uuid.uuid4().hex
        for i in range(5):
            container.upload_blob(f"r{i}", b"x", tags={"project": project, "rank": f"{i:02d}"})
        other.upload_blob("elsewhere", b"x", tags={"project": project, "rank": "03"})
        container.upload_blob("untagged", b"x")
        found = service.find_blobs_by_tags(f"\"project\" = '{project}'")
        assert sorted((b.container_name, b.name) for b in found) == sorted(
            [(container.container_name, f"r{i}") for i in range(5)] + [(other.container_name, "elsewhere")])
        ranged = service.find_blobs_by_tags(f"\"project\" = '{project}' AND \"rank\" >= '01' AND \"rank\" < '03'")
        hits = sorted(ranged, key=lambda b: b.name)
        assert [b.name for b in hits] == ["r1", "r2"]
        assert hits[0].tags == {"project": project, "rank": "01"}
        scoped = service.find_blobs_by_tags(f"@container = '{other.container_name}' AND \"project\" = '{project}'")
        assert [b.name for b in scoped] == ["elsewhere"]
        inside = container.find_blobs_by_tags(f"\"project\" = '{project}' AND \"rank\" > '02'")
        assert sorted(b.name for b in inside) == ["r3", "r4"]
        pages = container.find_blobs_by_tags(f"\"project\" = '{project}'", results_per_page=2).by_page()
        assert [sorted(b.name for b in page) for page in pages] == [["r0", "r1"], ["r2", "r3"], ["r4"]]
    finally:
        other.delete_container()


@pytest.mark.parametrize("where", [
    "\"a\" = '1' OR \"b\" = '2'", "\"a\" <> '1'", "\"a\" = '1", "\"a\" = '1' AND \"a\" = '2'",
    "\"a\" > '1' AND \"a\" > '2'", "@container = 'x'", "\"a\" ~ '1'", "(\"a\" = '1')",
    " AND ".join(f"\"k{i}\" = 'v'" for i in range(11)),
])
def test_malformed_search_expressions(server: LiveServer, where: str) -> None:
    r = request(server, "GET", "", query="comp=blobs&where=" + quote(where, safe=""))
    assert (r.status, r.code) == (400, "InvalidQueryParameterValue"), where
    assert b"<QueryParameterName>where</QueryParameterName>" in r.body


def test_a_container_search_cannot_name_a_container(server: LiveServer, container: ContainerClient) -> None:
    with pytest.raises(HttpResponseError) as e:
        list(container.find_blobs_by_tags("@container = 'x' AND \"a\" = '1'"))
    assert e.value.error_code == "InvalidQueryParameterValue"


@pytest.mark.parametrize(("tags", "code"), [
    ({f"k{i}": "v" for i in range(11)}, "TagsTooLarge"),
    ({"k" * 129: "v"}, "TagsTooLarge"),
    ({"k": "v" * 257}, "TagsTooLarge"),
    ({"bad!": "v"}, "InvalidTag"),
    ({"k": "caf\u00e9"}, "InvalidTag"),
])
def test_bad_tags_are_refused(container: ContainerClient, tags: dict[str, str], code: str) -> None:
    blob = container.upload_blob("b", b"x", overwrite=True)
    assert _code(blob.set_blob_tags, tags) == (400, code)
    assert _code(container.upload_blob, "c", b"x", tags=tags, overwrite=True) == (400, code)


def test_empty_and_duplicate_tag_names(server: LiveServer, container: ContainerClient) -> None:
    container.upload_blob("b", b"x")
    path = f"/{container.container_name}/b"
    for tags, code in (("<Tag><Key></Key><Value>v</Value></Tag>", "EmptyTagName"),
                       ("<Tag><Key>k</Key><Value>1</Value></Tag><Tag><Key>k</Key><Value>2</Value></Tag>",
                        "DuplicateTagNames")):
        body = f'<?xml version="1.0" encoding="utf-8"?><Tags><TagSet>{tags}</TagSet></Tags>'.encode()
        r = request(server, "PUT", path, query="comp=tags", body=body)
        assert (r.status, r.code) == (400, code)


def test_if_tags_conditions(container: ContainerClient) -> None:
    blob = container.upload_blob("b", b"x", tags={"state": "ready", "n": "5"})
    yes, no = "\"state\" = 'ready' AND \"n\" > '3'", "\"state\" <> 'ready' OR \"n\" < '3'"
    assert blob.download_blob(if_tags_match_condition=yes).readall() == b"x"
    assert blob.get_blob_tags(if_tags_match_condition="(\"state\" = 'done') OR \"n\" = '5'") == {
        "state": "ready", "n": "5"}
    for call, kwargs in ((blob.download_blob, {}), (blob.get_blob_properties, {}),
                         (blob.set_blob_metadata, {"metadata": {"k": "v"}}), (blob.get_blob_tags, {}),
                         (blob.set_blob_tags, {"tags": {"x": "y"}}),
                         (blob.set_standard_blob_tier, {"standard_blob_tier": "Cool"}),
                         (blob.upload_blob, {"data": b"z", "overwrite": True}), (blob.acquire_lease, {}),
                         (blob.delete_blob, {})):
        with pytest.raises((ResourceModifiedError, HttpResponseError)) as e:
            call(if_tags_match_condition=no, **kwargs)
        assert e.value.status_code == 412, call
    assert blob.get_blob_tags() == {"state": "ready", "n": "5"}
    assert blob.download_blob().readall() == b"x"
    assert _code(blob.download_blob, if_tags_match_condition="\"state\" = ready") == (400, "InvalidHeaderValue")
    assert _code(blob.download_blob, if_tags_match_condition="@container = 'x'") == (400, "InvalidHeaderValue")
    blob.delete_blob(if_tags_match_condition=yes)
    assert not blob.exists()


def test_if_tags_on_snapshots_block_lists_and_copy_sources(server: LiveServer, container: ContainerClient) -> None:
    blob = container.upload_blob("src", b"x", tags={"state": "ready"})
    no, yes = "\"state\" = 'draft'", "\"state\" = 'ready'"
    assert _code(blob.create_snapshot, if_tags_match_condition=no) == (412, "ConditionNotMet")
    assert blob.create_snapshot(if_tags_match_condition=yes)["snapshot"]
    path = f"/{container.container_name}/src"
    r = request(server, "GET", path, query="comp=blocklist", headers={"x-ms-if-tags": no})
    assert (r.status, r.code) == (412, "ConditionNotMet")
    target = container.get_blob_client("dst")
    for headers, status in (({"x-ms-source-if-tags": no}, 412), ({"x-ms-source-if-tags": yes}, 202)):
        r = request(server, "PUT", f"/{container.container_name}/dst",
                    headers={"x-ms-copy-source": blob.url, **headers})
        assert r.status == status, r.body
    assert target.download_blob().readall() == b"x"
    r = request(server, "PUT", f"/{container.container_name}/dst2",
                headers={"x-ms-copy-source": blob.url, "x-ms-blob-type": "BlockBlob", "x-ms-source-if-tags": no})
    assert (r.status, r.code) == (412, "SourceConditionNotMet")
