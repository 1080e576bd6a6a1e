"""``Settings.advertise_host`` (``serve --advertise-host``): the host of every URL the server hands
out to nodes and clients, checked when the server starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from openbatch.cli.main import _warn_unreachable_urls
from openbatch.config import ConfigError, Settings, is_loopback


def test_urls_follow_listen_host_by_default(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, host="10.231.0.1", blob_port=1, batch_port=2)
    assert (s.blob_url, s.batch_url) == ("http://10.231.0.1:1", "http://10.231.0.1:2")


def test_wildcard_listen_host_advertises_loopback_unless_told(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path, host="0.0.0.0", blob_port=1).blob_url == "http://127.0.0.1:1"
    told = Settings(data_dir=tmp_path, host="0.0.0.0", advertise_host="batch.lab.example", blob_port=1, batch_port=2)
    assert (told.blob_url, told.batch_url) == ("http://batch.lab.example:1", "http://batch.lab.example:2")


@pytest.mark.parametrize(("given", "url_host"), [
    ("10.231.0.1", "10.231.0.1"), (" node-1.cluster.local ", "node-1.cluster.local"),
    ("fd00::1", "[fd00::1]"), ("[fd00::1]", "[fd00::1]"), ("head_node", "head_node"),
])
def test_advertised_host_forms(tmp_path: Path, given: str, url_host: str) -> None:
    assert Settings(data_dir=tmp_path, advertise_host=given, blob_port=7).blob_url == f"http://{url_host}:7"


@pytest.mark.parametrize("given", [
    "http://10.231.0.1", "10.231.0.1:10000", "host/path", "0.0.0.0", "::", "[::]", "-bad", "a..b", "a b",
])
def test_advertised_host_refused(tmp_path: Path, given: str) -> None:
    with pytest.raises(ConfigError, match="advertised host"):
        Settings(data_dir=tmp_path, advertise_host=given)


def test_explicit_urls_win(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, advertise_host="10.0.0.5", blob_url="https://blob.example")
    assert s.blob_url == "https://blob.example"
    assert s.batch_url.startswith("http://10.0.0.5:")


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("LOCALHOST", True), ("a.localhost", True), ("10.231.0.1", False), ("fd00::1", False), ("head.example", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(("scheduler", "flags", "warned"), [
    ("tcp://10.0.0.1:8786", {}, True),
    ("tls://head.example:8786", {"host": "0.0.0.0"}, True),
    ("tcp://10.0.0.1:8786", {"host": "0.0.0.0", "advertise_host": "10.0.0.2"}, False),
    ("tcp://10.0.0.1:8786", {"host": "10.0.0.2"}, False),
    ("tcp://127.0.0.1:8786", {}, False),  # a scheduler on this machine: its workers may well be here too
    ("", {}, False),  # dask-local
])
def test_serve_warns_when_remote_workers_get_loopback_urls(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], scheduler: str, flags: dict[str, str], warned: bool) -> None:
    _warn_unreachable_urls(Settings(data_dir=tmp_path, **flags), scheduler)  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert ("warning: nodes are told to reach this server at 127.0.0.1" in err) is warned, err
