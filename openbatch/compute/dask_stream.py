"""One long-lived comm per worker between the dask provider and the worker's agent, batched both ways.

The provider opens a comm to a worker with ``distributed.comm.connect`` and names the agent's
``openbatch_stream`` handler in its first message; the worker's own server hands the comm to that
handler, which keeps it for as long as both ends live. Each way, messages go through Dask's
``BatchedSend`` (the mechanism of the scheduler <-> worker streams): whatever is queued within
``INTERVAL`` leaves as one list in one write, so many runs start — and many end — per network
round trip, instead of one request and one reply (and, with many in flight, one connection) each.

A call is ``{"id", "op", "kw"}``; its reply ``{"id", "reply"}`` arrives once. When the comm
breaks, every call still waiting fails with ``CommClosedError`` (an ``OSError``): the provider
treats that as the worker gone, exactly as a broken RPC connection was treated before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from distributed.batched import BatchedSend
from distributed.comm import Comm, CommClosedError, connect

log = logging.getLogger("openbatch.compute.dask")

STREAM_OP = "openbatch_stream"  # the agent's handler on the worker's server
INTERVAL = "2ms"  # the longest a message waits to share a write with others

Handler = Callable[..., Awaitable[Any]]


class AgentStream:
    """The provider's end of the stream to one worker's agent."""

    def __init__(self, comm: Comm, on_close: Callable[[AgentStream], None] | None = None):
        self.comm = comm
        self._send = BatchedSend(interval=INTERVAL)
        self._send.start(comm)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next = 0
        self._on_close = on_close
        self.closed = False
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, address: str, connection_args: Mapping[str, Any],
                   on_close: Callable[[AgentStream], None] | None = None) -> AgentStream:
        comm = await connect(address, **connection_args)
        try:
            await comm.write({"op": STREAM_OP, "reply": False})
        except BaseException:
            comm.abort()
            raise
        return cls(comm, on_close)

    async def call(self, op: str, **kw: Any) -> Any:
        """The agent's reply to ``op``; CommClosedError if the stream breaks before it arrives."""
        if self.closed:
            raise CommClosedError("the stream to the worker is closed")
        self._next += 1
        ident = self._next
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        try:
            self._send.send({"id": ident, "op": op, "kw": kw})
            return await future
        finally:
            self._pending.pop(ident, None)

    async def _read(self) -> None:
        try:
            while True:
                batch = await self.comm.read()
                if not isinstance(batch, (list, tuple)):  # an error reply: the worker has no agent (yet)
                    log.warning("the Dask worker %s refused the openbatch stream", self.comm.peer_address)
                    break
                for msg in batch:
                    future = self._pending.pop(msg.get("id"), None)
                    if future is not None and not future.done():
                        future.set_result(msg.get("reply"))
        except (CommClosedError, OSError):
            pass
        finally:
            self._closed()

    def _closed(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._send.abort()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(CommClosedError("the stream to the worker broke"))
        if self._on_close is not None:
            self._on_close(self)

    async def close(self) -> None:
        self._closed()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader


async def serve_stream(comm: Comm, handlers: Mapping[str, Handler]) -> None:
    """The agent's end: run every call as it arrives (concurrently), reply through one batched send."""
    send = BatchedSend(interval=INTERVAL)
    send.start(comm)
    running: set[asyncio.Task[None]] = set()

    async def one(msg: dict[str, Any]) -> None:
        handler = handlers.get(str(msg.get("op")))
        try:
            if handler is None:
                reply: Any = {"error": "UnknownOperation", "message": f"no agent operation {msg.get('op')!r}"}
            else:
                reply = await handler(**msg.get("kw", {}))
        except Exception as exc:  # an agent bug must reach the caller as an answer, not hang its call
            log.exception("openbatch agent operation %s failed", msg.get("op"))
            reply = {"error": "AgentError", "message": f"{type(exc).__name__}: {exc}"}
        with contextlib.suppress(CommClosedError):  # the provider went: the reply has nobody to go to
            send.send({"id": msg.get("id"), "reply": reply})

    try:
        while True:
            batch = await comm.read()
            for msg in batch if isinstance(batch, (list, tuple)) else []:  # msgpack gives tuples
                task = asyncio.ensure_future(one(msg))
                running.add(task)
                task.add_done_callback(running.discard)
    except (CommClosedError, OSError):
        pass
    finally:
        send.abort()
