"""Slow and broken clients (issue 16 item 5), against a live server on both endpoints.

A connection whose request headers do not arrive within ``--header-timeout``, or whose request
body receives no bytes for ``--body-timeout``, is closed; the request handler sees a disconnect,
so a half-sent upload commits nothing. Idle keep-alive connections and slow-but-moving uploads are
not cut. One client address holds at most ``--max-connections-per-client`` connections; the ones
over the limit are answered 503 ServerBusy with Retry-After. Everyone else keeps being served.

The stalled connections come from 127.0.0.2 (Linux routes all of 127/8 to loopback), the normal
traffic from 127.0.0.1, so the two are different clients as far as the server can tell.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobServiceClient

from openbatch.common import sharedkey
from openbatch.common.clock import http_date
from tests.blob.raw import query_pairs
from tests.helpers.server import LiveServer

TIMEOUT = 1.0  # the header and body timeouts of the test server, in seconds
SLACK = 4.0  # how much later than the timeout a stalled connection may be closed on a busy 2-core box
STALLER = "127.0.0.2"
BLOB_VERSION = "2021-08-06"
BATCH_API = "2024-07-01.20.0"


@pytest.fixture(scope="module")
def data_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="openbatch-test-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def server(data_root: Path) -> Iterator[LiveServer]:
    """Short timeouts (flags); the default per-client limit."""
    srv = LiveServer(data_root / "timeouts",
                     extra_args=["--header-timeout", str(TIMEOUT), "--body-timeout", str(TIMEOUT)]).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def blobs(server: LiveServer) -> Iterator[BlobServiceClient]:
    client = BlobServiceClient.from_connection_string(server.connection_string)
    client.create_container("slow")
    yield client
    client.close()


@pytest.fixture(scope="module")
def batch(server: LiveServer) -> Iterator[BatchClient]:
    client = BatchClient(server.batch_url, AzureNamedKeyCredential(server.account, server.key))
    yield client
    client.close()


# --- raw connections ----------------------------------------------------------------------------


def connect(port: int, source: str = STALLER) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes (or resets) ``sock`` within ``within`` seconds; what it sends is ignored."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
    return False


def read_response(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """The response on ``sock`` (the server closes the connection after it, or sends Content-Length)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the response body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def blob_head(server: LiveServer, method: str, path: str, query: str = "", length: int = 0,
              headers: dict[str, str] | None = None) -> bytes:
    """A SharedKey-signed request head for ``/{account}{path}`` that declares ``length`` body bytes."""
    raw_path = f"/{server.account}{path}"
    h = {"x-ms-version": BLOB_VERSION, "x-ms-date": http_date(), "content-length": str(length), **(headers or {})}
    to_sign = sharedkey.blob_string_to_sign(method, h, server.account, raw_path, query_pairs(query), collated=True)
    h["authorization"] = f"SharedKey {server.account}:{sharedkey.sign(base64.b64decode(server.key), to_sign)}"
    target = raw_path + (f"?{query}" if query else "")
    return _head(method, target, server.blob_port, h)


def batch_head(server: LiveServer, method: str, path: str, length: int) -> bytes:
    query = f"api-version={BATCH_API}"
    h = {"ocp-date": http_date(), "content-length": str(length),
         "content-type": "application/json; odata=minimalmetadata"}
    to_sign = sharedkey.batch_string_to_sign(method, h, server.account, path, query_pairs(query))
    h["authorization"] = f"SharedKey {server.account}:{sharedkey.sign(base64.b64decode(server.key), to_sign)}"
    return _head(method, f"{path}?{query}", server.batch_port, h)


def _head(method: str, target: str, port: int, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"host: 127.0.0.1:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def stalled_kinds(server: LiveServer) -> list[tuple[int, bytes]]:
    """(port, bytes sent before stalling): nothing, half a request line, headers without their end,
    and a complete head whose declared body is cut short -- on both endpoints; and a body cut short
    after the server has answered (404: no such container) without waiting for it."""
    put = blob_head(server, "PUT", "/slow/stalled", length=100, headers={"x-ms-blob-type": "BlockBlob"})
    answered = blob_head(server, "PUT", "/nosuch/stalled", length=100, headers={"x-ms-blob-type": "BlockBlob"})
    post = batch_head(server, "POST", "/jobs", length=100)
    return [
        (server.blob_port, b""),
        (server.blob_port, b"PUT /devstoreaccount1/slow/x HT"),
        (server.blob_port, put[: len(put) // 2]),
        (server.blob_port, put + b"0123456789"),
        (server.batch_port, b""),
        (server.batch_port, b"GET /pools?api-version=2024-07-01.20.0 HTTP/1.1\r\nhost: x\r\n"),
        (server.batch_port, post[: len(post) // 2]),
        (server.batch_port, post + b'{"id": "x"'),
        (server.blob_port, answered + b"0123456789"),
    ]


# --- timeouts -----------------------------------------------------------------------------------


def test_stalled_connections_are_closed_while_everyone_else_is_served(
        server: LiveServer, blobs: BlobServiceClient, batch: BatchClient) -> None:
    def normal_round() -> float:
        start = time.monotonic()
        blob = blobs.get_blob_client("slow", f"n-{uuid.uuid4().hex}")
        blob.upload_blob(b"payload")
        assert blob.download_blob().readall() == b"payload"
        list(batch.list_pools())
        return time.monotonic() - start

    quiet = [normal_round() for _ in range(5)]
    kinds = stalled_kinds(server)
    stalled = []
    for i in range(200):
        port, data = kinds[i % len(kinds)]
        sock = connect(port)
        if data:
            sock.sendall(data)
        stalled.append(sock)
    opened = time.monotonic()
    busy = []
    while time.monotonic() - opened < TIMEOUT:  # normal traffic while all 200 are still stalled
        busy.append(normal_round())
    try:
        still_open = [s for s in stalled if not closed_by_server(s, max(0.0, opened + TIMEOUT + SLACK - time.monotonic()))]
        assert not still_open, f"{len(still_open)} of 200 stalled connections still open {TIMEOUT + SLACK}s later"
    finally:
        for s in stalled:
            s.close()
    assert max(busy) < 2.0, f"normal requests took up to {max(busy):.2f}s next to 200 stalled connections"
    assert statistics.median(busy) < max(0.5, 5 * statistics.median(quiet)), (quiet, busy)
    assert normal_round() < 2.0
    assert "Traceback" not in server.log()


def _data_files(server: LiveServer) -> int:
    return sum(1 for p in (server.data_dir / "blob" / "data").rglob("*") if p.is_file())


def test_stalled_put_blob_and_put_block_commit_nothing(server: LiveServer, blobs: BlobServiceClient) -> None:
    container = blobs.get_container_client("slow")
    container.upload_blob("kept", b"original")
    block_blob = container.get_blob_client("blocks")
    block_blob.stage_block("YWFh", b"aaa")
    block_blob.commit_block_list(["YWFh"])
    files_before = _data_files(server)
    size = 1 << 20
    block_id = base64.b64encode(b"stalled-block").decode()
    uploads = [
        blob_head(server, "PUT", "/slow/new-blob", length=size, headers={"x-ms-blob-type": "BlockBlob"}),
        blob_head(server, "PUT", "/slow/kept", length=size, headers={"x-ms-blob-type": "BlockBlob"}),
        blob_head(server, "PUT", "/slow/blocks", query=f"comp=block&blockid={block_id}", length=size),
        blob_head(server, "PUT", "/slow/new-blocks", query=f"comp=block&blockid={block_id}", length=size),
    ]
    socks = []
    for head in uploads:
        sock = connect(server.blob_port)
        sock.sendall(head + b"x" * (size // 2))  # half the body, then nothing
        socks.append(sock)
    try:
        assert all(closed_by_server(s, TIMEOUT + SLACK) for s in socks)
    finally:
        for s in socks:
            s.close()
    time.sleep(0.2)
    names = {b.name for b in container.list_blobs(include=["uncommittedblobs"])}
    assert "new-blob" not in names and "new-blocks" not in names
    assert container.download_blob("kept").readall() == b"original"
    committed, uncommitted = block_blob.get_block_list("all")
    assert [b.id for b in committed] == ["YWFh"] and uncommitted == []
    assert _data_files(server) == files_before, "a half-sent upload left bytes behind"
    assert " 500" not in server.log() and "Traceback" not in server.log()


def test_stalled_batch_body_creates_nothing(server: LiveServer, batch: BatchClient) -> None:
    """A complete JSON document followed by a stall: Content-Length promised more, so nothing is created."""
    body = json.dumps({"id": "half-sent-job", "poolInfo": {"poolId": "nowhere"}}).encode()
    sock = connect(server.batch_port)
    sock.sendall(batch_head(server, "POST", "/jobs", length=len(body) + 50) + body)
    try:
        assert closed_by_server(sock, TIMEOUT + SLACK)
    finally:
        sock.close()
    time.sleep(0.2)
    assert "half-sent-job" not in {j.id for j in batch.list_jobs()}
    assert "Traceback" not in server.log()


def test_slow_but_moving_upload_is_not_cut(server: LiveServer, blobs: BlobServiceClient) -> None:
    """64 MiB in 8 MiB bursts with pauses shorter than the body timeout: several timeouts long in all."""
    size, burst, pause = 64 << 20, 8 << 20, 0.6 * TIMEOUT
    sock = connect(server.blob_port, source="127.0.0.1")
    start = time.monotonic()
    try:
        sock.sendall(blob_head(server, "PUT", "/slow/slow", length=size, headers={"x-ms-blob-type": "BlockBlob"}))
        time.sleep(pause)
        for offset in range(0, size, burst):
            sock.sendall(bytes([offset >> 23]) * burst)
            time.sleep(pause)
        status, _, body = read_response(sock, timeout=30)
    finally:
        sock.close()
    assert status == 201, body
    assert time.monotonic() - start > 3 * TIMEOUT
    props = blobs.get_blob_client("slow", "slow").get_blob_properties()
    assert props.size == size


def test_idle_keep_alive_connection_outlives_the_header_timeout(server: LiveServer) -> None:
    sock = connect(server.batch_port, source="127.0.0.1")
    try:
        for _ in range(2):
            sock.sendall(b"GET /nothing HTTP/1.1\r\nhost: x\r\n\r\n")
            status, headers, _ = read_response(sock)
            assert status in (403, 404) and headers.get("connection") != "close"
            time.sleep(2.5 * TIMEOUT)  # idle between requests: uvicorn's keep-alive timeout (120 s) applies
    finally:
        sock.close()


# --- per-client connection limit ----------------------------------------------------------------


def test_connections_per_client_are_limited(data_root: Path) -> None:
    srv = LiveServer(data_root / "limited", extra_args=["--header-timeout", "30"],
                     env={"OPENBATCH_MAX_CONNECTIONS_PER_CLIENT": "4"}).start()
    held = [connect(srv.blob_port, "127.0.0.1") for _ in range(2)]
    held += [connect(srv.batch_port, "127.0.0.1") for _ in range(2)]
    client = BatchClient(srv.batch_url, AzureNamedKeyCredential(srv.account, srv.key))
    try:
        time.sleep(0.2)
        for port, target in ((srv.blob_port, "/devstoreaccount1?comp=list"), (srv.batch_port, "/pools")):
            extra = connect(port, "127.0.0.1")
            extra.sendall(f"GET {target} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
            status, headers, body = read_response(extra)
            assert status == 503 and headers.get("retry-after") == "1"
            assert headers.get("connection") == "close"
            assert closed_by_server(extra, 5.0)
            extra.close()
            if port == srv.blob_port:
                assert headers["x-ms-error-code"] == "ServerBusy" and b"<Code>ServerBusy</Code>" in body
            else:
                assert json.loads(body)["code"] == "ServerBusy"
        # another client is not affected
        other = connect(srv.batch_port, "127.0.0.3")
        other.sendall(b"GET /pools HTTP/1.1\r\nhost: x\r\n\r\n")
        assert read_response(other)[0] in (400, 403, 404)
        other.close()
        # the SDK retries a 503 after its Retry-After; by then a connection has been given back
        with ThreadPoolExecutor(1) as pool:
            start = time.monotonic()
            listing = pool.submit(lambda: list(client.list_pools()))
            time.sleep(0.3)
            held.pop().close()
            assert listing.result(timeout=30) == []
            assert 0.9 < time.monotonic() - start < 10
        assert "Traceback" not in srv.log()
    finally:
        client.close()
        for s in held:
            s.close()
        srv.stop()
