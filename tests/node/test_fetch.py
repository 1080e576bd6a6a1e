from __future__ import annotations

import asyncio
import http.server
import os
import stat
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)

from openbatch.node import safefs
from openbatch.node.fetch import ResourceFileError, fetch_resource_files
from tests.helpers.server import LiveServer

EXPIRY = datetime.now(UTC) + timedelta(hours=2)


@pytest.fixture(scope="module")
def blobs(server: LiveServer) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(server.connection_string)


@pytest.fixture(scope="module")
def inputs(blobs: BlobServiceClient) -> ContainerClient:
    container = blobs.get_container_client("inputs")
    container.create_container()
    for name, data in {
        "a.txt": b"alpha",
        "data/b.txt": b"bravo",
        "data/deep/c.bin": bytes(range(256)) * 4,
        "data/folder/": b"",
        "other/d.txt": b"delta",
        "with space & plus+.txt": b"odd name",
        "big.bin": os.urandom(5 * 2**20 + 3),
    }.items():
        container.upload_blob(name, data)
    return container


def _blob_sas_url(server: LiveServer, container: str, blob: str, permission: str = "r") -> str:
    sas = generate_blob_sas(server.account, container, blob, account_key=server.key,
                            permission=BlobSasPermissions.from_string(permission), expiry=EXPIRY)
    return f"{server.blob_url}/{container}/{blob}?{sas}"


def _container_sas_url(server: LiveServer, container: str, permission: str = "rl") -> str:
    sas = generate_container_sas(server.account, container, account_key=server.key,
                                 permission=ContainerSasPermissions.from_string(permission), expiry=EXPIRY)
    return f"{server.blob_url}/{container}?{sas}"


def _fetch(files: list[dict[str, Any]], wd: Path, server: LiveServer | None = None) -> None:
    def auto(name: str) -> str:
        assert server is not None
        return _container_sas_url(server, name)

    async def go() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            await fetch_resource_files(client, files, wd, dir_fd=fd, owner=None, auto_storage_url=auto)

    with safefs.closing(safefs.open_dir(wd)) as fd:
        asyncio.run(go())


def _failure(files: list[dict[str, Any]], wd: Path, server: LiveServer | None = None) -> ResourceFileError:
    with pytest.raises(ResourceFileError) as info:
        _fetch(files, wd, server)
    return info.value


def test_http_url_with_blob_sas(server: LiveServer, inputs: ContainerClient, tmp_path: Path) -> None:
    _fetch([{"httpUrl": _blob_sas_url(server, "inputs", "a.txt"), "filePath": "in/a.txt"}], tmp_path)
    target = tmp_path / "in" / "a.txt"
    assert target.read_bytes() == b"alpha"
    assert stat.S_IMODE(target.stat().st_mode) == 0o770
    assert [p.name for p in (tmp_path / "in").iterdir()] == ["a.txt"]  # no temp leftovers


def test_file_mode_and_old_blob_source(server: LiveServer, inputs: ContainerClient, tmp_path: Path) -> None:
    _fetch([{"blobSource": _blob_sas_url(server, "inputs", "data/b.txt"), "filePath": "b.txt", "fileMode": "0644"},
            {"httpUrl": _blob_sas_url(server, "inputs", "a.txt"), "filePath": "run.sh", "fileMode": "755"}], tmp_path)
    assert (tmp_path / "b.txt").read_bytes() == b"bravo"
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "run.sh").stat().st_mode) == 0o755


def test_large_blob_streams_intact(server: LiveServer, inputs: ContainerClient, tmp_path: Path) -> None:
    _fetch([{"httpUrl": _blob_sas_url(server, "inputs", "big.bin"), "filePath": "big.bin"}], tmp_path)
    assert (tmp_path / "big.bin").read_bytes() == inputs.download_blob("big.bin").readall()


def test_odd_blob_names(server: LiveServer, inputs: ContainerClient, tmp_path: Path) -> None:
    blob = inputs.get_blob_client("with space & plus+.txt")
    sas = generate_blob_sas(server.account, "inputs", blob.blob_name, account_key=server.key,
                            permission=BlobSasPermissions(read=True), expiry=EXPIRY)
    _fetch([{"httpUrl": f"{blob.url}?{sas}", "filePath": "odd.txt"}], tmp_path)
    assert (tmp_path / "odd.txt").read_bytes() == b"odd name"


def test_storage_container_url_with_prefix_keeps_structure(server: LiveServer, inputs: ContainerClient,
                                                           tmp_path: Path) -> None:
    _fetch([{"storageContainerUrl": _container_sas_url(server, "inputs"), "blobPrefix": "data/", "filePath": "dl"}],
           tmp_path)
    got = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert got == ["dl/data/b.txt", "dl/data/deep/c.bin"]
    assert (tmp_path / "dl" / "data" / "deep" / "c.bin").read_bytes() == bytes(range(256)) * 4


def test_whole_container_without_file_path(server: LiveServer, inputs: ContainerClient, tmp_path: Path) -> None:
    _fetch([{"storageContainerUrl": _container_sas_url(server, "inputs")}], tmp_path)
    got = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert got == sorted(["a.txt", "big.bin", "data/b.txt", "data/deep/c.bin", "other/d.txt", "with space & plus+.txt"])


def test_auto_storage_container(server: LiveServer, inputs: ContainerClient, tmp_path: Path) -> None:
    _fetch([{"autoStorageContainerName": "inputs", "blobPrefix": "other"}], tmp_path, server)
    assert (tmp_path / "other" / "d.txt").read_bytes() == b"delta"


def test_missing_blob_is_blob_not_found_without_sas_in_details(server: LiveServer, inputs: ContainerClient,
                                                                tmp_path: Path) -> None:
    url = _blob_sas_url(server, "inputs", "nope.txt")
    error = _failure([{"httpUrl": url, "filePath": "x.txt"}], tmp_path)
    assert (error.code, error.category) == ("BlobNotFound", "usererror")
    text = repr(error.failure_info())
    assert "sig=" not in text and "?" not in text
    assert {"name": "FilePath", "value": str(tmp_path / "x.txt")} in error.details
    assert not (tmp_path / "x.txt").exists()


def test_bad_signature_is_blob_access_denied(server: LiveServer, inputs: ContainerClient, tmp_path: Path) -> None:
    url = _blob_sas_url(server, "inputs", "a.txt").replace("sig=", "sig=AAAA")
    assert _failure([{"httpUrl": url, "filePath": "a.txt"}], tmp_path).code == "BlobAccessDenied"


def test_container_errors(server: LiveServer, inputs: ContainerClient, tmp_path: Path) -> None:
    missing = _container_sas_url(server, "no-such-container")
    assert _failure([{"storageContainerUrl": missing}], tmp_path).code == "ResourceContainerNotFound"
    forged = _container_sas_url(server, "inputs").replace("sig=", "sig=AAAA")
    assert _failure([{"storageContainerUrl": forged}], tmp_path).code == "ResourceContainerAccessDenied"
    read_only = _container_sas_url(server, "inputs", "r")  # no list permission
    assert _failure([{"storageContainerUrl": read_only}], tmp_path).code == "ResourceContainerAccessDenied"


def test_unreachable_host_is_misc_error(tmp_path: Path) -> None:
    from openbatch.testing import free_port

    url = f"http://127.0.0.1:{free_port()}/acct/c/b?sv=2020&sig=secret"
    error = _failure([{"httpUrl": url, "filePath": "b"}], tmp_path)
    assert error.code == "BlobDownloadMiscError"
    assert "secret" not in repr(error.failure_info())
    listing = _failure([{"storageContainerUrl": f"http://127.0.0.1:{free_port()}/acct/c?sig=secret"}], tmp_path)
    assert listing.code == "ResourceContainerListMiscError"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "http://[::1", "not a url", "http://"])
def test_urls_that_are_not_http_fail_cleanly(tmp_path: Path, url: str) -> None:
    error = _failure([{"httpUrl": url, "filePath": "x"}], tmp_path)
    assert error.code == "BlobDownloadMiscError"
    assert not (tmp_path / "x").exists()
    assert _failure([{"storageContainerUrl": url}], tmp_path).code == "ResourceContainerListMiscError"
    no_path = _failure([{"httpUrl": url}], tmp_path)
    assert (no_path.code, no_path.category) == ("BlobDownloadMiscError", "usererror")


@pytest.mark.parametrize("file_path", ["../escape.txt", "/etc/x", "a/../../x"])
def test_file_path_cannot_leave_the_working_directory(server: LiveServer, inputs: ContainerClient, tmp_path: Path,
                                                      file_path: str) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    error = _failure([{"httpUrl": _blob_sas_url(server, "inputs", "a.txt"), "filePath": file_path}], wd)
    assert error.code == "ResourceFileCreateFailed"
    assert not (tmp_path / "escape.txt").exists()


class _Stub(http.server.BaseHTTPRequestHandler):
    """A storage endpoint of our own: a two-page listing (one name hostile, one XML-encoded)."""

    pages = {
        "": '<?xml version="1.0"?><EnumerationResults><Blobs><Blob><Name>ok/one.txt</Name></Blob>'
            '<Blob><Name Encoded="true">enc%20name.txt</Name></Blob></Blobs><NextMarker>p2</NextMarker>'
            "</EnumerationResults>",
        "p2": '<?xml version="1.0"?><EnumerationResults><Blobs><Blob><Name>{name}</Name></Blob></Blobs>'
              "<NextMarker /></EnumerationResults>",
    }
    last_name = "two.txt"

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if query.get("comp") == "list":
            body = self.pages[query.get("marker", "")].format(name=self.last_name).encode()
        else:
            body = url.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/acct/cont?sv=x&sig=secret"
    httpd.shutdown()
    _Stub.last_name = "two.txt"


def test_listing_pages_and_encoded_names_from_any_endpoint(stub: str, tmp_path: Path) -> None:
    _fetch([{"storageContainerUrl": stub, "filePath": "x"}], tmp_path)
    got = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert got == ["x/enc name.txt", "x/ok/one.txt", "x/two.txt"]
    assert (tmp_path / "x" / "enc name.txt").read_text() == "/acct/cont/enc%20name.txt"


@pytest.mark.parametrize("name", ["../../escape.txt", "/etc/escape.txt", "a/../../escape.txt"])
def test_blob_names_cannot_leave_the_working_directory(stub: str, tmp_path: Path, name: str) -> None:
    _Stub.last_name = name
    wd = tmp_path / "wd"
    wd.mkdir()
    error = _failure([{"storageContainerUrl": stub}], wd)
    assert error.code == "ResourceFileCreateFailed"
    assert not (tmp_path / "escape.txt").exists()
    assert list(wd.rglob("*")) == []  # refused before anything was downloaded


def test_invalid_file_mode(server: LiveServer, inputs: ContainerClient, tmp_path: Path) -> None:
    error = _failure([{"httpUrl": _blob_sas_url(server, "inputs", "a.txt"), "filePath": "a", "fileMode": "rwx"}],
                     tmp_path)
    assert error.code == "ResourceFileCreateFailed"


def test_nothing_to_fetch(tmp_path: Path) -> None:
    _fetch([], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_links_the_task_left_are_never_written_through(server: LiveServer, inputs: ContainerClient,
                                                       tmp_path: Path) -> None:
    wd, outside = tmp_path / "wd", tmp_path / "outside"
    wd.mkdir()
    outside.mkdir()
    (outside / "target").write_text("root's")
    os.symlink(outside / "target", wd / "a.txt")  # a link where the file goes: replaced, not followed
    os.symlink(outside, wd / "dir")  # a link where a directory goes: refused
    _fetch([{"httpUrl": _blob_sas_url(server, "inputs", "a.txt"), "filePath": "a.txt"}], wd)
    assert (wd / "a.txt").read_bytes() == b"alpha" and not (wd / "a.txt").is_symlink()
    failure = _failure([{"httpUrl": _blob_sas_url(server, "inputs", "a.txt"), "filePath": "dir/a.txt"}], wd)
    assert failure.code == "ResourceDirectoryCreateFailed"
    assert sorted(os.listdir(outside)) == ["target"] and (outside / "target").read_text() == "root's"


@pytest.mark.skipif(os.geteuid() != 0, reason="handing files to another account needs root")
def test_downloads_are_handed_to_the_owner_as_they_are_made(server: LiveServer, inputs: ContainerClient,
                                                           tmp_path: Path) -> None:
    async def go() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            await fetch_resource_files(client, [{"httpUrl": _blob_sas_url(server, "inputs", "data/b.txt"),
                                                 "filePath": "new/dir/b.txt"}],
                                       tmp_path, dir_fd=fd, owner=safefs.Owner(65534, 65534),
                                       auto_storage_url=lambda name: name)

    with safefs.closing(safefs.open_dir(tmp_path)) as fd:
        asyncio.run(go())
    for path in (tmp_path / "new", tmp_path / "new" / "dir", tmp_path / "new" / "dir" / "b.txt"):
        assert (path.stat().st_uid, path.stat().st_gid) == (65534, 65534), path
    assert stat.S_IMODE((tmp_path / "new" / "dir" / "b.txt").stat().st_mode) == 0o770
