"""pyarrow's AzureFileSystem (Azure's C++ SDK) against openbatch's Blob endpoint, as a data user
points it at Azure: files, directories, and datasets rewritten partition by partition."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from tests.helpers.server import LiveServer


@pytest.fixture(scope="module")
def fs(server: LiveServer) -> pafs.AzureFileSystem:
    authority = f"127.0.0.1:{server.blob_port}"
    azure = pafs.AzureFileSystem(account_name=server.account, account_key=server.key,
                                 blob_storage_authority=authority, blob_storage_scheme="http",
                                 dfs_storage_authority=authority, dfs_storage_scheme="http")
    azure.create_dir("tables")
    return azure


def _write(fs: pafs.AzureFileSystem, path: str, data: bytes) -> None:
    with fs.open_output_stream(path) as out:
        out.write(data)


def test_files_are_written_read_and_deleted(fs: pafs.AzureFileSystem) -> None:
    _write(fs, "tables/a.txt", b"hello")
    assert fs.get_file_info("tables/a.txt").size == 5
    with fs.open_input_stream("tables/a.txt") as src:
        assert src.read() == b"hello"
    fs.delete_file("tables/a.txt")
    assert fs.get_file_info("tables/a.txt").type == pafs.FileType.NotFound


def test_a_directory_is_emptied(fs: pafs.AzureFileSystem) -> None:
    for name in ("x.bin", "y.bin", "deeper/z.bin"):
        _write(fs, f"tables/dir/{name}", b"x" * 10)
    fs.delete_dir_contents("tables/dir")
    assert fs.get_file_info(pafs.FileSelector("tables/dir", allow_not_found=True, recursive=True)) == []


def test_a_partitioned_dataset_is_rewritten_in_place(fs: pafs.AzureFileSystem) -> None:
    first = pa.table({"k": [1, 2, 3], "v": ["a", "b", "c"]})
    second = pa.table({"k": [2, 3], "v": ["B", "C"]})
    for table in (first, second):
        ds.write_dataset(table, "tables/ds", filesystem=fs, format="parquet", partitioning=["k"],
                         existing_data_behavior="delete_matching")
    result = ds.dataset("tables/ds", filesystem=fs, format="parquet", partitioning=["k"]).to_table()
    assert sorted(zip(result["k"].to_pylist(), result["v"].to_pylist(), strict=True)) == [
        (1, "a"), (2, "B"), (3, "C")]
