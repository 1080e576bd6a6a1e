"""The legacy ``azure-storage==0.33.0`` BlockBlobService against a live server.

This is the generation the original Azure Batch tutorials use (create_container,
create_blob_from_path, generate_blob_shared_access_signature + make_blob_url, list_blobs,
get_blob_to_path, delete_container).  It cannot share an environment with azure-storage-blob 12,
so each test runs a small script in the cached "legacy" venv (tests/helpers/venvs.py).

0.33 is pointed at the server's path-style endpoint with ``custom_domain`` (its host, port and
``/{account}`` path become the primary endpoint), or with a connection string's ``BlobEndpoint``;
``is_emulated=True`` is checked against a server on the emulator port when that port is free.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.server import LiveServer
from tests.helpers.venvs import run_script

PRELUDE = """
import json, os, sys, tempfile, urllib.error, urllib.request
from datetime import datetime, timedelta
from azure.common import AzureHttpError, AzureConflictHttpError, AzureMissingResourceHttpError
from azure.storage.blob import BlockBlobService, ContentSettings, BlobPermissions, ContainerPermissions, Include
from azure.storage.retry import no_retry

ACCOUNT, KEY, URL = os.environ["OB_ACCOUNT"], os.environ["OB_KEY"], os.environ["OB_BLOB_URL"]

def service(**kw):
    if "sas_token" in kw:
        svc = BlockBlobService(account_name=ACCOUNT, custom_domain=URL, **kw)
    else:
        svc = BlockBlobService(account_name=ACCOUNT, account_key=KEY, custom_domain=URL, **kw)
    svc.retry = no_retry  # fail fast: a server error must show, not be retried with back-off
    return svc

def error_of(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except AzureHttpError as exc:
        return {"status": exc.status_code, "type": type(exc).__name__, "text": str(exc)[:600]}
    return None

def http(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return {"status": resp.status, "headers": {k.lower(): v for k, v in resp.headers.items()},
                    "body": resp.read().decode("latin-1")}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "headers": {k.lower(): v for k, v in exc.headers.items()},
                "body": exc.read().decode("latin-1")}

def in_an_hour():
    return datetime.utcnow() + timedelta(hours=1)

svc = service()
"""


def _run(server: LiveServer, body: str, **env: str) -> Any:
    variables = {"OB_ACCOUNT": server.account, "OB_KEY": server.key, "OB_BLOB_URL": server.blob_url, **env}
    return run_script("legacy", PRELUDE + body, env=variables, timeout=120)


def test_create_container_and_exists(server: LiveServer) -> None:
    result = _run(
        server,
        """
first = svc.create_container("legacy-create", metadata={"purpose": "tutorial", "Owner_Name": "batch"})
again = svc.create_container("legacy-create")
conflict = error_of(svc.create_container, "legacy-create", fail_on_exist=True)
props = svc.get_container_properties("legacy-create")
print(json.dumps({
    "first": first, "again": again, "conflict": conflict,
    "metadata": svc.get_container_metadata("legacy-create"),
    "etag": props.properties.etag,
    "exists": svc.exists("legacy-create"), "missing": svc.exists("legacy-missing"),
    "missing_blob": svc.exists("legacy-create", "no-such-blob"),
    "bad_name": error_of(svc.create_container, "Bad_Name"),
}))
""",
    )
    assert result["first"] is True and result["again"] is False
    assert result["conflict"]["status"] == 409 and "ContainerAlreadyExists" in result["conflict"]["text"]
    # 0.33 lower-cases every response header name, so metadata names come back lower-case (as from Azure).
    assert result["metadata"] == {"purpose": "tutorial", "owner_name": "batch"}
    assert result["etag"]
    assert (result["exists"], result["missing"], result["missing_blob"]) == (True, False, False)
    assert result["bad_name"]["status"] == 400 and "InvalidResourceName" in result["bad_name"]["text"]


def test_upload_from_path_bytes_and_text_then_download(server: LiveServer, tmp_path: Path) -> None:
    source = tmp_path / "input.bin"
    source.write_bytes(bytes(range(256)) * 400 + b"tail")  # 102,404 bytes
    result = _run(
        server,
        """
src, dst = os.environ["OB_SRC"], os.environ["OB_DST"]
svc.create_container("legacy-upload")
svc.create_blob_from_path("legacy-upload", "inputs/input.bin", src, metadata={"kind": "path"})
svc.create_blob_from_bytes("legacy-upload", "bytes.bin", b"\\x00\\x01binary\\xff",
                           content_settings=ContentSettings(content_type="application/x-test"))
svc.create_blob_from_text("legacy-upload", "text.txt", "h\\u00e9llo w\\u00f6rld \\u2713", encoding="utf-8",
                          content_settings=ContentSettings(content_type="text/plain; charset=utf-8",
                                                           content_language="de-DE", cache_control="no-cache"))
downloaded = svc.get_blob_to_path("legacy-upload", "inputs/input.bin", dst)
props = svc.get_blob_properties("legacy-upload", "inputs/input.bin")
text_props = svc.get_blob_properties("legacy-upload", "text.txt")
print(json.dumps({
    "same": open(src, "rb").read() == open(dst, "rb").read(),
    "downloaded_length": downloaded.properties.content_length,
    "length": props.properties.content_length, "etag": props.properties.etag,
    "last_modified": props.properties.last_modified.isoformat(),
    "blob_type": props.properties.blob_type, "metadata": props.metadata,
    "md5": props.properties.content_settings.content_md5,
    "bytes": list(svc.get_blob_to_bytes("legacy-upload", "bytes.bin").content),
    "bytes_type": svc.get_blob_properties("legacy-upload", "bytes.bin").properties.content_settings.content_type,
    "text": svc.get_blob_to_text("legacy-upload", "text.txt", encoding="utf-8").content,
    "text_type": text_props.properties.content_settings.content_type,
    "text_language": text_props.properties.content_settings.content_language,
    "text_cache": text_props.properties.content_settings.cache_control,
    "range": svc.get_blob_to_bytes("legacy-upload", "inputs/input.bin", start_range=256, end_range=259).content.hex(),
    "exists": svc.exists("legacy-upload", "inputs/input.bin"),
    "missing": error_of(svc.get_blob_properties, "legacy-upload", "nope"),
}))
""",
        OB_SRC=str(source),
        OB_DST=str(tmp_path / "output.bin"),
    )
    assert result["same"] is True
    assert result["length"] == result["downloaded_length"] == 102_404
    assert result["etag"] and result["last_modified"] and result["blob_type"] == "BlockBlob"
    assert result["metadata"] == {"kind": "path"}
    assert result["md5"]  # returned for a single-shot Put Blob
    assert bytes(result["bytes"]) == b"\x00\x01binary\xff" and result["bytes_type"] == "application/x-test"
    assert result["text"] == "h\u00e9llo w\u00f6rld \u2713"
    assert result["text_type"] == "text/plain; charset=utf-8"
    assert (result["text_language"], result["text_cache"]) == ("de-DE", "no-cache")
    assert result["range"] == "00010203"
    assert result["exists"] is True
    assert result["missing"]["status"] == 404 and result["missing"]["type"] == "AzureMissingResourceHttpError"


def test_chunked_upload_with_put_block_list(server: LiveServer) -> None:
    """A small single-put threshold makes 0.33 upload with Put Block (in parallel) + Put Block List."""
    result = _run(
        server,
        """
import random
data = random.Random(7).randbytes(1_300_000)
svc.MAX_SINGLE_PUT_SIZE = 256 * 1024
svc.MAX_BLOCK_SIZE = 256 * 1024
svc.create_container("legacy-chunked")
svc.create_blob_from_bytes("legacy-chunked", "big.bin", data, max_connections=2)
blocks = svc.get_block_list("legacy-chunked", "big.bin", block_list_type="all")
print(json.dumps({
    "committed": [b.size for b in blocks.committed_blocks], "uncommitted": len(blocks.uncommitted_blocks),
    "same": svc.get_blob_to_bytes("legacy-chunked", "big.bin").content == data,
}))
""",
    )
    assert result["committed"] == [262_144] * 4 + [1_300_000 - 4 * 262_144]
    assert result["uncommitted"] == 0 and result["same"] is True


def test_chunked_download_of_a_blob_larger_than_a_single_get(server: LiveServer, tmp_path: Path) -> None:
    """get_blob_to_path of a blob above MAX_SINGLE_GET_SIZE (32 MiB by default: any big tutorial input).

    0.33 reads the first chunk from the endpoint as configured (``/{account}/{container}/{blob}``)
    but sends every further chunk of the same operation to the host without the ``/{account}``
    path (its location lock keeps the host after the path was split off), still signed for
    ``/{account}/{container}/{blob}``: the server must accept ``/{container}/{blob}`` as well.
    """
    result = _run(
        server,
        """
import hashlib, random
data = random.Random(8).randbytes(700_000)
svc.MAX_SINGLE_GET_SIZE = 128 * 1024
svc.MAX_CHUNK_GET_SIZE = 128 * 1024
svc.create_container("legacy-ranged")
svc.create_blob_from_bytes("legacy-ranged", "big.bin", data)
dst = os.path.join(os.environ["OB_TMP"], "big.out")
svc.get_blob_to_path("legacy-ranged", "big.bin", dst, max_connections=2)
serial = svc.get_blob_to_bytes("legacy-ranged", "big.bin", max_connections=1).content
print(json.dumps({
    "parallel_ok": hashlib.sha256(open(dst, "rb").read()).hexdigest() == hashlib.sha256(data).hexdigest(),
    "serial_ok": serial == data,
}))
""",
        OB_TMP=str(tmp_path),
    )
    assert result == {"parallel_ok": True, "serial_ok": True}


def test_blob_sas_url_with_plain_http_get(server: LiveServer) -> None:
    result = _run(
        server,
        """
svc.create_container("legacy-sas")
svc.create_blob_from_text("legacy-sas", "task/input.txt", "resource file for a task")
token = svc.generate_blob_shared_access_signature("legacy-sas", "task/input.txt",
                                                  permission=BlobPermissions.READ, expiry=in_an_hour())
url = svc.make_blob_url("legacy-sas", "task/input.txt", sas_token=token)
overridden = svc.generate_blob_shared_access_signature(
    "legacy-sas", "task/input.txt", permission=BlobPermissions.READ, expiry=in_an_hour(),
    content_disposition="attachment; filename=input.txt", content_type="application/x-task")
expired = svc.generate_blob_shared_access_signature(
    "legacy-sas", "task/input.txt", permission=BlobPermissions.READ,
    start=datetime.utcnow() - timedelta(hours=2), expiry=datetime.utcnow() - timedelta(hours=1))
tampered = token.replace("sp=r", "sp=rw")
print(json.dumps({
    "url": url,
    "get": http("GET", url),
    "head": http("HEAD", url),
    "overridden": http("GET", svc.make_blob_url("legacy-sas", "task/input.txt", sas_token=overridden)),
    "other_blob": http("GET", svc.make_blob_url("legacy-sas", "task/other.txt", sas_token=token)),
    "expired": http("GET", svc.make_blob_url("legacy-sas", "task/input.txt", sas_token=expired)),
    "tampered": http("GET", svc.make_blob_url("legacy-sas", "task/input.txt", sas_token=tampered)),
    "write_with_read_sas": http("PUT", url, data=b"x", headers={"x-ms-blob-type": "BlockBlob"}),
    "anonymous": http("GET", svc.make_blob_url("legacy-sas", "task/input.txt")),
}))
""",
    )
    assert result["url"].startswith(server.blob_url + "/legacy-sas/task/input.txt?")
    get = result["get"]
    assert get["status"] == 200, get
    assert get["body"] == "resource file for a task"
    assert get["headers"]["content-length"] == str(len("resource file for a task"))
    assert result["head"]["status"] == 200 and result["head"]["body"] == ""
    overridden = result["overridden"]
    assert overridden["status"] == 200, overridden
    assert overridden["headers"]["content-disposition"] == "attachment; filename=input.txt"
    assert overridden["headers"]["content-type"] == "application/x-task"
    for name in ("other_blob", "expired", "tampered"):
        response = result[name]
        assert response["status"] == 403, (name, response)
        assert response["headers"]["x-ms-error-code"] == "AuthenticationFailed", (name, response)
        assert "sig=" not in response["body"]
    denied = result["write_with_read_sas"]
    assert (
        denied["status"] == 403 and denied["headers"]["x-ms-error-code"] == "AuthorizationPermissionMismatch"
    )
    assert result["anonymous"]["status"] in (403, 404), result["anonymous"]


def test_container_sas_with_write_permission_uploads(server: LiveServer) -> None:
    result = _run(
        server,
        """
svc.create_container("legacy-output")
write = svc.generate_container_shared_access_signature("legacy-output", permission=ContainerPermissions.WRITE,
                                                       expiry=in_an_hour())
read_only = svc.generate_container_shared_access_signature("legacy-output", permission=ContainerPermissions.READ,
                                                           expiry=in_an_hour())
writer = service(sas_token=write)
writer.create_blob_from_text("legacy-output", "task-1/stdout.txt", "task output")
# A task uploading its output with a plain HTTP PUT to the container SAS URL.
put_url = "%s/legacy-output/task-1/result.bin?%s" % (URL, write)
put = http("PUT", put_url, data=b"\\x01\\x02\\x03", headers={"x-ms-blob-type": "BlockBlob",
                                                            "Content-Type": "application/octet-stream"})
reader = service(sas_token=read_only)
print(json.dumps({
    "put": {"status": put["status"], "code": put["headers"].get("x-ms-error-code")},
    "stdout": svc.get_blob_to_text("legacy-output", "task-1/stdout.txt").content,
    "result": list(svc.get_blob_to_bytes("legacy-output", "task-1/result.bin").content),
    "read_with_read_sas": reader.get_blob_to_text("legacy-output", "task-1/stdout.txt").content,
    "write_with_read_sas": error_of(reader.create_blob_from_text, "legacy-output", "x.txt", "no"),
    "read_with_write_sas": error_of(writer.get_blob_to_text, "legacy-output", "task-1/stdout.txt"),
    "other_container": error_of(writer.create_blob_from_text, "legacy-upload-elsewhere", "x.txt", "no"),
}))
""",
    )
    assert result["put"]["status"] == 201, result["put"]
    assert result["stdout"] == "task output"
    assert bytes(result["result"]) == b"\x01\x02\x03"
    assert result["read_with_read_sas"] == "task output"
    for name in ("write_with_read_sas", "read_with_write_sas"):
        assert result[name]["status"] == 403, (name, result[name])
        assert "AuthorizationPermissionMismatch" in result[name]["text"], (name, result[name])
    assert result["other_container"]["status"] == 403, result["other_container"]
    assert "AuthenticationFailed" in result["other_container"]["text"]


def test_list_blobs_prefix_delimiter_and_marker_paging(server: LiveServer) -> None:
    result = _run(
        server,
        """
svc.create_container("legacy-list")
names = ["a/1.txt", "a/2.txt", "a/3.txt", "a/sub/4.txt", "b/1.txt", "c.txt", "d"]
for i, name in enumerate(names):
    svc.create_blob_from_text("legacy-list", name, "x" * i, metadata={"index": str(i)})
pages, marker = [], None
while True:
    page = svc.list_blobs("legacy-list", num_results=2, marker=marker)
    pages.append([b.name for b in page])
    marker = page.next_marker
    if not marker:
        break
prefixed = svc.list_blobs("legacy-list", prefix="a/", num_results=2)
first = [b.name for b in prefixed]
rest = [b.name for b in svc.list_blobs("legacy-list", prefix="a/", marker=prefixed.next_marker)]
with_meta = {b.name: [b.metadata, b.properties.content_length]
             for b in svc.list_blobs("legacy-list", include=Include.METADATA)}
hierarchy = [(type(b).__name__, b.name) for b in svc.list_blobs("legacy-list", delimiter="/")]
containers = [c.name for c in svc.list_containers(prefix="legacy-list")]
print(json.dumps({
    "all": [b.name for b in svc.list_blobs("legacy-list")],
    "pages": pages, "prefixed_first": first, "prefixed_rest": rest,
    "with_meta": with_meta, "hierarchy": hierarchy, "containers": containers,
    "missing_container": error_of(lambda: list(svc.list_blobs("legacy-nope"))),
}))
""",
    )
    names = ["a/1.txt", "a/2.txt", "a/3.txt", "a/sub/4.txt", "b/1.txt", "c.txt", "d"]
    assert result["all"] == names
    assert result["pages"] == [names[0:2], names[2:4], names[4:6], names[6:7]]
    assert result["prefixed_first"] == ["a/1.txt", "a/2.txt"]
    assert result["prefixed_rest"] == ["a/3.txt", "a/sub/4.txt"]
    assert result["with_meta"]["c.txt"] == [{"index": "5"}, 5]
    assert result["hierarchy"] == [
        ["BlobPrefix", "a/"],
        ["BlobPrefix", "b/"],
        ["Blob", "c.txt"],
        ["Blob", "d"],
    ]
    assert result["containers"] == ["legacy-list"]
    assert result["missing_container"]["status"] == 404
    assert "ContainerNotFound" in result["missing_container"]["text"]


def test_delete_blob_and_container(server: LiveServer) -> None:
    result = _run(
        server,
        """
svc.create_container("legacy-delete")
svc.create_blob_from_text("legacy-delete", "gone.txt", "bye")
svc.create_blob_from_text("legacy-delete", "kept.txt", "stay")
svc.delete_blob("legacy-delete", "gone.txt")
out = {
    "gone": svc.exists("legacy-delete", "gone.txt"),
    "kept": svc.exists("legacy-delete", "kept.txt"),
    "delete_again": error_of(svc.delete_blob, "legacy-delete", "gone.txt"),
    "deleted": svc.delete_container("legacy-delete"),
}
out["container_exists"] = svc.exists("legacy-delete")
out["delete_missing"] = svc.delete_container("legacy-delete")
out["delete_missing_strict"] = error_of(svc.delete_container, "legacy-delete", fail_not_exist=True)
print(json.dumps(out))
""",
    )
    assert (result["gone"], result["kept"]) == (False, True)
    assert result["delete_again"]["status"] == 404 and "BlobNotFound" in result["delete_again"]["text"]
    assert result["deleted"] is True and result["container_exists"] is False
    assert result["delete_missing"] is False
    assert result["delete_missing_strict"]["status"] == 404
    assert "ContainerNotFound" in result["delete_missing_strict"]["text"]


def test_connection_string_with_blob_endpoint(server: LiveServer) -> None:
    result = _run(
        server,
        """
conn = "DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=%s;" % (ACCOUNT, KEY, URL)
client = BlockBlobService(connection_string=conn)
client.retry = no_retry
client.create_container("legacy-connstr")
client.create_blob_from_text("legacy-connstr", "hello.txt", "hi")
print(json.dumps({"text": client.get_blob_to_text("legacy-connstr", "hello.txt").content,
                  "deleted": client.delete_container("legacy-connstr")}))
""",
    )
    assert result == {"text": "hi", "deleted": True}


def test_wrong_account_key_is_rejected(server: LiveServer) -> None:
    result = _run(
        server,
        """
import base64
bad = BlockBlobService(account_name=ACCOUNT, account_key=base64.b64encode(b"w" * 64).decode(), custom_domain=URL)
bad.retry = no_retry
print(json.dumps({"error": error_of(bad.create_container, "legacy-badkey")}))
""",
    )
    assert result["error"]["status"] == 403 and "AuthenticationFailed" in result["error"]["text"]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def emulator_port_server(tmp_path: Path) -> Iterator[LiveServer]:
    if not _port_free(10000):
        pytest.skip("port 10000 (the emulator's) is in use; is_emulated=True cannot be checked")
    srv = LiveServer(tmp_path / "data")
    srv.blob_port = 10000
    try:
        srv.start()
    except RuntimeError as exc:
        pytest.skip(f"could not serve on port 10000: {exc}")
    yield srv
    srv.stop()


def test_is_emulated_uses_the_default_port_and_account(emulator_port_server: LiveServer) -> None:
    result = _run(
        emulator_port_server,
        """
emu = BlockBlobService(is_emulated=True)
emu.retry = no_retry
emu.create_container("legacy-emulated")
emu.create_blob_from_text("legacy-emulated", "e.txt", "emulated")
token = emu.generate_blob_shared_access_signature("legacy-emulated", "e.txt", permission=BlobPermissions.READ,
                                                  expiry=in_an_hour())
print(json.dumps({"text": emu.get_blob_to_text("legacy-emulated", "e.txt").content,
                  "url": emu.make_blob_url("legacy-emulated", "e.txt"),
                  "sas_get": http("GET", emu.make_blob_url("legacy-emulated", "e.txt", sas_token=token))["body"],
                  "deleted": emu.delete_container("legacy-emulated")}))
""",
    )
    assert result["url"] == "http://127.0.0.1:10000/devstoreaccount1/legacy-emulated/e.txt"
    assert result["text"] == "emulated" and result["sas_get"] == "emulated"
    assert result["deleted"] is True
