"""Fixtures the SDK tests share: a BatchClient (azure-batch 15) of the module's live server, and a
BlobServiceClient (azure-storage-blob 12) with a fresh container per test (a module may define its
own ``service`` / ``container`` with other client settings)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobServiceClient, ContainerClient

from tests.helpers.server import LiveServer


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[BatchClient]:
    c = BatchClient(server.batch_url, AzureNamedKeyCredential(server.account, server.key))
    yield c
    c.close()


@pytest.fixture(scope="module")
def service(server: LiveServer) -> BlobServiceClient:
    """Blob client of the module's server; no retries, so every answer is the server's first."""
    return BlobServiceClient.from_connection_string(server.connection_string, retry_total=0)


@pytest.fixture
def container(service: BlobServiceClient) -> Iterator[ContainerClient]:
    c = service.create_container(f"c{uuid.uuid4().hex[:16]}")
    yield c
    c.delete_container()
