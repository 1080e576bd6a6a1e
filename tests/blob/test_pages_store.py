"""Page, append, snapshot and version storage without HTTP: sparse page blobs, space given back when
pages are cleared or overwritten (holes punched in shared extents, files deleted when nothing
references them), snapshots and versions holding their bytes, the append block limit, and the
migration of a store written before snapshots existed."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from openbatch.blob.append import MAX_APPEND_BLOCKS, AppendBlobs, AppendConditions
from openbatch.blob.errors import BlobError
from openbatch.blob.models import ContentSettings, Part
from openbatch.blob.pages import PageBlobs, SequenceConditions, _diff
from openbatch.blob.service import Blobs
from openbatch.common.conditions import Conditions

ACCOUNT = "acct"
MIB = 1 << 20
TIB = 1 << 40
NO_SEQ = SequenceConditions()


@pytest.fixture
def blobs(tmp_path: Path) -> Iterator[Blobs]:
    b = Blobs(tmp_path / "blob")
    b.recover()
    b.create_container(ACCOUNT, "box", {}, None)
    yield b
    b.close()


async def _body(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 256 << 10):
        yield data[i:i + (256 << 10)]


def _write(pages: PageBlobs, name: str, offset: int, data: bytes) -> None:
    asyncio.run(pages.upload_pages(ACCOUNT, "box", name, (offset, offset + len(data) - 1), _body(data), len(data),
                                   None, Conditions(), NO_SEQ))


def _read(blobs: Blobs, name: str, byte_range: tuple[int, int | None] | None = None, stamp: str = "") -> bytes:
    async def run() -> bytes:
        plan = blobs.open_read(ACCOUNT, "box", name, byte_range, Conditions(), stamp)
        return b"".join([c async for c in blobs.stream(plan)])

    return asyncio.run(run())


def _data_files(blobs: Blobs) -> list[Path]:
    return [p for p in (blobs.root / "data").rglob("*") if p.is_file()]


def _allocated(blobs: Blobs) -> int:
    return sum(p.stat().st_blocks * 512 for p in _data_files(blobs))


def _page_blob(blobs: Blobs, name: str, size: int) -> PageBlobs:
    pages = PageBlobs(blobs)
    pages.create(ACCOUNT, "box", name, size, 0, ContentSettings(), {}, Conditions())
    return pages


def test_a_huge_page_blob_stores_only_its_written_pages(blobs: Blobs) -> None:
    pages = _page_blob(blobs, "disk", TIB)
    _write(pages, "disk", 0, b"a" * 512)
    _write(pages, "disk", TIB - 1024, b"z" * 1024)
    assert sum(p.stat().st_size for p in _data_files(blobs)) == 1536
    assert _read(blobs, "disk", (0, 1023)) == b"a" * 512 + bytes(512)
    assert _read(blobs, "disk", (TIB - 2048, None)) == bytes(1024) + b"z" * 1024
    listing = pages.page_ranges(ACCOUNT, "box", "disk", Conditions(), "", None, None, "", None)
    assert listing.ranges == [(0, 511), (TIB - 1024, TIB - 1)]


def test_clearing_and_overwriting_pages_gives_space_back(blobs: Blobs) -> None:
    pages = _page_blob(blobs, "p", 8 * MIB)
    _write(pages, "p", 0, os.urandom(4 * MIB))
    full = _allocated(blobs)
    assert full >= 4 * MIB
    pages.clear_pages(ACCOUNT, "box", "p", (MIB, 3 * MIB - 1), Conditions(), NO_SEQ)
    assert full - _allocated(blobs) >= 2 * MIB - 8192  # a hole punched in the one extent
    assert len(_data_files(blobs)) == 1
    _write(pages, "p", 0, os.urandom(MIB))  # overwrites the first of the two runs left
    _write(pages, "p", 3 * MIB, os.urandom(MIB))  # and the second: the first extent is unused
    assert len(_data_files(blobs)) == 2 and _allocated(blobs) <= 2 * MIB + 16384
    pages.set_properties(ACCOUNT, "box", "p", 512, None, None, None, Conditions())  # resize cuts pages
    assert len(_data_files(blobs)) == 1 and _allocated(blobs) <= 8192
    pages.clear_pages(ACCOUNT, "box", "p", (0, 511), Conditions(), NO_SEQ)
    assert _data_files(blobs) == []


def test_snapshots_hold_the_bytes_they_show(blobs: Blobs) -> None:
    pages = _page_blob(blobs, "s", 4 * MIB)
    old = os.urandom(4 * MIB)
    _write(pages, "s", 0, old)
    snap = blobs.snapshot_blob(ACCOUNT, "box", "s", None, Conditions())
    pages.clear_pages(ACCOUNT, "box", "s", (0, 4 * MIB - 1), Conditions(), NO_SEQ)
    assert _allocated(blobs) >= 4 * MIB  # the snapshot still shows every page
    assert _read(blobs, "s", stamp=snap.stamp) == old and _read(blobs, "s") == bytes(4 * MIB)
    blobs.delete_blob(ACCOUNT, "box", "s", Conditions(), snap.stamp)
    assert _data_files(blobs) == []


def test_a_reader_keeps_the_pages_it_reads_until_it_is_done(blobs: Blobs) -> None:
    pages = _page_blob(blobs, "r", 4 * MIB)
    data = os.urandom(4 * MIB)
    _write(pages, "r", 0, data)

    async def run() -> bytes:
        plan = blobs.open_read(ACCOUNT, "box", "r", None, Conditions())
        stream = blobs.stream(plan)
        first = await stream.__anext__()
        pages.clear_pages(ACCOUNT, "box", "r", (MIB, 4 * MIB - 1), Conditions(), NO_SEQ)
        assert _allocated(blobs) >= 4 * MIB  # not punched while being read
        return first + b"".join([c async for c in stream])

    assert asyncio.run(run()) == data
    assert _allocated(blobs) <= MIB + 8192


def test_versions_and_snapshots_free_their_bytes_when_deleted(blobs: Blobs) -> None:
    blobs.set_service_properties(ACCOUNT, "<StorageServiceProperties><IsVersioningEnabled>true"
                                          "</IsVersioningEnabled></StorageServiceProperties>")
    for n in range(3):
        asyncio.run(blobs.put_blob(ACCOUNT, "box", "v", _body(os.urandom(MIB)), None, ContentSettings(), {},
                                   Conditions(), None))
        if n == 1:
            blobs.snapshot_blob(ACCOUNT, "box", "v", None, Conditions())
    assert len(_data_files(blobs)) == 3
    listed, _ = blobs.list_blobs(ACCOUNT, "box", "", "", "", 100, False, "SV")
    assert [(b.stamp[:1], b.is_base) for b in listed if not isinstance(b, str)] == [
        ("S", False), ("V", False), ("V", False), ("", True)]
    blobs.delete_blob(ACCOUNT, "box", "v", Conditions(), delete_snapshots="include")  # the base becomes a version
    assert len(_data_files(blobs)) == 3
    listed, _ = blobs.list_blobs(ACCOUNT, "box", "", "", "", 100, False, "SV")
    for blob in listed:
        assert not isinstance(blob, str)
        blobs.delete_blob(ACCOUNT, "box", "v", Conditions(), blob.stamp)
    assert _data_files(blobs) == []


def test_append_blobs_take_at_most_50000_blocks(blobs: Blobs) -> None:
    appends = AppendBlobs(blobs)
    blobs.create_blob(ACCOUNT, "box", "log", "AppendBlob", ContentSettings(), {}, Conditions())
    blob = blobs.blob(ACCOUNT, "box", "log", Conditions())
    with blobs.meta.tx():  # 49,999 one-byte blocks, stored inline
        blobs.meta.insert_parts(blob.id, (Part(pos=i, length=1, extent="", offset=0, data=b"x")
                                          for i in range(MAX_APPEND_BLOCKS - 1)))
        blob.size = MAX_APPEND_BLOCKS - 1
        blobs.meta.save_blob(blob)
    done = asyncio.run(appends.append_block(ACCOUNT, "box", "log", _body(b"y"), 1, None, Conditions(),
                                            AppendConditions()))
    assert done.blob.committed_blocks == MAX_APPEND_BLOCKS and done.offset == MAX_APPEND_BLOCKS - 1
    with pytest.raises(BlobError) as e:
        asyncio.run(appends.append_block(ACCOUNT, "box", "log", _body(b"z"), 1, None, Conditions(),
                                         AppendConditions()))
    assert e.value.code == "BlockCountExceedsLimit"
    assert len(_data_files(blobs)) == 1  # the refused block left no file
    assert _read(blobs, "log", (MAX_APPEND_BLOCKS - 3, None)) == b"xxy"


def test_page_diffs_compare_where_bytes_are_stored() -> None:
    old = [(0, 1024, ("e1", 0)), (2048, 3072, ("e2", 0))]
    new = [(0, 512, ("e1", 0)), (512, 1024, ("e3", 0)), (2560, 3072, ("e2", 512)), (4096, 4608, ("e4", 0))]
    assert _diff(new, old) == [("page", 512, 1024), ("clear", 2048, 2560), ("page", 4096, 4608)]
    assert _diff(old, old) == []


def test_a_store_from_before_snapshots_is_migrated(tmp_path: Path) -> None:
    root = tmp_path / "blob"
    root.mkdir()
    db = sqlite3.connect(root / "meta.db")  # the blobs table as openbatch wrote it before (schema 2)
    db.executescript("""
        CREATE TABLE containers (id INTEGER PRIMARY KEY, account TEXT NOT NULL, name TEXT NOT NULL,
            etag TEXT NOT NULL, modified_us BIGINT NOT NULL, metadata TEXT NOT NULL, public_access TEXT,
            acl TEXT NOT NULL, UNIQUE (account, name));
        CREATE TABLE blobs (id INTEGER PRIMARY KEY, container_id INTEGER NOT NULL, name TEXT NOT NULL,
            committed INTEGER NOT NULL, etag TEXT NOT NULL, created_us BIGINT NOT NULL, modified_us BIGINT NOT NULL,
            size BIGINT NOT NULL, content_type TEXT NOT NULL, content_encoding TEXT NOT NULL,
            content_language TEXT NOT NULL, content_md5 BLOB, cache_control TEXT NOT NULL,
            content_disposition TEXT NOT NULL, metadata TEXT NOT NULL, block_id_len INTEGER,
            staged_count INTEGER NOT NULL, copy_id TEXT, copy_source TEXT, copy_status TEXT, copy_progress TEXT,
            copy_completed_us BIGINT, access_tier TEXT, tier_changed_us BIGINT, UNIQUE (container_id, name));
        CREATE INDEX blobs_by_modified ON blobs (modified_us);
        INSERT INTO containers VALUES (1, 'acct', 'box', '0x1', 0, '{}', NULL, '');
        INSERT INTO blobs VALUES (1, 1, 'old', 1, '0x2', 0, 0, 3, 'text/plain', '', '', NULL, '', '', '{}', NULL, 0,
            NULL, NULL, NULL, NULL, NULL, 'Cool', 0);
        CREATE TABLE parts (blob_id INTEGER NOT NULL, pos BIGINT NOT NULL, seq INTEGER NOT NULL,
            length BIGINT NOT NULL, extent TEXT NOT NULL, ext_offset BIGINT NOT NULL, block_id TEXT, data BLOB,
            PRIMARY KEY (blob_id, pos, seq)) WITHOUT ROWID;
        INSERT INTO parts VALUES (1, 0, 0, 3, '', 0, NULL, X'616263');
        PRAGMA user_version = 2;
    """)
    db.close()
    for _ in range(2):  # the second opening finds nothing left to do
        blobs = Blobs(root)
        try:
            old = blobs.blob(ACCOUNT, "box", "old", Conditions())
            assert (old.blob_type, old.stamp, old.tier, old.size) == ("BlockBlob", "", "Cool", 3)
            assert _read(blobs, "old") == b"abc"
            snap = blobs.snapshot_blob(ACCOUNT, "box", "old", None, Conditions())  # a second row of the name
            assert _read(blobs, "old", stamp=snap.stamp) == b"abc"
        finally:
            blobs.close()
    db = sqlite3.connect(root / "meta.db")
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "blobs_by_modified" in indexes
    db.close()
