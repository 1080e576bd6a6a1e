"""Which worker a node of the dask provider claims: never one with fewer `slots` than the pool's
taskSlotsPerNode; the worker that held the node before, else one holding no other claimed node."""

from __future__ import annotations

from openbatch.compute.dask_cluster import pick_worker, worker_slots


def test_a_worker_with_too_few_slots_is_never_picked() -> None:
    slots = {"small": 2.0, "big": 8.0}
    assert pick_worker(["small", "big"], slots, {}, set(), "n1", need=4) == "big"
    assert pick_worker(["small"], slots, {}, set(), "n1", need=4) is None
    assert pick_worker(["small", "big"], slots, {}, set(), "n1", need=2) == "small"


def test_the_worker_that_held_the_node_is_preferred_if_it_fits() -> None:
    slots = {"a": 8.0, "b": 8.0, "c": 1.0}
    assert pick_worker(["a", "b"], slots, {"b": "n1"}, {"n1"}, "n1", need=1) == "b"
    assert pick_worker(["a", "b"], slots, {"a": "n2"}, {"n2"}, "n1", need=1) == "b"  # a waits for its n2
    assert pick_worker(["a", "c"], slots, {"c": "n1"}, {"n1"}, "n1", need=4) == "a"


def test_a_worker_without_a_slots_resource_has_one_slot() -> None:
    assert worker_slots({"resources": {"slots": 4}}) == 4
    assert worker_slots({"resources": {}}) == 1
    assert worker_slots({}) == 1
