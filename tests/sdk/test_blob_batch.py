"""Blob Batch through azure-storage-blob 12 (ContainerClient.delete_blobs /
set_standard_blob_tier_blobs) and raw multipart bodies for what the SDK never sends (service scope,
mixed operations, too many sub-requests, forged sub-request signatures).

Azure's rules ("Blob Batch" REST reference): up to 256 sub-requests, all Delete Blob or all Set Blob
Tier, each authorized on its own; a 202 whose multipart/mixed body answers each sub-request in
order. A batch that cannot be read as a whole is answered by a 202 holding one error part (what
Azure answers for too many sub-requests; Azurite does the same).
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import (
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    generate_container_sas,
)
from azure.storage.blob._shared.response_handlers import PartialBatchErrorException

from openbatch.common import sharedkey
from openbatch.common.clock import http_date
from tests.blob.raw import RawResponse, query_pairs, request
from tests.helpers.server import LiveServer

VERSION = "2021-08-06"


def _names(c: ContainerClient) -> list[str]:
    return [b.name for b in c.list_blobs()]


def test_delete_blobs_answers_each_sub_request(container: ContainerClient) -> None:
    for name in ("a", "dir/b", "dir/c", "d"):
        container.upload_blob(name, b"x")
    parts = list(container.delete_blobs("a", "dir/b", "missing", raise_on_any_failure=False))
    assert [p.status_code for p in parts] == [202, 202, 404]
    assert parts[0].headers["x-ms-delete-type-permanent"] == "true"
    assert parts[2].headers["x-ms-error-code"] == "BlobNotFound"
    assert _names(container) == ["d", "dir/c"]
    with pytest.raises(PartialBatchErrorException) as e:
        container.delete_blobs("d", "missing")
    assert [p.status_code for p in e.value.parts] == [202, 404]
    assert _names(container) == ["dir/c"]


def test_set_tier_of_many_blobs(container: ContainerClient) -> None:
    for name in ("t1", "t2", "t3"):
        container.upload_blob(name, b"x")
    parts = list(container.set_standard_blob_tier_blobs("Cool", "t1", "t2"))
    assert [p.status_code for p in parts] == [200, 200]
    assert {b.name: b.blob_tier for b in container.list_blobs()} == {"t1": "Cool", "t2": "Cool", "t3": "Hot"}
    parts = list(container.set_standard_blob_tier_blobs("Archive", "t3", "nope", raise_on_any_failure=False))
    assert [p.status_code for p in parts] == [200, 404]
    with pytest.raises(HttpResponseError) as e:
        container.get_blob_client("t3").download_blob()
    assert e.value.error_code == "BlobArchived"


def test_sub_requests_keep_their_own_conditions_and_leases(container: ContainerClient) -> None:
    kept = container.upload_blob("leased", b"x")
    lease = kept.acquire_lease()
    container.upload_blob("free", b"x")
    parts = list(container.delete_blobs("leased", "free", raise_on_any_failure=False))
    assert [(p.status_code, p.headers.get("x-ms-error-code")) for p in parts] == [(412, "LeaseIdMissing"), (202, None)]
    future = datetime.now(UTC) + timedelta(hours=1)
    parts = list(container.delete_blobs({"name": "leased", "lease_id": lease.id, "if_modified_since": future},
                                        raise_on_any_failure=False))
    assert [(p.status_code, p.headers.get("x-ms-error-code")) for p in parts] == [(412, "ConditionNotMet")]
    container.delete_blobs({"name": "leased", "lease_id": lease.id})
    assert _names(container) == []


def test_a_sas_batch_authorizes_each_sub_request(server: LiveServer, container: ContainerClient) -> None:
    for name in ("s1", "s2"):
        container.upload_blob(name, b"x")
    expiry = datetime.now(UTC) + timedelta(hours=1)
    name = container.container_name
    read_only = generate_container_sas(server.account, name, account_key=server.key,
                                       permission=ContainerSasPermissions(read=True), expiry=expiry)
    with_read = ContainerClient(container.url.rsplit("/", 1)[0], name, credential=read_only)
    parts = list(with_read.delete_blobs("s1", "s2", raise_on_any_failure=False))
    assert [(p.status_code, p.headers.get("x-ms-error-code")) for p in parts] == [
        (403, "AuthorizationPermissionMismatch")] * 2
    deleter = generate_container_sas(server.account, name, account_key=server.key,
                                     permission=ContainerSasPermissions(delete=True), expiry=expiry)
    ContainerClient(container.url.rsplit("/", 1)[0], name, credential=deleter).delete_blobs("s1", "s2")
    assert _names(container) == []


# --- raw batches -----------------------------------------------------------------------------------


def _sub(server: LiveServer, method: str, path: str, query: str = "", headers: dict[str, str] | None = None,
         key: str | None = None, sign: bool = True) -> bytes:
    """One signed sub-request (its path below the account) as a batch part body."""
    raw_path = f"/{server.account}{path}"
    h = {"x-ms-date": http_date(), "content-length": "0", **(headers or {})}
    if sign:
        to_sign = sharedkey.blob_string_to_sign(method, h, server.account, raw_path, query_pairs(query), collated=True)
        h["authorization"] = f"SharedKey {server.account}:{sharedkey.sign(base64.b64decode(key or server.key), to_sign)}"
    lines = [f"{method} {raw_path}{'?' + query if query else ''} HTTP/1.1", *(f"{k}: {v}" for k, v in h.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _batch(server: LiveServer, subs: list[bytes], path: str = "", query: str = "comp=batch") -> RawResponse:
    boundary = f"batch_{uuid.uuid4()}"
    body = b"".join(f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: {i}\r\n"
                    "Content-Transfer-Encoding: binary\r\n\r\n".encode() + sub + b"\r\n" for i, sub in enumerate(subs))
    body += f"--{boundary}--\r\n".encode()
    return request(server, "POST", path, query=query, body=body,
                   headers={"content-type": f"multipart/mixed; boundary={boundary}"})


def _parts(resp: RawResponse) -> list[tuple[str | None, int, str | None]]:
    """(Content-ID, status, x-ms-error-code) of each part of a batch response."""
    assert resp.status == 202, resp.body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + resp.headers["content-type"].encode() + b"\r\n\r\n" + resp.body)
    out = []
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        lines = payload.decode().splitlines()
        head = lines[:lines.index("")] if "" in lines else lines
        fields = dict(line.split(": ", 1) for line in head[1:])
        out.append((part.get("Content-ID"), int(head[0].split(" ")[1]), fields.get("x-ms-error-code")))
    return out


def test_a_service_scoped_batch_spans_containers(server: LiveServer, service: BlobServiceClient) -> None:
    first, second = (service.create_container(f"bt{uuid.uuid4().hex[:16]}") for _ in range(2))
    first.upload_blob("one", b"x")
    second.upload_blob("two", b"x")
    subs = [_sub(server, "DELETE", f"/{first.container_name}/one"),
            _sub(server, "DELETE", f"/{second.container_name}/two"),
            _sub(server, "DELETE", f"/{second.container_name}/two", key=base64.b64encode(b"wrong").decode())]
    assert _parts(_batch(server, subs)) == [("0", 202, None), ("1", 202, None), ("2", 403, "AuthenticationFailed")]
    assert _names(first) == _names(second) == []
    first.delete_container()
    second.delete_container()


def test_a_batch_that_cannot_be_served_whole_is_one_error_part(server: LiveServer, container: ContainerClient) -> None:
    name = container.container_name
    container.upload_blob("kept", b"x")
    path, query = f"/{name}", "restype=container&comp=batch"
    too_many = [_sub(server, "DELETE", f"/{name}/b{i}") for i in range(257)]
    assert _parts(_batch(server, too_many, path, query)) == [(None, 400, "ExceedsMaxBatchRequestCount")]
    mixed = [_sub(server, "DELETE", f"/{name}/kept"),
             _sub(server, "PUT", f"/{name}/kept", "comp=tier", {"x-ms-access-tier": "Cool"})]
    assert _parts(_batch(server, mixed, path, query)) == [(None, 400, "AllBatchSubRequestsShouldBeSameApi")]
    elsewhere = [_sub(server, "DELETE", f"/{name}/kept"), _sub(server, "DELETE", "/othercontainer/kept")]
    assert _parts(_batch(server, elsewhere, path, query)) == [(None, 400, "InvalidInput")]
    reads = [_sub(server, "GET", f"/{name}/kept")]
    assert _parts(_batch(server, reads, path, query)) == [(None, 400, "InvalidInput")]
    assert _names(container) == ["kept"]  # nothing of a refused batch was done
    r = request(server, "POST", path, query=query, body=b"not multipart", headers={"content-type": "text/plain"})
    assert (r.status, r.code) == (400, "InvalidHeaderValue")
    garbled = request(server, "POST", path, query=query, body=b"--x\r\nnonsense\r\n--x--",
                      headers={"content-type": "multipart/mixed; boundary=x"})
    assert _parts(garbled) == [(None, 400, "InvalidInput")]


def test_unsigned_sub_requests_are_refused(server: LiveServer, container: ContainerClient) -> None:
    container.upload_blob("kept", b"x")
    subs = [_sub(server, "DELETE", f"/{container.container_name}/kept", sign=False)]
    assert _parts(_batch(server, subs)) == [("0", 403, "AuthorizationFailure")]
    assert _names(container) == ["kept"]
