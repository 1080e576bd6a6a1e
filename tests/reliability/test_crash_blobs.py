"""kill -9 at random moments while several clients upload 64 MiB+ blobs at once, then restart.

Each uploader (azure-storage-blob 12: one in single Put Blob calls, the others in 4 MiB blocks
and a Put Block List) uploads its own source file again and again under new names; an upload
counts as acknowledged when its SDK call returned. After the last restart: every acknowledged
blob is byte-identical to what was sent (SHA-256), anything listed is complete (a blob whose
commit landed but whose answer the kill cut off is whole, never partial), and the bytes on disk
are exactly the extents the metadata references, each as long as it must be: no orphan left
after start-up, no reference to a missing or truncated file.

Default: 3 uploaders x 64 MiB, 3 kills. ``-m slow``: 6 uploaders x 256 MiB, 5 kills.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import AzureError, HttpResponseError
from azure.storage.blob import BlobServiceClient, ContainerClient

from openbatch.testing import LiveServer
from tests.helpers.blob_writers import MixedWriters
from tests.helpers.waiting import wait_for
from tests.reliability import report
from tests.reliability.crash import (
    Crasher,
    crash_server,
    extent_files,
    referenced_extents,
    seed,
    tracebacks,
)

MIB = 1 << 20


def _source(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; their SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for offset in range(0, size, 4 * MIB):
            chunk = os.urandom(min(4 * MIB, size - offset))
            digest.update(chunk)
            f.write(chunk)
    return digest.hexdigest()


def _client(server: LiveServer, single_put: bool) -> ContainerClient:
    service = BlobServiceClient.from_connection_string(
        server.connection_string, retry_total=0, connection_timeout=10, read_timeout=120,
        max_single_put_size=(512 * MIB if single_put else 4 * MIB), max_block_size=4 * MIB)
    return service.get_container_client("crash")


@dataclass
class Uploader:
    """Uploads ``source`` as w{index}-{n} until stopped; remembers what was acknowledged."""

    server: LiveServer
    crasher: Crasher
    index: int
    source: Path
    single_put: bool
    stop: threading.Event
    acked: list[str] = field(default_factory=list)
    cut: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            self.crasher.up.wait(120)
            name = f"w{self.index}-{n}"
            n += 1
            try:
                with open(self.source, "rb") as f:
                    _client(self.server, self.single_put).upload_blob(name, f, max_concurrency=2)
            except HttpResponseError as exc:  # an answer, not a cut connection: never expected here
                self.errors.append(f"{name}: {exc.status_code} {getattr(exc, 'error_code', '')}")
                continue
            except AzureError:  # the connection was cut by a kill
                self.cut.append(name)
                time.sleep(0.05)
                continue
            self.acked.append(name)


def _sha256_of(container: ContainerClient, name: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    for chunk in container.download_blob(name, max_concurrency=2).chunks():
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def _verify(server: LiveServer, uploaders: list[Uploader], digests: dict[int, str], size: int) -> dict[str, Any]:
    container = _client(server, False)
    acked = {name for u in uploaders for name in u.acked}
    listed = {b.name: b.size for b in container.list_blobs()}
    missing = sorted(acked - set(listed))
    assert not missing, f"acknowledged blobs lost: {missing}"
    corrupt = []
    for name in sorted(listed):  # acknowledged or not, anything visible must be whole
        if listed[name] != size or _sha256_of(container, name) != (size, digests[int(name[1:].split("-")[0])]):
            corrupt.append((name, listed[name], name in acked))
    assert not corrupt, f"blobs not byte-identical to what was sent (name, size, acknowledged): {corrupt}"
    files, needed = extent_files(server.data_dir), referenced_extents(server.data_dir)
    orphans = sorted(set(files) - set(needed))
    dangling = sorted(set(needed) - set(files))
    short = sorted(e for e in set(needed) & set(files) if files[e] < needed[e])
    assert not orphans, f"{len(orphans)} extent files nothing references after start-up: {orphans[:5]}"
    assert not dangling and not short, f"references to missing {dangling[:5]} or short {short[:5]} extents"
    return {"acknowledged": len(acked), "visible_not_acknowledged_but_whole": len(set(listed) - acked),
            "cut_by_kills": sum(len(u.cut) for u in uploaders), "corrupted": 0, "lost": 0,
            "extent_files": len(files), "orphan_files": 0, "bytes_verified": len(listed) * size}


def _acked(uploaders: list[Uploader]) -> int:
    return sum(len(u.acked) for u in uploaders)


def _one_more_upload(uploaders: list[Uploader]) -> None:
    before = _acked(uploaders)
    wait_for(lambda: _acked(uploaders) > before, "one more upload to be acknowledged", timeout=300)


def run_crash_uploads(workers: int, size: int, kills: int) -> dict[str, Any]:
    rng_seed = seed()
    rng = random.Random(rng_seed)
    with crash_server() as server:
        sources = server.data_dir.parent / "sources"
        sources.mkdir()
        digests = {i: _source(sources / f"w{i}", size) for i in range(workers)}
        BlobServiceClient.from_connection_string(server.connection_string).create_container("crash")
        crasher = Crasher(server)
        stop = threading.Event()
        uploaders = [Uploader(server, crasher, i, sources / f"w{i}", i == 0, stop) for i in range(workers)]
        threads = [threading.Thread(target=u.run, daemon=True) for u in uploaders]
        started = time.monotonic()
        try:
            for t in threads:
                t.start()
            for k in range(kills):
                # Let at least one upload through between kills, then kill at a random moment.
                _one_more_upload(uploaders)
                time.sleep(rng.uniform(0.0, 1.5))
                crasher.kill_and_restart(f"kill {k + 1}: {_acked(uploaders)} acknowledged so far")
            _one_more_upload(uploaders)
        finally:
            stop.set()
            crasher.up.set()
            for t in threads:
                t.join(300)
        elapsed = time.monotonic() - started
        assert not any(t.is_alive() for t in threads), "an uploader hung"
        errors = [e for u in uploaders for e in u.errors]
        assert not errors, errors
        figures = _verify(server, uploaders, digests, size)
        server_errors, helper_errors = tracebacks(server)
        assert not server_errors, server_errors[:3]
        figures["spawner_helper_tracebacks"] = len(helper_errors)
        assert not helper_errors, helper_errors[:3]  # a helper whose server was killed mid-spawn just ends
        figures.update(seed=rng_seed, uploaders=workers, blob_mib=size // MIB, kills=crasher.kills,
                       seconds=round(elapsed, 1))
        return figures


@pytest.mark.timeout(900)
def test_kill_9_during_concurrent_64_mib_uploads() -> None:
    figures = run_crash_uploads(workers=3, size=64 * MIB, kills=3)
    report.record("kill -9 during 3 concurrent 64 MiB uploads", **figures)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_kill_9_during_concurrent_256_mib_uploads() -> None:
    figures = run_crash_uploads(workers=6, size=256 * MIB, kills=5)
    report.record("kill -9 during 6 concurrent 256 MiB uploads", **figures)


def run_crash_mixed(kills: int, min_seconds: float) -> dict[str, Any]:
    """kill -9 at random moments while appends, page writes and snapshots go on (tests/helpers/blob_writers.py)."""
    rng_seed = seed()
    rng = random.Random(rng_seed)
    with crash_server() as server:
        crasher = Crasher(server)
        writers = MixedWriters(server, crasher.up)
        writers.create()
        writers.start()
        try:
            for k in range(kills):
                before = len(writers.appended) + len(writers.snapshots)
                wait_for(lambda b=before: len(writers.appended) + len(writers.snapshots) > b + 5,
                         "the writers to get going again", timeout=120)
                time.sleep(rng.uniform(0.0, min_seconds))
                crasher.kill_and_restart(f"kill {k + 1}")
        finally:
            crasher.up.set()
            writers.join()
        figures = writers.verify()
        files, needed = extent_files(server.data_dir), referenced_extents(server.data_dir)
        orphans, dangling = sorted(set(files) - set(needed)), sorted(set(needed) - set(files))
        short = sorted(e for e in set(needed) & set(files) if files[e] < needed[e])
        assert not orphans, f"{len(orphans)} extent files nothing references after start-up: {orphans[:5]}"
        assert not dangling and not short, f"references to missing {dangling[:5]} or short {short[:5]} extents"
        server_errors, _ = tracebacks(server)
        assert not server_errors, server_errors[:3]
        figures.update(seed=rng_seed, kills=len(crasher.kills), extent_files=len(files))
        return figures


@pytest.mark.timeout(600)
def test_kill_9_during_appends_page_writes_and_snapshots() -> None:
    figures = run_crash_mixed(kills=3, min_seconds=1.0)
    report.record("kill -9 during appends, page writes and snapshots", **figures)
