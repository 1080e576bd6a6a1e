from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.storage.blob import (
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    generate_container_sas,
)

from openbatch.node.upload import OutputFileError, blob_name, match_files, upload_output_files
from tests.helpers.server import LiveServer

EXPIRY = datetime.now(UTC) + timedelta(hours=2)


@pytest.fixture(scope="module")
def blobs(server: LiveServer) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(server.connection_string)


@pytest.fixture
def outputs(blobs: BlobServiceClient, request: pytest.FixtureRequest) -> ContainerClient:
    name = "out-" + request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:40].strip("-")
    container = blobs.get_container_client(name)
    container.create_container()
    return container


def _sas_url(server: LiveServer, container: str, permission: str = "rwl") -> str:
    sas = generate_container_sas(server.account, container, account_key=server.key,
                                 permission=ContainerSasPermissions.from_string(permission), expiry=EXPIRY)
    return f"{server.blob_url}/{container}?{sas}"


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    task = tmp_path / "node" / "workitems" / "job" / "job-1" / "task"
    (task / "wd" / "sub" / "deeper").mkdir(parents=True)
    (task / "stdout.txt").write_text("the output")
    (task / "stderr.txt").write_text("the errors")
    (task / "wd" / "result.txt").write_text("result")
    (task / "wd" / "sub" / "a.txt").write_text("a")
    (task / "wd" / "sub" / "deeper" / "b.txt").write_text("b")
    (task / "wd" / "sub" / "c.log").write_text("c")
    (task / "wd" / ".hidden.txt").write_text("h")
    return task


def _spec(url: str, pattern: str, path: str | None = None, condition: str = "taskCompletion",
          headers: list[dict[str, str]] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"containerUrl": url}
    if path is not None:
        container["path"] = path
    if headers is not None:
        container["uploadHeaders"] = headers
    return {"filePattern": pattern, "destination": {"container": container},
            "uploadOptions": {"uploadCondition": condition}}


def _upload(specs: list[dict[str, Any]], task_dir: Path, succeeded: bool = True, **kw: Any) -> None:
    async def go() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            await upload_output_files(client, specs, working_dir=task_dir / "wd", task_dir=task_dir,
                                      node_root=kw.pop("node_root", task_dir.parents[3]), succeeded=succeeded, **kw)

    asyncio.run(go())


def _names(container: ContainerClient) -> list[str]:
    return sorted(b.name for b in container.list_blobs())


def test_std_files_to_a_virtual_directory(server: LiveServer, outputs: ContainerClient, task_dir: Path) -> None:
    _upload([_spec(_sas_url(server, outputs.container_name), "../std*.txt", path="task1")], task_dir)
    assert _names(outputs) == ["task1/stderr.txt", "task1/stdout.txt"]
    assert outputs.download_blob("task1/stdout.txt").readall() == b"the output"
    assert "stdout.txt" in (task_dir / "fileuploadout.txt").read_text()
    assert "sig=" not in (task_dir / "fileuploadout.txt").read_text()


def test_single_file_path_is_the_blob_name(server: LiveServer, outputs: ContainerClient, task_dir: Path) -> None:
    url = _sas_url(server, outputs.container_name)
    _upload([_spec(url, "result.txt", path="results/task1.txt"), _spec(url, "sub/a.txt")], task_dir)
    assert _names(outputs) == ["a.txt", "results/task1.txt"]
    assert outputs.download_blob("results/task1.txt").readall() == b"result"


def test_recursive_globs_keep_relative_paths_and_skip_dot_files(server: LiveServer, outputs: ContainerClient,
                                                                 task_dir: Path) -> None:
    url = _sas_url(server, outputs.container_name)
    _upload([_spec(url, "**/*.txt"), _spec(url, "sub/**/*.txt", path="p"), _spec(url, "sub/?.log", path="logs")],
            task_dir)
    assert _names(outputs) == ["logs/c.log", "p/a.txt", "p/deeper/b.txt", "result.txt", "sub/a.txt",
                               "sub/deeper/b.txt"]


@pytest.mark.parametrize(
    ("succeeded", "expected"),
    [(True, ["completion.txt", "success.txt"]), (False, ["completion.txt", "failure.txt"])],
)
def test_upload_conditions(server: LiveServer, outputs: ContainerClient, task_dir: Path, succeeded: bool,
                           expected: list[str]) -> None:
    url = _sas_url(server, outputs.container_name)
    specs = [_spec(url, "result.txt", path="success.txt", condition="TaskSuccess"),
             _spec(url, "result.txt", path="failure.txt", condition="taskfailure"),
             _spec(url, "result.txt", path="completion.txt", condition="TASKCOMPLETION")]
    _upload(specs, task_dir, succeeded=succeeded)
    assert _names(outputs) == expected


def test_big_file_goes_in_blocks_with_headers(server: LiveServer, outputs: ContainerClient, task_dir: Path) -> None:
    data = os.urandom(9 * 2**20 + 17)
    (task_dir / "wd" / "big.bin").write_bytes(data)
    headers = [{"name": "Content-Type", "value": "application/x-test"},
               {"name": "x-ms-meta-origin", "value": "openbatch"},
               {"name": "Content-Length", "value": "1"}]
    url = _sas_url(server, outputs.container_name)
    _upload([_spec(url, "big.bin", headers=headers),
             _spec(url, "result.txt", headers=[{"name": "x-ms-blob-content-type", "value": "text/plain"}])], task_dir)
    blob = outputs.get_blob_client("big.bin")
    assert blob.download_blob().readall() == data
    props = blob.get_blob_properties()
    assert props.content_settings.content_type == "application/x-test"
    assert props.metadata == {"origin": "openbatch"}
    assert len(blob.get_block_list()[0]) == 3
    small = outputs.get_blob_client("result.txt").get_blob_properties()
    assert small.content_settings.content_type == "text/plain"


def test_empty_file_and_no_match(server: LiveServer, outputs: ContainerClient, task_dir: Path) -> None:
    (task_dir / "wd" / "empty.txt").write_bytes(b"")
    url = _sas_url(server, outputs.container_name)
    _upload([_spec(url, "empty.txt"), _spec(url, "missing.txt"), _spec(url, "*.none")], task_dir)
    assert _names(outputs) == ["empty.txt"]
    assert outputs.download_blob("empty.txt").readall() == b""


def test_missing_container(server: LiveServer, task_dir: Path) -> None:
    with pytest.raises(OutputFileError) as info:
        _upload([_spec(_sas_url(server, "no-such-container"), "result.txt")], task_dir)
    assert info.value.code == "FileUploadContainerNotFound"
    assert info.value.category == "usererror"
    assert "sig=" not in repr(info.value.failure_info())
    assert "FileUploadContainerNotFound" in (task_dir / "fileuploaderr.txt").read_text()


def test_read_only_sas_is_access_denied_and_others_still_upload(server: LiveServer, outputs: ContainerClient,
                                                                task_dir: Path) -> None:
    specs = [_spec(_sas_url(server, outputs.container_name, "r"), "result.txt", path="denied.txt"),
             _spec(_sas_url(server, outputs.container_name), "result.txt", path="allowed.txt")]
    with pytest.raises(OutputFileError) as info:
        _upload(specs, task_dir)
    assert info.value.code == "FileUploadAccessDenied"
    assert _names(outputs) == ["allowed.txt"]


def test_unreachable_endpoint(task_dir: Path) -> None:
    from openbatch.testing import free_port

    with pytest.raises(OutputFileError) as info:
        _upload([_spec(f"http://127.0.0.1:{free_port()}/acct/c?sig=secret", "result.txt")], task_dir)
    assert info.value.code == "FileUploadMiscError"
    assert "secret" not in repr(info.value.failure_info())


@pytest.mark.parametrize("url", ["file:///tmp/x", "http://[::1", "not a url"])
def test_container_urls_that_are_not_http_fail_cleanly(task_dir: Path, url: str) -> None:
    with pytest.raises(OutputFileError) as info:
        _upload([_spec(url, "result.txt")], task_dir)
    assert info.value.code == "FileUploadMiscError"


def test_links_out_of_the_node_are_not_uploaded(tmp_path: Path, task_dir: Path, outputs: ContainerClient,
                                               server: LiveServer) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    os.symlink(secret, task_dir / "wd" / "leak.txt")
    os.symlink(task_dir / "wd" / "result.txt", task_dir / "wd" / "inside.txt")
    os.symlink(tmp_path, task_dir / "wd" / "outdir")
    node_root = tmp_path / "node"
    found = [rel for _, rel in match_files("*.txt", task_dir / "wd", node_root)]
    assert found == ["inside.txt", "leak.txt", "result.txt"]  # names only: links are resolved when opened
    assert match_files(str(secret), task_dir / "wd", node_root) == []
    assert match_files("outdir/*.txt", task_dir / "wd", node_root) == []
    _upload([_spec(_sas_url(server, outputs.container_name), "*.txt", path="o")], task_dir)
    assert _names(outputs) == ["o/inside.txt", "o/result.txt"]
    assert outputs.get_blob_client("o/inside.txt").download_blob().readall() == b"result"
    assert "leak.txt: not uploaded: a link that leads out of the node's directory" in (
        task_dir / "fileuploaderr.txt").read_text()


def test_a_file_swapped_for_a_link_after_matching_is_not_followed(tmp_path: Path, task_dir: Path,
                                                                  outputs: ContainerClient, server: LiveServer) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    specs = [_spec(_sas_url(server, outputs.container_name), "result.txt")]
    planned = match_files("result.txt", task_dir / "wd", tmp_path / "node")
    assert [rel for _, rel in planned] == ["result.txt"]
    os.unlink(task_dir / "wd" / "result.txt")
    os.symlink(secret, task_dir / "wd" / "result.txt")  # what a leftover process does between planning and opening
    _upload(specs, task_dir)
    assert _names(outputs) == []


def test_upload_logs_are_never_written_through_links(tmp_path: Path, task_dir: Path, outputs: ContainerClient,
                                                     server: LiveServer) -> None:
    target = tmp_path / "root-file"
    target.write_text("root's")
    os.symlink(target, task_dir / "fileuploadout.txt")
    os.mkfifo(task_dir / "fileuploaderr.txt")
    _upload([_spec(_sas_url(server, outputs.container_name), "result.txt")], task_dir)
    assert target.read_text() == "root's"
    assert "result.txt" in (task_dir / "fileuploadout.txt").read_text()
    assert not (task_dir / "fileuploadout.txt").is_symlink()


@pytest.mark.skipif(os.geteuid() != 0, reason="other accounts exist for a root server only")
def test_files_the_task_account_cannot_read_are_not_uploaded(task_dir: Path, outputs: ContainerClient,
                                                             server: LiveServer) -> None:
    from openbatch.node.safefs import Owner

    (task_dir / "wd" / "result.txt").chmod(0o600)  # root's, unreadable by the account below
    _upload([_spec(_sas_url(server, outputs.container_name), "*.txt")], task_dir, owner=Owner(65534, 65534))
    assert "result.txt" not in " ".join(_names(outputs))


def test_env_vars_and_absolute_patterns(tmp_path: Path, task_dir: Path) -> None:
    from openbatch.node.upload import expand_vars

    wd = task_dir / "wd"
    assert expand_vars("$AZ_BATCH_TASK_WORKING_DIR/sub/*.txt", {"AZ_BATCH_TASK_WORKING_DIR": str(wd)}) == f"{wd}/sub/*.txt"
    assert expand_vars("${X}/a/$MISSING", {"X": "x"}) == "x/a/$MISSING"
    found = match_files(f"{wd}/sub/*.txt", wd, tmp_path)
    assert found == [(f"{wd.relative_to(tmp_path)}/sub/a.txt", "a.txt")]
    assert blob_name(None, "sub/a.txt", wild=False) == "a.txt"
    assert blob_name("dir/", "sub/a.txt", wild=True) == "dir/sub/a.txt"
