"""The HTTP transport both endpoints share: uvicorn's protocol, guarded against slow and broken clients.

Azure's front ends (``Server: ... Microsoft-HTTPAPI/2.0``, i.e. HTTP.sys) give a client two
minutes to send its request headers (HeaderWait) and two minutes between two pieces of a request
body (EntityBody, re-armed by every piece), keep idle connections two minutes (IdleConnection), and
on expiry close the connection without an answer. openbatch does the same, once, at the transport
layer, for both endpoints:

- header timeout: the request line and headers must be complete within ``header_timeout`` of the
  request's first byte (of the connection, for its first request). Absolute, not idle: a client
  sending one header byte every few seconds is closed all the same;
- body timeout: while a request body is incomplete, the client must send some of it at least every
  ``body_timeout`` seconds. The clock does not run while the server itself is not reading (flow
  control, an app that has not asked for the body yet, a client waiting for ``100 Continue``), and
  restarts whenever the app asks for more, so slow-but-moving uploads of any size pass;
- on expiry the connection is aborted: the ASGI app sees ``http.disconnect`` and commits nothing;
- idle keep-alive connections keep uvicorn's ``timeout_keep_alive``;
- per client address at most ``max_per_client`` connections, counted over both endpoints; a
  connection over the limit is answered (once its request headers are in) ``503 ServerBusy`` with
  ``Retry-After`` and ``Connection: close``, in the endpoint's own error format, which the SDKs retry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.http.flow_control import FlowControl

from openbatch.batch.api.routing import error_response, new_request_id
from openbatch.batch.domain import errors as batch_errors
from openbatch.blob import wire as blob_wire
from openbatch.blob.errors import BlobError
from openbatch.blob.http import HEADER_CASE, send_response
from openbatch.blob.http import Request as BlobRequest
from openbatch.blob.http import Response as BlobResponse
from openbatch.common.clock import now_us

log = logging.getLogger("openbatch.transport")

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
BUSY_MESSAGE = "The server is currently unable to receive requests. Please retry your request."
RETRY_AFTER = "1"  # seconds; azure-core waits this long before its retry


@dataclass(frozen=True)
class Limits:
    header_timeout: float
    body_timeout: float
    max_per_client: int  # 0: no limit


@dataclass
class ClientTable:
    """Open connections per client address, shared by both endpoints."""

    limit: int
    counts: dict[str, int] = field(default_factory=dict)

    def admit(self, host: str) -> bool:
        """Count one more connection of ``host``; False (not counted) when it already holds ``limit``."""
        n = self.counts.get(host, 0)
        if self.limit and n >= self.limit:
            return False
        self.counts[host] = n + 1
        return True

    def release(self, host: str) -> None:
        n = self.counts.get(host, 0) - 1
        if n > 0:
            self.counts[host] = n
        else:
            self.counts.pop(host, None)


@dataclass(frozen=True)
class Guard:
    """What one endpoint's connections need: the limits, the shared client table, the 503 answer."""

    limits: Limits
    clients: ClientTable
    busy_app: ASGIApp


class GuardedConfig(uvicorn.Config):
    """uvicorn's config plus the guard its protocol instances read (they receive the config)."""

    def __init__(self, app: ASGIApp, guard: Guard, base: type[asyncio.Protocol] = AutoHTTPProtocol,
                 **kwargs: Any) -> None:
        # No websockets: openbatch serves none, and an upgraded connection would leave this protocol.
        super().__init__(app, http=guarded(base), ws="none", **kwargs)
        self.guard = guard


class _AskingFlow(FlowControl):
    """uvicorn's flow control, remembering when the app last asked for request body.

    Both uvicorn protocols call ``flow.resume_reading()`` from ``receive()`` every time the app
    asks for more body (after sending ``100 Continue`` when the client waits for it).
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(transport)
        self._loop = loop
        self.asked = 0.0

    def resume_reading(self) -> None:
        self.asked = self._loop.time()
        super().resume_reading()


class _SlowClientGuard(asyncio.Protocol):
    """Mixed in before uvicorn's HttpToolsProtocol or H11Protocol (see :func:`guarded`).

    One lazily re-armed timer per connection; ``data_received`` only notes the time.
    """

    # set by the uvicorn protocol this is mixed into
    config: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    flow: Any
    cycle: Any
    app: Any
    client: tuple[str, int] | None

    _guard: Guard
    _host: str | None
    _timer: asyncio.TimerHandle | None
    _cycle_seen: Any
    _header_since: float | None
    _last_data: float

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        guard = self._guard = self.config.guard
        now = self._last_data = self.loop.time()
        self.flow = _AskingFlow(self.transport, self.loop)
        self._cycle_seen = None
        self._header_since = now  # the first request's headers are due
        self._timer = None
        self._host = self.client[0] if self.client else None
        if self._host is not None and not guard.clients.admit(self._host):
            self._host = None  # not counted, so not released
            self.app = guard.busy_app
        self._arm(now + guard.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._host is not None:
            self._guard.clients.release(self._host)
            self._host = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        now = self._last_data = self.loop.time()
        super().data_received(data)
        self._note_new_request()
        if self._header_since is None:
            cycle = self.cycle
            if cycle is None or cycle.response_complete:  # the first bytes of the next request
                self._header_since = now
                self._arm(now + self._guard.limits.header_timeout)
            elif cycle.more_body:
                self._arm(now + self._guard.limits.body_timeout)

    def on_header(self, name: bytes, value: bytes) -> None:
        """httptools' header callback (H11Protocol has none): the name is lower-cased as ASGI wants,
        except the part of a metadata header after ``x-ms-meta-``, whose case Azure keeps."""
        cast(Any, super()).on_header(name, value)
        if len(name) > 10 and name[:10].lower() == b"x-ms-meta-" and name[10:] != name[10:].lower():
            headers = cast(Any, self).headers
            headers[-1] = (b"x-ms-meta-" + name[10:], headers[-1][1])

    def on_headers_complete(self) -> None:
        """httptools: the new cycle writes through :class:`_KeptCase` (uvicorn lower-cases the header
        names it writes; Azure sends metadata names in their case)."""
        cast(Any, super()).on_headers_complete()
        cycle = self.cycle
        if cycle is not None and not isinstance(cycle.transport, _KeptCase):
            cycle.transport = _KeptCase(cycle.transport, cycle.scope)

    def on_response_complete(self) -> None:
        cycle = self.cycle
        if cycle is not None and isinstance(cycle.transport, _KeptCase):
            cycle.transport.flush()  # a response with no body write (HEAD) has its header block held
        if cycle is not None and cycle.response_complete and cycle.more_body and self._header_since is None:
            # Answered before its body was in (an error, say): the rest of the body and the next
            # request's headers are due within the header timeout (HTTP.sys: DrainEntityBody).
            self._header_since = self.loop.time()
            self._arm(self._header_since + self._guard.limits.header_timeout)
        cast(Any, super()).on_response_complete()

    def _note_new_request(self) -> None:
        """A new cycle means the parser has completed a request's headers."""
        if self.cycle is not self._cycle_seen:
            self._cycle_seen = self.cycle
            self._header_since = None

    def _arm(self, when: float) -> None:
        timer = self._timer
        if timer is not None:
            if timer.when() <= when:
                return  # the earlier check re-arms for the later deadline
            timer.cancel()
        self._timer = self.loop.call_at(when, self._check)

    def _deadline(self) -> float | None:
        """When the client will have been too slow, or None while it is not the client's turn."""
        limits = self._guard.limits
        if self._header_since is not None:
            return self._header_since + limits.header_timeout
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.more_body:
            return None  # idle (uvicorn's keep-alive timer) or the app is working on a complete request
        if self.flow.read_paused or cycle.waiting_for_100_continue:
            return None
        return max(self._last_data, self.flow.asked) + limits.body_timeout

    def _check(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        self._note_new_request()
        now = self.loop.time()
        deadline = self._deadline()
        if deadline is None:
            # Turns the server takes (a response finishing, reading resuming) call no hook of ours.
            limits = self._guard.limits
            self._arm(now + min(limits.header_timeout, limits.body_timeout))
        elif deadline > now:
            self._arm(deadline)
        else:
            self._expire()

    def _expire(self) -> None:
        waited = "request headers" if self._header_since is not None else "request body"
        log.debug("closing a connection from %s: no complete %s in time", self.client[0] if self.client else "?",
                  waited)
        self.transport.abort()  # the app, if running, sees http.disconnect


class _KeptCase:
    """The transport as one response cycle writes to it.

    The header names an app listed under ``scope[HEADER_CASE]`` (lower-case name -> name) get
    their case back in the header block. The header block is held until the cycle's next write
    (its body, or the end of it) or close, so that a small response leaves in one send instead
    of two (uvicorn writes the block and each body message separately).
    """

    __slots__ = ("_transport", "_scope", "_held")

    def __init__(self, transport: asyncio.Transport, scope: dict[str, Any]) -> None:
        self._transport = transport
        self._scope = scope
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
            return
        if data[:9] == b"HTTP/1.1 " and data[9:13] != b"100 ":  # the response's header block
            names = self._scope.pop(HEADER_CASE, None)
            if names:
                for lower, name in names.items():
                    data = data.replace(b"\r\n" + lower + b": ", b"\r\n" + name + b": ", 1)
            self._held = data
            return
        self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


_GUARDED: dict[type[asyncio.Protocol], type[asyncio.Protocol]] = {}


def guarded(base: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    """``base`` (uvicorn's HttpToolsProtocol or H11Protocol) with :class:`_SlowClientGuard` mixed in."""
    cls = _GUARDED.get(base)
    if cls is None:
        cls = _GUARDED[base] = cast(type[asyncio.Protocol],
                                    type(f"Guarded{base.__name__}", (_SlowClientGuard, base), {}))
    return cls


# --- 503 ServerBusy, in each endpoint's own error format ---------------------------------------------


async def blob_busy_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    req = BlobRequest(scope, receive)
    err = BlobError("ServerBusy", BUSY_MESSAGE, status=503)
    headers = [*blob_wire.error_headers(err), ("content-type", blob_wire.XML_TYPE), ("retry-after", RETRY_AFTER)]
    body = blob_wire.error_body(err, req.request_id, now_us())
    await send_response(send, req, BlobResponse(503, headers, body, close=True))


async def batch_busy_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "localhost")
    request_id = new_request_id()
    resp = error_response(request_id, f"{scope.get('scheme', 'http')}://{host}", batch_errors.ServerBusy(BUSY_MESSAGE))
    body = b"" if scope["method"] == "HEAD" else resp.body
    headers = [(b"request-id", request_id.encode()), (b"dataserviceversion", b"3.0"),
               (b"content-type", resp.content_type.encode()), (b"retry-after", RETRY_AFTER.encode()),
               (b"connection", b"close"), (b"content-length", str(len(resp.body)).encode())]
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
