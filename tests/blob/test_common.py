"""Conditional-header evaluation, time formats and the Blob wire helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from openbatch.blob import wire
from openbatch.blob.errors import BlobError
from openbatch.common import clock, conditions
from openbatch.common.conditions import Conditions, evaluate

NOW = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def _cond(**headers: str) -> Conditions:
    return Conditions.from_headers({k.replace("_", "-"): v for k, v in headers.items()}.get)


def test_etag_conditions() -> None:
    assert evaluate(_cond(), '"0x1"', NOW, read=True) == conditions.OK
    assert evaluate(_cond(if_match='"0x1"'), "0x1", NOW, read=False) == conditions.OK
    assert evaluate(_cond(if_match='"0x2", "0x1"'), '"0x1"', NOW, read=False) == conditions.OK
    assert evaluate(_cond(if_match='"0x2"'), "0x1", NOW, read=True) == conditions.PRECONDITION_FAILED
    assert evaluate(_cond(if_match="*"), "0x1", NOW, read=False) == conditions.OK
    assert evaluate(_cond(if_match="*"), None, None, read=False) == conditions.PRECONDITION_FAILED
    assert evaluate(_cond(if_none_match='"0x1"'), "0x1", NOW, read=True) == conditions.NOT_MODIFIED
    assert evaluate(_cond(if_none_match='"0x1"'), "0x1", NOW, read=False) == conditions.PRECONDITION_FAILED
    assert evaluate(_cond(if_none_match="*"), "0x1", NOW, read=False) == conditions.PRECONDITION_FAILED
    assert evaluate(_cond(if_none_match="*"), None, None, read=False) == conditions.OK
    assert evaluate(_cond(if_none_match='W/"0x2"'), "0x1", NOW, read=True) == conditions.OK
    assert _cond(if_none_match="*").none_match_any and not _cond(if_match="*").none_match_any


def test_date_conditions_have_second_resolution() -> None:
    same_second = clock.rfc1123(NOW)
    before = clock.rfc1123(NOW - timedelta(seconds=1))
    assert evaluate(_cond(if_modified_since=same_second), "0x1", NOW, read=True) == conditions.NOT_MODIFIED
    assert evaluate(_cond(if_modified_since=before), "0x1", NOW, read=True) == conditions.OK
    assert evaluate(_cond(if_unmodified_since=same_second), "0x1", NOW, read=False) == conditions.OK
    assert evaluate(_cond(if_unmodified_since=before), "0x1", NOW, read=False) == conditions.PRECONDITION_FAILED
    assert evaluate(_cond(if_modified_since="not a date"), "0x1", NOW, read=True) == conditions.OK
    # Copy sources use x-ms-source-* headers.
    source = Conditions.from_headers({"x-ms-source-if-match": '"0x9"'}.get, "x-ms-source-")
    assert evaluate(source, "0x1", NOW, read=False) == conditions.PRECONDITION_FAILED


def test_clock_formats() -> None:
    assert clock.rfc1123(NOW) == "Mon, 06 May 2024 07:08:09 GMT"
    assert clock.parse_rfc1123("Mon, 06 May 2024 07:08:09 GMT") == NOW.replace(microsecond=0)
    assert clock.parse_rfc1123("garbage") is None
    assert clock.iso8601(NOW) == "2024-05-06T07:08:09.1234560Z"
    assert clock.iso8601(NOW, 0) == "2024-05-06T07:08:09Z"
    assert clock.parse_iso8601("2024-05-06T07:08:09.1234567Z") == NOW
    assert clock.parse_iso8601("2024-05-06T09:08:09+02:00") == NOW.replace(microsecond=0)
    assert clock.parse_iso8601("2024-05-06") == datetime(2024, 5, 6, tzinfo=UTC)
    assert clock.parse_iso8601("2024-13-06") is None
    assert clock.from_us(clock.to_us(NOW)) == NOW
    assert len(clock.http_date()) == 29


def test_markers_round_trip_and_reject_garbage() -> None:
    for name in ("", "a/b", "日本語", "x" * 1024):
        if name:
            assert wire.decode_marker(wire.encode_marker(name)) == name
    with pytest.raises(BlobError):
        wire.decode_marker("garbage")
    with pytest.raises(BlobError):
        wire.decode_marker("2!%%%")


def test_names_xml_cannot_carry_are_encoded() -> None:
    assert wire.name_element("a<b") == "<Name>a&lt;b</Name>"
    assert wire.name_element("a\x01b") == '<Name Encoded="true">a%01b</Name>'


@pytest.mark.parametrize("body", [
    b"", b"<BlockList>", b"<Other/>",
    b'<!DOCTYPE d [<!ENTITY x "y">]><BlockList><Latest>&x;</Latest></BlockList>',
])
def test_hostile_xml_is_invalid(body: bytes) -> None:
    async def parse() -> list[tuple[str, str]]:
        async def chunks() -> AsyncIterator[bytes]:
            yield body

        return wire.parse_block_list(await wire.read_xml(chunks(), wire.BLOCK_LIST_XML))

    with pytest.raises(BlobError) as e:
        asyncio.run(parse())
    assert e.value.code == "InvalidXmlDocument"


def test_status_of_codes() -> None:
    assert wire.status_of(BlobError("BlobNotFound")) == 404
    assert wire.status_of(BlobError("ConditionNotMet")) == 412
    assert wire.status_of(BlobError("ConditionNotMet", status=304)) == 304
    assert wire.status_of(BlobError("InvalidBlockList")) == 400
    assert wire.status_of(BlobError("RequestBodyTooLarge")) == 413
