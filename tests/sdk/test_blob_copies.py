"""Copies from URLs through azure-storage-blob 12: Put Blob / Put Block / Append Block / Put Page From
URL (source ranges, source conditions, source MD5, x-ms-copy-source-authorization) and Copy Blob
from another server (asynchronous: pending, progress, success, Abort Copy; Copy Blob From URL).

"Another server" is a second openbatch on other ports, or a small HTTP server of the test's own
(loopback only) that can check the Authorization it is sent, ignore ranges, or hold its answer.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    BlobType,
    ContainerClient,
    ContentSettings,
    generate_blob_sas,
)

from tests.blob.raw import request
from tests.conftest import _server_dir
from tests.helpers.server import LiveServer

MIB = 1 << 20


@pytest.fixture(scope="module")
def other() -> Iterator[LiveServer]:
    """Another Blob server: copies from it go over HTTP."""
    with _server_dir() as data:
        srv = LiveServer(data).start()
        yield srv
        srv.stop()


@pytest.fixture(scope="module")
def here(server: LiveServer) -> ContainerClient:
    return BlobServiceClient.from_connection_string(server.connection_string, retry_total=0).create_container("here")


@pytest.fixture(scope="module")
def there(other: LiveServer) -> ContainerClient:
    return BlobServiceClient.from_connection_string(other.connection_string, retry_total=0).create_container("there")


def _sas_url(server: LiveServer, container: ContainerClient, name: str) -> str:
    sas = generate_blob_sas(server.account, container.container_name, name, account_key=server.key,
                            permission=BlobSasPermissions(read=True), expiry=datetime.now(UTC) + timedelta(hours=1))
    return f"{container.get_blob_client(name).url}?{sas}"


def _name() -> str:
    return f"b{uuid.uuid4().hex[:12]}"


class _Source(BaseHTTPRequestHandler):
    """GET /{anything}: the bytes of ``payload``. Checks ``token`` (Authorization: Bearer), answers
    ranges unless ``ignore_ranges``, and after ``hold_after`` bytes waits for ``release``."""

    payload = b""
    token = "secret-token"
    require_auth = True
    ignore_ranges = False
    hold_after: int | None = None
    release = threading.Event()
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        if self.require_auth and self.headers.get("Authorization") != f"Bearer {self.token}":
            self._answer(401, b"<Error><Code>NoAuthenticationInformation</Code></Error>")
            return
        data, status, extra = self.payload, 200, {}
        rng = self.headers.get("Range")
        if rng and not self.ignore_ranges:
            first, _, last = rng.removeprefix("bytes=").partition("-")
            end = int(last) + 1 if last else len(data)
            extra = {"Content-Range": f"bytes {first}-{end - 1}/{len(data)}"}
            data, status = data[int(first):end], 206
        self._answer(status, data, {"Content-Type": "text/x-source", "x-ms-meta-origin": "tiny", **extra})

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        hold = type(self).hold_after
        try:
            if hold is None:
                self.wfile.write(body)
                return
            self.wfile.write(body[:hold])
            self.wfile.flush()
            type(self).release.wait(60)
            self.wfile.write(body[hold:])
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tiny() -> Iterator[str]:
    """A small HTTP source on loopback; yields its base URL."""
    _Source.payload, _Source.ignore_ranges, _Source.hold_after = os.urandom(3 * MIB + 5), False, None
    _Source.require_auth = True
    _Source.release = threading.Event()
    _Source.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Source)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/file.bin"
    _Source.release.set()
    httpd.shutdown()
    httpd.server_close()


# --- Put Blob From URL ------------------------------------------------------------------------


def test_put_blob_from_another_server(other: LiveServer, there: ContainerClient, here: ContainerClient) -> None:
    data = os.urandom(5 * MIB + 1)
    name = _name()
    there.upload_blob(name, data, metadata={"at": "there"},
                      content_settings=ContentSettings(content_type="image/x-test", content_language="de"))
    dst = here.get_blob_client(name)
    done = dst.upload_blob_from_url(_sas_url(other, there, name), metadata={"at": "here"})
    assert done["etag"] and done["content_md5"] == hashlib.md5(data).digest()
    assert dst.download_blob().readall() == data
    props = dst.get_blob_properties()
    assert props.blob_type == BlobType.BLOCKBLOB and props.metadata == {"at": "here"}
    assert props.content_settings.content_type == "image/x-test" and props.content_settings.content_language == "de"
    again = dst.upload_blob_from_url(_sas_url(other, there, name), overwrite=True,
                                     include_source_blob_properties=False)
    assert again["etag"] != done["etag"]
    assert dst.get_blob_properties().content_settings.content_type == "application/octet-stream"
    with pytest.raises(HttpResponseError) as e:
        dst.upload_blob_from_url(_sas_url(other, there, name))  # overwrite defaults to False
    assert e.value.error_code == "BlobAlreadyExists"


def test_put_blob_from_url_source_checks(other: LiveServer, there: ContainerClient, here: ContainerClient) -> None:
    name = _name()
    there.upload_blob(name, b"checked bytes")
    url = _sas_url(other, there, name)
    dst = here.get_blob_client(_name())
    with pytest.raises(HttpResponseError) as e:
        dst.upload_blob_from_url(url, source_content_md5=hashlib.md5(b"other bytes").digest())
    assert (e.value.status_code, e.value.error_code) == (400, "Md5Mismatch")
    with pytest.raises(HttpResponseError) as e:
        dst.upload_blob_from_url(url, source_etag='"0x1"', source_match_condition=MatchConditions.IfNotModified)
    assert (e.value.status_code, e.value.error_code) == (412, "SourceConditionNotMet")
    with pytest.raises(HttpResponseError) as e:
        dst.upload_blob_from_url(there.get_blob_client(name).url)  # no SAS: the other server refuses
    assert (e.value.status_code, e.value.error_code) == (403, "CannotVerifyCopySource")
    with pytest.raises(HttpResponseError) as e:
        dst.upload_blob_from_url(_sas_url(other, there, "missing"))
    assert (e.value.status_code, e.value.error_code) == (404, "CannotVerifyCopySource")
    assert not dst.exists()
    dst.upload_blob_from_url(url, source_content_md5=hashlib.md5(b"checked bytes").digest())
    assert dst.download_blob().readall() == b"checked bytes"


def test_put_blob_from_a_local_snapshot(here: ContainerClient) -> None:
    src = here.upload_blob(_name(), b"snapshotted")
    snap = src.create_snapshot()["snapshot"]
    src.upload_blob(b"changed", overwrite=True)
    dst = here.get_blob_client(_name())
    dst.upload_blob_from_url(f"{src.url}?snapshot={snap}")
    assert dst.download_blob().readall() == b"snapshotted"
    dst.upload_blob_from_url(src.url, overwrite=True, source_content_md5=hashlib.md5(b"changed").digest())
    assert dst.download_blob().readall() == b"changed"


# --- Put Block From URL --------------------------------------------------------------------------


def test_blocks_from_urls_with_ranges(other: LiveServer, there: ContainerClient, here: ContainerClient) -> None:
    data = os.urandom(12 * MIB + 7)
    name = _name()
    there.upload_blob(name, data)
    local = here.upload_blob(_name(), data)
    remote_url = _sas_url(other, there, name)
    dst = here.get_blob_client(_name())
    done = dst.stage_block_from_url("b1", remote_url, source_offset=0, source_length=8 * MIB)
    assert done["content_md5"] == hashlib.md5(data[: 8 * MIB]).digest()
    dst.stage_block_from_url("b2", local.url, source_offset=8 * MIB, source_length=len(data) - 8 * MIB)  # from here
    dst.stage_block_from_url("b3", remote_url, source_offset=100, source_length=10,
                             source_content_md5=hashlib.md5(data[100:110]).digest())
    dst.commit_block_list(["b1", "b2", "b3"])
    assert dst.download_blob().readall() == data + data[100:110]
    with pytest.raises(HttpResponseError) as e:
        dst.stage_block_from_url("b4", remote_url, source_offset=100, source_length=10,
                                 source_content_md5=hashlib.md5(b"nope").digest())
    assert e.value.error_code == "Md5Mismatch"
    with pytest.raises(HttpResponseError) as e:
        dst.stage_block_from_url("b4", remote_url, source_offset=len(data) + 10, source_length=10)
    assert (e.value.status_code, e.value.error_code) == (416, "CannotVerifyCopySource")
    _, uncommitted = dst.get_block_list("all")
    assert uncommitted == []


def test_copy_source_authorization_is_sent_to_the_source(tiny: str, here: ContainerClient) -> None:
    dst = here.get_blob_client(_name())
    with pytest.raises(HttpResponseError) as e:
        dst.stage_block_from_url("b1", tiny, source_offset=0, source_length=1024)
    assert (e.value.status_code, e.value.error_code) == (401, "CannotVerifyCopySource")
    assert "authorization" not in _Source.seen[-1]
    dst.stage_block_from_url("b1", tiny, source_offset=10, source_length=1024,
                             source_authorization=f"Bearer {_Source.token}")
    assert _Source.seen[-1]["range"] == "bytes=10-1033"
    _Source.ignore_ranges = True  # a server that answers 200 to a range request: the range is cut out
    dst.stage_block_from_url("b2", tiny, source_offset=2 * MIB, source_length=5,
                             source_authorization=f"Bearer {_Source.token}")
    dst.commit_block_list(["b1", "b2"])
    payload = _Source.payload
    assert dst.download_blob().readall() == payload[10:1034] + payload[2 * MIB: 2 * MIB + 5]


# --- Append Block and Put Page From URL ----------------------------------------------------------


def test_append_and_page_blocks_from_urls(other: LiveServer, there: ContainerClient, here: ContainerClient) -> None:
    data = os.urandom(4096)
    name = _name()
    there.upload_blob(name, data)
    url = _sas_url(other, there, name)
    app = here.get_blob_client(_name())
    app.create_append_blob()
    app.append_block(b"head:")
    done = app.append_block_from_url(url, source_offset=1000, source_length=100)
    assert done["blob_append_offset"] == "5" and done["blob_committed_block_count"] == 2
    with pytest.raises(HttpResponseError) as e:
        app.append_block_from_url(url, appendpos_condition=3)
    assert e.value.error_code == "AppendPositionConditionNotMet"
    app.append_block_from_url(url)
    assert app.download_blob().readall() == b"head:" + data[1000:1100] + data
    page = here.get_blob_client(_name())
    page.create_page_blob(8192)
    page.upload_pages_from_url(url, offset=1024, length=2048, source_offset=512)
    assert page.download_blob(offset=1024, length=2048).readall() == data[512:2560]
    assert [(r.start, r.end) for r in page.list_page_ranges()] == [(1024, 3071)]
    with pytest.raises(HttpResponseError) as e:
        page.upload_pages_from_url(url, offset=0, length=512, source_offset=0, if_sequence_number_lt=0)
    assert e.value.error_code == "SequenceNumberConditionNotMet"


# --- Copy Blob from another server ---------------------------------------------------------------


def _wait_copy(blob: object, timeout: float = 30) -> object:
    deadline = time.monotonic() + timeout
    while True:
        props = blob.get_blob_properties()  # type: ignore[attr-defined]
        if props.copy.status != "pending" or time.monotonic() > deadline:
            return props
        time.sleep(0.05)


def test_copy_blob_from_another_server(other: LiveServer, there: ContainerClient, here: ContainerClient) -> None:
    data = os.urandom(20 * MIB + 3)
    name = _name()
    there.upload_blob(name, data, metadata={"from": "there"})
    dst = here.get_blob_client(_name())
    started = dst.start_copy_from_url(_sas_url(other, there, name))
    assert started["copy_status"] in ("pending", "success") and started["copy_id"]
    props = _wait_copy(dst)
    assert props.copy.status == "success" and props.copy.id == started["copy_id"]
    assert props.copy.progress == f"{len(data)}/{len(data)}" and props.copy.completion_time
    assert props.copy.source == there.get_blob_client(name).url  # kept without its SAS
    assert props.metadata == {"from": "there"} and props.size == len(data)
    assert dst.download_blob().readall() == data
    sync = here.get_blob_client(_name())
    done = sync.start_copy_from_url(_sas_url(other, there, name), requires_sync=True, metadata={"m": "1"})
    assert done["copy_status"] == "success"
    assert sync.download_blob().readall() == data and sync.get_blob_properties().metadata == {"m": "1"}
    with pytest.raises(HttpResponseError) as e:
        here.get_blob_client(_name()).start_copy_from_url(_sas_url(other, there, "missing"))
    assert (e.value.status_code, e.value.error_code) == (404, "CannotVerifyCopySource")


def test_a_pending_copy_shows_progress_and_can_be_aborted(tiny: str, here: ContainerClient,
                                                          server: LiveServer) -> None:
    _Source.payload = os.urandom(40 * MIB)
    _Source.hold_after, _Source.require_auth = 20 * MIB, False  # (async copies carry no source token)
    dst = here.get_blob_client(_name())
    copy = dst.start_copy_from_url(tiny)
    assert copy["copy_status"] == "pending"
    deadline = time.monotonic() + 30
    while dst.get_blob_properties().copy.progress == f"0/{40 * MIB}" and time.monotonic() < deadline:
        time.sleep(0.05)
    props = dst.get_blob_properties()
    assert props.copy.status == "pending" and props.copy.progress.endswith(f"/{40 * MIB}")
    assert props.copy.progress != f"0/{40 * MIB}" and props.size == 0
    assert dst.download_blob().readall() == b""
    with pytest.raises(HttpResponseError) as e:
        dst.abort_copy("00000000-0000-0000-0000-000000000000")
    assert (e.value.status_code, e.value.error_code) == (409, "CopyIdMismatch")
    with pytest.raises(HttpResponseError) as e:
        dst.start_copy_from_url(tiny)  # one copy at a time
    assert (e.value.status_code, e.value.error_code) == (409, "PendingCopyOperation")
    dst.abort_copy(copy)
    props = dst.get_blob_properties()
    assert props.copy.status == "aborted" and props.size == 0
    with pytest.raises(HttpResponseError) as e:
        dst.abort_copy(copy)
    assert (e.value.status_code, e.value.error_code) == (409, "NoPendingCopyOperation")
    _Source.release.set()
    time.sleep(0.2)
    assert dst.get_blob_properties().copy.status == "aborted"
    assert dst.download_blob().readall() == b""


def test_copies_to_other_ports_are_never_served_locally(server: LiveServer, here: ContainerClient) -> None:
    name = _name()
    here.upload_blob(name, b"local bytes")
    c = here.container_name
    for port in (server.batch_port, 1):  # this host on another port: another server (or none)
        r = request(server, "PUT", f"/{c}/{name}-dst",
                    headers={"x-ms-copy-source": f"http://127.0.0.1:{port}/{server.account}/{c}/{name}"})
        assert r.status in (401, 403, 404) and r.code == "CannotVerifyCopySource", (port, r.body)
    with pytest.raises(ResourceNotFoundError):
        here.get_blob_client(f"{name}-dst").get_blob_properties()


def test_copy_blob_types(here: ContainerClient) -> None:
    page = here.get_blob_client(_name())
    page.create_page_blob(4096, sequence_number=3)
    page.upload_page(b"p" * 512, offset=512, length=512)
    dst = here.get_blob_client(_name())
    dst.start_copy_from_url(page.url)
    props = dst.get_blob_properties()
    assert props.blob_type == BlobType.PAGEBLOB and props.page_blob_sequence_number == 3
    assert [(r.start, r.end) for r in dst.list_page_ranges()] == [(512, 1023)]
    app = here.get_blob_client(_name())
    app.create_append_blob()
    app.append_block(b"sealed")
    app.seal_append_blob()
    sealed = here.get_blob_client(_name())
    sealed.start_copy_from_url(app.url)
    assert sealed.get_blob_properties().is_append_blob_sealed is True
    unsealed = here.get_blob_client(_name())
    unsealed.start_copy_from_url(app.url, seal_destination_blob=False)
    unsealed.append_block(b"+more")
    assert unsealed.download_blob().readall() == b"sealed+more"
    with pytest.raises(HttpResponseError) as e:
        sealed.start_copy_from_url(page.url)  # an append blob cannot become a page blob by a copy
    assert (e.value.status_code, e.value.error_code) == (409, "InvalidBlobType")
    block = here.get_blob_client(_name())
    block.upload_blob_from_url(page.url)  # Put Blob From URL always makes a block blob
    assert block.get_blob_properties().blob_type == BlobType.BLOCKBLOB
    assert block.download_blob().readall() == bytes(512) + b"p" * 512 + bytes(3072)


def test_put_block_from_url_streams_with_flat_memory(here: ContainerClient, server: LiveServer, tiny: str) -> None:
    _Source.payload = os.urandom(160 * MIB)
    assert server.proc is not None
    proc = psutil.Process(server.proc.pid)
    base = proc.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], proc.memory_info().rss)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    dst = here.get_blob_client(_name())
    dst.stage_block_from_url("big", tiny, source_authorization=f"Bearer {_Source.token}")
    dst.commit_block_list(["big"])
    stop.set()
    watcher.join()
    digest = hashlib.sha256()
    for chunk in dst.download_blob().chunks():
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(_Source.payload).hexdigest()
    assert peak[0] - base < 60 * MIB, f"server RSS grew by {(peak[0] - base) / MIB:.0f} MiB for a 160 MiB block"
