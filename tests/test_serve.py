from __future__ import annotations

import subprocess
import sys
import time

import httpx

from tests.helpers.server import LiveServer, free_port


def test_serve_prints_endpoints_and_stops_on_sigterm(tmp_path):
    blob, batch = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "openbatch", "serve", "--data-dir", str(tmp_path / "d"),
         "--blob-port", str(blob), "--batch-port", str(batch)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        assert f"http://127.0.0.1:{blob}" in lines[0] and "devstoreaccount1" in lines[0]
        assert f"http://127.0.0.1:{batch}" in lines[1]
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


def test_bad_account_flag_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "openbatch", "serve", "--data-dir", str(tmp_path), "--account", "Bad:notbase64!"],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_extra_accounts_from_environment(tmp_path):
    srv = LiveServer(tmp_path / "d", env={"OPENBATCH_ACCOUNTS": "second:c2Vjb25kLWtleQ=="}).start()
    try:
        time.sleep(0.2)
        assert "second" in srv.log() and "devstoreaccount1" in srv.log()
        assert httpx.get(srv.batch_url + "/pools").status_code in (403, 404)
    finally:
        srv.stop()


def test_bad_timeout_or_limit_is_a_clear_error(tmp_path):
    for flags in (["--header-timeout", "0"], ["--body-timeout", "nan"], ["--max-connections-per-client", "-1"]):
        proc = subprocess.run(
            [sys.executable, "-m", "openbatch", "serve", "--data-dir", str(tmp_path), *flags],
            capture_output=True, text=True, timeout=30,
        )
        assert proc.returncode == 2, flags
        assert "error:" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
