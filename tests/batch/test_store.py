"""BatchStore without HTTP: task counts come from the columns it keeps, old data dirs get them."""

from __future__ import annotations

import sqlite3

import orjson

from openbatch.batch.store import BatchStore


def _task(store: BatchStore, task_id: str, state: str, result: str | None = None, slots: int = 1) -> dict:
    doc = {"id": task_id, "state": state, "requiredSlots": slots, "_seq": store.next_seq()}
    if result:
        doc["executionInfo"] = {"result": result}
    return doc


def test_count_rows_follow_inserts_and_updates(tmp_path):
    store = BatchStore(tmp_path / "batch.db")
    store.insert_tasks("acct", "Job", [_task(store, "a", "active"), _task(store, "b", "active", slots=3)])
    done = _task(store, "a", "completed", "failure")
    store.update_task("acct", "job", done)
    rows = sorted(store.task_count_rows("acct", "JOB"))
    assert rows == [("active", "", 1, 3), ("completed", "failure", 1, 1)]
    store.close()


def test_a_data_dir_from_before_the_count_columns_is_migrated(tmp_path):
    path = tmp_path / "batch.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE tasks (account TEXT NOT NULL, job TEXT NOT NULL, key TEXT NOT NULL, "
               "seq INTEGER NOT NULL, state TEXT NOT NULL, doc BLOB NOT NULL, PRIMARY KEY (account, job, key))")
    docs = [{"id": "t1", "state": "completed", "executionInfo": {"result": "success"}, "requiredSlots": 2},
            {"id": "t2", "state": "running"}]
    db.executemany("INSERT INTO tasks VALUES ('acct', 'job', ?, ?, ?, ?)",
                   [(d["id"], i, d["state"], orjson.dumps(d)) for i, d in enumerate(docs)])
    db.commit()
    db.close()
    store = BatchStore(path)
    assert sorted(store.task_count_rows("acct", "job")) == [("completed", "success", 1, 2), ("running", "", 1, 1)]
    assert store.get_task("acct", "job", "T1") == docs[0]
    store.close()


def test_counts_follow_every_change_and_survive_a_reopen(tmp_path):
    path = tmp_path / "batch.db"
    store = BatchStore(path)
    store.insert_tasks("acct", "j", [_task(store, f"t{i}", "active", slots=2) for i in range(5)])
    store.insert_tasks("acct", "other", [_task(store, "x", "active")])
    store.update_tasks([("acct", "j", _task(store, "t0", "running", slots=2)),
                        ("acct", "j", _task(store, "t1", "completed", "success", slots=2)),
                        ("acct", "j", _task(store, "t2", "active", slots=4))])  # slots changed, state kept
    store.update_task("acct", "j", _task(store, "t3", "active", slots=2))  # nothing a count sees changed
    store.delete_task("acct", "j", "t4")
    expected = [("active", "", 2, 6), ("completed", "success", 1, 2), ("running", "", 1, 2)]
    assert sorted(store.task_count_rows("acct", "j")) == expected
    assert store.task_state_counts("acct", "j") == {"active": 2, "completed": 1, "running": 1}
    store.close()
    store = BatchStore(path)
    assert sorted(store.task_count_rows("acct", "j")) == expected
    grouped = store.db.execute("SELECT state, result, COUNT(*), SUM(slots) FROM tasks WHERE job = 'j' "
                               "GROUP BY state, result ORDER BY state").fetchall()
    assert grouped == expected  # the kept counts are what counting the rows gives
    store.delete_job_tasks("acct", "j")
    assert store.task_count_rows("acct", "j") == []
    assert store.task_count_rows("acct", "other") == [("active", "", 1, 1)]
    store.close()
