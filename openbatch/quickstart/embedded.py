"""An openbatch server inside this process: its own event loop in a background thread, free ports.

Used by ``openbatch quickstart`` when no server is given::

    with EmbeddedServer() as server:
        BatchClient(server.batch_url, AzureNamedKeyCredential(server.account, server.key))
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any

from openbatch.config import DEV_ACCOUNT, DEV_KEY, Settings


class EmbeddedServerError(RuntimeError):
    """The embedded server could not start (or stop)."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop when available (as ``openbatch serve``), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.run
    return uvloop.run


class EmbeddedServer:
    """Both endpoints on free ports of 127.0.0.1; a temporary data dir unless ``data_dir`` is given."""

    def __init__(self, data_dir: Path | None = None, host: str = "127.0.0.1", start_timeout: float = 30.0):
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="openbatch-quickstart-", ignore_cleanup_errors=True)
            data_dir = Path(self._tmp.name)
            data_dir.chmod(0o711)  # non-admin tasks run as another account and must reach their node dirs
        self.settings = Settings(data_dir=data_dir, host=host, blob_port=free_port(host), batch_port=free_port(host))
        self.account = DEV_ACCOUNT
        self.key = DEV_KEY
        self.start_timeout = start_timeout
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def batch_url(self) -> str:
        return self.settings.batch_url

    @property
    def blob_url(self) -> str:
        return f"{self.settings.blob_url}/{self.account}"

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def start(self) -> EmbeddedServer:
        self._thread = threading.Thread(target=self._run, name="openbatch-embedded", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.start_timeout):
            self.stop()
            raise EmbeddedServerError(f"the embedded server did not start within {self.start_timeout:g}s")
        if self._error is not None:
            self.stop()
            raise EmbeddedServerError(f"the embedded server did not start: {self._error}") from self._error
        return self

    def _run(self) -> None:
        try:
            _event_loop_runner()(self._main())
        except BaseException as exc:  # reported to the starting thread, which raises it
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        from openbatch.server import serve

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await serve(self.settings, on_ready=lambda _runtime: self._ready.set(), stop_event=self._stop)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop both endpoints (the server kills the nodes' processes) and remove the temp data dir."""
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between: the server has stopped
                loop.call_soon_threadsafe(stop.set)
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise EmbeddedServerError(f"the embedded server did not stop within {timeout:g}s")
        self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
