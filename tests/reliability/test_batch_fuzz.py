"""Property-based fuzzing of the Batch endpoint from Microsoft's own spec (schemathesis, Swagger 2.0).

Every operation of ``../shared/specs/batch/BatchService-*.json`` gets valid (positive) and
invalid (negative) requests, signed with SharedKey as azure-batch signs them (``ocp-date`` = now),
with path ids sometimes those of a live pool / node / job / task / schedule so requests reach past
the 404s. The assertion: **no response is a 5xx, no request hangs, no connection is dropped**, and
the server logs no unhandled error. Other schemathesis checks (schema and status conformance,
negative data rejection) are counted and reported, not asserted: they find differences from
Azure worth reading, not crashes.

Default run: a deterministic ``FUZZ_EXAMPLES`` (60) cases per operation within ``FUZZ_BUDGET``
seconds. ``-m slow``: 1,000 random cases per operation.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import ignored_auth

from openbatch.testing import LiveServer
from tests.helpers.waiting import wait_for
from tests.reliability import report
from tests.reliability.crash import tracebacks
from tests.reliability.wire import BATCH_VERSION, TIMEOUT, BatchSharedKey, batch_request

REPO = Path(__file__).resolve().parents[2]
SPECS = sorted((REPO.parent / "shared" / "specs" / "batch").glob("BatchService-*.json"))
if not SPECS:
    pytest.skip("the Batch spec (../shared/specs/batch) is not beside the checkout", allow_module_level=True)
SPEC = SPECS[-1]

DEFAULT_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
SLOW_EXAMPLES = int(os.environ.get("FUZZ_SLOW_EXAMPLES", "1000"))
BUDGET = float(os.environ.get("FUZZ_BUDGET", "240"))  # seconds for the whole default run
IMAGE = {"imageReference": {"publisher": "canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts"},
         "nodeAgentSKUId": "batch.node.ubuntu 22.04"}
USABLE = ("idle", "running", "starttaskfailed")  # a node fuzzing may address
NODE_COUNT_KEYS = ("targetDedicatedNodes", "targetLowPriorityNodes", "targetDedicated")

SCHEMA = schemathesis.openapi.from_path(SPEC, config=schemathesis.Config())


def _operations() -> dict[str, Any]:
    """Every operation of the spec by label; an operation schemathesis cannot read fails the run."""
    operations = {}
    for result in SCHEMA.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operations[result.ok().label] = result.ok()
    return operations


OPERATIONS = _operations()


class World:
    """A pool with an idle node, a job with a completed task, a job schedule: the ids path
    parameters are sometimes given, recreated under new ids whenever fuzzing broke them."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.serial = 0
        self.pool = self.node = self.job = self.schedule = ""
        self.task = "fuzztask"

    def _new_id(self, kind: str) -> str:
        self.serial += 1
        return f"fuzz{kind}{self.serial}"

    def _get(self, path: str) -> dict[str, Any] | None:
        r = batch_request(self.server, "GET", path)
        return r.json() if r.status == 200 else None

    def _usable_node(self) -> str | None:
        listing = self._get(f"/pools/{self.pool}/nodes") if self.pool else None
        nodes = [n for n in (listing or {}).get("value", []) if n.get("state") in USABLE]
        return nodes[0]["id"] if nodes else None

    def _ensure_pool(self) -> None:
        pool = self._get(f"/pools/{self.pool}") if self.pool else None
        if pool and pool.get("state") == "active" and pool.get("allocationState") == "steady":
            node = self._usable_node()
            if node:
                self.node = node
                return
        self.pool = self._new_id("pool")
        body = {"id": self.pool, "vmSize": "standard_d2s_v3", "virtualMachineConfiguration": IMAGE,
                "targetDedicatedNodes": 1, "taskSlotsPerNode": 2}
        r = batch_request(self.server, "POST", "/pools", body=body)
        assert r.status == 201, r
        self.node = wait_for(self._usable_node, "a fuzz pool's node", timeout=60)
        self.job = ""  # a new pool needs a new job

    def _ensure_job(self) -> None:
        job = self._get(f"/jobs/{self.job}") if self.job else None
        task = self._get(f"/jobs/{self.job}/tasks/{self.task}") if job else None
        if job and job.get("state") == "active" and task:
            return
        self.job = self._new_id("job")
        r = batch_request(self.server, "POST", "/jobs", body={"id": self.job, "poolInfo": {"poolId": self.pool}})
        assert r.status == 201, r
        r = batch_request(self.server, "POST", f"/jobs/{self.job}/tasks",
                          body={"id": self.task, "commandLine": "/bin/sh -c 'echo fuzz'"})
        assert r.status == 201, r
        deadline = time.monotonic() + 30  # a completed task has files to address; fuzzing goes on without
        while time.monotonic() < deadline:
            if (self._get(f"/jobs/{self.job}/tasks/{self.task}") or {}).get("state") == "completed":
                break
            time.sleep(0.1)

    def _ensure_schedule(self) -> None:
        schedule = self._get(f"/jobschedules/{self.schedule}") if self.schedule else None
        if schedule and schedule.get("state") == "active":
            return
        self.schedule = self._new_id("schedule")
        body = {"id": self.schedule, "schedule": {"recurrenceInterval": "P1D"},
                "jobSpecification": {"poolInfo": {"poolId": self.pool}}}
        r = batch_request(self.server, "POST", "/jobschedules", body=body)
        assert r.status in (201, 404), r  # 404: this server has no job schedules

    def ensure(self) -> None:
        self._ensure_pool()
        self._ensure_job()
        self._ensure_schedule()

    def ids_for(self, path: str) -> dict[str, str]:
        """Known values for the path parameters of an operation on ``path``."""
        return {
            "poolId": self.pool, "nodeId": self.node, "jobId": self.job, "taskId": self.task,
            "jobScheduleId": self.schedule,
            "filePath": "stdout.txt" if "/tasks/" in path else "workitems",
            "userName": "fuzzuser", "applicationId": "fuzzapp", "extensionName": "fuzzext",
        }


class Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.by_class: Counter[str] = Counter()
        self.server_errors: list[str] = []
        self.dropped: list[str] = []
        self.unsendable = 0
        self.check_failures: Counter[str] = Counter()
        self.check_examples: dict[str, set[str]] = {}
        self.budget_skipped = 0
        self.started = time.monotonic()

    def count_failure(self, failure: BaseException, label: str) -> None:
        title = str(getattr(failure, "title", type(failure).__name__))
        self.check_failures[title] += 1
        self.check_examples.setdefault(title, set()).add(label)


@pytest.fixture(scope="module")
def stats() -> Iterator[Stats]:
    s = Stats()
    yield s
    report.record(
        "batch fuzz (schemathesis)", spec=SPEC.name, operations=len(OPERATIONS), requests=s.requests,
        by_status_class=dict(s.by_class), server_errors_5xx=len(s.server_errors), dropped_or_hung=len(s.dropped),
        unsendable_by_client=s.unsendable, budget_skipped=s.budget_skipped,
        other_check_failures=dict(s.check_failures.most_common()),
        other_check_failures_in={k: sorted(v)[:8] for k, v in s.check_examples.items()},
        seconds=round(time.monotonic() - s.started, 1),
    )


@pytest.fixture(scope="module")
def world(server: LiveServer) -> World:
    return World(server)


def _clamp_node_counts(value: Any) -> Any:
    """Keep generated pools small (nodes are real directories and processes here); counts out of
    range are left as they are, for the server to refuse."""
    if isinstance(value, dict):
        return {k: (2 if k in NODE_COUNT_KEYS and isinstance(v, int) and not isinstance(v, bool) and 2 < v <= 1000
                    else _clamp_node_counts(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_clamp_node_counts(v) for v in value]
    return value


def _strategy(op: Any, world: World) -> st.SearchStrategy[Any]:
    version = {"api-version": BATCH_VERSION}
    known = {k: v for k, v in world.ids_for(op.path).items() if k in {p.name for p in op.path_parameters}}
    options = []
    for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
        for kwargs in ({"query": version, "path_parameters": known}, {"query": version}, {}):
            try:
                options.append(op.as_strategy(mode, **kwargs))
            except Exception:  # an operation with nothing to negate in that location
                continue
    return st.one_of(options)


def _send(case: Any, server: LiveServer, session: requests.Session, auth: BatchSharedKey, stats: Stats) -> Any:
    if isinstance(case.body, dict | list):
        case.body = _clamp_node_counts(case.body)
    try:
        response = case.call(base_url=server.batch_url, session=session, auth=auth, timeout=TIMEOUT)
    except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL, UnicodeError, ValueError):
        stats.unsendable += 1  # the client library refuses to put this on the wire
        return None
    except (requests.exceptions.Timeout, requests.exceptions.ConnectionError) as exc:
        stats.requests += 1
        stats.dropped.append(f"{case.operation.label}: {type(exc).__name__}")
        raise AssertionError(f"no answer within {TIMEOUT} s or connection dropped: {exc}\n"
                             f"{case.as_curl_command()}") from None
    stats.requests += 1
    stats.by_class[f"{response.status_code // 100}xx"] += 1
    return response


def _count_check_failures(case: Any, response: Any, stats: Stats) -> None:
    try:
        # ignored_auth re-sends without our signature: the auth suite covers that, with Azure's codes.
        case.validate_response(response, excluded_checks=[not_a_server_error, ignored_auth])
    except BaseExceptionGroup as group:  # schemathesis' FailureGroup: count by title
        for failure in group.exceptions:
            stats.count_failure(failure, case.operation.label)
    except AssertionError as failure:
        stats.count_failure(failure, case.operation.label)


def _fuzz(label: str, examples: int, derandomize: bool, server: LiveServer, world: World, stats: Stats) -> None:
    op = OPERATIONS[label]
    world.ensure()
    session = requests.Session()
    auth = BatchSharedKey(server.account, server.key)

    @settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(case=_strategy(op, world))
    def run(case: Any) -> None:
        if derandomize and time.monotonic() - stats.started > BUDGET:
            stats.budget_skipped += 1
            return
        response = _send(case, server, session, auth, stats)
        if response is None:
            return
        if response.status_code >= 500:
            stats.server_errors.append(f"{label} -> {response.status_code}")
            raise AssertionError(f"{response.status_code} from {label}: {response.text[:500]}\n{case.as_curl_command()}")
        _count_check_failures(case, response, stats)

    try:
        run()
    finally:
        session.close()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("label", list(OPERATIONS))
def test_no_5xx_from_spec_generated_requests(label: str, server: LiveServer, world: World, stats: Stats) -> None:
    _fuzz(label, DEFAULT_EXAMPLES, True, server, world, stats)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("label", list(OPERATIONS))
def test_no_5xx_long_run(label: str, server: LiveServer, world: World, stats: Stats) -> None:
    _fuzz(label, SLOW_EXAMPLES, False, server, world, stats)


@pytest.mark.parametrize("run", ["default", pytest.param("long", marks=pytest.mark.slow)])
def test_server_logged_no_unhandled_error(server: LiveServer, stats: Stats, run: str) -> None:
    assert stats.requests > 0
    server_errors, _ = tracebacks(server)
    assert not server_errors, server_errors[:3]
