"""Azurite, the reference emulator, installed with this machine's Node.js into a cache dir and run on a free port."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from openbatch.config import DEV_ACCOUNT, DEV_KEY
from openbatch.testing import free_port

AZURITE_VERSION = "3.37.0"


def cache_dir() -> Path:
    root = Path(os.environ.get("OPENBATCH_BENCH_CACHE", Path.home() / ".cache" / "openbatch" / "bench"))
    return root / f"azurite-{AZURITE_VERSION}"


def available() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


def _launcher() -> Path:
    return cache_dir() / "node_modules" / ".bin" / "azurite-blob"


def installed() -> bool:
    """Whether the pinned Azurite is already in the cache (nothing to download to run it)."""
    return available() and _launcher().exists()


def ensure_installed() -> Path:
    """Path of the azurite-blob launcher, installing the pinned version on first use."""
    prefix = cache_dir()
    launcher = _launcher()
    if launcher.exists():
        return launcher
    prefix.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(prefix),
         f"azurite@{AZURITE_VERSION}"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return launcher


@contextmanager
def azurite_blob() -> Iterator[tuple[str, str, int]]:
    """Run azurite-blob on a free port with a temp location; yields (connection string, blob url, pid)."""
    launcher = ensure_installed()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="azurite-bench-") as location:
        proc = subprocess.Popen(
            [str(launcher), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", location,
             "--silent", "--skipApiVersionCheck", "--loose"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            _wait_port(port, proc)
            url = f"http://127.0.0.1:{port}/{DEV_ACCOUNT}"
            conn = (f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
                    f"BlobEndpoint={url};")
            yield conn, url, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"azurite exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("azurite did not start")
