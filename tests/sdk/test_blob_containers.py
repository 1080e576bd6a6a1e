"""Service and container operations through azure-storage-blob 12 against a live server."""

from __future__ import annotations

import uuid

import pytest
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobServiceClient, CorsRule, Metrics, RetentionPolicy

from tests.blob.raw import request
from tests.helpers.server import LiveServer


@pytest.fixture(scope="module")
def service(server: LiveServer) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(server.connection_string)


def _name(prefix: str = "c") -> str:
    return f"{prefix}{uuid.uuid4().hex[:16]}"


def test_create_get_properties_metadata_delete(service: BlobServiceClient) -> None:
    name = _name()
    container = service.create_container(name, metadata={"owner": "alice", "purpose": "test"})
    props = container.get_container_properties()
    assert props.name == name
    assert props.metadata == {"owner": "alice", "purpose": "test"}
    assert props.etag.startswith('"0x') and props.last_modified is not None
    assert props.public_access is None
    assert props.lease.status == "unlocked"
    before = props.etag
    container.set_container_metadata({"owner": "bob"})
    props = container.get_container_properties()
    assert props.metadata == {"owner": "bob"}
    assert props.etag != before
    assert container.exists()
    container.delete_container()
    assert not container.exists()
    with pytest.raises(ResourceNotFoundError) as e:
        container.get_container_properties()
    assert e.value.error_code == "ContainerNotFound"


def test_create_twice_and_delete_missing(service: BlobServiceClient) -> None:
    name = _name()
    service.create_container(name)
    with pytest.raises(ResourceExistsError) as e:
        service.create_container(name)
    assert e.value.error_code == "ContainerAlreadyExists"
    service.delete_container(name)
    with pytest.raises(ResourceNotFoundError) as e2:
        service.delete_container(name)
    assert e2.value.error_code == "ContainerNotFound"


def test_deleting_a_container_deletes_its_blobs(service: BlobServiceClient) -> None:
    name = _name()
    container = service.create_container(name)
    container.upload_blob("a", b"1")
    container.delete_container()
    container = service.create_container(name)
    assert list(container.list_blobs()) == []


@pytest.mark.parametrize("bad", ["ab", "UPPER", "has_underscore", "-leading", "trailing-", "dou--ble", "a" * 64, "sp ace"])
def test_invalid_container_names(service: BlobServiceClient, bad: str) -> None:
    with pytest.raises(HttpResponseError) as e:
        service.create_container(bad)
    assert e.value.status_code == 400
    assert e.value.error_code == "InvalidResourceName"


def test_public_access_levels_and_acl(service: BlobServiceClient) -> None:
    blob_level = service.create_container(_name(), public_access="blob")
    assert blob_level.get_container_properties().public_access == "blob"
    container_level = service.create_container(_name(), public_access="container")
    assert container_level.get_container_properties().public_access == "container"
    policy = container_level.get_container_access_policy()
    assert policy["public_access"] == "container" and policy["signed_identifiers"] == []
    container_level.set_container_access_policy(signed_identifiers={}, public_access=None)
    assert container_level.get_container_properties().public_access is None


def test_list_containers_prefix_marker_metadata(service: BlobServiceClient) -> None:
    prefix = _name("ls")
    names = [f"{prefix}-{i:02d}" for i in range(7)]
    for i, n in enumerate(names):
        service.create_container(n, metadata={"index": str(i)})
    listed = list(service.list_containers(name_starts_with=prefix, include_metadata=True))
    assert [c.name for c in listed] == names
    assert [c.metadata for c in listed] == [{"index": str(i)} for i in range(7)]
    without = list(service.list_containers(name_starts_with=prefix))
    assert all(not c.metadata for c in without)
    pages = service.list_containers(name_starts_with=prefix, results_per_page=3).by_page()
    seen = []
    tokens = []
    for page in pages:
        seen.append([c.name for c in page])
        tokens.append(pages.continuation_token)
    assert seen == [names[0:3], names[3:6], names[6:7]]
    assert tokens[0] and tokens[1] and not tokens[2]
    # Resuming from a marker gives the rest.
    resumed = service.list_containers(name_starts_with=prefix, results_per_page=3).by_page(continuation_token=tokens[0])
    assert [c.name for c in next(resumed)] == names[3:6]


def test_list_containers_maxresults_limits(server: LiveServer) -> None:
    bad = request(server, "GET", "/", query="comp=list&maxresults=0")
    assert bad.status == 400 and bad.code == "OutOfRangeInput"
    bad = request(server, "GET", "/", query="comp=list&maxresults=abc")
    assert bad.status == 400 and bad.code == "InvalidQueryParameterValue"
    ok = request(server, "GET", "/", query="comp=list&maxresults=99999")
    assert ok.status == 200 and b"<MaxResults>99999</MaxResults>" in ok.body


def test_service_properties_round_trip(service: BlobServiceClient) -> None:
    props = service.get_service_properties()
    assert props["hour_metrics"].enabled is False
    service.set_service_properties(
        hour_metrics=Metrics(enabled=True, include_apis=True, retention_policy=RetentionPolicy(enabled=True, days=5)),
        cors=[CorsRule(["https://example.com"], ["GET", "PUT"], max_age_in_seconds=60)],
    )
    props = service.get_service_properties()
    assert props["hour_metrics"].enabled is True
    assert props["hour_metrics"].retention_policy.days == 5
    assert props["cors"][0].allowed_origins == "https://example.com"


def test_account_information(service: BlobServiceClient) -> None:
    info = service.get_account_information()
    assert info["sku_name"] == "Standard_RAGRS" and info["account_kind"] == "StorageV2"


def test_conditional_container_operations(service: BlobServiceClient) -> None:
    from datetime import UTC, datetime, timedelta

    container = service.create_container(_name())
    future = datetime.now(UTC) + timedelta(hours=1)
    past = datetime.now(UTC) - timedelta(hours=1)
    with pytest.raises(ResourceModifiedError) as e:
        container.delete_container(if_modified_since=future)
    assert e.value.error_code == "ConditionNotMet"
    with pytest.raises(ResourceModifiedError):
        container.delete_container(if_unmodified_since=past)
    container.delete_container(if_modified_since=past)


def test_unknown_operations_are_client_errors(server: LiveServer) -> None:
    name = _name()
    assert request(server, "PUT", f"/{name}", query="restype=container").status == 201
    assert request(server, "GET", f"/{name}", query="restype=container&comp=bogus").status == 400
    r = request(server, "POST", f"/{name}", query="restype=container")
    assert r.status == 405 and r.code == "UnsupportedHttpVerb"
    r = request(server, "GET", f"/{name}/blob", query="comp=nonsense")
    assert r.status == 400 and r.code == "InvalidQueryParameterValue"
    r = request(server, "GET", "/", query="comp=list&include=everything")
    assert r.status == 400


def test_error_body_shape(server: LiveServer) -> None:
    r = request(server, "GET", "/nosuchcontainer1", query="restype=container")
    assert r.status == 404
    assert r.headers["x-ms-error-code"] == "ContainerNotFound"
    assert r.headers["x-ms-request-id"]
    assert r.headers["x-ms-version"] == "2021-08-06"
    assert r.headers["content-type"] == "application/xml"
    assert b"<Error><Code>ContainerNotFound</Code><Message>" in r.body
    assert r.headers["x-ms-request-id"].encode() in r.body


def test_any_version_is_served(server: LiveServer) -> None:
    for version in ("2015-04-05", "2019-02-02", "2099-12-31"):
        r = request(server, "GET", "/", query="comp=list", headers={"x-ms-version": version})
        assert r.status == 200, (version, r.body)
        assert r.headers["x-ms-version"] == version
