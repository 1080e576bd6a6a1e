"""The Blob domain and its stores without HTTP: rules, reclaiming data files, recovery."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from openbatch.blob.append import AppendBlobs
from openbatch.blob.copies import Copies, LocalSource
from openbatch.blob.errors import BlobError
from openbatch.blob.models import ContentSettings
from openbatch.blob.pages import PageBlobs
from openbatch.blob.service import INLINE_MAX, Blobs, successor
from openbatch.common.conditions import Conditions

ACCOUNT = "acct"


@pytest.fixture
def blobs(tmp_path: Path) -> Iterator[Blobs]:
    b = Blobs(tmp_path / "blob")
    b.recover()
    b.create_container(ACCOUNT, "box", {}, None)
    yield b
    b.close()


async def _body(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _put(blobs: Blobs, name: str, data: bytes, cond: Conditions | None = None, hint: bool = True) -> None:
    asyncio.run(blobs.put_blob(ACCOUNT, "box", name, _body(data), len(data) if hint else None, ContentSettings(),
                               {}, cond or Conditions(), None))


def _read(blobs: Blobs, name: str, byte_range: tuple[int, int | None] | None = None) -> bytes:
    async def run() -> bytes:
        plan = blobs.open_read(ACCOUNT, "box", name, byte_range, Conditions())
        return b"".join([c async for c in blobs.stream(plan)])

    return asyncio.run(run())


def _stage(blobs: Blobs, name: str, block_id: str, data: bytes) -> None:
    bid = base64.b64encode(block_id.encode()).decode()
    asyncio.run(blobs.put_block(ACCOUNT, "box", name, bid, _body(data), None))


def _ids(*names: str) -> list[tuple[str, str]]:
    return [("Latest", base64.b64encode(n.encode()).decode()) for n in names]


def _files(blobs: Blobs) -> int:
    return blobs.extents.count()


def test_small_blobs_are_inline_and_large_ones_are_files(blobs: Blobs) -> None:
    _put(blobs, "small", b"s" * INLINE_MAX)
    assert _files(blobs) == 0
    big = os.urandom(INLINE_MAX + 1)
    _put(blobs, "big", big)
    assert _files(blobs) == 1
    _put(blobs, "streamed", b"x" * 10, hint=False)  # no Content-Length: always a file
    assert _files(blobs) == 2
    assert _read(blobs, "small") == b"s" * INLINE_MAX
    assert _read(blobs, "big") == big
    assert _read(blobs, "big", (5, 9)) == big[5:10]
    assert _read(blobs, "small", (INLINE_MAX - 2, None)) == b"ss"


def test_replaced_and_deleted_data_is_reclaimed(blobs: Blobs) -> None:
    _put(blobs, "a", os.urandom(100_000))
    _put(blobs, "a", os.urandom(100_000))
    assert _files(blobs) == 1
    blobs.delete_blob(ACCOUNT, "box", "a", Conditions())
    assert _files(blobs) == 0
    _stage(blobs, "b", "1", b"one")
    _stage(blobs, "b", "1", b"ONE")  # restaging an id replaces its data
    _stage(blobs, "b", "2", b"two")
    assert _files(blobs) == 2
    blobs.put_block_list(ACCOUNT, "box", "b", _ids("2"), ContentSettings(), {}, Conditions())
    assert _files(blobs) == 1  # the unused block went with the commit
    assert _read(blobs, "b") == b"two"
    blobs.delete_container(ACCOUNT, "box", Conditions())
    assert _files(blobs) == 0


def test_copies_share_data_until_the_last_reference_goes(blobs: Blobs) -> None:
    data = os.urandom(200_000)
    _put(blobs, "src", data)
    pages = PageBlobs(blobs)
    Copies(blobs, AppendBlobs(blobs), pages).copy_local(ACCOUNT, "box", "dst", LocalSource(ACCOUNT, "box", "src"),
                                                         "http://x/acct/box/src", None, Conditions(), Conditions())
    assert _files(blobs) == 1
    blobs.delete_blob(ACCOUNT, "box", "src", Conditions())
    assert _files(blobs) == 1 and _read(blobs, "dst") == data
    blobs.delete_blob(ACCOUNT, "box", "dst", Conditions())
    assert _files(blobs) == 0


def test_a_reader_keeps_released_data_until_it_is_done(blobs: Blobs) -> None:
    data = os.urandom(3 << 20)
    _put(blobs, "r", data)

    async def run() -> bytes:
        plan = blobs.open_read(ACCOUNT, "box", "r", None, Conditions())
        stream = blobs.stream(plan)
        first = await stream.__anext__()
        blobs.delete_blob(ACCOUNT, "box", "r", Conditions())
        assert _files(blobs) == 1  # still being read
        rest = [c async for c in stream]
        return first + b"".join(rest)

    assert asyncio.run(run()) == data
    assert _files(blobs) == 0


def test_recovery_sweeps_unreferenced_files(tmp_path: Path) -> None:
    b = Blobs(tmp_path / "blob")
    b.recover()
    b.create_container(ACCOUNT, "box", {}, None)
    _put(b, "keep", os.urandom(100_000))
    writer = b.extents.create()  # an upload cut off before its commit
    writer.write(b"partial")
    writer.close()
    (b.extents.root / "junk").write_bytes(b"x")
    assert b.extents.count() == 2
    b.close()
    again = Blobs(tmp_path / "blob")
    assert again.recover() == 2
    assert again.extents.count() == 1
    assert _read(again, "keep")
    again.close()


def test_uncommitted_blocks_expire(blobs: Blobs) -> None:
    _stage(blobs, "pending", "1", b"x" * 10)
    assert blobs.get_block_list(ACCOUNT, "box", "pending", "uncommitted").uncommitted == [("MQ==", 10)]
    with blobs.meta.tx():
        blobs.meta.db.execute("UPDATE staged SET created_us = 0")
    blobs.expire_uncommitted()
    with pytest.raises(BlobError) as e:
        blobs.get_block_list(ACCOUNT, "box", "pending", "all")
    assert e.value.code == "BlobNotFound"
    assert _files(blobs) == 0


def test_block_rules(blobs: Blobs) -> None:
    _stage(blobs, "b", "aa", b"1")
    with pytest.raises(BlobError) as e:
        _stage(blobs, "b", "bbb", b"2")
    assert e.value.code == "InvalidBlobOrBlock"
    with pytest.raises(BlobError) as e:
        blobs.put_block_list(ACCOUNT, "box", "b", _ids("zz"), ContentSettings(), {}, Conditions())
    assert e.value.code == "InvalidBlockList"
    with pytest.raises(BlobError) as e:
        blobs.put_block_list(ACCOUNT, "box", "b", [("Latest", "***")], ContentSettings(), {}, Conditions())
    assert e.value.code == "InvalidBlockList"
    with pytest.raises(BlobError) as e:
        asyncio.run(blobs.put_block(ACCOUNT, "box", "b", base64.b64encode(b"x" * 65).decode(), _body(b"x"), None))
    assert e.value.code == "InvalidBlockId"
    too_many = _ids(*(f"{i:05d}" for i in range(50_001)))
    with pytest.raises(BlobError) as e:
        blobs.put_block_list(ACCOUNT, "box", "c", too_many, ContentSettings(), {}, Conditions())
    assert e.value.code == "BlockListTooLong"


def test_conditions_on_writes(blobs: Blobs) -> None:
    _put(blobs, "c", b"1")
    with pytest.raises(BlobError) as e:
        _put(blobs, "c", b"2", Conditions(if_none_match=("*",)))
    assert e.value.code == "BlobAlreadyExists"
    etag = blobs.blob(ACCOUNT, "box", "c", Conditions()).etag
    with pytest.raises(BlobError) as e:
        _put(blobs, "c", b"2", Conditions(if_match=("0x1",)))
    assert e.value.code == "ConditionNotMet"
    _put(blobs, "c", b"2", Conditions(if_match=(etag,)))
    with pytest.raises(BlobError) as e:
        _read_cond(blobs, "c", Conditions(if_none_match=(blobs.blob(ACCOUNT, "box", "c", Conditions()).etag,)))
    assert (e.value.code, e.value.status) == ("ConditionNotMet", 304)


def _read_cond(blobs: Blobs, name: str, cond: Conditions) -> None:
    blobs.open_read(ACCOUNT, "box", name, None, cond)


def test_listing_with_delimiter_and_markers(blobs: Blobs) -> None:
    names = ["a/1", "a/2", "a/b/3", "b", "c/1", "c/2", "d"]
    for n in names:
        _put(blobs, n, b"x")

    def page(prefix: str, delimiter: str, marker: str, limit: int) -> tuple[list[str], str]:
        items, nxt = blobs.list_blobs(ACCOUNT, "box", prefix, delimiter, marker, limit, False)
        return [i if isinstance(i, str) else i.name for i in items], nxt

    assert page("", "/", "", 100) == (["a/", "b", "c/", "d"], "")
    assert page("", "/", "", 2) == (["a/", "b"], "c/")
    assert page("", "/", "c/", 2) == (["c/", "d"], "")
    assert page("a/", "/", "", 100) == (["a/1", "a/2", "a/b/"], "")
    assert page("", "", "", 3) == (["a/1", "a/2", "a/b/3"], "b")
    assert page("c", "", "", 100) == (["c/1", "c/2"], "")


def test_successor() -> None:
    assert successor("a/") == "a0"
    assert successor("ab") == "ac"
    assert successor("\U0010ffff") is None
    assert successor("a\U0010ffff") == "b"
    assert successor("\ud7ff") == "\ue000"


def test_names_and_metadata_are_validated(blobs: Blobs) -> None:
    for bad in ("ab", "A-b", "a--b", "-ab", "x" * 64):
        with pytest.raises(BlobError) as e:
            blobs.create_container(ACCOUNT, bad, {}, None)
        assert e.value.code == "InvalidResourceName"
    with pytest.raises(BlobError) as e:
        blobs.create_container(ACCOUNT, "okname", {"bad-name": "v"}, None)
    assert e.value.code == "InvalidMetadata"
    with pytest.raises(BlobError) as e:
        blobs.create_container(ACCOUNT, "okname", {"big": "v" * 9000}, None)
    assert e.value.code == "MetadataTooLarge"
    with pytest.raises(BlobError) as e:
        _put(blobs, "n" * 1025, b"x")
    assert e.value.code == "InvalidResourceName"
    _put(blobs, "n" * 1024, b"x")


def test_an_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    import sqlite3

    Blobs(tmp_path / "blob").close()
    db = sqlite3.connect(tmp_path / "blob" / "meta.db")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(RuntimeError, match="schema version 99"):
        Blobs(tmp_path / "blob")


def test_a_version_1_store_gains_the_tier_columns(tmp_path: Path) -> None:
    import sqlite3

    blobs = Blobs(tmp_path / "blob")
    blobs.create_container(ACCOUNT, "box", {}, None)
    asyncio.run(blobs.put_blob(ACCOUNT, "box", "old", _body(b"x"), 1, ContentSettings(), {}, Conditions(), None))
    blobs.close()
    db = sqlite3.connect(tmp_path / "blob" / "meta.db")  # as openbatch wrote it before tiers were kept
    db.execute("ALTER TABLE blobs DROP COLUMN access_tier")
    db.execute("ALTER TABLE blobs DROP COLUMN tier_changed_us")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    blobs = Blobs(tmp_path / "blob")
    try:
        assert blobs.blob(ACCOUNT, "box", "old", Conditions()).tier is None  # inferred (Hot)
        assert blobs.set_blob_tier(ACCOUNT, "box", "old", "cool") is False
        assert blobs.blob(ACCOUNT, "box", "old", Conditions()).tier == "Cool"
    finally:
        blobs.close()
