"""CORS through azure-storage-blob 12's set_service_properties and raw browser-like requests (OPTIONS
preflights, GETs with an Origin), as Azure Storage evaluates its CORS rules ("CORS support for Azure
Storage"): the first rule allowing the origin, method and requested headers answers a preflight
(without authorization), else 403 CorsPreflightFailure; other requests with an Origin get that rule's
Access-Control-* headers; Vary: Origin when a rule could have answered."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient, ContainerClient, CorsRule, RetentionPolicy

from tests.blob.raw import request
from tests.helpers.server import LiveServer

APP = "https://app.example"
OTHER = "https://other.example"


@pytest.fixture(scope="module")
def service(server: LiveServer) -> Iterator[BlobServiceClient]:
    client = BlobServiceClient.from_connection_string(server.connection_string)
    client.set_service_properties(cors=[
        CorsRule([APP], ["GET", "PUT", "HEAD"], allowed_headers=["x-ms-meta-*", "content-type"],
                 exposed_headers=["x-ms-meta-*", "x-ms-request-id"], max_age_in_seconds=300),
        CorsRule(["*"], ["GET"], max_age_in_seconds=60),
    ])
    yield client
    client.set_service_properties(cors=[])


@pytest.fixture
def container(service: BlobServiceClient) -> Iterator[ContainerClient]:
    c = service.create_container(f"c{uuid.uuid4().hex[:16]}")
    yield c
    c.delete_container()


def _preflight(server: LiveServer, path: str, origin: str | None, method: str | None,
               headers: str | None = None) -> tuple[int, str | None, dict[str, str]]:
    h = {k: v for k, v in (("origin", origin), ("access-control-request-method", method),
                           ("access-control-request-headers", headers)) if v is not None}
    r = request(server, "OPTIONS", path, headers=h, sign=False)
    return r.status, r.code, {k: v for k, v in r.headers.items() if k.startswith("access-control-")}


def test_preflights_are_answered_from_the_first_matching_rule(server: LiveServer, service: BlobServiceClient,
                                                              container: ContainerClient) -> None:
    path = f"/{container.container_name}/some/blob.txt"
    status, _, headers = _preflight(server, path, APP, "PUT", "x-ms-meta-owner, Content-Type")
    assert status == 200
    assert headers == {"access-control-allow-origin": APP, "access-control-allow-methods": "PUT",
                       "access-control-allow-headers": "x-ms-meta-owner, Content-Type",
                       "access-control-max-age": "300", "access-control-allow-credentials": "true"}
    status, _, headers = _preflight(server, path, OTHER, "GET")
    assert (status, headers["access-control-max-age"]) == (200, "60")  # the second rule: any origin, GET
    assert _preflight(server, path, APP, "PUT", "x-ms-blob-type")[:2] == (403, "CorsPreflightFailure")
    assert _preflight(server, path, OTHER, "DELETE")[:2] == (403, "CorsPreflightFailure")
    assert _preflight(server, path, None, "GET")[:2] == (400, "InvalidHeaderValue")
    assert _preflight(server, path, APP, None)[:2] == (400, "InvalidHeaderValue")


def test_responses_carry_the_rule_headers(server: LiveServer, service: BlobServiceClient,
                                          container: ContainerClient) -> None:
    container.upload_blob("b.txt", b"x", metadata={"owner": "me"})
    path = f"/{container.container_name}/b.txt"
    r = request(server, "GET", path, headers={"origin": APP})
    assert r.status == 200 and r.headers["access-control-allow-origin"] == APP
    assert r.headers["vary"] == "Origin" and r.headers["access-control-allow-credentials"] == "true"
    assert set(r.headers["access-control-expose-headers"].split(",")) == {"x-ms-meta-owner", "x-ms-request-id"}
    r = request(server, "GET", path, headers={"origin": OTHER})
    assert r.headers["access-control-allow-origin"] == "*" and "vary" not in r.headers
    r = request(server, "GET", path)
    assert r.headers["vary"] == "Origin" and "access-control-allow-origin" not in r.headers
    r = request(server, "DELETE", path, headers={"origin": OTHER})  # no rule allows DELETE
    assert r.status == 202 and not any(k.startswith("access-control-") or k == "vary" for k in r.headers)
    r = request(server, "GET", f"/{container.container_name}/missing", headers={"origin": APP})
    assert r.status == 404 and r.headers["access-control-allow-origin"] == APP  # errors too


def test_properties_left_out_are_kept(service: BlobServiceClient) -> None:
    before = service.get_service_properties()["cors"]
    service.set_service_properties(delete_retention_policy=RetentionPolicy(enabled=False))
    after = service.get_service_properties()["cors"]
    assert [(r.allowed_origins, r.allowed_methods) for r in after] == [
        (r.allowed_origins, r.allowed_methods) for r in before] == [(APP, "GET,PUT,HEAD"), ("*", "GET")]


@pytest.mark.parametrize("rules", [
    [CorsRule(["*"], ["FETCH"])],
    [CorsRule(["*"], ["GET"])] * 6,
    [CorsRule([], ["GET"])],
])
def test_bad_rules_are_refused(service: BlobServiceClient, rules: list[CorsRule]) -> None:
    with pytest.raises(HttpResponseError) as e:
        service.set_service_properties(cors=rules)
    assert (e.value.status_code, e.value.error_code) == (400, "InvalidXmlNodeValue")
    assert len(service.get_service_properties()["cors"]) == 2
