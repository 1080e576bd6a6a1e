"""Run a live ``openbatch serve`` on free ports with a temp data dir: for tests (ours and users'), benchmarks and the quickstart."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from email.utils import formatdate
from pathlib import Path

import httpx

from openbatch.common import sharedkey
from openbatch.common.clock import ServiceClock
from openbatch.config import DEV_ACCOUNT, DEV_KEY

CLOCK_API_VERSION = "2024-07-01.20.0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """A server subprocess; ``restart()`` keeps the data dir, ``kill()`` is SIGKILL."""

    def __init__(self, data_dir: Path, extra_args: list[str] | None = None, env: dict[str, str] | None = None):
        self.data_dir = data_dir
        self.blob_port = free_port()
        self.batch_port = free_port()
        self.extra_args = extra_args or []
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.account = DEV_ACCOUNT
        self.key = DEV_KEY
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"

    @property
    def scheme(self) -> str:
        return "https" if "--https" in self.extra_args or "--cert" in self.extra_args else "http"

    @property
    def blob_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.blob_port}/{self.account}"

    @property
    def batch_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.batch_port}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={self.account};AccountKey={self.key};"
            f"BlobEndpoint={self.blob_url};"
        )

    def start(self, timeout: float = 20.0) -> LiveServer:
        cmd = [
            sys.executable, "-m", "openbatch", "serve",
            "--data-dir", str(self.data_dir),
            "--blob-port", str(self.blob_port),
            "--batch-port", str(self.batch_port),
            *self.extra_args,
        ]
        env = {**os.environ, **self.env}
        if "--node-isolation" not in self.extra_args and "OPENBATCH_NODE_ISOLATION" not in env:
            # Test servers' nodes share the host (tasks reach the test's files, pids are the host's),
            # unless a test asks for isolated nodes (docs/compute.md) or the environment does.
            cmd += ["--node-isolation", "off"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log()}")
            if all(_listening(p) for p in (self.blob_port, self.batch_port)):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> LiveServer:
        self.stop()
        return self.start()

    def advance_clock(self, seconds: float) -> dict[str, object]:
        """Move the service's clock ``seconds`` forward (a server started with ``--test-clock``);
        what fell due meanwhile happens at once. Returns {"now", "offsetSeconds"}."""
        body = json.dumps({"advanceSeconds": seconds}).encode()
        headers = {"content-type": "application/json", "content-length": str(len(body)),
                   "ocp-date": formatdate(usegmt=True)}
        query = [("api-version", CLOCK_API_VERSION)]
        signed = sharedkey.sign(base64.b64decode(self.key), sharedkey.batch_string_to_sign(
            "POST", headers, self.account, "/openbatch/clock", query))
        headers["authorization"] = f"SharedKey {self.account}:{signed}"
        response = httpx.post(f"{self.batch_url}/openbatch/clock", params=dict(query), content=body, headers=headers,
                              timeout=30)
        response.raise_for_status()
        result: dict[str, object] = response.json()
        return result

    def advance_stopped_clock(self, seconds: float) -> None:
        """Let ``seconds`` of service time pass while this ``--test-clock`` server is down (killed or
        stopped): it starts again that much later on its clock."""
        if self.proc is not None:
            raise RuntimeError("the server is running: use advance_clock")
        kept = ServiceClock()
        kept.keep_in(self.data_dir / "test-clock")
        kept.advance(seconds)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0
