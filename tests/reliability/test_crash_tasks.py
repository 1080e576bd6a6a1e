"""kill -9 at random moments while a big job's tasks are being added and run, then restart.

Each task appends its id to one file (``>>``: O_APPEND, one short line, atomic), so real runs are
counted. After the last restart every task must complete within a bound (none stuck), none may
be missing (none lost), each ran at least once and at most as often as the API says it may have:
``1 + retryCount + requeueCount`` (a run cut short by a crash is requeued, its requeueCount
grows). Every 20th task exits 3 with ``maxTaskRetryCount`` 1, so retries cross the crashes too.
The client re-sends a task collection whose call the kill cut off, as an SDK user would
(``TaskExists`` then means "acknowledged before the crash").

Kill points (seeded: ``OPENBATCH_CRASH_SEED`` replays a run): while tasks are being added, while
they run (early and late), and right after a restart, during recovery. After each kill the
spawner helpers of the killed server must be gone once the new server is up.

Default: 2,000 tasks, 4 kills. ``-m slow``: 10,000 tasks, 7 kills.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from openbatch.testing import LiveServer
from tests.helpers.waiting import wait_for
from tests.reliability import report
from tests.reliability.crash import Crasher, crash_server, seed, tracebacks
from tests.reliability.wire import batch_request

IMAGE = {"imageReference": {"publisher": "canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts"},
         "nodeAgentSKUId": "batch.node.ubuntu 22.04"}
CHUNK = 100
ADDERS = 4
FAIL_EVERY = 20


class Adder:
    """Adds the tasks in chunks of 100 from a few threads; a chunk whose call fails (the server was
    killed) is re-sent once the server is back. 5xx answers are collected, never retried."""

    def __init__(self, server: LiveServer, crasher: Crasher, specs: list[dict[str, Any]]) -> None:
        self.server = server
        self.crasher = crasher
        self.chunks = [specs[i:i + CHUNK] for i in range(0, len(specs), CHUNK)]
        self.next = 0
        self.acked = 0
        self.resent = 0
        self.server_errors: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(ADDERS)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self, timeout: float) -> None:
        for t in self.threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self.threads), "adding the tasks did not finish"

    def _take(self) -> list[dict[str, Any]] | None:
        with self.lock:
            if self.next >= len(self.chunks):
                return None
            self.next += 1
            return self.chunks[self.next - 1]

    def _run(self) -> None:
        while (chunk := self._take()) is not None:
            while not self._add(chunk):
                self.resent += 1
                self.crasher.up.wait(120)
                time.sleep(0.05)

    def _add(self, chunk: list[dict[str, Any]]) -> bool:
        try:
            r = batch_request(self.server, "POST", "/jobs/crash/addtaskcollection", body={"value": chunk},
                              timeout=60)
        except (OSError, http.client.HTTPException):  # cut by a kill: refused, reset, or half an answer
            return False
        if r.status >= 500:
            self.server_errors.append(f"addtaskcollection -> {r!r}")
            return False
        assert r.status == 200, r
        results = r.json()["value"]
        ok = [x for x in results if x.get("status") == "success"
              or (x.get("error") or {}).get("code") == "TaskExists"]
        assert len(ok) == len(chunk), results
        with self.lock:
            self.acked += len(chunk)
        return True


def _specs(n: int, runs: Path) -> list[dict[str, Any]]:
    specs = []
    for i in range(n):
        task_id = f"t{i:05d}"
        if i % FAIL_EVERY == FAIL_EVERY - 1:
            specs.append({"id": task_id, "commandLine": f"/bin/sh -c 'echo $AZ_BATCH_TASK_ID >> {runs}; exit 3'",
                          "constraints": {"maxTaskRetryCount": 1}})
        else:
            specs.append({"id": task_id, "commandLine": f"/bin/sh -c 'echo $AZ_BATCH_TASK_ID >> {runs}'"})
    return specs


def _lines(runs: Path) -> int:
    try:
        with open(runs, "rb") as fh:
            return fh.read().count(b"\n")
    except OSError:
        return 0


def _all_tasks(server: LiveServer) -> dict[str, dict[str, Any]]:
    tasks: dict[str, dict[str, Any]] = {}
    query = "maxresults=1000&$select=id,state,executionInfo"
    while True:
        r = batch_request(server, "GET", "/jobs/crash/tasks", query=query, timeout=60)
        assert r.status == 200, r
        page = r.json()
        tasks.update({t["id"]: t for t in page["value"]})
        link = page.get("odata.nextLink")
        if not link:
            return tasks
        token = link.split("$skiptoken=", 1)[1].split("&", 1)[0]
        query = f"maxresults=1000&$select=id,state,executionInfo&$skiptoken={token}"


def _completed(server: LiveServer, n: int) -> bool:
    r = batch_request(server, "GET", "/jobs/crash/taskcounts", timeout=60)
    return r.status == 200 and r.json()["taskCounts"]["completed"] == n


def _check(tasks: dict[str, dict[str, Any]], expected: set[str], runs: Counter[str]) -> dict[str, Any]:
    """Every task there, completed, run as often as its counts allow; returns the figures."""
    missing = sorted(expected - set(tasks))
    assert not missing, f"{len(missing)} tasks lost: {missing[:10]}"
    assert set(tasks) == expected, sorted(set(tasks) - expected)[:10]
    never_ran = sorted(t for t in expected if runs[t] == 0)
    assert not never_ran, f"{len(never_ran)} tasks never ran: {never_ran[:10]}"
    overrun, wrong = [], []
    requeued = extra = 0
    for task_id, task in tasks.items():
        info = task.get("executionInfo") or {}
        retries, requeues = int(info.get("retryCount", 0)), int(info.get("requeueCount", 0))
        requeued += requeues > 0
        extra += max(0, runs[task_id] - 1 - retries)
        if runs[task_id] > 1 + retries + requeues:
            overrun.append((task_id, runs[task_id], retries, requeues))
        fails = int(task_id[1:]) % FAIL_EVERY == FAIL_EVERY - 1
        result = "failure" if fails else "success"
        if task["state"] != "completed" or info.get("result") != result or (fails and (
                retries != 1 or runs[task_id] < 2)):
            wrong.append((task_id, task["state"], info.get("result"), retries, requeues, runs[task_id]))
    assert not overrun, f"{len(overrun)} tasks ran more often than retries + requeues allow: {overrun[:10]}"
    assert not wrong, f"{len(wrong)} tasks ended wrongly (id, state, result, retries, requeues, runs): {wrong[:10]}"
    return {"tasks_requeued": requeued, "runs_repeated_after_a_crash": extra}


def _wait_lines(runs: Path, target: int, timeout: float) -> None:
    wait_for(lambda: _lines(runs) >= target, f"{target} task runs", timeout=timeout)


def run_crash_job(n: int, running_kills: int, done_within: float) -> dict[str, Any]:
    rng_seed = seed()
    rng = random.Random(rng_seed)
    with crash_server() as server:
        scratch = server.data_dir.parent / "scratch"
        scratch.mkdir()
        scratch.chmod(0o1777)
        runs = scratch / "runs"
        runs.touch()
        runs.chmod(0o666)
        r = batch_request(server, "POST", "/pools", body={
            "id": "crash", "vmSize": "standard_d2s_v3", "virtualMachineConfiguration": IMAGE,
            "targetDedicatedNodes": 2, "taskSlotsPerNode": 8})
        assert r.status == 201, r
        r = batch_request(server, "POST", "/jobs", body={"id": "crash", "poolInfo": {"poolId": "crash"}})
        assert r.status == 201, r
        crasher = Crasher(server)
        adder = Adder(server, crasher, _specs(n, runs))
        started = time.monotonic()
        try:
            adder.start()
            # 1: while tasks are being added
            at = int(n * rng.uniform(0.2, 0.6))
            wait_for(lambda: adder.acked >= at, f"{at} tasks acknowledged", timeout=120)
            crasher.kill_and_restart(f"adding, {adder.acked} of {n} tasks acknowledged")
            # 2: right after a restart, during recovery
            time.sleep(rng.uniform(0.0, 0.5))
            crasher.kill_and_restart("recovering, just after a restart")
            adder.join(300)
            # 3..: while tasks run, at random points between 10% and 90% of the runs
            for point in sorted(rng.uniform(0.1, 0.9) for _ in range(running_kills)):
                _wait_lines(runs, int(n * point), timeout=done_within)
                crasher.kill_and_restart(f"running, {_lines(runs)} runs of {n} tasks logged")
            wait_for(lambda: _completed(server, n), f"all {n} tasks to complete after the last restart",
                     timeout=done_within)
            elapsed = time.monotonic() - started
            runs_by_task = Counter(runs.read_text().split())
            figures = _check(_all_tasks(server), {s["id"] for s in _specs(n, runs)}, runs_by_task)
        finally:
            crasher.up.set()
        assert not adder.server_errors, adder.server_errors[:5]
        left = [k for k in crasher.kills if k["helpers_left_after_restart"] or k["task_processes_left_after_restart"]]
        figures.update(
            seed=rng_seed, tasks=n, kills=crasher.kills, seconds=round(elapsed, 1), runs_logged=sum(runs_by_task.values()),
            collections_resent=adder.resent, lost=0, over_allowed_runs=0, stuck=0,
            helper_kills_outlived=sum(k["helpers_outlived_kill_5s"] for k in crasher.kills),
        )
        assert not left, f"helpers or task processes of a killed server still ran after the restart: {left}"
        server_errors, helper_errors = tracebacks(server)
        assert not server_errors, server_errors[:3]
        figures["spawner_helper_tracebacks"] = len(helper_errors)
        assert not helper_errors, helper_errors[:3]  # a helper whose server was killed mid-spawn just ends
        return figures


@pytest.mark.timeout(900)
def test_kill_9_during_a_2000_task_job() -> None:
    figures = run_crash_job(2_000, running_kills=2, done_within=300)
    report.record("kill -9 during a 2,000-task job", **figures)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_kill_9_during_a_10000_task_job() -> None:
    figures = run_crash_job(10_000, running_kills=5, done_within=1200)
    report.record("kill -9 during a 10,000-task job", **figures)
