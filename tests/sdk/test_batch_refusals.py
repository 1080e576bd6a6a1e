"""Client mistakes the Batch endpoint answers with Azure's 400 (never a 500) through azure-batch 15:
a $filter nested past the parser's limit, a $skiptoken past the store's integers, malformed
percent escapes in ids, environment names no process can have."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest, HttpResponse

from tests.helpers.server import LiveServer

API = "2025-06-01"


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[BatchClient]:
    c = BatchClient(server.batch_url, AzureNamedKeyCredential(server.account, server.key))
    c.create_job(m.BatchJobCreateOptions(id="refusals", pool_info=m.BatchPoolInfo(pool_id="idle-pool")))
    yield c
    c.close()


def get(client: BatchClient, path: str) -> tuple[int, dict[str, Any]]:
    sep = "&" if "?" in path else "?"
    try:
        response = client.send_request(HttpRequest("GET", f"{path}{sep}api-version={API}"))
    except HttpResponseError as exc:
        assert isinstance(exc.response, HttpResponse)
        response = exc.response
    return response.status_code, response.json()


def _values(body: dict[str, Any]) -> dict[str, str]:
    return {v["key"]: v["value"] for v in body.get("values", [])}


@pytest.mark.parametrize("flt", ["not " * 300 + "state eq 'active'", "(" * 300 + "id eq 'x'" + ")" * 300])
def test_a_filter_nested_too_deep_is_an_invalid_query_parameter(server: LiveServer, client: BatchClient,
                                                                 flt: str) -> None:
    for path in ("/jobs/refusals/tasks", "/jobs", "/pools"):
        status, body = get(client, f"{path}?$filter={flt}")
        assert (status, body.get("code")) == (400, "InvalidQueryParameterValue"), (path, body)
        assert _values(body)["QueryParameterName"] == "$filter"
    assert "RecursionError" not in server.log()


@pytest.mark.parametrize("token", ["99999999999999999999999999999", "9223372036854775808", "9" * 5000, "²"])
def test_a_skiptoken_out_of_range_is_an_invalid_query_parameter(client: BatchClient, token: str) -> None:
    status, body = get(client, f"/jobs/refusals/tasks?$skiptoken={token}")
    assert (status, body.get("code")) == (400, "InvalidQueryParameterValue"), body
    assert _values(body)["QueryParameterName"] == "$skiptoken"
    status, body = get(client, "/jobs/refusals/tasks?$skiptoken=9223372036854775807")
    assert status == 200 and body["value"] == []
    status, body = get(client, f"/supportedimages?$skiptoken={token}")  # index-paged lists too
    assert (status, body.get("code")) == (400, "InvalidQueryParameterValue"), body
    status, body = get(client, "/supportedimages?$skiptoken=9223372036854775807")
    assert status == 200 and body["value"] == []


@pytest.mark.parametrize("segment", ["a%ZZb", "a%", "%C3%28"])
def test_malformed_percent_escapes_in_ids_are_invalid_uris(server: LiveServer, segment: str) -> None:
    # Sent raw (the SDK would escape the '%'); the path is refused before authentication.
    for path in (f"/jobs/{segment}", f"/jobs/refusals/tasks/{segment}", f"/pools/{segment}"):
        conn = http.client.HTTPConnection("127.0.0.1", server.batch_port, timeout=30)
        try:
            conn.request("GET", f"{path}?api-version={API}")
            response = conn.getresponse()
            body = json.loads(response.read())
        finally:
            conn.close()
        assert (response.status, body.get("code")) == (400, "InvalidUri"), (path, body)


def test_environment_names_no_process_can_have_are_refused_at_add_time(client: BatchClient) -> None:
    bad = m.BatchTaskCreateOptions(id="bad-env", command_line="/bin/true",
                                   environment_settings=[m.EnvironmentSetting(name="A=B", value="x")])
    with pytest.raises(HttpResponseError) as info:
        client.create_task("refusals", bad)
    assert info.value.status_code == 400 and info.value.error is not None
    assert info.value.error.code == "InvalidPropertyValue"
    nul = m.BatchTaskCreateOptions(id="nul-cmd", command_line="/bin/echo a\x00b")
    with pytest.raises(HttpResponseError) as info:
        client.create_task("refusals", nul)
    assert info.value.status_code == 400
    with pytest.raises(HttpResponseError) as info:
        client.create_job(m.BatchJobCreateOptions(
            id="bad-common-env", pool_info=m.BatchPoolInfo(pool_id="idle-pool"),
            common_environment_settings=[m.EnvironmentSetting(name="NUL\x00", value="x")]))
    assert info.value.status_code == 400
