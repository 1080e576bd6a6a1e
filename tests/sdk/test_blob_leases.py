"""Blob and container leases through azure-storage-blob 12's BlobLeaseClient, against a live server
whose clock the tests move (lease expiry and break periods run on the service clock).

Expected outcomes are Azure's: the "Lease Blob" / "Lease Container" REST reference (lease states,
lease-time, break rules) and the outcomes Azure's own storage client tests assert per lease state
(acquire/renew/change/release/break from available, leased, expired, breaking and broken; writes
and reads with no, the right and a wrong lease id).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobLeaseClient, BlobServiceClient, ContainerClient

from tests.blob.raw import request
from tests.helpers.server import LiveServer

TEST_CLOCK = True  # lease expiry and break periods run on the service clock the tests move


@pytest.fixture
def container(service: BlobServiceClient) -> Iterator[ContainerClient]:
    c = service.create_container(f"l{uuid.uuid4().hex[:16]}")
    yield c
    for lease_state in ("leased", "breaking"):
        if c.get_container_properties().lease.state == lease_state:
            BlobLeaseClient(c).break_lease(lease_break_period=0)
    c.delete_container()


@pytest.fixture
def blob(container: ContainerClient) -> BlobClient:
    return container.upload_blob("leased.txt", b"original")


def _code(call: object, *args: object, **kwargs: object) -> tuple[int | None, str | None]:
    assert callable(call)
    with pytest.raises(HttpResponseError) as e:
        call(*args, **kwargs)
    return e.value.status_code, e.value.error_code


def _lease(blob: BlobClient | ContainerClient) -> tuple[str, str, str | None]:
    props = blob.get_container_properties() if isinstance(blob, ContainerClient) else blob.get_blob_properties()
    return props.lease.status, props.lease.state, props.lease.duration


def test_a_fixed_lease_locks_writes_until_it_expires(server: LiveServer, blob: BlobClient) -> None:
    lease = blob.acquire_lease(lease_duration=15)
    assert _lease(blob) == ("locked", "leased", "fixed")
    assert _code(blob.upload_blob, b"x", overwrite=True) == (412, "LeaseIdMissing")
    assert _code(blob.set_blob_metadata, {"k": "v"}) == (412, "LeaseIdMissing")
    assert _code(blob.delete_blob) == (412, "LeaseIdMissing")
    other = str(uuid.uuid4())
    assert _code(blob.set_blob_metadata, {"k": "v"}, lease=other) == (412, "LeaseIdMismatchWithBlobOperation")
    assert _code(blob.download_blob, lease=other) == (412, "LeaseIdMismatchWithBlobOperation")
    blob.set_blob_metadata({"k": "v"}, lease=lease)
    blob.upload_blob(b"rewritten", overwrite=True, lease=lease)
    assert blob.download_blob().readall() == b"rewritten"  # reads need no lease
    assert blob.download_blob(lease=lease).readall() == b"rewritten"
    assert _lease(blob) == ("locked", "leased", "fixed")  # overwriting keeps the lease

    server.advance_clock(16)
    assert _lease(blob) == ("unlocked", "expired", None)
    assert _code(blob.download_blob, lease=lease.id) == (412, "LeaseNotPresentWithBlobOperation")
    blob.set_blob_metadata({"after": "expiry"})  # no lease needed any more ...
    assert _code(lease.renew) == (409, "LeaseIdMismatchWithLeaseOperation")  # ... and the write ended it
    assert _lease(blob) == ("unlocked", "available", None)


def test_an_expired_lease_can_be_renewed_until_the_blob_is_written(server: LiveServer, blob: BlobClient) -> None:
    lease = blob.acquire_lease(lease_duration=20)
    server.advance_clock(21)
    blob.download_blob().readall()
    lease.renew()
    assert _lease(blob) == ("locked", "leased", "fixed")
    server.advance_clock(19)
    assert _lease(blob)[1] == "leased"  # the renewal restarted the 20 seconds
    lease.release()
    assert _lease(blob) == ("unlocked", "available", None)


def test_infinite_lease_change_release_and_acquire(server: LiveServer, blob: BlobClient) -> None:
    proposed = str(uuid.uuid4())
    lease = blob.acquire_lease(lease_id=proposed)
    assert lease.id == proposed
    assert _lease(blob) == ("locked", "leased", "infinite")
    server.advance_clock(3600)
    assert _lease(blob)[1] == "leased"
    blob.acquire_lease(lease_id=proposed)  # the holder may acquire again
    assert _code(blob.acquire_lease) == (409, "LeaseAlreadyPresent")
    new_id = str(uuid.uuid4())
    lease.change(new_id)
    assert lease.id == new_id
    assert _code(blob.delete_blob, lease=proposed) == (412, "LeaseIdMismatchWithBlobOperation")
    stale = BlobLeaseClient(blob, lease_id=proposed)
    assert _code(stale.release) == (409, "LeaseIdMismatchWithLeaseOperation")
    lease.release()
    released = BlobLeaseClient(blob, lease_id=new_id)
    assert _code(released.change, str(uuid.uuid4())) == (409, "LeaseNotPresentWithLeaseOperation")
    assert _code(released.renew) == (409, "LeaseIdMismatchWithLeaseOperation")
    assert _code(released.break_lease) == (409, "LeaseNotPresentWithLeaseOperation")
    again = blob.acquire_lease(lease_duration=60)
    blob.delete_blob(lease=again)
    assert not blob.exists()


def test_a_break_period_keeps_the_lease_until_it_ends(server: LiveServer, blob: BlobClient) -> None:
    lease = blob.acquire_lease()
    assert lease.break_lease(lease_break_period=10) == 10
    assert _lease(blob) == ("locked", "breaking", None)
    assert _code(blob.set_blob_metadata, {"k": "v"}) == (412, "LeaseIdMissing")  # still locked
    blob.set_blob_metadata({"k": "v"}, lease=lease)
    assert _code(blob.acquire_lease, lease_id=lease.id) == (409, "LeaseIsBreakingAndCannotBeAcquired")
    assert _code(blob.acquire_lease) == (409, "LeaseAlreadyPresent")
    assert _code(lease.renew) == (409, "LeaseIsBrokenAndCannotBeRenewed")
    assert _code(lease.change, str(uuid.uuid4())) == (409, "LeaseIsBreakingAndCannotBeChanged")
    assert lease.break_lease(lease_break_period=30) == 10  # a later break cannot lengthen it
    server.advance_clock(10)
    assert _lease(blob) == ("unlocked", "broken", None)
    assert _code(lease.renew) == (409, "LeaseIsBrokenAndCannotBeRenewed")
    assert lease.break_lease() == 0
    blob.set_blob_metadata({"k": "w"})  # no lease needed
    fresh = blob.acquire_lease(lease_duration=15)
    fresh.release()


def test_breaking_a_fixed_lease_waits_for_its_expiry(server: LiveServer, blob: BlobClient) -> None:
    lease = blob.acquire_lease(lease_duration=60)
    server.advance_clock(20)
    assert lease.break_lease() == 40
    assert lease.break_lease(lease_break_period=5) == 5
    lease.release()  # a breaking lease can be released by its holder
    assert _lease(blob) == ("unlocked", "available", None)
    infinite = blob.acquire_lease()
    assert infinite.break_lease() == 0  # an infinite lease breaks at once
    assert _lease(blob)[1] == "broken"


def test_new_blobs_and_blocks_and_copies_respect_the_lease(container: ContainerClient, blob: BlobClient) -> None:
    lease = blob.acquire_lease()
    assert _code(blob.stage_block, "YmxvY2s=", b"data") == (412, "LeaseIdMissing")
    blob.stage_block("YmxvY2s=", b"data", lease=lease)
    assert _code(blob.commit_block_list, ["YmxvY2s="]) == (412, "LeaseIdMissing")
    blob.commit_block_list(["YmxvY2s="], lease=lease)
    assert blob.download_blob().readall() == b"data"
    missing = container.get_blob_client("never-written")
    assert _code(missing.upload_blob, b"x", lease=lease) == (412, "LeaseNotPresentWithBlobOperation")
    assert not missing.exists()
    target = container.get_blob_client("copy-target")
    assert _code(target.start_copy_from_url, blob.url, destination_lease=lease) == (
        412, "LeaseNotPresentWithBlobOperation")
    target.start_copy_from_url(blob.url, source_lease=lease)
    assert _code(target.start_copy_from_url, blob.url, source_lease=str(uuid.uuid4())) == (
        412, "LeaseIdMismatchWithBlobOperation")
    assert _code(blob.set_standard_blob_tier, "Cool") == (412, "LeaseIdMissing")
    blob.set_standard_blob_tier("Cool", lease=lease)
    lease.release()


def test_leases_show_in_listings(container: ContainerClient, blob: BlobClient, service: BlobServiceClient) -> None:
    container.upload_blob("free.txt", b"x")
    blob.acquire_lease(lease_duration=30)
    got = {b.name: (b.lease.status, b.lease.state, b.lease.duration) for b in container.list_blobs()}
    assert got == {"free.txt": ("unlocked", "available", None), "leased.txt": ("locked", "leased", "fixed")}
    BlobLeaseClient(container).acquire()
    listed = next(c for c in service.list_containers(name_starts_with=container.container_name))
    assert (listed.lease.status, listed.lease.state, listed.lease.duration) == ("locked", "leased", "infinite")


def test_container_leases(server: LiveServer, service: BlobServiceClient) -> None:
    c = service.create_container(f"l{uuid.uuid4().hex[:16]}")
    lease = c.acquire_lease(lease_duration=15)
    assert _lease(c) == ("locked", "leased", "fixed")
    assert _code(c.delete_container) == (412, "LeaseIdMissing")
    other = str(uuid.uuid4())
    assert _code(c.set_container_metadata, {"k": "v"}, lease=other) == (412, "LeaseIdMismatchWithContainerOperation")
    c.set_container_metadata({"k": "v"})  # a container lease does not lock metadata
    c.set_container_metadata({"k": "w"}, lease=lease)
    assert c.get_container_properties(lease=lease).metadata == {"k": "w"}
    assert _code(c.get_container_access_policy, lease=other) == (412, "LeaseIdMismatchWithContainerOperation")
    server.advance_clock(15)
    assert _lease(c) == ("unlocked", "expired", None)
    assert _code(c.get_container_properties, lease=lease) == (412, "LeaseNotPresentWithContainerOperation")
    lease.renew()
    assert _code(c.delete_container, lease=other) == (412, "LeaseIdMismatchWithContainerOperation")
    c.delete_container(lease=lease)
    with pytest.raises(ResourceNotFoundError):
        c.get_container_properties()


def test_bad_lease_requests_are_refused(server: LiveServer, container: ContainerClient, blob: BlobClient) -> None:
    path = f"/{container.container_name}/leased.txt"
    for headers in ({"x-ms-lease-action": "acquire", "x-ms-lease-duration": "14"},
                    {"x-ms-lease-action": "acquire", "x-ms-lease-duration": "61"},
                    {"x-ms-lease-action": "acquire", "x-ms-lease-duration": "-1", "x-ms-proposed-lease-id": "nope"},
                    {"x-ms-lease-action": "break", "x-ms-lease-break-period": "61"},
                    {"x-ms-lease-action": "steal"}):
        r = request(server, "PUT", path, query="comp=lease", headers=headers)
        assert (r.status, r.code) == (400, "InvalidHeaderValue"), headers
    for headers, missing in (({}, "x-ms-lease-action"), ({"x-ms-lease-action": "acquire"}, "x-ms-lease-duration"),
                             ({"x-ms-lease-action": "renew"}, "x-ms-lease-id"),
                             ({"x-ms-lease-action": "change", "x-ms-lease-id": str(uuid.uuid4())},
                              "x-ms-proposed-lease-id")):
        r = request(server, "PUT", path, query="comp=lease", headers=headers)
        assert (r.status, r.code) == (400, "MissingRequiredHeader") and missing.encode() in r.body
    r = request(server, "PUT", path, query="comp=metadata", headers={"x-ms-lease-id": "not-a-guid"})
    assert (r.status, r.code) == (400, "InvalidHeaderValue")
    with pytest.raises(ResourceNotFoundError):
        container.get_blob_client("absent").acquire_lease()
    assert _lease(blob) == ("unlocked", "available", None)


def test_a_lease_survives_a_restart(server: LiveServer, service: BlobServiceClient) -> None:
    c = service.create_container(f"l{uuid.uuid4().hex[:16]}")
    b = c.upload_blob("kept.txt", b"x")
    lease = b.acquire_lease()
    server.restart()
    assert _lease(b) == ("locked", "leased", "infinite")
    with pytest.raises(ResourceExistsError) as e:
        b.acquire_lease()
    assert e.value.error_code == "LeaseAlreadyPresent"
    b.delete_blob(lease=lease)
    c.delete_container()
