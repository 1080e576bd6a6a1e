"""Builds the ASGI apps, runs uvicorn on both endpoints, startup recovery, clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import uvicorn

from openbatch.common import clock
from openbatch.common.eventlog import EVENTS, requests_log, with_request_log
from openbatch.common.identity import identity_service
from openbatch.common.identity.endpoints import IdentityEndpoints
from openbatch.common.instance import DataDirLock, Endpoints, write_endpoints
from openbatch.common.tls import TlsFiles, check_pair, ensure_certificate
from openbatch.config import ConfigError, Settings
from openbatch.node.trust import ENV_NODE_TRUST
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
    batch_service = build_batch_service(settings, blob)
    batch: Service = batch_service
    if settings.ui:  # the dashboard answers / and /ui/ of the batch port, the REST API the rest
        from openbatch.ui import Dashboard

        batch = Dashboard(settings, batch, blob)
    # the token endpoints (issuer, managed identity) answer their paths of the batch port
    identity = identity_service(settings.data_dir, settings.oauth == "accept-any")
    store = batch_service.ctx.store
    batch = _WithIdentity(batch, IdentityEndpoints(identity, batch.app, lambda a, p: _pool_identities(store, a, p)))
    services: dict[str, Service] = {"blob": blob, "batch": batch}
    if settings.arm_port:  # the management plane over the same pools and accounts (openbatch/arm)
        from openbatch.arm.app import build_arm_service

        services["arm"] = build_arm_service(settings, batch_service)
    return Runtime(settings=settings, services=services)


def _pool_identities(store: Any, account: str, pool_id: str) -> list[str] | None:
    """The resource ids of a pool's user-assigned identities (None: no such pool)."""
    doc = store.get("pool", account, pool_id)
    if doc is None:
        return None
    identity = doc.get("identity") or {}
    return [str(u.get("resourceId")) for u in identity.get("userAssignedIdentities") or []]


class _WithIdentity:
    """A service whose app answers the identity endpoints first (see openbatch/common/identity/endpoints.py)."""

    def __init__(self, inner: Service, endpoints: IdentityEndpoints) -> None:
        self.inner = inner
        self.endpoints = endpoints

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.endpoints(scope, receive, send)

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    def __getattr__(self, name: str) -> Any:  # the services' own attributes (engine, ctx ...) for callers
        return getattr(self.inner, name)


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
    tls = _tls_files(settings)
    runtime = build_runtime(settings)
    sockets = {"blob": _bind(settings.host, settings.blob_port, "blob")}
    try:
        sockets["batch"] = _bind(settings.host, settings.batch_port, "batch")
        if settings.arm_port:
            sockets["arm"] = _bind(settings.host, settings.arm_port, "arm")
    except OSError:
        for sock in sockets.values():
            sock.close()
        raise
    # The ports are ours and listening (connections wait in the backlog until the services start).
    write_endpoints(settings.data_dir, Endpoints(settings.batch_url, settings.blob_url,
                                                 next(iter(settings.accounts)), os.getpid()))
    for service in runtime.services.values():
        await service.start()
    servers = []
    limits = Limits(settings.header_timeout, settings.body_timeout, settings.max_connections_per_client)
    clients = ClientTable(settings.max_connections_per_client)  # one table: a client's connections to both count
    busy_apps = {"blob": blob_busy_app, "batch": batch_busy_app, "arm": batch_busy_app}
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
            ssl_certfile=str(tls.cert) if tls else None,
            ssl_keyfile=str(tls.key) if tls else None,
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


def _tls_files(settings: Settings) -> TlsFiles | None:
    """The certificate both endpoints serve HTTPS with (None: plain HTTP, the default)."""
    if not settings.https:
        return None
    if settings.cert_file:
        try:
            check_pair(Path(settings.cert_file), Path(settings.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--cert/--key cannot serve HTTPS: {exc}") from None
        return TlsFiles(Path(settings.cert_file), Path(settings.key_file), None, None)
    files = ensure_certificate(settings.data_dir, (settings.host, settings.advertise_host))
    if files.bundle is not None:
        # The server's own outbound requests to its endpoints (resource files, output files, copies,
        # by httpx, which reads SSL_CERT_FILE) trust its certificate; the bundle holds what
        # SSL_CERT_FILE named before (or certifi's CAs), so nothing else loses trust.
        os.environ["SSL_CERT_FILE"] = str(files.bundle)
        os.environ[ENV_NODE_TRUST] = str(files.bundle)  # copied into each node (node/trust.py)
    return files


def run(settings: Settings, on_ready: Callable[[Runtime], None] | None = None) -> None:
    """Blocking entry point: uvloop when available."""
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        runner = asyncio.run
    runner(serve(settings, on_ready))
