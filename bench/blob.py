"""Blob throughput, openbatch vs Azurite, through azure-storage-blob 12, side by side in one run.

Both servers run at once; the repeats alternate between them, and within a repeat the small
requests alternate in blocks of 50, so machine noise hits both alike.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from azure.storage.blob import BlobServiceClient, ContainerClient

from bench import azurite
from bench.common import Report, median, openbatch_server, process_cpu, server_pid

MIB = 1024 * 1024
FIGURES = ("upload_mb_s", "download_mb_s", "put_4k_s", "get_4k_s", "range_1k_s")


@dataclass
class Sizes:
    big_mib: int = 256
    small_count: int = 500
    range_count: int = 5000  # x 3 repeats: the 15,000 sequential 1 KiB range reads of issue 10
    repeats: int = 3


SMOKE = Sizes(big_mib=4, small_count=20, range_count=20, repeats=1)


def _container(conn: str) -> ContainerClient:
    client = BlobServiceClient.from_connection_string(
        conn, max_block_size=4 * MIB, max_single_put_size=4 * MIB, max_chunk_get_size=4 * MIB,
        max_single_get_size=4 * MIB,
    )
    return client.create_container(f"bench{uuid.uuid4().hex[:12]}")


def measure_big(container: ContainerClient, payload: bytes, tag: str) -> dict[str, float]:
    """MB/s for a big upload and download (4 MiB blocks, concurrency 4)."""
    blob = container.get_blob_client(f"big-{tag}")
    t = time.perf_counter()
    blob.upload_blob(payload, overwrite=True, max_concurrency=4)
    up = len(payload) / MIB / (time.perf_counter() - t)
    t = time.perf_counter()
    data = blob.download_blob(max_concurrency=4).readall()
    down = len(data) / MIB / (time.perf_counter() - t)
    if data != payload:
        raise AssertionError("downloaded bytes differ from the upload")
    return {"upload_mb_s": up, "download_mb_s": down}


def small_operations(container: ContainerClient, payload: bytes, sizes: Sizes,
                     tag: str) -> dict[str, Callable[[int], None]]:
    """The small requests, each a function of its sequence number: sequential 1 KiB range reads
    of the big blob (what columnar readers do), 4 KiB puts, and gets of what was put."""
    big = container.get_blob_client(f"big-{tag}")
    small = payload[:4096]

    def range_read(n: int) -> None:
        big.download_blob(offset=(n * 1024) % len(payload), length=1024).readall()

    def put(n: int) -> None:
        container.upload_blob(f"small-{tag}-{n}", small, overwrite=True)

    def get(n: int) -> None:
        container.get_blob_client(f"small-{tag}-{n}").download_blob().readall()

    return {"range_1k_s": range_read, "put_4k_s": put, "get_4k_s": get}


def measure_small(targets: dict[str, dict[str, Callable[[int], None]]], pids: dict[str, int],
                  sizes: Sizes) -> dict[str, dict[str, float]]:
    """Ops/s of each small operation for each target, and the server's CPU time per operation
    (``cpu_`` + the figure's name, seconds; from /proc of the process ``pids`` names), the
    targets taking turns in blocks of ``BLOCK`` requests so that a burst of machine noise hits
    them alike. On a loaded machine ops/s of one sequential client tend to 1:1 (every request
    waits for both processes to be scheduled); CPU per operation stays what each server costs."""
    counts = {"range_1k_s": sizes.range_count, "put_4k_s": sizes.small_count, "get_4k_s": sizes.small_count}
    figures: dict[str, dict[str, float]] = {name: {} for name in targets}
    for figure, count in counts.items():
        spent = dict.fromkeys(targets, 0.0)
        cpu = {name: process_cpu(pid) for name, pid in pids.items()}  # idle while the other one works
        for first in range(0, count, BLOCK):
            for name, ops in targets.items():
                op = ops[figure]
                t = time.perf_counter()
                for n in range(first, min(first + BLOCK, count)):
                    op(n)
                spent[name] += time.perf_counter() - t
        for name in targets:
            figures[name][figure] = count / spent[name]
            figures[name]["cpu_" + figure] = (process_cpu(pids[name]) - cpu[name]) / count
    return figures


BLOCK = 50


@contextlib.contextmanager
def _targets(with_azurite: bool) -> Iterator[dict[str, tuple[str, int]]]:
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(openbatch_server())
        targets = {"openbatch": (server.connection_string, server_pid(server))}
        if with_azurite and azurite.available():
            conn, _url, pid = stack.enter_context(azurite.azurite_blob())
            targets["azurite"] = (conn, pid)
        yield targets


def run(sizes: Sizes, with_azurite: bool = True) -> Report:
    payload = os.urandom(sizes.big_mib * MIB)
    samples: dict[str, dict[str, list[float]]] = {}
    with _targets(with_azurite) as targets:
        containers = {name: _container(conn) for name, (conn, _) in targets.items()}
        pids = {name: pid for name, (_, pid) in targets.items()}
        for i in range(sizes.repeats):
            results: dict[str, dict[str, float]] = {}
            for name, container in containers.items():
                results[name] = measure_big(container, payload, str(i))
            small = measure_small({name: small_operations(c, payload, sizes, str(i))
                                   for name, c in containers.items()}, pids, sizes)
            for name in containers:
                for key, value in {**results[name], **small[name]}.items():
                    samples.setdefault(name, {}).setdefault(key, []).append(value)
        for container in containers.values():
            container.delete_container()
    medians = {name: {k: median(v) for k, v in figs.items()} for name, figs in samples.items()}
    ours, theirs = medians["openbatch"], medians.get("azurite", {})
    report = Report("blob", ["figure", "openbatch", "azurite", "ratio"])
    labels = dict(zip(FIGURES, (f"upload {sizes.big_mib} MiB (MB/s)", f"download {sizes.big_mib} MiB (MB/s)",
                                "4 KiB puts/s", "4 KiB gets/s", "1 KiB range reads/s (sequential)"), strict=True))
    for key, label in labels.items():
        other = theirs.get(key)
        report.add(label, ours[key], other if other else "-", ours[key] / other if other else "-")
    for key in ("put_4k_s", "get_4k_s", "range_1k_s"):  # server CPU per request: Azurite's over ours
        label = f"server CPU per request, {labels[key].split(' (')[0].removesuffix('/s')} (us)"
        cpu_ours, cpu_theirs = ours["cpu_" + key] * 1e6, theirs.get("cpu_" + key, 0.0) * 1e6
        report.add(label, cpu_ours, cpu_theirs if cpu_theirs else "-",
                   cpu_theirs / cpu_ours if cpu_theirs and cpu_ours else "-")
    report.details = {"samples": samples, "medians": medians, "azurite_version": azurite.AZURITE_VERSION,
                      "sizes": sizes.__dict__}
    return report
