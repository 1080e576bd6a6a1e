"""Client mistakes the Blob endpoint refuses with Azure's 4xx, never a 500, a stall or a silent
wrong answer; one section per kind of mistake."""

from __future__ import annotations

import base64
import socket
import uuid
from collections.abc import Iterator

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient, ContainerClient, StandardBlobTier

from openbatch.common import sharedkey
from openbatch.common.clock import http_date
from tests.blob.raw import VERSION, RawResponse, query_pairs, request
from tests.helpers.server import LiveServer


@pytest.fixture(scope="module")
def service(server: LiveServer) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(server.connection_string)


@pytest.fixture
def container(service: BlobServiceClient) -> Iterator[ContainerClient]:
    c = service.create_container(f"r{uuid.uuid4().hex[:16]}")
    yield c
    c.delete_container()


# --- XML bodies: limits, refused at the first violation ----------------------------------------


def _signed_head(server: LiveServer, method: str, target: str, length: int,
                 extra: dict[str, str] | None = None) -> bytes:
    path, _, query = target.partition("?")
    h = {"x-ms-version": VERSION, "x-ms-date": http_date(), "content-length": str(length), **(extra or {})}
    to_sign = sharedkey.blob_string_to_sign(method, h, server.account, path, query_pairs(query), collated=True)
    h["authorization"] = f"SharedKey {server.account}:{sharedkey.sign(base64.b64decode(server.key), to_sign)}"
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{server.blob_port}\r\n"
    return (head + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n").encode()


def _partial(server: LiveServer, target: str, declared: int, first: bytes) -> tuple[int, str, bytes]:
    """Declare ``declared`` body bytes, send only ``first``: the answer must come without the rest."""
    with socket.create_connection(("127.0.0.1", server.blob_port), timeout=10) as s:
        s.sendall(_signed_head(server, "PUT", target, declared) + first)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)  # a server waiting for the rest of the body times out here
            assert chunk, "the server closed the connection without an answer"
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    lines = head.split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers.get("x-ms-error-code", ""), data


def test_a_deeply_nested_block_list_is_refused_before_it_is_read(server: LiveServer,
                                                                  container: ContainerClient) -> None:
    n = 1_000_000
    body = b"<BlockList>" + b"<a>" * n + b"</a>" * n + b"</BlockList>"
    status, code, _ = _partial(server, f"/{server.account}/{container.container_name}/b?comp=blocklist",
                               len(body), body[:65536])
    assert (status, code) == (400, "InvalidXmlDocument")
    # Sent whole, the same body gets the same answer, and the connection stays usable.
    r = request(server, "PUT", f"/{container.container_name}/b", query="comp=blocklist", body=body)
    assert (r.status, r.code) == (400, "InvalidXmlDocument")


def test_a_block_list_longer_than_azure_allows_is_refused_early(server: LiveServer,
                                                                 container: ContainerClient) -> None:
    entry = b"<Latest>QUFBQQ==</Latest>"
    body = b"<BlockList>" + entry * 50_001 + b"</BlockList>"
    status, code, _ = _partial(server, f"/{server.account}/{container.container_name}/b?comp=blocklist",
                               len(body) + 10_000_000, body)
    assert (status, code) in ((400, "BlockListTooLong"), (413, "RequestBodyTooLarge"))
    status, code, _ = _partial(server, f"/{server.account}/{container.container_name}/b?comp=blocklist",
                               len(body), body[: len(body) - 20])
    assert (status, code) == (400, "BlockListTooLong")


@pytest.mark.parametrize("query", ["comp=blocklist", "restype=container&comp=acl",
                                   "restype=service&comp=properties"])
def test_an_oversized_xml_body_is_refused_from_its_content_length(server: LiveServer,
                                                                  container: ContainerClient,
                                                                  query: str) -> None:
    path = "/" if query.startswith("restype=service") else (
        f"/{container.container_name}" if "acl" in query else f"/{container.container_name}/b")
    status, code, _ = _partial(server, f"/{server.account}{path.rstrip('/') or '/'}?{query}", 100 << 20, b"")
    assert (status, code) == (413, "RequestBodyTooLarge")


@pytest.mark.parametrize("query,root", [("restype=container&comp=acl", "SignedIdentifiers"),
                                        ("restype=service&comp=properties", "StorageServiceProperties")])
def test_other_xml_bodies_have_the_same_limits(server: LiveServer, container: ContainerClient, query: str,
                                               root: str) -> None:
    n = 100_000  # 700 kB: under the 1 MiB these bodies may have, 100,000 levels deep
    body = f"<{root}>".encode() + b"<x>" * n + b"</x>" * n + f"</{root}>".encode()
    path = "/" if root == "StorageServiceProperties" else f"/{container.container_name}"
    status, code, _ = _partial(server, f"/{server.account}{path.rstrip('/') or '/'}?{query}", len(body),
                               body[:65536])
    assert (status, code) == (400, "InvalidXmlDocument")
    # A body in another encoding than the UTF-8 it is stored as is invalid, not a server error.
    utf16 = f'<?xml version="1.0" encoding="utf-16"?><{root}></{root}>'.encode("utf-16")
    r = request(server, "PUT", path.rstrip("/") if path != "/" else "/", query=query, body=utf16)
    assert r.status == 400, r.body


# --- copy sources -------------------------------------------------------------------------------


def _copy(server: LiveServer, target: str, source: str) -> RawResponse:
    return request(server, "PUT", target, headers={"x-ms-copy-source": source})


@pytest.mark.parametrize("source", ["http://[::1/x", "http://127.0.0.1:notaport/devstoreaccount1/c/b",
                                    "not a url", "ftp://127.0.0.1/devstoreaccount1/c/b"])
def test_a_malformed_copy_source_is_an_invalid_header(server: LiveServer, container: ContainerClient,
                                                      source: str) -> None:
    r = _copy(server, f"/{container.container_name}/dst", source)
    assert (r.status, r.code) == (400, "InvalidHeaderValue"), r.body
    assert b"<HeaderName>x-ms-copy-source</HeaderName>" in r.body


def test_a_copy_from_another_server_is_never_substituted(server: LiveServer, container: ContainerClient) -> None:
    c = container.container_name
    container.upload_blob("src", b"local bytes")
    elsewhere = [  # this host on other ports: other servers (or none), asked over HTTP (tests stay on loopback)
        f"http://127.0.0.1:{server.batch_port}/{server.account}/{c}/src",
        f"http://127.0.0.1:1/{server.account}/{c}/src",
    ]
    for source in elsewhere:
        r = _copy(server, f"/{c}/dst", source)
        assert r.status in (401, 403, 404) and r.code == "CannotVerifyCopySource", (source, r.body)
    assert not container.get_blob_client("dst").exists()
    # This server under any loopback name, with or without an explicit default port, is served.
    for i, host in enumerate(("127.0.0.1", "localhost", "[::1]")):
        r = _copy(server, f"/{c}/dst{i}", f"http://{host}:{server.blob_port}/{server.account}/{c}/src")
        assert r.status == 202, (host, r.body)
        assert container.download_blob(f"dst{i}").readall() == b"local bytes"


# --- percent escapes ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a%ZZb", "a%", "a%4", "%C3%28", "%ff"])
def test_malformed_percent_escapes_are_refused(server: LiveServer, container: ContainerClient,
                                               name: str) -> None:
    c = container.container_name
    r = request(server, "PUT", f"/{c}/{name}", body=b"x", headers={"x-ms-blob-type": "BlockBlob"})
    assert (r.status, r.code) == (400, "InvalidUri"), r.body
    r = request(server, "GET", f"/{c}/{name}")
    assert (r.status, r.code) == (400, "InvalidUri"), r.body
    r = request(server, "PUT", f"/{name}", query="restype=container")
    assert (r.status, r.code) == (400, "InvalidUri"), r.body
    r = request(server, "GET", f"/{c}", query=f"restype=container&comp=list&prefix={name}")
    assert (r.status, r.code) == (400, "InvalidUri"), r.body
    r = _copy(server, f"/{c}/dst", f"http://127.0.0.1:{server.blob_port}/{server.account}/{c}/{name}")
    assert (r.status, r.code) == (400, "InvalidHeaderValue"), r.body
    assert [b.name for b in container.list_blobs()] == []


# --- Put Blob, tiers ----------------------------------------------------------------------------


def test_put_blob_without_a_blob_type_is_refused(server: LiveServer, container: ContainerClient) -> None:
    r = request(server, "PUT", f"/{container.container_name}/typeless", body=b"data")
    assert (r.status, r.code) == (400, "MissingRequiredHeader")
    assert b"<HeaderName>x-ms-blob-type</HeaderName>" in r.body
    assert not container.get_blob_client("typeless").exists()


def test_set_blob_tier_validates_the_tier(server: LiveServer, container: ContainerClient) -> None:
    container.upload_blob("t", b"tiered")
    target = f"/{container.container_name}/t"
    r = request(server, "PUT", target, query="comp=tier", headers={"x-ms-access-tier": "Lukewarm"})
    assert (r.status, r.code) == (400, "InvalidHeaderValue")
    r = request(server, "PUT", target, query="comp=tier")
    assert (r.status, r.code) == (400, "MissingRequiredHeader")
    r = request(server, "PUT", f"/{container.container_name}/missing", query="comp=tier",
                headers={"x-ms-access-tier": "Cool"})
    assert (r.status, r.code) == (404, "BlobNotFound")
    props = container.get_blob_client("t").get_blob_properties()
    assert props.blob_tier == "Hot" and props.blob_tier_inferred


def test_tiers_are_stored_reported_and_archive_is_offline(server: LiveServer, container: ContainerClient) -> None:
    blob = container.upload_blob("a", b"archived bytes")
    blob.set_standard_blob_tier(StandardBlobTier.COOL)
    props = blob.get_blob_properties()
    assert props.blob_tier == "Cool" and not props.blob_tier_inferred and props.blob_tier_change_time
    listed = {b.name: b for b in container.list_blobs()}
    assert listed["a"].blob_tier == "Cool" and not listed["a"].blob_tier_inferred
    container.upload_blob("cold", b"c", standard_blob_tier=StandardBlobTier.COLD)
    assert container.get_blob_client("cold").get_blob_properties().blob_tier == "Cold"
    blocks = container.get_blob_client("blocks")
    blocks.stage_block("b1", b"x")
    blocks.commit_block_list(["b1"], standard_blob_tier=StandardBlobTier.COOL)
    assert blocks.get_blob_properties().blob_tier == "Cool"
    copy = container.get_blob_client("copy-of-cold")
    copy.start_copy_from_url(container.get_blob_client("cold").url)  # the copy keeps the source's tier
    assert copy.get_blob_properties().blob_tier == "Cold"
    copy.start_copy_from_url(blocks.url, standard_blob_tier=StandardBlobTier.HOT)
    props = copy.get_blob_properties()
    assert props.blob_tier == "Hot" and not props.blob_tier_inferred
    r = request(server, "PUT", f"/{container.container_name}/lukewarm", body=b"x",
                headers={"x-ms-blob-type": "BlockBlob", "x-ms-access-tier": "Lukewarm"})
    assert (r.status, r.code) == (400, "InvalidHeaderValue")
    assert not container.get_blob_client("lukewarm").exists()

    blob.set_standard_blob_tier(StandardBlobTier.ARCHIVE)
    assert blob.get_blob_properties().blob_tier == "Archive"  # properties stay readable
    for read in (blob.download_blob, lambda: blob.set_blob_metadata({"k": "v"}),
                 lambda: container.get_blob_client("copy").start_copy_from_url(blob.url),
                 lambda: blob.upload_blob(b"new", overwrite=True)):
        with pytest.raises(HttpResponseError) as e:
            read()
        assert (e.value.status_code, e.value.error_code) == (409, "BlobArchived")
    # Rehydration to an online tier: accepted (202), and it takes time (tests/sdk/test_blob_tiers.py).
    blob.set_standard_blob_tier(StandardBlobTier.HOT)
    props = blob.get_blob_properties()
    assert (props.blob_tier, props.archive_status) == ("Archive", "rehydrate-pending-to-hot")
