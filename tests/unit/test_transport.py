"""The slow-client guard on both of uvicorn's HTTP/1.1 implementations (httptools, what "auto" picks
when it is installed, and h11), in process with a tiny ASGI app and sub-second timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, cast

import pytest
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from openbatch.transport import HEADER_CASE, ClientTable, Guard, GuardedConfig, Limits, _KeptCase, guarded

T = 0.3  # header and body timeouts, seconds
BASES = [pytest.param(HttpToolsProtocol, id="httptools"), pytest.param(H11Protocol, id="h11")]


class Recorder:
    """An ASGI app that reads the whole body (after ``delay``) and says how that ended."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.ends: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(self.delay)
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.ends.append("disconnect")
                return
            size += len(message["body"])
            if not message["more_body"]:
                break
        self.ends.append(f"complete {size}")
        body = str(size).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


async def busy(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-length", b"0"), (b"connection", b"close"), (b"retry-after", b"1")]})
    await send({"type": "http.response.body", "body": b""})


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


@contextlib.asynccontextmanager
async def serving(base: type[asyncio.Protocol], app: Any, limit: int = 0) -> AsyncIterator[tuple[int, ClientTable]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    clients = ClientTable(limit)
    config = GuardedConfig(app, Guard(Limits(T, T, limit), clients, busy), base=base, lifespan="off",
                           log_level="warning", timeout_keep_alive=10)
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1], clients
    finally:
        server.should_exit = True
        server.force_exit = True
        await task
        sock.close()


def run(base: type[asyncio.Protocol], test: Callable[..., Coroutine[Any, Any, None]], app: Any,
        limit: int = 0) -> None:
    async def main() -> None:
        async with serving(base, app, limit) as (port, clients):
            await test(port, clients)

    asyncio.run(main())


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), seconds) is not None
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


async def response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode().split("\r\n")
    length = next(int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length"))
    return int(lines[0].split()[1]), await reader.readexactly(length)


def put(length: int, extra: str = "") -> bytes:
    return f"PUT /x HTTP/1.1\r\nhost: t\r\ncontent-length: {length}\r\n{extra}\r\n".encode()


@pytest.mark.parametrize("base", BASES)
def test_incomplete_headers_and_silent_connections_are_closed(base: type[asyncio.Protocol]) -> None:
    async def test(port: int, _: ClientTable) -> None:
        silent = await asyncio.open_connection("127.0.0.1", port)
        partial = await asyncio.open_connection("127.0.0.1", port)
        partial[1].write(b"GET /x HTTP/1.1\r\nhost: t\r\n")
        trickle = await asyncio.open_connection("127.0.0.1", port)

        async def one_byte_at_a_time() -> None:  # each within T, 4 T in all: the header timeout is absolute
            with contextlib.suppress(ConnectionError):
                for byte in b"GET /abcdefgh":
                    trickle[1].write(bytes([byte]))
                    await asyncio.sleep(T / 3)

        start = asyncio.get_running_loop().time()
        trickling = asyncio.create_task(one_byte_at_a_time())
        for reader, _w in (silent, partial, trickle):
            assert await closed_within(reader, 3 * T)
        assert asyncio.get_running_loop().time() - start < 2.5 * T
        trickling.cancel()
        assert app.ends == []

    app = Recorder()
    run(base, test, app)


@pytest.mark.parametrize("base", BASES)
def test_a_stalled_body_is_a_disconnect_for_the_app(base: type[asyncio.Protocol]) -> None:
    async def test(port: int, _: ClientTable) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(put(100) + b"0123456789")
        assert await closed_within(reader, 4 * T)
        await asyncio.sleep(0.05)
        assert app.ends == ["disconnect"]

    app = Recorder()
    run(base, test, app)


async def early(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers without reading the body, keeping the connection open."""
    await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize("base", BASES)
def test_a_body_left_unfinished_after_an_early_answer_is_cut(base: type[asyncio.Protocol]) -> None:
    async def test(port: int, _: ClientTable) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(put(100) + b"0123456789")
        assert (await response(reader))[0] == 404
        assert await closed_within(reader, 4 * T)

    run(base, test, early)


@pytest.mark.parametrize("base", BASES)
def test_slow_moving_bodies_and_idle_keep_alive_are_not_cut(base: type[asyncio.Protocol]) -> None:
    async def test(port: int, _: ClientTable) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(put(5))
        for _ in range(5):  # 5 pauses of 0.6 T: 3 T in all
            await asyncio.sleep(0.6 * T)
            writer.write(b"x")
        assert await response(reader) == (200, b"5")
        await asyncio.sleep(2 * T)  # idle keep-alive: uvicorn's 10 s applies, not the header timeout
        writer.write(put(0))
        assert await response(reader) == (200, b"0")
        writer.close()

    app = Recorder()
    run(base, test, app)


@pytest.mark.parametrize("base", BASES)
def test_the_body_clock_stops_while_the_server_does_not_read(base: type[asyncio.Protocol]) -> None:
    async def test(port: int, _: ClientTable) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(put(3, "expect: 100-continue\r\n"))
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5 * T) == b"HTTP/1.1 100 Continue\r\n\r\n"
        await asyncio.sleep(0.6 * T)
        writer.write(b"abc")
        assert await response(reader) == (200, b"3")
        # More than uvicorn buffers (64 KiB): it stops reading until the app, 3 T later, asks for the
        # body. The client is done sending long before; the body clock does not run meanwhile.
        writer.write(put(1 << 20) + b"x" * (1 << 20))
        assert await response(reader) == (200, b"%d" % (1 << 20))
        writer.close()

    app = Recorder(delay=3 * T)
    run(base, test, app)


@pytest.mark.parametrize("base", BASES)
def test_connections_over_the_per_client_limit_are_answered_busy(base: type[asyncio.Protocol]) -> None:
    async def test(port: int, clients: ClientTable) -> None:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert clients.counts == {"127.0.0.1": 2}
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(put(0))
        assert (await response(reader))[0] == 503
        assert await closed_within(reader, 1)
        for _r, w in held:
            w.close()
        await asyncio.sleep(0.05)
        assert clients.counts == {}
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(put(0))
        assert await response(reader) == (200, b"0")
        writer.close()

    app = Recorder()
    run(base, test, app, limit=2)


def test_guarded_classes_are_made_once() -> None:
    assert guarded(H11Protocol) is guarded(H11Protocol)
    assert issubclass(guarded(HttpToolsProtocol), HttpToolsProtocol)


class _Sends:
    """A transport that records each write (one write = one send)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True


def test_a_response_header_block_leaves_with_its_body_in_one_send() -> None:
    sends = _Sends()
    scope: dict[str, Any] = {HEADER_CASE: {b"x-ms-meta-abc": b"x-ms-meta-AbC"}}
    kept = _KeptCase(cast(asyncio.Transport, sends), scope)
    kept.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # an interim answer goes at once
    kept.write(b"HTTP/1.1 200 OK\r\nx-ms-meta-abc: 1\r\ncontent-length: 4\r\n\r\n")
    assert sends.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    kept.write(b"body")
    kept.write(b"")  # the end of the body (an empty write sends nothing)
    assert [w for w in sends.writes[1:] if w] == [b"HTTP/1.1 200 OK\r\nx-ms-meta-AbC: 1\r\ncontent-length: 4\r\n\r\nbody"]


def test_a_header_block_without_a_body_write_leaves_on_flush_or_close() -> None:
    sends = _Sends()
    kept = _KeptCase(cast(asyncio.Transport, sends), {})
    kept.write(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n")  # a HEAD answer
    kept.flush()
    assert sends.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n"]
    kept.write(b"HTTP/1.1 500 Internal Server Error\r\nconnection: close\r\n\r\n")
    kept.close()
    assert sends.writes[1:] == [b"HTTP/1.1 500 Internal Server Error\r\nconnection: close\r\n\r\n"]
    assert sends.closed
