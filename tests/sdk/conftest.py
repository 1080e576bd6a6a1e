"""Fixtures the SDK tests share: a BatchClient (azure-batch 15) of the module's live server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential

from tests.helpers.server import LiveServer


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[BatchClient]:
    c = BatchClient(server.batch_url, AzureNamedKeyCredential(server.account, server.key))
    yield c
    c.close()
