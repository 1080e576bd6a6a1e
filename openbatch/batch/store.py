"""SQLite persistence of pools, nodes, jobs, job schedules and tasks.

Entities are documents (dicts in the modern wire shape) keyed by account and lower-cased id, so
ids are unique case-insensitively and keep their case. Pools, nodes, jobs and job schedules are
few and also cached in memory; tasks can number in the hundreds of thousands and are read from
SQLite on demand (the engine keeps only a small index of the ones that can still run).

One connection, one writer (the event loop thread). Writes join an open transaction; ``flush()``
commits it once per loop iteration for everyone who wrote in that iteration (group commit), so a
request is acknowledged only after its commit. WAL with synchronous=NORMAL: a commit survives the
process being killed (the OS has it); power loss is out of scope. The SQL is plain and portable.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

Doc = dict[str, Any]

SMALL_KINDS = ("pool", "node", "job", "jobschedule")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    kind TEXT NOT NULL, account TEXT NOT NULL, parent TEXT NOT NULL, key TEXT NOT NULL,
    doc BLOB NOT NULL,
    PRIMARY KEY (kind, account, parent, key)
);
CREATE TABLE IF NOT EXISTS tasks (
    account TEXT NOT NULL, job TEXT NOT NULL, key TEXT NOT NULL,
    seq INTEGER NOT NULL, state TEXT NOT NULL, doc BLOB NOT NULL,
    result TEXT NOT NULL DEFAULT '', slots INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (account, job, key)
);
CREATE INDEX IF NOT EXISTS tasks_by_seq ON tasks (account, job, seq);
CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks (account, job, state, seq);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# Task counts kept as the tasks change, by SQLite itself: Get Task Counts (and the dashboard, the
# autoscale variables) read a handful of rows however many tasks a job has.
_COUNTS = """
CREATE TABLE task_counts (
    account TEXT NOT NULL, job TEXT NOT NULL, state TEXT NOT NULL, result TEXT NOT NULL,
    tasks INTEGER NOT NULL, slots INTEGER NOT NULL,
    PRIMARY KEY (account, job, state, result)
);
CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks BEGIN
    INSERT OR IGNORE INTO task_counts VALUES (NEW.account, NEW.job, NEW.state, NEW.result, 0, 0);
    UPDATE task_counts SET tasks = tasks + 1, slots = slots + NEW.slots
        WHERE account = NEW.account AND job = NEW.job AND state = NEW.state AND result = NEW.result;
END;
CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks BEGIN
    UPDATE task_counts SET tasks = tasks - 1, slots = slots - OLD.slots
        WHERE account = OLD.account AND job = OLD.job AND state = OLD.state AND result = OLD.result;
END;
CREATE TRIGGER task_counts_update AFTER UPDATE OF state, result, slots ON tasks
WHEN OLD.state != NEW.state OR OLD.result != NEW.result OR OLD.slots != NEW.slots BEGIN
    UPDATE task_counts SET tasks = tasks - 1, slots = slots - OLD.slots
        WHERE account = OLD.account AND job = OLD.job AND state = OLD.state AND result = OLD.result;
    INSERT OR IGNORE INTO task_counts VALUES (NEW.account, NEW.job, NEW.state, NEW.result, 0, 0);
    UPDATE task_counts SET tasks = tasks + 1, slots = slots + NEW.slots
        WHERE account = NEW.account AND job = NEW.job AND state = NEW.state AND result = NEW.result;
END;
INSERT INTO task_counts SELECT account, job, state, result, COUNT(*), SUM(slots) FROM tasks
    GROUP BY account, job, state, result;
"""


def _load(blob: bytes) -> Doc:
    doc: Doc = orjson.loads(blob)
    return doc


def _count_fields(doc: Doc) -> tuple[str, int]:
    """What task counts need besides the state: the execution result and the slots the task takes."""
    return str((doc.get("executionInfo") or {}).get("result") or ""), int(doc.get("requiredSlots") or 1)


class BatchStore:
    """Documents in SQLite; see the module docstring for the durability contract."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA temp_store=MEMORY")
        self.db.execute("PRAGMA cache_size=-16000")
        self.db.executescript(_SCHEMA)
        self._add_count_columns()
        if self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'task_counts'").fetchone() is None:
            self.db.executescript("BEGIN;" + _COUNTS + "COMMIT;")  # a data dir from before: counted once
        self.db.commit()
        self._cache: dict[tuple[str, str, str], dict[str, Doc]] = {}
        for kind, account, parent, key, blob in self.db.execute(
            "SELECT kind, account, parent, key, doc FROM entities"
        ):
            self._cache.setdefault((kind, account, parent), {})[key] = _load(blob)
        row = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM tasks").fetchone()
        self._seq = int(row[0])
        self._pending: asyncio.Future[None] | None = None

    def _add_count_columns(self) -> None:
        """Data dirs made before tasks carried ``result``/``slots`` columns get them, filled from the docs."""
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(tasks)")}
        if "result" in columns:
            return
        self.db.execute("ALTER TABLE tasks ADD COLUMN result TEXT NOT NULL DEFAULT ''")
        self.db.execute("ALTER TABLE tasks ADD COLUMN slots INTEGER NOT NULL DEFAULT 1")
        rows = self.db.execute("SELECT account, job, key, doc FROM tasks").fetchall()
        self.db.executemany(
            "UPDATE tasks SET result = ?, slots = ? WHERE account = ? AND job = ? AND key = ?",
            [(*_count_fields(_load(doc)), account, job, key) for account, job, key, doc in rows],
        )

    # --- small entities (cached) -------------------------------------------------------------

    def get(self, kind: str, account: str, key: str, parent: str = "") -> Doc | None:
        return self._cache.get((kind, account, parent.lower()), {}).get(key.lower())

    def all(self, kind: str, account: str, parent: str = "") -> list[Doc]:
        return list(self._cache.get((kind, account, parent.lower()), {}).values())

    def every(self, kind: str) -> Iterator[tuple[str, str, Doc]]:
        """(account, parent, doc) of every entity of ``kind`` across accounts (for recovery)."""
        for (k, account, parent), docs in self._cache.items():
            if k == kind:
                for doc in docs.values():
                    yield account, parent, doc

    def put(self, kind: str, account: str, doc: Doc, parent: str = "", key: str | None = None) -> None:
        """Insert or replace (under ``key``, by default the document's id); the caller flushes before
        acknowledging."""
        key, par = (key or str(doc["id"])).lower(), parent.lower()
        self._cache.setdefault((kind, account, par), {})[key] = doc
        self.db.execute(
            "INSERT OR REPLACE INTO entities (kind, account, parent, key, doc) VALUES (?, ?, ?, ?, ?)",
            (kind, account, par, key, orjson.dumps(doc)),
        )

    def delete(self, kind: str, account: str, key: str, parent: str = "") -> None:
        par = parent.lower()
        self._cache.get((kind, account, par), {}).pop(key.lower(), None)
        self.db.execute(
            "DELETE FROM entities WHERE kind = ? AND account = ? AND parent = ? AND key = ?",
            (kind, account, par, key.lower()),
        )

    def delete_children(self, kind: str, account: str, parent: str) -> None:
        par = parent.lower()
        self._cache.pop((kind, account, par), None)
        self.db.execute("DELETE FROM entities WHERE kind = ? AND account = ? AND parent = ?", (kind, account, par))

    # --- tasks -------------------------------------------------------------------------------

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def get_task(self, account: str, job_id: str, task_id: str) -> Doc | None:
        row = self.db.execute(
            "SELECT doc FROM tasks WHERE account = ? AND job = ? AND key = ?",
            (account, job_id.lower(), task_id.lower()),
        ).fetchone()
        return _load(row[0]) if row else None

    def existing_task_keys(self, account: str, job_id: str, keys: Iterable[str]) -> set[str]:
        wanted = [k.lower() for k in keys]
        found: set[str] = set()
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                r[0]
                for r in self.db.execute(
                    f"SELECT key FROM tasks WHERE account = ? AND job = ? AND key IN ({marks})",
                    (account, job_id.lower(), *chunk),
                )
            )
        return found

    def insert_tasks(self, account: str, job_id: str, docs: list[Doc]) -> None:
        """Insert new tasks; each doc must carry ``_seq`` (from next_seq) and ``state``."""
        job = job_id.lower()
        self.db.executemany(
            "INSERT INTO tasks (account, job, key, seq, state, doc, result, slots) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(account, job, str(d["id"]).lower(), d["_seq"], d["state"], orjson.dumps(d), *_count_fields(d))
             for d in docs],
        )

    def update_task(self, account: str, job_id: str, doc: Doc) -> None:
        self.update_tasks([(account, job_id, doc)])

    def update_tasks(self, rows: Iterable[tuple[str, str, Doc]]) -> None:
        """Write changed tasks: (account, job_id, doc) triples."""
        self.db.executemany(
            "UPDATE tasks SET state = ?, doc = ?, result = ?, slots = ? WHERE account = ? AND job = ? AND key = ?",
            [(d["state"], orjson.dumps(d), *_count_fields(d), a, j.lower(), str(d["id"]).lower()) for a, j, d in rows],
        )

    def delete_task(self, account: str, job_id: str, task_id: str) -> None:
        self.db.execute(
            "DELETE FROM tasks WHERE account = ? AND job = ? AND key = ?", (account, job_id.lower(), task_id.lower())
        )

    def delete_job_tasks(self, account: str, job_id: str) -> None:
        self.db.execute("DELETE FROM tasks WHERE account = ? AND job = ?", (account, job_id.lower()))
        self.db.execute("DELETE FROM task_counts WHERE account = ? AND job = ?", (account, job_id.lower()))

    def page_tasks(
        self, account: str, job_id: str, *, after_seq: int = 0, state: str | None = None, limit: int = 1000,
        result: str | None = None,
    ) -> list[Doc]:
        """Tasks of a job in submission order, ``seq > after_seq``, optionally of one state (and,
        with ``result``, of one execution result: the dashboard's "failed only")."""
        if state is None:
            cur = self.db.execute(
                "SELECT doc FROM tasks WHERE account = ? AND job = ? AND seq > ? ORDER BY seq LIMIT ?",
                (account, job_id.lower(), after_seq, limit),
            )
        elif result is not None:
            cur = self.db.execute(
                "SELECT doc FROM tasks WHERE account = ? AND job = ? AND state = ? AND seq > ? AND result = ? "
                "ORDER BY seq LIMIT ?",
                (account, job_id.lower(), state, after_seq, result, limit),
            )
        else:
            cur = self.db.execute(
                "SELECT doc FROM tasks WHERE account = ? AND job = ? AND state = ? AND seq > ? ORDER BY seq LIMIT ?",
                (account, job_id.lower(), state, after_seq, limit),
            )
        return [_load(r[0]) for r in cur]

    def task_state_counts(self, account: str, job_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for state, _, number, _ in self.task_count_rows(account, job_id):
            counts[state] = counts.get(state, 0) + number
        return counts

    def task_count_rows(self, account: str, job_id: str) -> list[tuple[str, str, int, int]]:
        """(state, result, number of tasks, slots they take) per state and result of a job's tasks."""
        return self.db.execute(
            "SELECT state, result, tasks, slots FROM task_counts WHERE account = ? AND job = ? AND tasks > 0",
            (account, job_id.lower()),
        ).fetchall()

    def unfinished_tasks(self) -> Iterator[tuple[str, str, Doc]]:
        """(account, job key, doc) of every task not completed, in submission order (for recovery)."""
        for account, job, blob in self.db.execute(
            "SELECT account, job, doc FROM tasks WHERE state != 'completed' ORDER BY seq"
        ):
            yield account, job, _load(blob)

    # --- meta --------------------------------------------------------------------------------

    def get_meta(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, name: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))

    # --- commits -----------------------------------------------------------------------------

    async def flush(self) -> None:
        """Commit everything written so far; concurrent callers in one loop iteration share a commit."""
        if not self.db.in_transaction:
            return
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.create_future()
            loop.call_soon(self._commit)
        await asyncio.shield(self._pending)

    def _commit(self) -> None:
        fut, self._pending = self._pending, None
        try:
            self.db.commit()
        except sqlite3.Error as exc:  # pragma: no cover - disk full and the like
            if fut is not None and not fut.done():
                fut.set_exception(exc)
            return
        if fut is not None and not fut.done():
            fut.set_result(None)

    def commit_now(self) -> None:
        if self.db.in_transaction:
            self.db.commit()

    def close(self) -> None:
        self.commit_now()
        self.db.close()
