"""Authentication end to end over HTTP, on both endpoints, where tests/sdk/test_signed_dates.py
(dates hours and days away), tests/sdk/test_blob_sas_table.py (every SAS letter against every
operation) and tests/sdk/test_blob_auth.py (keys, SAS kinds) leave off: the edges of the 15-minute
window, which header each endpoint reads, a captured request replayed 20 minutes later as it was
and with its date refreshed, and Batch's answers to wrong keys and accounts.

There is no injectable server clock: "20 minutes later" is a request signed 20 minutes ago.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient

from openbatch.testing import LiveServer
from tests.reliability.wire import (
    BATCH_VERSION,
    BLOB_VERSION,
    NOW,
    Reply,
    batch_request,
    batch_signature,
    blob_request,
    blob_signature,
    date_value,
    send,
)

WRONG_KEY = base64.b64encode(b"a key this server has never seen..").decode()


def _at(minutes: float) -> str:
    return date_value(datetime.now(UTC) + timedelta(minutes=minutes)) or ""


def _refused(r: Reply) -> bool:
    return (r.status, r.code) == (403, "AuthenticationFailed")


@pytest.mark.parametrize(("minutes", "accepted"), [(-14, True), (14, True), (-16, False), (16, False),
                                                    (-20, False), (20, False)])
def test_the_15_minute_window_on_both_endpoints(server: LiveServer, minutes: float, accepted: bool) -> None:
    blob = blob_request(server, "GET", "/", query="comp=list", date=_at(minutes))
    batch = batch_request(server, "GET", "/pools", date=_at(minutes))
    if accepted:
        assert (blob.status, batch.status) == (200, 200), (blob, batch)
    else:
        assert _refused(blob) and _refused(batch), (blob, batch)


def test_each_endpoint_reads_only_its_own_date_header(server: LiveServer) -> None:
    assert _refused(blob_request(server, "GET", "/", query="comp=list", date=_at(0), date_header="ocp-date"))
    assert _refused(batch_request(server, "GET", "/pools", date=_at(0), date_header="x-ms-date"))


def _redated_blob(server: LiveServer, method: str, path: str, signed_at: str, sent_at: str) -> Reply:
    raw_path = f"/{server.account}{path}"
    headers = {"x-ms-version": BLOB_VERSION, "x-ms-date": signed_at, "content-length": "0"}
    headers["authorization"] = blob_signature(server.key, server.account, method, raw_path, "", headers)
    headers["x-ms-date"] = sent_at
    return send(server.blob_port, method, raw_path, headers)


def _redated_batch(server: LiveServer, method: str, path: str, signed_at: str, sent_at: str) -> Reply:
    query = f"api-version={BATCH_VERSION}"
    headers = {"ocp-date": signed_at, "content-length": "0"}
    headers["authorization"] = batch_signature(server.key, server.account, method, path, query, headers)
    headers["ocp-date"] = sent_at
    return send(server.batch_port, method, f"{path}?{query}", headers)


def test_a_delete_captured_20_minutes_ago_cannot_be_replayed_as_is_or_redated(server: LiveServer) -> None:
    container = BlobServiceClient.from_connection_string(server.connection_string).create_container(
        f"replay{uuid.uuid4().hex[:8]}")
    container.upload_blob("victim", b"keep me")
    job = f"replay{uuid.uuid4().hex[:8]}"
    assert batch_request(server, "POST", "/jobs", body={"id": job, "poolInfo": {"poolId": "nowhere"}}).status == 201
    blob_path, job_path = f"/{container.container_name}/victim", f"/jobs/{job}"
    captured = _at(-20)
    for date_header in ("x-ms-date", "date"):  # replayed as it was sent
        assert _refused(blob_request(server, "DELETE", blob_path, date=captured, date_header=date_header))
    for date_header in ("ocp-date", "date"):
        assert _refused(batch_request(server, "DELETE", job_path, date=captured, date_header=date_header))
    # The date is signed: refreshing it breaks the signature.
    assert _refused(_redated_blob(server, "DELETE", blob_path, captured, _at(0)))
    assert _refused(_redated_batch(server, "DELETE", job_path, captured, _at(0)))
    assert container.download_blob("victim").readall() == b"keep me"
    assert batch_request(server, "GET", job_path).status == 200
    # Signed now, the same requests go through.
    assert blob_request(server, "DELETE", blob_path, date=NOW).status == 202
    assert batch_request(server, "DELETE", job_path, date=NOW).status == 202
    container.delete_container()


def test_batch_wrong_key_unknown_account_and_bad_authorization(server: LiveServer) -> None:
    assert _refused(batch_request(server, "GET", "/pools", key=WRONG_KEY))
    assert _refused(batch_request(server, "POST", "/jobs", body={"id": "forged", "poolInfo": {"poolId": "p"}},
                                  key=WRONG_KEY))
    assert batch_request(server, "GET", "/jobs/forged").status == 404
    assert _refused(batch_request(server, "GET", "/pools", account="nosuchaccount"))
    for value in (None, "SharedKey devstoreaccount1", "SharedKey :sig", "Bearer abc.def.ghi", "SharedKey " + "a" * 9000):
        headers = {"authorization": value} if value is not None else {}
        r = batch_request(server, "GET", "/pools", headers=headers, sign=False)
        assert r.status in (401, 403) and r.code == "AuthenticationFailed", (value and value[:40], r)
