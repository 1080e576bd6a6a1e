"""Durability and streaming: SIGKILL during uploads, restart, orphan sweep, flat server memory."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import threading
import time
from pathlib import Path

import psutil
import pytest
from azure.storage.blob import BlobServiceClient

from tests.blob.raw import request
from tests.helpers.blob_writers import MixedWriters
from tests.helpers.server import LiveServer

MIB = 1 << 20


def _content(name: str) -> bytes:
    """The bytes a blob of this name must hold: its size and seed are in its name."""
    _, size, seed = name.rsplit("-", 2)
    return random.Random(int(seed)).randbytes(int(size))


def _client(server: LiveServer) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(
        server.connection_string, retry_total=0, max_single_put_size=2 * MIB, max_block_size=MIB,
        connection_timeout=5, read_timeout=30,
    )


def _uploader(server: LiveServer, worker: int, acked: list[str], stop: threading.Event) -> None:
    container = _client(server).get_container_client("durable")
    sizes = [100, 20_000, 700_000, 1_500_000, 3 * MIB + 17, 5 * MIB + 3]
    n = 0
    while not stop.is_set():
        name = f"w{worker}/{n}-{sizes[n % len(sizes)]}-{worker * 100_000 + n}"
        n += 1
        try:
            container.upload_blob(name, _content(name), max_concurrency=2)
        except Exception:  # the server was killed under us
            return
        acked.append(name)


def _files(data_dir: Path) -> set[str]:
    return {p.name for p in (data_dir / "blob" / "data").rglob("*") if p.is_file()}


def _staged(data_dir: Path) -> set[str]:
    db = sqlite3.connect(f"file:{data_dir / 'blob' / 'meta.db'}?mode=ro", uri=True)
    try:
        return {r[0] for r in db.execute("SELECT extent FROM staged")}
    finally:
        db.close()


def _referenced(data_dir: Path) -> set[str]:
    db = sqlite3.connect(f"file:{data_dir / 'blob' / 'meta.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT extent FROM parts WHERE extent <> '' UNION SELECT extent FROM staged")
        return {r[0] for r in rows}
    finally:
        db.close()


def test_sigkill_during_uploads_keeps_every_acknowledged_blob(fresh_server: LiveServer) -> None:
    server = fresh_server
    _client(server).create_container("durable")
    acked: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_uploader, args=(server, w, acked, stop)) for w in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()  # SIGKILL while the uploaders are mid-request
    stop.set()
    for t in threads:
        t.join(60)
    assert len(acked) >= 30, "the uploads did not get going"

    # Plant debris a crash could leave: an unreferenced extent and a stray file.
    data = server.data_dir / "blob" / "data"
    (data / "ab").mkdir(exist_ok=True)
    (data / "ab" / ("ab" + "0" * 30)).write_bytes(b"orphan")
    (data / "stray.tmp").write_bytes(b"stray")

    server.start()
    container = _client(server).get_container_client("durable")
    for name in acked:
        assert container.download_blob(name).readall() == _content(name), name
    listed = [b for b in container.list_blobs()]
    assert {b.name for b in listed} >= set(acked)
    for b in listed:  # anything visible is complete, acknowledged or not
        assert b.size == len(_content(b.name))
        assert container.download_blob(b.name).readall() == _content(b.name), b.name
    assert _files(server.data_dir) == _referenced(server.data_dir)

    # Uploading again after recovery works and replaced data is reclaimed.
    for name in acked[:5]:
        container.upload_blob(name, b"replaced", overwrite=True)
    for b in listed:
        if b.name not in acked[:5]:
            container.delete_blob(b.name)
    # Left: only blocks staged by uploads the kill cut short (uncommitted blocks live on, as in
    # Azure, until committed or expired); the small replacements are stored inline.
    assert _files(server.data_dir) == _referenced(server.data_dir) == _staged(server.data_dir)


def test_clean_restart_keeps_blobs_containers_and_staged_blocks(fresh_server: LiveServer) -> None:
    client = _client(fresh_server)
    container = client.create_container("keep", metadata={"m": "1"}, public_access="blob")
    container.upload_blob("small", b"small")
    container.upload_blob("big", b"B" * (3 * MIB))
    container.get_blob_client("pending").stage_block("s1", b"staged")
    fresh_server.restart()
    container = _client(fresh_server).get_container_client("keep")
    props = container.get_container_properties()
    assert props.metadata == {"m": "1"} and props.public_access == "blob"
    assert container.download_blob("small").readall() == b"small"
    assert container.download_blob("big").readall() == b"B" * (3 * MIB)
    pending = container.get_blob_client("pending")
    _, uncommitted = pending.get_block_list("uncommitted")
    assert [b.id for b in uncommitted] == ["s1"]
    pending.commit_block_list(["s1"])
    assert pending.download_blob().readall() == b"staged"


def _pattern_file(path: Path, size: int) -> bytes:
    """Write ``size`` deterministic bytes to ``path`` a MiB at a time; return their MD5."""
    block = random.Random(7).randbytes(MIB)
    md5 = hashlib.md5()
    with open(path, "wb") as f:
        for offset in range(0, size, MIB):
            chunk = block[: min(MIB, size - offset)]
            md5.update(chunk)
            f.write(chunk)
    return md5.digest()


def _md5_of(path: Path) -> tuple[int, bytes]:
    md5 = hashlib.md5()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            md5.update(chunk)
            size += len(chunk)
    return size, md5.digest()


class _RssWatch:
    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.base = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak - self.base


def _stream_round_trip(server: LiveServer, source: Path, size: int, single_put: bool) -> int:
    """Upload and download ``size`` bytes from a file; return the server's peak RSS growth."""
    assert server.proc is not None
    digest = _pattern_file(source, size)
    put_limit = size + 1 if single_put else 4 * MIB
    client = BlobServiceClient.from_connection_string(
        server.connection_string, max_single_put_size=put_limit, max_block_size=4 * MIB,
        max_single_get_size=4 * MIB, max_chunk_get_size=4 * MIB)
    container = client.create_container(f"stream{int(single_put)}")
    watch = _RssWatch(server.proc.pid)
    with open(source, "rb") as f:
        blob = container.upload_blob("big", f, length=size, max_concurrency=4)
    with open(source, "wb") as f:  # download over the source, so the disk holds one copy
        blob.download_blob(max_concurrency=4).readinto(f)
    growth = watch.stop()
    assert _md5_of(source) == (size, digest)
    return growth


def test_large_single_put_streams_with_flat_memory(fresh_server: LiveServer, tmp_path: Path) -> None:
    growth = _stream_round_trip(fresh_server, tmp_path / "src", 160 * MIB, single_put=True)
    assert growth < 60 * MIB, f"server RSS grew by {growth / MIB:.0f} MiB for a 160 MiB blob"


@pytest.mark.slow
def test_two_gib_blob_moves_with_flat_memory(fresh_server: LiveServer, tmp_path: Path) -> None:
    growth = _stream_round_trip(fresh_server, tmp_path / "src", 2048 * MIB, single_put=False)
    assert growth < 100 * MIB, f"server RSS grew by {growth / MIB:.0f} MiB for a 2 GiB blob"


# --- append blobs, page blobs, snapshots, versions, copies -----------------------------------------

def test_sigkill_during_appends_page_writes_and_snapshots(fresh_server: LiveServer) -> None:
    server = fresh_server
    writers = MixedWriters(server)
    writers.create()
    writers.start()
    deadline = time.monotonic() + 30
    while (len(writers.appended) < 20 or len(writers.pages) < 10 or len(writers.snapshots) < 3) and (
            time.monotonic() < deadline):
        time.sleep(0.05)
    server.kill()
    writers.join()
    assert len(writers.appended) >= 20 and len(writers.snapshots) >= 3, "the writers did not get going"
    server.start()
    writers.verify()
    assert _files(server.data_dir) == _referenced(server.data_dir)
    container = _client(server).get_container_client("mixed")
    container.get_blob_client("disk").delete_blob(delete_snapshots="include")
    container.get_blob_client("log").delete_blob()
    assert _files(server.data_dir) == _referenced(server.data_dir) == set()


def test_clean_restart_keeps_page_append_snapshot_and_version_state(fresh_server: LiveServer) -> None:
    client = _client(fresh_server)
    r = request(fresh_server, "PUT", "/", query="restype=service&comp=properties", body=(
        b"<StorageServiceProperties><IsVersioningEnabled>true</IsVersioningEnabled></StorageServiceProperties>"))
    assert r.status == 202
    db_path = fresh_server.data_dir / "blob" / "meta.db"
    container = client.create_container("kept")
    v1 = container.upload_blob("ver", b"v1").get_blob_properties().version_id
    page = container.get_blob_client("page")
    page.create_page_blob(4 * MIB, sequence_number=4)
    page.upload_page(b"p" * 1024, offset=MIB, length=1024)
    snap = page.create_snapshot()["snapshot"]
    page.clear_page(offset=MIB, length=512)
    app = container.get_blob_client("app")
    app.create_append_blob()
    app.append_block(b"one,")
    app.append_block(b"two")
    app.seal_append_blob()
    fresh_server.restart()
    container = _client(fresh_server).get_container_client("kept")
    page = container.get_blob_client("page")
    assert page.get_blob_properties().page_blob_sequence_number == 4
    assert page.download_blob(offset=MIB, length=1024).readall() == bytes(512) + b"p" * 512
    old = container.get_blob_client("page", snapshot=snap)
    assert old.download_blob(offset=MIB, length=1024).readall() == b"p" * 1024
    app = container.get_blob_client("app")
    props = app.get_blob_properties()
    assert app.download_blob().readall() == b"one,two"
    assert props.append_blob_committed_block_count == 2 and props.is_append_blob_sealed
    container.upload_blob("ver", b"v2", overwrite=True)  # versioning is still on after the restart
    assert [(b.version_id == v1, b.is_current_version) for b in container.list_blobs("ver", include=["versions"])] == [
        (True, None), (False, True)]
    assert container.get_blob_client("ver", version_id=v1).download_blob().readall() == b"v1"
    rows = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True).execute(
        "SELECT substr(stamp, 1, 1), COUNT(*) FROM blobs WHERE stamp <> '' GROUP BY 1").fetchall()
    assert sorted(rows) == [("S", 1), ("V", 1)]
    page.delete_blob(delete_snapshots="include")
    app.delete_blob()  # (both stay as previous versions: versioning is on)
    assert _files(fresh_server.data_dir) == _referenced(fresh_server.data_dir) != set()
    container.delete_container()
    assert _files(fresh_server.data_dir) == _referenced(fresh_server.data_dir) == set()


def test_a_copy_cut_off_by_a_restart_is_failed_and_leaves_nothing(fresh_server: LiveServer) -> None:
    import http.server

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server name
            self.send_response(200)
            self.send_header("Content-Length", str(64 * MIB))
            self.end_headers()
            try:
                self.wfile.write(bytes(2 * MIB))
                self.wfile.flush()
                time.sleep(30)
            except OSError:
                pass

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        container = _client(fresh_server).create_container("copies")
        dst = container.get_blob_client("dst")
        copy = dst.start_copy_from_url(f"http://127.0.0.1:{httpd.server_address[1]}/src")
        assert copy["copy_status"] == "pending"
        time.sleep(0.5)
        fresh_server.kill()
        fresh_server.start()
        props = _client(fresh_server).get_blob_client("copies", "dst").get_blob_properties()
        assert props.copy.status == "failed" and props.copy.status_description and props.size == 0
        assert _files(fresh_server.data_dir) == _referenced(fresh_server.data_dir) == set()
    finally:
        httpd.shutdown()
        httpd.server_close()
