"""XML request bodies (block lists, ACLs, service properties): parsed as they arrive under each
body's limits, refused at the first violation, parsed off the event loop when large."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator

import pytest

from openbatch.blob import wire
from openbatch.blob.errors import BlobError


async def _chunks(*parts: bytes, then_fail: bool = False) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    if then_fail:
        raise AssertionError("the reader asked for the rest of a body it should have refused")


def _read(*parts: bytes, limits: wire.XmlLimits = wire.BLOCK_LIST_XML, then_fail: bool = False) -> wire.XmlBody:
    return asyncio.run(wire.read_xml(_chunks(*parts, then_fail=then_fail), limits))


def _code(*parts: bytes, limits: wire.XmlLimits = wire.BLOCK_LIST_XML, then_fail: bool = False) -> str:
    with pytest.raises(BlobError) as info:
        _read(*parts, limits=limits, then_fail=then_fail)
    return info.value.code


def test_a_block_list_is_read_in_document_order() -> None:
    text = b'<?xml version="1.0" encoding="utf-8"?><BlockList><Latest>QQ==</Latest>' \
           b"<Committed> Qg== </Committed><Uncommitted>Qw==</Uncommitted></BlockList>"
    body = _read(text[:10], text[10:])
    assert wire.parse_block_list(body) == [("Latest", "QQ=="), ("Committed", "Qg=="), ("Uncommitted", "Qw==")]
    assert body.md5 == hashlib.md5(text).digest() and body.raw == text


@pytest.mark.parametrize("first,code", [
    (b"<BlockList>" + b"<a>" * 3, "InvalidXmlDocument"),  # deeper than 2
    (b"<SignedIdentifiers>", "InvalidXmlDocument"),  # the wrong root, refused at its start tag
    (b"<BlockList><Latest>" + b"Q" * 2000, "InvalidXmlDocument"),  # an id far longer than any block id
    (b"<BlockList>" + b"<Latest>QQ==</Latest>" * 50_001, "BlockListTooLong"),
    (b'<!DOCTYPE BlockList [<!ENTITY x "y">]><BlockList><Latest>&x;</Latest>', "InvalidXmlDocument"),
    (b"<BlockList><Latest>QQ==</Oops>", "InvalidXmlDocument"),
])
def test_a_violation_is_refused_without_reading_the_rest(first: bytes, code: str) -> None:
    assert _code(first, then_fail=True) == code


def test_a_body_past_its_size_is_too_large() -> None:
    limits = wire.XmlLimits("BlockList", 100, 2, 10, 10)
    assert _code(b"<BlockList>" + b" " * 100 + b"</BlockList>", limits=limits) == "RequestBodyTooLarge"


def test_an_empty_body_has_no_root() -> None:
    assert _read(b"  \n", limits=wire.ACL_XML).root is None
    assert wire.parse_signed_identifiers(_read(limits=wire.ACL_XML)) == ""
    with pytest.raises(BlobError):
        wire.parse_block_list(_read(b""))


def test_a_body_not_in_utf8_is_refused_when_it_is_to_be_stored_as_text() -> None:
    text = '<?xml version="1.0" encoding="utf-16"?><StorageServiceProperties/>'.encode("utf-16")
    body = _read(text, limits=wire.SERVICE_PROPERTIES_XML)
    with pytest.raises(BlobError) as info:
        wire.parse_service_properties(body)
    assert info.value.code == "InvalidXmlDocument"


def test_large_bodies_are_parsed_in_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[int] = []
    feed = wire.XmlReader.feed

    def recording(self: wire.XmlReader, chunk: bytes) -> None:
        threads.append(threading.get_ident())
        feed(self, chunk)

    monkeypatch.setattr(wire.XmlReader, "feed", recording)
    entries = b"<Latest>QUFBQQ==</Latest>" * 20_000  # 500 kB
    body = b"<BlockList>" + entries + b"</BlockList>"
    chunks = [body[i:i + 65536] for i in range(0, len(body), 65536)]
    loop_thread = threading.get_ident()
    assert len(wire.parse_block_list(_read(*chunks))) == 20_000
    assert threads[0] == loop_thread  # the first 64 KiB: on the loop (small bodies stay cheap)
    assert all(t != loop_thread for t in threads[1:]) and len(threads) > 1
