"""fsspec/adlfs (and pandas through it) appending to files, which Azure stores as append blobs."""

from __future__ import annotations

import adlfs
import pandas as pd
import pytest

from tests.helpers.server import LiveServer


@pytest.fixture(scope="module")
def fs(server: LiveServer) -> adlfs.AzureBlobFileSystem:
    azure = adlfs.AzureBlobFileSystem(connection_string=server.connection_string)
    azure.mkdir("appends")
    return azure


def test_a_file_is_appended_to(fs: adlfs.AzureBlobFileSystem) -> None:
    for line in (b"one\n", b"two\n", b"three\n"):
        with fs.open("appends/log.txt", "ab") as out:
            out.write(line)
    assert fs.cat("appends/log.txt") == b"one\ntwo\nthree\n"


def test_pandas_appends_rows_to_a_csv(server: LiveServer) -> None:
    # Appending makes an append blob (a CSV first written with mode "w" is a block blob, which
    # Azure refuses to append to: 409 InvalidBlobType, as here).
    options = {"connection_string": server.connection_string}
    pd.DataFrame({"a": [1], "b": ["x"]}).to_csv("abfs://appends/t.csv", mode="a", index=False, storage_options=options)
    pd.DataFrame({"a": [2], "b": ["y"]}).to_csv("abfs://appends/t.csv", mode="a", header=False, index=False,
                                                storage_options=options)
    frame = pd.read_csv("abfs://appends/t.csv", storage_options=options)
    assert frame.to_dict("list") == {"a": [1, 2], "b": ["x", "y"]}
