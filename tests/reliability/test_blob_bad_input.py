"""Hostile input to the Blob endpoint, beyond what tests/sdk/test_blob_refusals.py and
test_slow_clients.py already pin down (XML limits, percent escapes, copy sources, stalls):
names no SDK would send, requests cut off by the client, broken framing, bad ranges and
headers, and random names and values (hypothesis).

The rules every case is held to: never a 5xx, never a hang (every client call has a timeout),
never a partial blob, and Azure's 4xx where Azure's answer is known. Anything accepted must then
read back exactly as written.
"""

from __future__ import annotations

import base64
import string
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openbatch.testing import LiveServer
from tests.reliability import report
from tests.reliability.crash import tracebacks
from tests.reliability.wire import Reply, blob_request, blob_signature, date_value, send_raw, status_of

FIGURES: dict[str, int] = {"requests": 0, "5xx": 0}


@pytest.fixture(scope="module")
def service(server: LiveServer) -> Iterator[BlobServiceClient]:
    yield BlobServiceClient.from_connection_string(server.connection_string, retry_total=0, read_timeout=30)
    report.record("blob bad input", **FIGURES)


@pytest.fixture
def container(service: BlobServiceClient) -> Iterator[ContainerClient]:
    c = service.create_container(f"bad{uuid.uuid4().hex[:12]}")
    yield c
    c.delete_container()


def _req(server: LiveServer, method: str, path: str, **kw: object) -> Reply:
    r = blob_request(server, method, path, **kw)  # type: ignore[arg-type]
    FIGURES["requests"] += 1
    FIGURES["5xx"] += r.status >= 500
    assert r.status < 500, (method, path, r)
    return r


def _put(server: LiveServer, c: str, raw_name: str, body: bytes = b"x") -> Reply:
    return _req(server, "PUT", f"/{c}/{raw_name}", body=body, headers={"x-ms-blob-type": "BlockBlob"})


def _listed(server: LiveServer, c: str) -> bytes:
    r = _req(server, "GET", f"/{c}", query="restype=container&comp=list&include=uncommittedblobs")
    assert r.status == 200, r
    return r.body


# --- names --------------------------------------------------------------------------------------

# Raw (already %-escaped as sent) names that are valid URLs: each is stored as a name and reads back,
# or is refused with a 4xx; either way the listing keeps working and nothing leaks to the disk.
ODD_NAMES = [
    "a%00b", "%00", "nul-at-end%00", "%01%02%1f%7f", "ctl%0d%0aInjected:%20header", "tab%09name",
    "%c0%ae%c0%ae",  # overlong UTF-8 for '..'
    "%ed%a0%80",  # a UTF-16 surrogate encoded in UTF-8
    "%ef%bf%bf%ef%bf%be",  # non-characters
    "%e2%80%ae%e2%80%8b",  # right-to-left override, zero-width space
    "e%cc%81", "%c3%a9",  # the same é decomposed and composed: two different names
    "..%2f..%2f..%2fetc%2fpasswd", "%2e%2e", "%2e", "a/./b/../c", "%5c..%5cwin",
    "%f0%9f%98%80" * 200,  # 800 bytes of emoji: under 1,024 characters
    "x" * 1024, "%e6%97%a5" * 1024,  # 1,024 characters, 3 bytes each
]


@pytest.mark.parametrize("raw", ODD_NAMES, ids=range(len(ODD_NAMES)))
def test_odd_blob_names_are_stored_exactly_or_refused(server: LiveServer, container: ContainerClient,
                                                      raw: str) -> None:
    c = container.container_name
    body = b"odd name " + raw.encode()
    r = _put(server, c, raw, body)
    if r.status != 201:
        assert 400 <= r.status < 500, r
        assert _req(server, "GET", f"/{c}/{raw}").status in (400, 404)
        return
    got = _req(server, "GET", f"/{c}/{raw}")
    assert got.status == 200 and got.body == body, got
    assert _listed(server, c).count(b"<Blob>") == 1
    assert _req(server, "DELETE", f"/{c}/{raw}").status == 202
    assert _listed(server, c).count(b"<Blob>") == 0


def test_composed_and_decomposed_names_are_different_blobs(server: LiveServer, container: ContainerClient) -> None:
    c = container.container_name
    assert _put(server, c, "e%cc%81", b"decomposed").status == 201
    assert _put(server, c, "%c3%a9", b"composed").status == 201
    assert _req(server, "GET", f"/{c}/e%cc%81").body == b"decomposed"
    assert _req(server, "GET", f"/{c}/%c3%a9").body == b"composed"


def test_names_over_1024_characters_are_refused(server: LiveServer, container: ContainerClient) -> None:
    c = container.container_name
    for raw in ("y" * 1025, "%e6%97%a5" * 1025, "z" * 60_000):
        r = _put(server, c, raw)
        assert 400 <= r.status < 500, r
    assert _listed(server, c).count(b"<Blob>") == 0


@pytest.mark.parametrize("raw", ["%00", "a%00b", "abc%00", "..", "%2e%2e", ".", "%e6%97%a5%e6%97%a5%e6%97%a5",
                                 "abc%20", "%20abc", "a%09bc"])
def test_hostile_container_names_are_invalid_resource_names(server: LiveServer, raw: str) -> None:
    r = _req(server, "PUT", f"/{raw}", query="restype=container")
    assert (r.status, r.code) == (400, "InvalidResourceName"), r


def test_raw_control_bytes_and_huge_urls_are_refused_at_the_door(server: LiveServer,
                                                                 container: ContainerClient) -> None:
    """What no HTTP client library would send: the HTTP layer answers 4xx (or closes), the server lives on."""
    c = container.container_name
    head = f"Host: 127.0.0.1:{server.blob_port}\r\n"
    cases = [
        f"GET /{server.account}/{c}/a\x00b HTTP/1.1\r\n{head}\r\n".encode(),
        f"GET /{server.account}/{c}/a b HTTP/1.1\r\n{head}\r\n".encode(),
        f"GET /{server.account}/{c}/{'u' * 200_000} HTTP/1.1\r\n{head}\r\n".encode(),
        f"GET /{server.account}/{c}/x HTTP/1.1\r\n{head}x-ms-meta-a: {'v' * 300_000}\r\n\r\n".encode(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(100),  # a TLS hello on the plain port
        b"GARBAGE\r\n\r\n",
    ]
    for data in cases:
        started = time.monotonic()
        answer = send_raw(server.blob_port, data, timeout=30)
        status = status_of(answer)
        assert status is None or 400 <= status < 500, (data[:80], answer[:200])
        assert time.monotonic() - started < 30
    assert _req(server, "GET", f"/{c}", query="restype=container&comp=list").status == 200


# --- bodies cut off by the client, broken framing -------------------------------------------------


def _head(server: LiveServer, method: str, path: str, query: str, length: int | None,
          extra: dict[str, str] | None = None) -> bytes:
    raw_path = f"/{server.account}{path}"
    h = {"x-ms-version": "2021-08-06", "x-ms-date": date_value("now") or "", **(extra or {})}
    if length is not None:
        h["content-length"] = str(length)
    h["authorization"] = blob_signature(server.key, server.account, method, raw_path, query, h)
    target = raw_path + (f"?{query}" if query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{server.blob_port}", *(f"{k}: {v}" for k, v in h.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _files(server: LiveServer) -> set[str]:
    return {p.name for p in (server.data_dir / "blob" / "data").rglob("*") if p.is_file()}


def test_uploads_cut_off_by_the_client_leave_nothing(server: LiveServer, container: ContainerClient) -> None:
    c = container.container_name
    container.upload_blob("kept", b"original")
    block = base64.b64encode(b"cut-block").decode()
    before = _files(server)
    size = 3 << 20
    cuts = [
        ("PUT", f"/{c}/new", "", {"x-ms-blob-type": "BlockBlob"}, b"n" * (size // 2)),
        ("PUT", f"/{c}/kept", "", {"x-ms-blob-type": "BlockBlob"}, b"k" * (size // 2)),
        ("PUT", f"/{c}/blocks", f"comp=block&blockid={block}", {}, b"b" * (size // 2)),
        ("PUT", f"/{c}/kept", "comp=blocklist", {}, b"<BlockList><Latest>"),
        ("PUT", f"/{c}/kept", "comp=metadata", {"x-ms-meta-a": "b"}, b""),  # declares a body it has not
    ]
    for method, path, query, extra, first in cuts:
        data = _head(server, method, path, query, size, extra) + first
        answer = send_raw(server.blob_port, data, half_close=True, timeout=30)
        assert status_of(answer) is None or status_of(answer) < 500, answer[:300]  # type: ignore[operator]
    time.sleep(0.3)
    listing = _listed(server, c)
    assert b"<Name>new</Name>" not in listing and b"<Name>blocks</Name>" not in listing, listing
    assert container.download_blob("kept").readall() == b"original"
    assert _files(server) == before, "a cut-off upload left bytes behind"


def test_broken_framing_is_a_4xx_and_stores_nothing(server: LiveServer, container: ContainerClient) -> None:
    c = container.container_name
    bad = [
        _head(server, "PUT", f"/{c}/f1", "", None, {"x-ms-blob-type": "BlockBlob", "content-length": "abc"}),
        _head(server, "PUT", f"/{c}/f2", "", None, {"x-ms-blob-type": "BlockBlob", "content-length": "-5"}),
        _head(server, "PUT", f"/{c}/f3", "", None, {"x-ms-blob-type": "BlockBlob", "content-length": "1, 2"}),
        _head(server, "PUT", f"/{c}/f4", "", None, {"x-ms-blob-type": "BlockBlob", "transfer-encoding": "chunked"})
        + b"zz\r\nnot hex\r\n0\r\n\r\n",
        _head(server, "PUT", f"/{c}/f5", "", None, {"x-ms-blob-type": "BlockBlob", "transfer-encoding": "chunked"})
        + b"5\r\nhello\r\n",  # no last chunk
        _head(server, "PUT", f"/{c}/f6", "", 4, {"x-ms-blob-type": "BlockBlob", "transfer-encoding": "chunked"})
        + b"4\r\nabcd\r\n0\r\n\r\n",  # both framings
    ]
    for data in bad:
        answer = send_raw(server.blob_port, data, timeout=30)
        status = status_of(answer)
        assert status is None or status < 500, (data[-120:], answer[:300])
    time.sleep(0.3)
    listing = _listed(server, c)
    for name in (b"f1", b"f2", b"f3", b"f4", b"f5"):
        assert b"<Name>" + name + b"</Name>" not in listing, (name, listing)
    # A body longer than its Content-Length: the rest reads as a next request, garbage (4xx). The
    # blob is then either not there or holds exactly the declared bytes.
    answer = send_raw(server.blob_port, _head(server, "PUT", f"/{c}/over", "", 4, {"x-ms-blob-type": "BlockBlob"})
                      + b"abcdEXTRA BYTES THAT ARE NO REQUEST\r\n\r\n", timeout=30)
    assert status_of(answer) in (201, 400) and b" 500 " not in answer, answer[:300]
    over = container.get_blob_client("over")
    assert not over.exists() or over.download_blob().readall() == b"abcd"


# --- ranges ------------------------------------------------------------------------------------

DATA = bytes(range(256)) * 4  # 1,024 bytes
RANGES = ["bytes=abc", "bytes=5-1", "bytes=-", "bytes=", "bytes=-0", "bytes=0-0", "bytes=1023-", "bytes=1024-",
          "bytes=0-1,4-5", "bytes=99999999999999999999999-", "bytes=0-99999999999999999999999",
          "bytes=-99999999999999999999999", "bytes=-5", "items=0-5", "bytes= 0-5", "bytes=0-5x", "bytes=0x10-0x20",
          "bytes=+1-2", "bytes=1-+2", "bytes=0-1023", "bytes=5-5"]


@pytest.mark.parametrize("header", ["x-ms-range", "range"])
def test_bad_ranges_are_refused_or_answered_exactly(server: LiveServer, container: ContainerClient,
                                                    header: str) -> None:
    container.upload_blob("r", DATA)
    path = f"/{container.container_name}/r"
    for value in RANGES:
        r = _req(server, "GET", path, headers={header: value})
        if r.status == 200:
            assert r.body == DATA, value
        elif r.status == 206:
            first, last, total = _content_range(r.headers["content-range"])
            assert total == len(DATA) and r.body == DATA[first:last + 1], (value, r.headers["content-range"])
        else:
            assert r.status in (400, 416), (value, r)
    # Azure: a range that starts past the end is 416 InvalidRange, whichever header carries it.
    r = _req(server, "GET", path, headers={header: "bytes=1024-2000"})
    assert (r.status, r.code) == (416, "InvalidRange"), r


def _content_range(value: str) -> tuple[int, int, int]:
    unit, _, rest = value.partition(" ")
    span, _, total = rest.partition("/")
    first, _, last = span.partition("-")
    assert unit == "bytes", value
    return int(first), int(last), int(total)


# --- headers and query values --------------------------------------------------------------------

BAD_HEADERS: list[dict[str, str]] = [
    {"x-ms-blob-type": "Bogus"}, {"x-ms-blob-type": ""}, {"x-ms-blob-type": "PageBlob"},
    {"x-ms-meta-1bad": "v"}, {"x-ms-meta-": "v"}, {"x-ms-meta-ok": "é"}, {"x-ms-meta-big": "v" * 9000},
    {"content-md5": "AAAA"}, {"x-ms-blob-content-md5": "%%%"}, {"if-match": "garbage"}, {"if-none-match": ""},
    {"if-modified-since": "not a date"}, {"if-unmodified-since": "Mon, 99 Foo 99999 99:99:99 GMT"},
    {"x-ms-version": "garbage"}, {"x-ms-version": "9999-99-99"}, {"x-ms-lease-id": "not-a-guid"},
    {"x-ms-access-tier": "Platinum"}, {"x-ms-blob-cache-control": "\x7f"}, {"x-ms-copy-source": ""},
    {"x-ms-copy-source": f"http://127.0.0.1:1/{'q' * 5000}"},
]


@pytest.mark.parametrize("headers", BAD_HEADERS, ids=[next(iter(h)) + "=" + next(iter(h.values()))[:20]
                                                      for h in BAD_HEADERS])
def test_bad_header_values_never_make_a_5xx_or_a_partial_blob(server: LiveServer, container: ContainerClient,
                                                              headers: dict[str, str]) -> None:
    c = container.container_name
    r = _req(server, "PUT", f"/{c}/h", body=b"payload", headers={"x-ms-blob-type": "BlockBlob", **headers})
    blob = container.get_blob_client("h")
    if 200 <= r.status < 300:
        if "x-ms-copy-source" not in headers:
            assert blob.download_blob().readall() == b"payload"
    else:
        assert 400 <= r.status < 500 and not blob.exists(), r
    for method, query in (("GET", ""), ("HEAD", ""), ("PUT", "comp=metadata"), ("DELETE", "")):
        _req(server, method, f"/{c}/h", query=query, headers=headers)


BAD_QUERIES = ["restype=container&comp=list&maxresults=-1", "restype=container&comp=list&maxresults=abc",
               "restype=container&comp=list&maxresults=99999999999999999999", "restype=container&comp=list&marker=%ff",
               "restype=container&comp=list&marker=garbage", "restype=container&comp=list&include=everything",
               "restype=container&comp=list&delimiter=%00", "restype=container&comp=list&prefix=" + "p" * 5000,
               "restype=container&comp=list&timeout=-1", "restype=container&comp=list&timeout=abc",
               "restype=bogus", "comp=bogus", "restype=container&comp=acl&comp=list", "restype=container&restype=x",
               "comp=" + "c" * 10000]


@pytest.mark.parametrize("query", BAD_QUERIES, ids=[q[:40] for q in BAD_QUERIES])
def test_bad_query_values_are_4xx(server: LiveServer, container: ContainerClient, query: str) -> None:
    r = _req(server, "GET", f"/{container.container_name}", query=query)
    assert r.status == 200 or 400 <= r.status < 500, r


# --- random names and values -------------------------------------------------------------------

_NAME_CHARS = st.characters(codec="utf-8", exclude_characters="\r\n")
_HEADER_TEXT = st.text(alphabet=string.printable.replace("\r", "").replace("\n", ""), max_size=60)


@settings(max_examples=150, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(name=st.text(_NAME_CHARS, min_size=1, max_size=300), body=st.binary(max_size=2048),
       meta=st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=8), _HEADER_TEXT, max_size=3))
def test_random_names_and_metadata_round_trip_or_are_refused(server: LiveServer, service: BlobServiceClient,
                                                             name: str, body: bytes, meta: dict[str, str]) -> None:
    c = "randomnames"
    if not service.get_container_client(c).exists():
        service.create_container(c)
    raw = quote(name, safe="/")
    headers = {"x-ms-blob-type": "BlockBlob", **{f"x-ms-meta-{k}": v for k, v in meta.items()}}
    r = _req(server, "PUT", f"/{c}/{raw}", body=body, headers=headers)
    if r.status != 201:
        assert 400 <= r.status < 500, r
        return
    got = _req(server, "GET", f"/{c}/{raw}")
    assert got.status == 200 and got.body == body, (name, got)
    assert _req(server, "DELETE", f"/{c}/{raw}").status == 202


def test_no_unhandled_error_was_logged(server: LiveServer) -> None:
    server_errors, _ = tracebacks(server)
    assert not server_errors, server_errors[:3]
