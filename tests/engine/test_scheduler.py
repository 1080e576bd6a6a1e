"""The scheduler alone: events in (tasks, nodes, slots given back), assignments out. No I/O."""

from __future__ import annotations

from openbatch.batch.scheduler import ASSIGNED, QueuedTask, Scheduler

POOL = ("acct", "pool")


def make(fill: str = "spread", nodes: int = 2, slots: int = 4) -> Scheduler:
    s = Scheduler()
    s.set_pool(POOL, fill)
    for i in range(nodes):
        s.add_node(POOL, f"n{i}", slots)
        s.set_node_usable(POOL, f"n{i}", True)
    return s


def add(s: Scheduler, job: str, seq: int, slots: int = 1, key: str | None = None) -> QueuedTask:
    jk = ("acct", job)
    if jk not in s.jobs:
        s.set_job(jk, POOL)
    task = QueuedTask(seq, jk, key or f"{job}-{seq}", slots)
    s.push(task)
    return task


def placed(s: Scheduler) -> list[tuple[str, str]]:
    return [(a.task.key, a.node_id) for a in s.assign(POOL)]


def test_spread_puts_tasks_on_the_emptiest_node() -> None:
    s = make("spread")
    for i in range(4):
        add(s, "j", i)
    assert [n for _, n in placed(s)] == ["n0", "n1", "n0", "n1"]


def test_pack_fills_one_node_before_the_next() -> None:
    s = make("pack")
    for i in range(6):
        add(s, "j", i)
    assert [n for _, n in placed(s)] == ["n0"] * 4 + ["n1"] * 2


def test_submission_order_within_a_priority_and_priority_first() -> None:
    s = make(nodes=1, slots=3)
    s.set_job(("acct", "low"), POOL, priority=-5)
    s.set_job(("acct", "high"), POOL, priority=100)
    s.set_job(("acct", "mid"), POOL, priority=0)
    add(s, "low", 1)
    add(s, "mid", 4)
    add(s, "mid", 2)
    add(s, "high", 9)
    add(s, "high", 3)
    assert [k for k, _ in placed(s)] == ["high-3", "high-9", "mid-2"]


def test_equal_priority_jobs_interleave_by_submission() -> None:
    s = make(nodes=1, slots=4)
    add(s, "a", 1)
    add(s, "b", 2)
    add(s, "a", 3)
    add(s, "b", 4)
    assert [k for k, _ in placed(s)] == ["a-1", "b-2", "a-3", "b-4"]


def test_required_slots_fit_on_one_node_and_smaller_tasks_backfill() -> None:
    s = make(nodes=2, slots=4)
    add(s, "j", 1, slots=3)
    add(s, "j", 2, slots=3)
    add(s, "j", 3, slots=3)  # no node has 3 free any more: passed over, keeps its place
    add(s, "j", 4, slots=1)
    add(s, "j", 5, slots=1)
    got = placed(s)
    assert got == [("j-1", "n0"), ("j-2", "n1"), ("j-4", "n0"), ("j-5", "n1")]
    assert s.free_slots(POOL) == 0
    # when a big task gives its slots back the passed-over one goes first
    first = s.jobs[("acct", "j")]
    assert first.head() is not None and first.head().key == "j-3"  # type: ignore[union-attr]


def test_a_task_bigger_than_any_node_never_blocks_the_queue() -> None:
    s = make(nodes=1, slots=2)
    add(s, "j", 1, slots=5)
    add(s, "j", 2)
    assert placed(s) == [("j-2", "n0")]


def test_release_gives_slots_back_and_the_next_task_goes() -> None:
    s = make(nodes=1, slots=1)
    a = add(s, "j", 1)
    add(s, "j", 2)
    assert placed(s) == [("j-1", "n0")]
    assert placed(s) == []
    s.release(a)
    assert placed(s) == [("j-2", "n0")]


def test_max_parallel_tasks_caps_a_job() -> None:
    s = make(nodes=2, slots=4)
    s.set_job(("acct", "j"), POOL, max_parallel=2)
    for i in range(5):
        add(s, "j", i)
    add(s, "other", 10)
    got = placed(s)
    assert [k for k, _ in got] == ["j-0", "j-1", "other-10"]


def test_inactive_jobs_and_unusable_or_excluded_nodes_get_nothing() -> None:
    s = make(nodes=2, slots=2)
    s.set_job(("acct", "off"), POOL, active=False)
    add(s, "off", 1)
    assert placed(s) == []
    s.set_node_usable(POOL, "n0", False)
    add(s, "on", 2)
    add(s, "on", 3)
    add(s, "on", 4)
    assert [n for _, n in placed(s)] == ["n1", "n1"]
    s.set_job(("acct", "x"), POOL)
    s.exclude_node(("acct", "x"), "n1")  # its job preparation task failed there
    s.set_node_usable(POOL, "n0", True)
    add(s, "x", 0)
    add(s, "x", 5)
    assert placed(s) == [("x-0", "n0"), ("on-4", "n0")]


def test_dropped_tasks_are_skipped_and_requeued_tasks_keep_their_order() -> None:
    s = make(nodes=1, slots=1)
    a = add(s, "j", 1)
    b = add(s, "j", 2)
    s.drop(a)
    assert placed(s) == [("j-2", "n0")]
    assert b.state == ASSIGNED
    s.release(b)
    c = QueuedTask(2, ("acct", "j"), "j-2")
    add(s, "j", 3)
    s.push(c)  # requeued: its old sequence number puts it before newer work
    assert placed(s) == [("j-2", "n0")]


def test_jobs_attach_to_a_pool_created_after_them() -> None:
    s = Scheduler()
    s.set_job(("acct", "j"), ("acct", "later"))
    s.push(QueuedTask(1, ("acct", "j"), "t"))
    s.set_pool(("acct", "later"))
    s.add_node(("acct", "later"), "n", 1)
    s.set_node_usable(("acct", "later"), "n", True)
    assert [(a.task.key, a.node_id) for a in s.assign(("acct", "later"))] == [("t", "n")]


def test_moving_a_job_to_another_pool() -> None:
    s = make(nodes=1, slots=1)
    s.set_pool(("acct", "other"))
    s.add_node(("acct", "other"), "m", 1)
    s.set_node_usable(("acct", "other"), "m", True)
    add(s, "j", 1)
    s.set_job(("acct", "j"), ("acct", "other"))
    assert placed(s) == []
    assert [(a.task.key, a.node_id) for a in s.assign(("acct", "other"))] == [("j-1", "m")]
