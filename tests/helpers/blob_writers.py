"""Writers for the kill -9 tests of append blobs, page blobs and snapshots, and the checks of what
a restarted server holds afterwards.

An append blob ``log`` receives numbered blocks (each starts with its number, so the blob can be
parsed back); a page blob ``disk`` of 64 slots receives whole-slot writes, each slot filled with
(slot, generation) and written by one thread only, so generations order; snapshots of ``disk`` are
taken now and then. Whatever was acknowledged must be there after a restart; whatever is there
must be whole (a block or a slot write is there entirely or not at all).
"""

from __future__ import annotations

import random
import struct
import threading

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobServiceClient, ContainerClient

from openbatch.testing import LiveServer

SLOT = 256 << 10
SLOTS = 64
CONTAINER = "mixed"


def block_bytes(n: int) -> bytes:
    return struct.pack("<Q", n) + random.Random(n).randbytes(1024 + (n * 7919) % (600 << 10))


def slot_bytes(slot: int, gen: int) -> bytes:
    return struct.pack("<QQ", slot, gen) * (SLOT // 16)


def _client(server: LiveServer) -> ContainerClient:
    return BlobServiceClient.from_connection_string(
        server.connection_string, retry_total=0, connection_timeout=5, read_timeout=30).get_container_client(CONTAINER)


class MixedWriters:
    """Appends, page writes and snapshots until ``stop``. With ``up`` (a crash suite's Crasher.up),
    a cut request is followed by waiting for the server to be up again; without, it ends the thread."""

    def __init__(self, server: LiveServer, up: threading.Event | None = None) -> None:
        self.server, self.up = server, up
        self.stop = threading.Event()
        self.appended: set[int] = set()  # numbers of acknowledged blocks
        self.pages: dict[int, int] = {}  # slot -> last acknowledged generation
        self.snapshots: list[str] = []
        self.threads = [threading.Thread(target=self._append, daemon=True),
                        threading.Thread(target=self._snapshot, daemon=True),
                        *(threading.Thread(target=self._pages, args=(half,), daemon=True) for half in (0, 1))]

    def create(self) -> None:
        container = BlobServiceClient.from_connection_string(self.server.connection_string).create_container(CONTAINER)
        container.get_blob_client("log").create_append_blob()
        container.get_blob_client("disk").create_page_blob(SLOTS * SLOT)

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(120)
        assert not any(t.is_alive() for t in self.threads), "a writer hung"

    def _go_on(self) -> bool:
        """After a cut request: wait for the server (crash suites) or give up."""
        if self.up is None:
            return False
        self.up.wait(120)
        return not self.stop.is_set()

    def _append(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                _client(self.server).get_blob_client("log").append_block(block_bytes(n))
            except AzureError:
                if not self._go_on():
                    return
                continue
            self.appended.add(n)

    def _pages(self, half: int) -> None:
        rng, gen = random.Random(half), 0
        while not self.stop.is_set():
            slot, gen = rng.randrange(SLOTS // 2) * 2 + half, gen + 1
            try:
                _client(self.server).get_blob_client("disk").upload_page(slot_bytes(slot, gen), offset=slot * SLOT,
                                                                         length=SLOT)
            except AzureError:
                if not self._go_on():
                    return
                continue
            self.pages[slot] = max(self.pages.get(slot, 0), gen)

    def _snapshot(self) -> None:
        while not self.stop.wait(0.1):
            try:
                self.snapshots.append(_client(self.server).get_blob_client("disk").create_snapshot()["snapshot"])
            except AzureError:
                if not self._go_on():
                    return

    def verify(self) -> dict[str, int]:
        """Check the restarted server against what was acknowledged; return the counts checked."""
        container = _client(self.server)
        found = check_log(container.download_blob("log").readall(), self.appended)
        check_slots(container.download_blob("disk").readall(), self.pages)
        listed = {b.snapshot for b in container.list_blobs(include=["snapshots"]) if b.snapshot}
        missing = set(self.snapshots) - listed
        assert not missing, f"acknowledged snapshots lost: {sorted(missing)[:3]}"
        for snap in listed:
            check_slots(container.get_blob_client("disk", snapshot=snap).download_blob().readall(), {})
        return {"blocks_acknowledged": len(self.appended), "blocks_found": found,
                "page_writes_acknowledged": len(self.pages), "snapshots": len(listed)}


def check_log(data: bytes, acknowledged: set[int]) -> int:
    """The append blob is whole blocks in increasing order, every acknowledged one among them."""
    offset, last, seen = 0, 0, set()
    while offset < len(data):
        (n,) = struct.unpack("<Q", data[offset:offset + 8])
        block = block_bytes(n)
        assert n > last and data[offset:offset + len(block)] == block, f"no whole block {n} at {offset}"
        seen.add(n)
        offset, last = offset + len(block), n
    lost = acknowledged - seen
    assert not lost, f"acknowledged blocks lost: {sorted(lost)[:5]}"
    return len(seen)


def check_slots(data: bytes, at_least: dict[int, int]) -> None:
    """Every slot holds zeros or the whole bytes of one generation, never less than acknowledged."""
    for slot in range(SLOTS):
        chunk = data[slot * SLOT:(slot + 1) * SLOT]
        if chunk == bytes(SLOT):
            assert slot not in at_least, f"slot {slot}: an acknowledged page write was lost"
            continue
        _, gen = struct.unpack("<QQ", chunk[:16])
        assert chunk == slot_bytes(slot, gen), f"slot {slot} holds bytes no single write wrote"
        assert gen >= at_least.get(slot, 0), f"slot {slot} went back to an older write"
