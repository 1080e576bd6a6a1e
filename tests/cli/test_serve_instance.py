"""One server per data dir (a lock held for the server's life, released by a crash) and a busy port named."""

from __future__ import annotations

import subprocess
import sys

from openbatch.common.instance import running_endpoints
from tests.helpers.server import LiveServer, free_port


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "openbatch", "serve", *args], capture_output=True, text=True,
                          timeout=60)


def test_second_server_on_a_data_dir_refuses_naming_the_pid_until_the_first_dies(fresh_server: LiveServer) -> None:
    assert fresh_server.proc is not None
    pid = fresh_server.proc.pid
    second = _serve("--data-dir", str(fresh_server.data_dir), "--blob-port", str(free_port()),
                    "--batch-port", str(free_port()))
    assert second.returncode == 1
    assert f"in use by server pid {pid}" in second.stderr, second.stderr
    fresh_server.kill()  # kill -9: no clean shutdown, the kernel drops the lock
    again = LiveServer(fresh_server.data_dir).start()
    try:
        assert again.proc is not None
        assert running_endpoints(fresh_server.data_dir) is not None
        assert (fresh_server.data_dir / "server.lock").read_text().strip() == str(again.proc.pid)
    finally:
        again.stop()
    assert running_endpoints(fresh_server.data_dir) is None  # clients no longer find a server there


def test_busy_port_is_named(server: LiveServer, tmp_path: object) -> None:
    result = _serve("--data-dir", f"{tmp_path}/other", "--blob-port", str(free_port()),
                    "--batch-port", str(server.batch_port))
    assert result.returncode == 1
    assert f"batch port {server.batch_port} on 127.0.0.1 is already in use (choose another with --batch-port)" \
        in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
