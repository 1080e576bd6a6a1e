"""A SharedKey signature is good only near its signed date: Blob (x-ms-date / Date) and Batch
(ocp-date / Date) refuse a request without one, or one more than 15 minutes away, with Azure's
403 AuthenticationFailed and its AuthenticationErrorDetail -- so a captured request cannot be replayed.

Every SDK generation sends a fresh date (azure-storage-blob 12 and azure-storage 0.3x x-ms-date,
azure-batch 1.x-15.x ocp-date); their own suites (test_blob_*, test_batch_*) keep covering that.
"""

from __future__ import annotations

import base64
import http.client
import json
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

import pytest

from openbatch.common import sharedkey
from openbatch.common.clock import rfc1123
from tests.blob.raw import query_pairs
from tests.blob.raw import request as blob_request
from tests.helpers.server import LiveServer

API_VERSION = "2024-07-01.20.0"
BATCH_MESSAGE = ("Server failed to authenticate the request. Make sure the value of Authorization header is "
                 "formed correctly including the signature.")


def _at(**delta: float) -> str:
    return rfc1123(datetime.now(UTC) + timedelta(**delta))


def _send(port: int, method: str, target: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _blob(server: LiveServer, method: str, path: str, query: str, dates: dict[str, str]) -> tuple[int, str, str]:
    """A SharedKey request signed over exactly the date headers given: (status, code, detail)."""
    raw_path = f"/{server.account}{path}"
    headers = {"x-ms-version": "2021-08-06", **dates}
    to_sign = sharedkey.blob_string_to_sign(method, headers, server.account, raw_path, query_pairs(query),
                                            collated=True)
    headers["authorization"] = f"SharedKey {server.account}:{sharedkey.sign(base64.b64decode(server.key), to_sign)}"
    status, resp_headers, body = _send(server.blob_port, method, raw_path + (f"?{query}" if query else ""), headers)
    text = body.decode()
    detail = text.split("<AuthenticationErrorDetail>")[1].split("<")[0] if "<AuthenticationErrorDetail>" in text else ""
    return status, resp_headers.get("x-ms-error-code", ""), detail.replace("&apos;", "'")


def _batch(server: LiveServer, method: str, path: str, dates: dict[str, str]) -> tuple[int, dict[str, object]]:
    query = f"api-version={API_VERSION}"
    headers = {"content-type": "application/json; odata=minimalmetadata", **dates}
    if method not in ("GET", "HEAD"):
        headers["content-length"] = "0"
    to_sign = sharedkey.batch_string_to_sign(method, headers, server.account, path, parse_qsl(query))
    headers["authorization"] = f"SharedKey {server.account}:{sharedkey.sign(base64.b64decode(server.key), to_sign)}"
    status, _, body = _send(server.batch_port, method, f"{path}?{query}", headers)
    return status, json.loads(body) if body else {}


@pytest.mark.parametrize(("dates", "detail"), [
    ({"x-ms-date": "{-2h}"}, "Request date header too old: '{-2h}'"),
    ({"x-ms-date": "{-400d}"}, "Request date header too old: '{-400d}'"),
    ({"x-ms-date": "{+2d}"}, "Request date header too far in the future: '{+2d}'"),
    ({}, "Request date header not specified"),
    ({"x-ms-date": ""}, "Request date header not specified"),
    ({"date": "{-2h}"}, "Request date header too old: '{-2h}'"),
    # x-ms-date is the request's date when both are sent, whatever Date says.
    ({"x-ms-date": "{-2h}", "date": "{now}"}, "Request date header too old: '{-2h}'"),
    ({"x-ms-date": "yesterday", "date": "{now}"}, "The Date header in the request is incorrect."),
])
def test_blob_refuses_stale_future_and_missing_dates(server: LiveServer, dates: dict[str, str], detail: str) -> None:
    values = {"{now}": _at(), "{-2h}": _at(hours=-2), "{-400d}": _at(days=-400), "{+2d}": _at(days=2)}
    sent = {name: values.get(value, value) for name, value in dates.items()}
    status, code, got = _blob(server, "GET", "", "comp=list", sent)
    assert (status, code) == (403, "AuthenticationFailed")
    for placeholder, value in values.items():
        detail = detail.replace(placeholder, value)
    assert got == detail


@pytest.mark.parametrize("dates", [
    {"x-ms-date": "{now}"},
    {"x-ms-date": "{-10m}"},
    {"x-ms-date": "{+10m}"},
    {"date": "{now}"},
    {"x-ms-date": "{now}", "date": "{-400d}"},
])
def test_blob_accepts_dates_within_the_skew(server: LiveServer, dates: dict[str, str]) -> None:
    values = {"{now}": _at(), "{-10m}": _at(minutes=-10), "{+10m}": _at(minutes=10), "{-400d}": _at(days=-400)}
    status, code, _ = _blob(server, "GET", "", "comp=list", {k: values[v] for k, v in dates.items()})
    assert (status, code) == (200, "")


def test_blob_signed_delete_cannot_be_replayed(server: LiveServer) -> None:
    container = f"replay{uuid.uuid4().hex[:8]}"
    assert blob_request(server, "PUT", f"/{container}", query="restype=container").status == 201
    assert blob_request(server, "PUT", f"/{container}/victim", body=b"keep me",
                        headers={"x-ms-blob-type": "BlockBlob"}).status == 201
    status, code, _ = _blob(server, "DELETE", f"/{container}/victim", "", {"x-ms-date": _at(hours=-2)})
    assert (status, code) == (403, "AuthenticationFailed")
    assert blob_request(server, "GET", f"/{container}/victim").body == b"keep me"


def _detail(body: dict[str, object]) -> str:
    values = body.get("values")
    assert isinstance(values, list)
    return str(next(v["value"] for v in values if v["key"] == "AuthenticationErrorDetail"))


@pytest.mark.parametrize(("dates", "detail"), [
    ({"ocp-date": "{-2h}"}, "Request date header too old: '{-2h}'"),
    ({"ocp-date": "{-400d}"}, "Request date header too old: '{-400d}'"),
    ({"ocp-date": "{+2d}"}, "Request date header too far in the future: '{+2d}'"),
    ({}, "Request date header not specified"),
    ({"date": "{-2h}"}, "Request date header too old: '{-2h}'"),
    # ocp-date is the request's date when both are sent.
    ({"ocp-date": "{-2h}", "date": "{now}"}, "Request date header too old: '{-2h}'"),
    ({"ocp-date": "not a date"}, "The Date header in the request is incorrect."),
])
def test_batch_refuses_stale_future_and_missing_dates(server: LiveServer, dates: dict[str, str], detail: str) -> None:
    values = {"{now}": _at(), "{-2h}": _at(hours=-2), "{-400d}": _at(days=-400), "{+2d}": _at(days=2)}
    status, body = _batch(server, "GET", "/pools", {k: values.get(v, v) for k, v in dates.items()})
    assert (status, body.get("code")) == (403, "AuthenticationFailed")
    message = body.get("message")
    assert isinstance(message, dict) and str(message["value"]).startswith(BATCH_MESSAGE)
    for placeholder, value in values.items():
        detail = detail.replace(placeholder, value)
    assert _detail(body) == detail


@pytest.mark.parametrize("dates", [
    {"ocp-date": "{now}"},
    {"ocp-date": "{-10m}"},
    {"ocp-date": "{+10m}"},
    {"date": "{now}"},
    {"ocp-date": "{now}", "date": "{-400d}"},
])
def test_batch_accepts_dates_within_the_skew(server: LiveServer, dates: dict[str, str]) -> None:
    values = {"{now}": _at(), "{-10m}": _at(minutes=-10), "{+10m}": _at(minutes=10), "{-400d}": _at(days=-400)}
    status, body = _batch(server, "GET", "/pools", {k: values[v] for k, v in dates.items()})
    assert status == 200, body


def test_batch_signed_delete_cannot_be_replayed(server: LiveServer) -> None:
    status, body = _batch(server, "DELETE", "/jobs/replayed", {"ocp-date": _at(hours=-2)})
    assert (status, body.get("code")) == (403, "AuthenticationFailed")
    status, body = _batch(server, "DELETE", "/jobs/replayed", {"ocp-date": _at()})
    assert (status, body.get("code")) == (404, "JobNotFound")
