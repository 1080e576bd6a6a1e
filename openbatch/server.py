"""Builds the ASGI apps, runs uvicorn on both endpoints, startup recovery, clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import uvicorn

from openbatch.common import clock
from openbatch.common.eventlog import EVENTS, requests_log, with_request_log
from openbatch.common.instance import DataDirLock, Endpoints, write_endpoints
from openbatch.config import Settings
from openbatch.transport import ClientTable, Guard, GuardedConfig, Limits, batch_busy_app, blob_busy_app

log = logging.getLogger("openbatch")

ASGIApp = Callable[..., Any]


class Service(Protocol):
    """One endpoint: an ASGI app with a start (recovery) and a stop (flush, kill children)."""

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Runtime:
    """Everything one running server owns."""

    settings: Settings
    services: dict[str, Service] = field(default_factory=dict)


def build_runtime(settings: Settings) -> Runtime:
    """Open the stores in the data dir and build both services."""
    from openbatch.batch.api import build_batch_service
    from openbatch.blob.api import build_blob_service

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.test_clock:
        clock.SERVICE.keep_in(settings.data_dir / "test-clock")
    blob = build_blob_service(settings)
    batch: Service = build_batch_service(settings, blob)
    if settings.ui:  # the dashboard answers / and /ui/ of the batch port, the REST API the rest
        from openbatch.ui import Dashboard

        batch = Dashboard(settings, batch, blob)
    return Runtime(settings=settings, services={"blob": blob, "batch": batch})


class _Server(uvicorn.Server):
    """uvicorn server whose signals are handled by us, for both endpoints at once."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class PortInUse(OSError):
    """An endpoint's port is taken: the message names the port, the address and the flag that moves it."""


def _bind(host: str, port: int, name: str = "") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno != errno.EADDRINUSE:
            raise
        flag = f" (choose another with --{name}-port)" if name else ""
        raise PortInUse(f"{name or 'the'} port {port} on {host} is already in use{flag}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve(settings: Settings, on_ready: Callable[[Runtime], None] | None = None,
                stop_event: asyncio.Event | None = None) -> None:
    """Run both endpoints until SIGINT/SIGTERM (or ``stop_event``), then stop cleanly."""
    lock = DataDirLock(settings.data_dir).acquire()
    try:
        await _serve_locked(settings, on_ready, stop_event)
    finally:
        lock.release()


async def _serve_locked(settings: Settings, on_ready: Callable[[Runtime], None] | None,
                        stop_event: asyncio.Event | None) -> None:
    runtime = build_runtime(settings)
    sockets = {"blob": _bind(settings.host, settings.blob_port, "blob")}
    try:
        sockets["batch"] = _bind(settings.host, settings.batch_port, "batch")
    except OSError:
        sockets["blob"].close()
        raise
    # The ports are ours and listening (connections wait in the backlog until the services start).
    write_endpoints(settings.data_dir, Endpoints(settings.batch_url, settings.blob_url,
                                                 next(iter(settings.accounts)), os.getpid()))
    for service in runtime.services.values():
        await service.start()
    servers = []
    limits = Limits(settings.header_timeout, settings.body_timeout, settings.max_connections_per_client)
    clients = ClientTable(settings.max_connections_per_client)  # one table: a client's connections to both count
    busy_apps = {"blob": blob_busy_app, "batch": batch_busy_app}
    for name, service in runtime.services.items():
        app = with_request_log(service.app, name) if requests_log.isEnabledFor(logging.INFO) else service.app
        config = GuardedConfig(
            app,
            Guard(limits, clients, busy_apps[name]),
            lifespan="off",
            interface="asgi3",
            proxy_headers=False,
            log_level="warning",
            access_log=False,
            server_header=False,
            date_header=False,
            timeout_keep_alive=settings.keep_alive_timeout,
            h11_max_incomplete_event_size=1 << 20,
        )
        servers.append((_Server(config), sockets[name]))
    stop = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in servers]
    while not all(server.started for server, _ in servers):
        if any(t.done() for t in tasks):
            break
        await asyncio.sleep(0.01)
    if on_ready is not None:
        on_ready(runtime)
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for server, _ in servers:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    waiter.cancel()
    for service in reversed(list(runtime.services.values())):
        await service.stop()
    EVENTS.shutdown()
    for sock in sockets.values():
        sock.close()


def run(settings: Settings, on_ready: Callable[[Runtime], None] | None = None) -> None:
    """Blocking entry point: uvloop when available."""
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        runner = asyncio.run
    runner(serve(settings, on_ready))
