"""Rehydration from the Archive tier through azure-storage-blob 12 on a server whose clock the tests
move: Set Blob Tier to an online tier answers 202 and leaves the blob Archive, reporting
rehydrate-pending-to-{tier} and its priority, until the service clock passes the rehydration time
(Standard: 15 hours, High: 1 hour, Azure's figures for blobs under 10 GB); it cannot be cancelled or
redirected (409 BlobBeingRehydrated), only raised from Standard to High. Also through Blob Batch."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import (
    BlobClient,
    ContainerClient,
    RehydratePriority,
    StandardBlobTier,
)

from tests.blob.raw import request
from tests.helpers.server import LiveServer

TEST_CLOCK = True
HOUR = 3600


def _archived(container: ContainerClient, name: str) -> BlobClient:
    blob = container.upload_blob(name, b"cold bytes")
    blob.set_standard_blob_tier(StandardBlobTier.ARCHIVE)
    return blob


def _state(blob: BlobClient) -> tuple[str | None, str | None, str | None]:
    props = blob.get_blob_properties()
    return props.blob_tier, props.archive_status, props.rehydrate_priority


def _code(call: object, *args: object, **kwargs: object) -> tuple[int | None, str | None]:
    assert callable(call)
    with pytest.raises(HttpResponseError) as e:
        call(*args, **kwargs)
    return e.value.status_code, e.value.error_code


def test_standard_rehydration_takes_hours(server: LiveServer, container: ContainerClient) -> None:
    blob = _archived(container, "standard")
    r = request(server, "PUT", f"/{container.container_name}/standard", query="comp=tier",
                headers={"x-ms-access-tier": "Hot"})
    assert r.status == 202
    assert _state(blob) == ("Archive", "rehydrate-pending-to-hot", "Standard")
    listed = next(iter(container.list_blobs()))
    assert (listed.blob_tier, listed.archive_status, listed.rehydrate_priority) == (
        "Archive", "rehydrate-pending-to-hot", "Standard")
    assert _code(blob.download_blob) == (409, "BlobArchived")
    server.advance_clock(14 * HOUR)
    assert _state(blob)[1] == "rehydrate-pending-to-hot"
    server.advance_clock(HOUR)
    props = blob.get_blob_properties()
    assert (props.blob_tier, props.archive_status, props.rehydrate_priority) == ("Hot", None, None)
    assert props.blob_tier_change_time is not None
    assert blob.download_blob().readall() == b"cold bytes"
    assert request(server, "PUT", f"/{container.container_name}/standard", query="comp=tier",
                   headers={"x-ms-access-tier": "Cool"}).status == 200  # online to online: at once


def test_high_priority_and_raising_it(server: LiveServer, container: ContainerClient) -> None:
    fast = _archived(container, "fast")
    fast.set_standard_blob_tier(StandardBlobTier.COOL, rehydrate_priority=RehydratePriority.HIGH)
    assert _state(fast) == ("Archive", "rehydrate-pending-to-cool", "High")
    raised = _archived(container, "raised")
    raised.set_standard_blob_tier(StandardBlobTier.HOT)
    raised.set_standard_blob_tier(StandardBlobTier.HOT, rehydrate_priority=RehydratePriority.HIGH)
    assert _state(raised) == ("Archive", "rehydrate-pending-to-hot", "High")
    assert _code(raised.set_standard_blob_tier, StandardBlobTier.HOT, rehydrate_priority=RehydratePriority.STANDARD) \
        == (409, "BlobBeingRehydrated")
    assert _code(raised.set_standard_blob_tier, StandardBlobTier.COOL) == (409, "BlobBeingRehydrated")
    assert _code(raised.set_standard_blob_tier, StandardBlobTier.ARCHIVE) == (409, "BlobBeingRehydrated")
    server.advance_clock(HOUR)
    assert _state(fast) == ("Cool", None, None) and _state(raised) == ("Hot", None, None)
    r = request(server, "PUT", f"/{container.container_name}/fast", query="comp=tier",
                headers={"x-ms-access-tier": "Hot", "x-ms-rehydrate-priority": "Urgent"})
    assert (r.status, r.code) == (400, "InvalidHeaderValue")


def test_rehydration_through_a_batch(server: LiveServer, container: ContainerClient) -> None:
    blobs = [_archived(container, f"batch{i}") for i in range(3)]
    parts = list(container.set_standard_blob_tier_blobs(StandardBlobTier.HOT, *(b.blob_name for b in blobs),
                                                        rehydrate_priority=RehydratePriority.HIGH))
    assert [p.status_code for p in parts] == [202, 202, 202]
    assert {_state(b) for b in blobs} == {("Archive", "rehydrate-pending-to-hot", "High")}
    server.advance_clock(HOUR)
    assert [b.download_blob().readall() for b in blobs] == [b"cold bytes"] * 3


def test_a_rehydration_survives_a_restart(server: LiveServer, container: ContainerClient) -> None:
    blob = _archived(container, "durable")
    blob.set_standard_blob_tier(StandardBlobTier.HOT, rehydrate_priority=RehydratePriority.HIGH)
    server.restart()
    assert _state(blob) == ("Archive", "rehydrate-pending-to-hot", "High")
    server.advance_clock(HOUR)
    assert _state(blob) == ("Hot", None, None)
