"""Blob metadata in SQLite: containers, blobs, the parts of committed blobs, staged blocks.

Knows no HTTP and no rules: it stores and returns records. One connection, used from the
event loop thread; every acknowledged write is one transaction (``with store.tx(): ...``).

Schema notes: ``parts`` is clustered by (blob, position) (``WITHOUT ROWID``: one B-tree to
write per part) and only parts stored in data files are indexed by extent; both are plain
clustered/partial indexes elsewhere.

Durability: WAL mode with ``synchronous=NORMAL``. A commit has been written to the OS when
it returns, so it survives the server process being killed (SIGKILL); only an OS crash or
power loss could lose the last commits, which is not what we promise, so there is no fsync
per request. The SQL is plain (no SQLite-only syntax beyond the pragmas) so another
database could hold the same schema.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from openbatch.blob.models import (
    AVAILABLE,
    DELETED,
    Blob,
    Container,
    ContentSettings,
    CopyInfo,
    Deletion,
    Lease,
    Part,
    Rehydration,
    StagedBlock,
)
from openbatch.common.clock import now_us

SCHEMA_VERSION = 3  # 2: blobs.access_tier, blobs.tier_changed_us; 3: snapshots/versions (stamp), page and append blobs

_SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    name TEXT NOT NULL,
    etag TEXT NOT NULL,
    modified_us BIGINT NOT NULL,
    metadata TEXT NOT NULL,
    public_access TEXT,
    acl TEXT NOT NULL,
    lease_id TEXT,
    lease_state TEXT NOT NULL DEFAULT 'available',
    lease_duration INTEGER,
    lease_until_us BIGINT,
    deleted_us BIGINT,
    deleted_until_us BIGINT,
    deleted_version TEXT,
    UNIQUE (account, name)
);
CREATE TABLE IF NOT EXISTS blobs (
    id INTEGER PRIMARY KEY,
    container_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    committed INTEGER NOT NULL,
    etag TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    modified_us BIGINT NOT NULL,
    size BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    content_encoding TEXT NOT NULL,
    content_language TEXT NOT NULL,
    content_md5 BLOB,
    cache_control TEXT NOT NULL,
    content_disposition TEXT NOT NULL,
    metadata TEXT NOT NULL,
    block_id_len INTEGER,
    staged_count INTEGER NOT NULL,
    copy_id TEXT,
    copy_source TEXT,
    copy_status TEXT,
    copy_progress TEXT,
    copy_completed_us BIGINT,
    access_tier TEXT,
    tier_changed_us BIGINT,
    stamp TEXT NOT NULL DEFAULT '',
    version_id TEXT,
    blob_type TEXT NOT NULL DEFAULT 'BlockBlob',
    sequence_number BIGINT NOT NULL DEFAULT 0,
    sealed INTEGER NOT NULL DEFAULT 0,
    copy_description TEXT,
    lease_id TEXT,
    lease_state TEXT NOT NULL DEFAULT 'available',
    lease_duration INTEGER,
    lease_until_us BIGINT,
    tag_count INTEGER NOT NULL DEFAULT 0,
    rehydrate_to TEXT,
    rehydrate_priority TEXT,
    rehydrate_until_us BIGINT,
    deleted_us BIGINT,
    deleted_until_us BIGINT,
    UNIQUE (container_id, name, stamp)
);
CREATE TABLE IF NOT EXISTS parts (
    blob_id INTEGER NOT NULL,
    pos BIGINT NOT NULL,
    seq INTEGER NOT NULL,
    length BIGINT NOT NULL,
    extent TEXT NOT NULL,
    ext_offset BIGINT NOT NULL,
    block_id TEXT,
    data BLOB,
    PRIMARY KEY (blob_id, pos, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS parts_extent ON parts (extent) WHERE extent <> '';
CREATE TABLE IF NOT EXISTS staged (
    blob_id INTEGER NOT NULL,
    block_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    extent TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_us BIGINT NOT NULL,
    PRIMARY KEY (blob_id, block_id)
);
CREATE INDEX IF NOT EXISTS staged_extent ON staged (extent);
CREATE INDEX IF NOT EXISTS staged_created ON staged (created_us);
CREATE TABLE IF NOT EXISTS tags (
    blob_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (blob_id, name)
);
CREATE INDEX IF NOT EXISTS tags_by_value ON tags (name, value);
CREATE TABLE IF NOT EXISTS service_properties (
    account TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
"""

_BLOB_COLUMNS = (
    "id, container_id, name, committed, etag, created_us, modified_us, size, content_type, "
    "content_encoding, content_language, content_md5, cache_control, content_disposition, metadata, "
    "block_id_len, staged_count, copy_id, copy_source, copy_status, copy_progress, copy_completed_us, "
    "access_tier, tier_changed_us, stamp, version_id, blob_type, sequence_number, sealed, copy_description, "
    "lease_id, lease_state, lease_duration, lease_until_us, tag_count, "
    "rehydrate_to, rehydrate_priority, rehydrate_until_us, deleted_us, deleted_until_us"
)
# The lease of a blob or container (models.Lease), in both tables.
_LEASE_COLUMNS = (
    ("lease_id", "TEXT"),
    ("lease_state", "TEXT NOT NULL DEFAULT 'available'"),
    ("lease_duration", "INTEGER"),
    ("lease_until_us", "BIGINT"),
)
# Columns added to ``blobs`` after its first release, each with its definition: a database that lacks
# one gets it (ALTER TABLE ADD COLUMN), whatever version number it carries.
_ADDED_BLOB_COLUMNS = (
    ("access_tier", "TEXT"),
    ("tier_changed_us", "BIGINT"),
    ("stamp", "TEXT NOT NULL DEFAULT ''"),
    ("version_id", "TEXT"),
    ("blob_type", "TEXT NOT NULL DEFAULT 'BlockBlob'"),
    ("sequence_number", "BIGINT NOT NULL DEFAULT 0"),
    ("sealed", "INTEGER NOT NULL DEFAULT 0"),
    ("copy_description", "TEXT"),
    *_LEASE_COLUMNS,
    ("tag_count", "INTEGER NOT NULL DEFAULT 0"),  # how many rows of ``tags`` the blob has
    ("rehydrate_to", "TEXT"),  # an archived blob being rehydrated (models.Rehydration)
    ("rehydrate_priority", "TEXT"),
    ("rehydrate_until_us", "BIGINT"),
    ("deleted_us", "BIGINT"),  # soft-deleted (models.Deletion): when, and until when it can be restored
    ("deleted_until_us", "BIGINT"),
)
_ADDED_CONTAINER_COLUMNS = (  # the leases, and soft deletion (a deleted container's name is "name\0version")
    *_LEASE_COLUMNS, ("deleted_us", "BIGINT"), ("deleted_until_us", "BIGINT"), ("deleted_version", "TEXT"))
_BLOB_AT = {name: i for i, name in enumerate(_BLOB_COLUMNS.split(", "))}
_BLOB_ASSIGNMENTS = ", ".join(f"{c} = ?" for c in _BLOB_COLUMNS.split(", ")[1:])
_BLOB_UNIQUE_OLD = "UNIQUE (container_id, name)"
_BLOB_UNIQUE = "UNIQUE (container_id, name, stamp)"
_CONTAINER_COLUMNS = ("id, account, name, etag, modified_us, metadata, public_access, acl, "
                      "lease_id, lease_state, lease_duration, lease_until_us, deleted_us, deleted_until_us, "
                      "deleted_version")
_PART_COLUMNS = "pos, length, extent, ext_offset, block_id, data"


_BASE_KEY = "~"  # sorts after every snapshot ("S...") and version ("V...") stamp
_ORDER_KEY = f"(CASE stamp WHEN '' THEN '{_BASE_KEY}' ELSE stamp END)"


def order_key(blob: Blob) -> str:
    """Where a record sorts among the records of its name in listings."""
    return blob.stamp or _BASE_KEY


def _metadata(text: str) -> dict[str, str]:
    return {} if text == "{}" else dict(json.loads(text))


def _lease(row: tuple[Any, ...], at: int) -> Lease:
    """The lease stored in the four lease columns starting at ``row[at]``."""
    if row[at] is None and row[at + 1] == AVAILABLE:
        return _NO_LEASE
    return Lease(id=row[at], state=row[at + 1], duration=row[at + 2], until_us=row[at + 3])


def _lease_values(lease: Lease) -> tuple[Any, ...]:
    return (lease.id, lease.state, lease.duration, lease.until_us)


_NO_LEASE = Lease()


def _container_deletion(d: Deletion | None) -> tuple[Any, ...]:
    return (d.at_us, d.until_us, d.version) if d is not None else (None, None, None)


def _container(row: tuple[Any, ...]) -> Container:
    return Container(id=row[0], account=row[1], name=row[2], etag=row[3], modified_us=row[4],
                     metadata=_metadata(row[5]), public_access=row[6], acl=row[7], lease=_lease(row, 8),
                     deleted=Deletion(row[12], row[13], row[14]) if row[12] is not None else None)


def _deletion(row: tuple[Any, ...]) -> Deletion | None:
    at = _BLOB_AT["deleted_us"]
    return Deletion(row[at], row[at + 1]) if row[at] is not None else None


def _deletion_values(d: Deletion | None) -> tuple[Any, ...]:
    return (d.at_us, d.until_us) if d is not None else (None, None)


def _rehydration(row: tuple[Any, ...]) -> Rehydration | None:
    at = _BLOB_AT["rehydrate_to"]
    return Rehydration(row[at], row[at + 1], row[at + 2]) if row[at] is not None else None


def _rehydration_values(r: Rehydration | None) -> tuple[Any, ...]:
    return (r.tier, r.priority, r.until_us) if r is not None else (None, None, None)


def _blob(row: tuple[Any, ...]) -> Blob:
    content = ContentSettings(content_type=row[8], content_encoding=row[9], content_language=row[10],
                              content_md5=row[11], cache_control=row[12], content_disposition=row[13])
    copy = None
    if row[17] is not None:
        copy = CopyInfo(copy_id=row[17], source=row[18], status=row[19], progress=row[20], completed_us=row[21],
                        description=row[29] or "")
    return Blob(id=row[0], container_id=row[1], name=row[2], committed=bool(row[3]), etag=row[4],
                created_us=row[5], modified_us=row[6], size=row[7], content=content,
                metadata=_metadata(row[14]), block_id_len=row[15], staged_count=row[16], copy=copy,
                tier=row[22], tier_changed_us=row[23], stamp=row[24], version_id=row[25], blob_type=row[26],
                sequence_number=row[27], sealed=bool(row[28]), lease=_lease(row, _BLOB_AT["lease_id"]),
                tag_count=row[_BLOB_AT["tag_count"]], rehydration=_rehydration(row), deleted=_deletion(row)
                ).settle(now_us())


def _blob_values(b: Blob) -> tuple[Any, ...]:
    c, cp = b.content, b.copy
    return (b.container_id, b.name, int(b.committed), b.etag, b.created_us, b.modified_us, b.size,
            c.content_type, c.content_encoding, c.content_language, c.content_md5, c.cache_control,
            c.content_disposition, json.dumps(b.metadata), b.block_id_len, b.staged_count,
            cp.copy_id if cp else None, cp.source if cp else None, cp.status if cp else None,
            cp.progress if cp else None, cp.completed_us if cp else None, b.tier, b.tier_changed_us,
            b.stamp, b.version_id, b.blob_type, b.sequence_number, int(b.sealed),
            cp.description if cp and cp.description else None, *_lease_values(b.lease), b.tag_count,
            *(_rehydration_values(b.rehydration)), *_deletion_values(b.deleted))


def _part(row: tuple[Any, ...]) -> Part:
    return Part(pos=row[0], length=row[1], extent=row[2], offset=row[3], block_id=row[4], data=row[5])


class MetaStore:
    """SQLite persistence of containers, blobs, parts and staged blocks."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=OFF")
        (version,) = self.db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{path} has blob schema version {version}; this openbatch reads {SCHEMA_VERSION}")
        self.db.executescript(_SCHEMA)
        self._migrate_blobs()
        self._add_columns("containers", _ADDED_CONTAINER_COLUMNS)
        self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        # Containers are few and read by every request: cached, kept in step by the writes below.
        self._containers: dict[tuple[str, str], tuple[Any, ...]] = {}

    def close(self) -> None:
        self.db.close()

    def _add_columns(self, table: str, columns: tuple[tuple[str, str], ...]) -> None:
        """Add to ``table`` those of ``columns`` (name, definition) it lacks."""
        have = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
        for column, definition in columns:
            if column not in have:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    def _migrate_blobs(self) -> None:
        """Bring a ``blobs`` table written by an older openbatch to this schema, judging by what the
        table holds (not by the version number), so each step runs once and in any order: columns
        it lacks are added (blobs written before access tiers were kept have inferred tiers, before
        snapshots are base blobs, before page and append blobs are block blobs), and a table whose
        names are unique per container is rebuilt to allow snapshots and versions of one name."""
        self._add_columns("blobs", _ADDED_BLOB_COLUMNS)
        (sql,) = self.db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'blobs'").fetchone()
        if _BLOB_UNIQUE in sql or _BLOB_UNIQUE_OLD not in sql:
            return
        indexes = [r[0] for r in self.db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'blobs' AND sql IS NOT NULL")]
        rebuilt = sql.replace(_BLOB_UNIQUE_OLD, _BLOB_UNIQUE).replace("CREATE TABLE blobs", "CREATE TABLE blobs_rebuilt", 1)
        with self.tx():
            self.db.execute(rebuilt)
            self.db.execute("INSERT INTO blobs_rebuilt SELECT * FROM blobs")
            self.db.execute("DROP TABLE blobs")
            self.db.execute("ALTER TABLE blobs_rebuilt RENAME TO blobs")
            for index in indexes:
                self.db.execute(index)

    @contextmanager
    def tx(self) -> Iterator[None]:
        """One transaction: committed when the block exits normally, rolled back otherwise."""
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            self._containers.clear()
            raise
        self.db.execute("COMMIT")

    # --- containers ---------------------------------------------------------------------------

    def get_container(self, account: str, name: str) -> Container | None:
        key = (account, name)
        row = self._containers.get(key)
        if row is None:
            row = self.db.execute(
                f"SELECT {_CONTAINER_COLUMNS} FROM containers WHERE account = ? AND name = ?", (account, name)
            ).fetchone()
            if row is None:
                return None
            if len(self._containers) > 10_000:
                self._containers.clear()
            self._containers[key] = row
        return _container(row)

    def insert_container(self, c: Container) -> Container:
        cur = self.db.execute(
            f"INSERT INTO containers ({_CONTAINER_COLUMNS.partition(', ')[2]}) VALUES (?{', ?' * 13})",
            (c.account, c.name, c.etag, c.modified_us, json.dumps(c.metadata), c.public_access, c.acl,
             *_lease_values(c.lease), *_container_deletion(c.deleted)),
        )
        c.id = int(cur.lastrowid or 0)
        self._containers.pop((c.account, c.name), None)
        return c

    def update_container(self, c: Container) -> None:
        self.db.execute(
            "UPDATE containers SET etag = ?, modified_us = ?, metadata = ?, public_access = ?, acl = ?, lease_id = ?, "
            "lease_state = ?, lease_duration = ?, lease_until_us = ? WHERE id = ?",
            (c.etag, c.modified_us, json.dumps(c.metadata), c.public_access, c.acl, *_lease_values(c.lease), c.id),
        )
        self._containers.pop((c.account, c.name), None)

    def rename_container(self, c: Container, stored_name: str, deleted: Deletion | None) -> None:
        """Soft-delete (``deleted``) or restore a container: its row is stored under ``stored_name``
        (``name\0version`` while deleted, so that the name is free for a new container)."""
        self.db.execute("UPDATE containers SET name = ?, deleted_us = ?, deleted_until_us = ?, deleted_version = ? "
                        "WHERE id = ?", (stored_name, *_container_deletion(deleted), c.id))
        self._containers.clear()

    def deleted_container(self, account: str, name: str, version: str, now_us: int) -> Container | None:
        """The soft-deleted container ``name`` of that version, while it can be restored."""
        row = self.db.execute(
            f"SELECT {_CONTAINER_COLUMNS} FROM containers WHERE account = ? AND name = ? AND deleted_until_us > ?",
            (account, f"{name}\x00{version}", now_us)).fetchone()
        return _container(row) if row else None

    def expired(self, now_us: int) -> tuple[list[int], list[int]]:
        """The soft-deleted blob records and containers whose retention has ended, by id."""
        blobs = [r[0] for r in self.db.execute("SELECT id FROM blobs WHERE deleted_until_us <= ?", (now_us,))]
        containers = [r[0] for r in self.db.execute("SELECT id FROM containers WHERE deleted_until_us <= ?",
                                                    (now_us,))]
        return blobs, containers

    def delete_container(self, container_id: int) -> list[str]:
        """Delete a container with all its blobs; return the extents its blobs referenced."""
        self._containers.clear()
        blob_ids = "SELECT id FROM blobs WHERE container_id = ?"
        extents = [r[0] for r in self.db.execute(
            f"SELECT DISTINCT extent FROM parts WHERE blob_id IN ({blob_ids}) "
            f"UNION SELECT DISTINCT extent FROM staged WHERE blob_id IN ({blob_ids})",
            (container_id, container_id),
        )]
        self.db.execute(f"DELETE FROM parts WHERE blob_id IN ({blob_ids})", (container_id,))
        self.db.execute(f"DELETE FROM staged WHERE blob_id IN ({blob_ids})", (container_id,))
        self.db.execute(f"DELETE FROM tags WHERE blob_id IN ({blob_ids})", (container_id,))
        self.db.execute("DELETE FROM blobs WHERE container_id = ?", (container_id,))
        self.db.execute("DELETE FROM containers WHERE id = ?", (container_id,))
        return extents

    def container_usage(self, container_id: int) -> tuple[int, int]:
        """(blobs, bytes) of a container's current blobs (not snapshots, versions or deleted ones)."""
        row = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blobs WHERE container_id = ? AND committed = 1 "
            "AND stamp = ''", (container_id,)).fetchone()
        return int(row[0]), int(row[1])

    def container_account(self, container_id: int) -> str | None:
        row = self.db.execute("SELECT account FROM containers WHERE id = ?", (container_id,)).fetchone()
        return str(row[0]) if row else None

    def list_containers(self, account: str, start: str, end: str | None, limit: int,
                        deleted_after_us: int | None = None) -> list[Container]:
        """Containers of ``account`` with ``start <= name < end``, by name; with ``deleted_after_us``,
        also the soft-deleted ones still restorable then (each right after its name)."""
        sql = f"SELECT {_CONTAINER_COLUMNS} FROM containers WHERE account = ? AND name >= ?"
        args: list[object] = [account, start]
        if deleted_after_us is None:
            sql += " AND deleted_us IS NULL"
        else:
            sql += " AND (deleted_us IS NULL OR deleted_until_us > ?)"
            args.append(deleted_after_us)
        if end is not None:
            sql += " AND name < ?"
            args.append(end)
        sql += " ORDER BY name LIMIT ?"
        args.append(limit)
        return [_container(r) for r in self.db.execute(sql, args)]

    # --- blobs --------------------------------------------------------------------------------

    def get_blob(self, container_id: int, name: str, stamp: str = "") -> Blob | None:
        """The base blob of a name (``stamp`` "": its current version), or one of its snapshots or
        previous versions."""
        row = self.db.execute(
            f"SELECT {_BLOB_COLUMNS} FROM blobs WHERE container_id = ? AND name = ? AND stamp = ?",
            (container_id, name, stamp),
        ).fetchone()
        return _blob(row) if row else None

    def get_blob_by_id(self, blob_id: int) -> Blob | None:
        row = self.db.execute(f"SELECT {_BLOB_COLUMNS} FROM blobs WHERE id = ?", (blob_id,)).fetchone()
        return _blob(row) if row else None

    def save_blob(self, b: Blob) -> Blob:
        """Insert (``b.id == 0``) or update a blob row (its tags: :meth:`set_tags`)."""
        values = _blob_values(b)
        if b.id:
            self.db.execute(f"UPDATE blobs SET {_BLOB_ASSIGNMENTS} WHERE id = ?", (*values, b.id))
        else:
            cur = self.db.execute(
                f"INSERT INTO blobs ({_BLOB_COLUMNS.partition(', ')[2]}) "
                f"VALUES ({', '.join('?' * len(values))})",
                values,
            )
            b.id = int(cur.lastrowid or 0)
        return b

    def delete_blob(self, blob_id: int) -> list[str]:
        """Delete a blob with its parts and staged blocks; return the extents they referenced."""
        extents = self.part_extents(blob_id) + self.clear_staged(blob_id)
        self.db.execute("DELETE FROM parts WHERE blob_id = ?", (blob_id,))
        self.db.execute("DELETE FROM tags WHERE blob_id = ?", (blob_id,))
        self.db.execute("DELETE FROM blobs WHERE id = ?", (blob_id,))
        return extents

    def list_blobs(self, container_id: int, start: str, end: str | None, committed_only: bool,
                   limit: int, kinds: str = "", start_key: str = "") -> list[Blob]:
        """Blobs of a container with ``start <= name < end``, by name. ``kinds`` adds snapshots
        (``SNAPSHOT``) and previous versions (``VERSION``): each name's snapshots come first (oldest
        first), then its previous versions (oldest first), then its base blob (see :func:`order_key`);
        ``start_key`` skips the records of name ``start`` whose order key is below it."""
        sql = f"SELECT {_BLOB_COLUMNS} FROM blobs WHERE container_id = ? AND name >= ?"
        args: list[object] = [container_id, start]
        if start_key:
            sql += f" AND (name > ? OR {_ORDER_KEY} >= ?)"
            args += [start, start_key]
        if end is not None:
            sql += " AND name < ?"
            args.append(end)
        if committed_only:
            sql += " AND committed = 1"
        if DELETED in kinds:  # soft-deleted records too: the base blob, and the kinds asked for, still restorable
            live = kinds.replace(DELETED, "")
            marks = ", ".join(["''", *("?" * len(live))])
            sql += (f" AND (substr(stamp, 1, 1) IN ({marks}) OR stamp = '{DELETED}' OR "
                    f"(substr(stamp, 1, 1) = '{DELETED}' AND substr(stamp, 2, 1) IN ({marks}))) "
                    f"AND (deleted_until_us IS NULL OR deleted_until_us > ?) ORDER BY name, {_ORDER_KEY}")
            args += [*live, *live, now_us()]
        elif kinds:
            sql += f" AND substr(stamp, 1, 1) IN ('', {', '.join('?' * len(kinds))}) ORDER BY name, {_ORDER_KEY}"
            args.extend(kinds)
        else:
            sql += " AND stamp = '' ORDER BY name"
        sql += " LIMIT ?"
        args.append(limit)
        return [_blob(r) for r in self.db.execute(sql, args)]

    def set_copy_progress(self, blob_id: int, copy_id: str, progress: str) -> None:
        self.db.execute("UPDATE blobs SET copy_progress = ? WHERE id = ? AND copy_id = ? AND copy_status = 'pending'",
                        (progress, blob_id, copy_id))

    def fail_pending_copies(self, description: str, now_us: int) -> int:
        """Mark every pending copy failed (at start-up: no copy survives the server); return how many."""
        cur = self.db.execute(
            "UPDATE blobs SET copy_status = 'failed', copy_description = ?, copy_completed_us = ? "
            "WHERE copy_status = 'pending'", (description, now_us))
        return cur.rowcount

    def deleted_records(self, container_id: int, name: str, now_us: int) -> list[Blob]:
        """The soft-deleted records of a name still restorable at ``now_us``."""
        return [_blob(r) for r in self.db.execute(
            f"SELECT {_BLOB_COLUMNS} FROM blobs WHERE container_id = ? AND name = ? AND stamp >= ? AND stamp < ? "
            "AND deleted_until_us > ? ORDER BY stamp", (container_id, name, DELETED, DELETED + "\uffff", now_us))]

    def stamps(self, container_id: int, name: str, prefix: str) -> list[Blob]:
        """The snapshots (``prefix`` SNAPSHOT) or previous versions (VERSION) of a name, oldest first."""
        return [_blob(r) for r in self.db.execute(
            f"SELECT {_BLOB_COLUMNS} FROM blobs WHERE container_id = ? AND name = ? AND stamp > ? AND stamp < ? "
            "ORDER BY stamp", (container_id, name, prefix, prefix + "\uffff"))]

    def has_stamps(self, container_id: int, name: str, prefix: str) -> bool:
        return self.db.execute(
            "SELECT 1 FROM blobs WHERE container_id = ? AND name = ? AND stamp > ? AND stamp < ? LIMIT 1",
            (container_id, name, prefix, prefix + "\uffff")).fetchone() is not None

    # --- parts of committed blobs -------------------------------------------------------------

    def part_extents(self, blob_id: int) -> list[str]:
        return [r[0] for r in self.db.execute(
            "SELECT DISTINCT extent FROM parts WHERE blob_id = ? AND extent <> ''", (blob_id,))]

    def replace_parts(self, blob_id: int, parts: Iterable[Part]) -> list[str]:
        """Make ``parts`` the content of the blob; return the extents the old content used."""
        old = self.part_extents(blob_id)
        self.db.execute("DELETE FROM parts WHERE blob_id = ?", (blob_id,))
        self.insert_parts(blob_id, parts)
        return old

    def insert_parts(self, blob_id: int, parts: Iterable[Part]) -> None:
        """Parts of a blob that has none yet (or none at these positions)."""
        self.db.executemany(
            "INSERT INTO parts (blob_id, seq, pos, length, extent, ext_offset, block_id, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ((blob_id, i, p.pos, p.length, p.extent, p.offset, p.block_id, p.data) for i, p in enumerate(parts)),
        )

    def delete_parts(self, blob_id: int, positions: Iterable[int]) -> None:
        """Drop the parts that start at ``positions`` (page blobs: one part per position)."""
        self.db.executemany("DELETE FROM parts WHERE blob_id = ? AND pos = ?", ((blob_id, p) for p in positions))

    def copy_parts(self, from_blob: int, to_blob: int) -> None:
        """Give ``to_blob`` (which has none) the parts of ``from_blob``: the bytes are shared, not copied.
        The tags go with them (a snapshot or version keeps the tags its blob had)."""
        self.db.execute(
            "INSERT INTO parts (blob_id, pos, seq, length, extent, ext_offset, block_id, data) "
            "SELECT ?, pos, seq, length, extent, ext_offset, block_id, data FROM parts WHERE blob_id = ?",
            (to_blob, from_blob))
        self._copy_tags(from_blob, to_blob)

    def move_parts(self, from_blob: int, to_blob: int) -> None:
        """Hand the parts of ``from_blob`` over to ``to_blob`` (which has none), with a copy of its tags."""
        self.db.execute("UPDATE parts SET blob_id = ? WHERE blob_id = ?", (to_blob, from_blob))
        self._copy_tags(from_blob, to_blob)

    def _copy_tags(self, from_blob: int, to_blob: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO tags (blob_id, name, value) SELECT ?, name, value FROM tags "
                        "WHERE blob_id = ?", (to_blob, from_blob))

    # --- tags ---------------------------------------------------------------------------------

    def set_tags(self, b: Blob, tags: dict[str, str]) -> None:
        """Make ``tags`` the tags of a stored blob (and ``b.tag_count`` their number)."""
        self.db.execute("DELETE FROM tags WHERE blob_id = ?", (b.id,))
        self.db.executemany("INSERT INTO tags (blob_id, name, value) VALUES (?, ?, ?)",
                            ((b.id, k, v) for k, v in tags.items()))
        b.tag_count = len(tags)
        self.db.execute("UPDATE blobs SET tag_count = ? WHERE id = ?", (b.tag_count, b.id))

    def tags(self, blob_id: int) -> dict[str, str]:
        return {r[0]: r[1] for r in self.db.execute(
            "SELECT name, value FROM tags WHERE blob_id = ? ORDER BY name", (blob_id,))}

    def tags_of(self, blob_ids: list[int]) -> dict[int, dict[str, str]]:
        """The tags of several blobs (those that have any), by blob id."""
        out: dict[int, dict[str, str]] = {}
        for start in range(0, len(blob_ids), 500):
            chunk = blob_ids[start:start + 500]
            for blob_id, name, value in self.db.execute(
                    f"SELECT blob_id, name, value FROM tags WHERE blob_id IN ({', '.join('?' * len(chunk))}) "
                    "ORDER BY blob_id, name", chunk):
                out.setdefault(blob_id, {})[name] = value
        return out

    def find_tagged(self, account: str, container: str | None, key: str, op: str, value: str,
                    after: tuple[str, str], limit: int) -> list[tuple[str, str, dict[str, str]]]:
        """(container, name, tags) of the live base blobs of ``account`` (in ``container``) whose tag
        ``key`` compares ``op`` to ``value``, by container and name, past ``after``."""
        if op not in ("=", ">", ">=", "<", "<="):
            raise ValueError(op)
        sql = ("SELECT c.name, b.name, b.id FROM tags t JOIN blobs b ON b.id = t.blob_id "
               "JOIN containers c ON c.id = b.container_id "
               f"WHERE t.name = ? AND t.value {op} ? AND c.account = ? AND b.stamp = '' AND b.committed = 1 "
               "AND c.deleted_us IS NULL "
               "AND (c.name > ? OR (c.name = ? AND b.name >= ?))")
        args: list[object] = [key, value, account, after[0], after[0], after[1]]
        if container is not None:
            sql += " AND c.name = ?"
            args.append(container)
        sql += " ORDER BY c.name, b.name LIMIT ?"
        args.append(limit)
        rows = self.db.execute(sql, args).fetchall()
        tags = self.tags_of([r[2] for r in rows])
        return [(r[0], r[1], tags.get(r[2], {})) for r in rows]

    def count_parts(self, blob_id: int) -> int:
        (count,) = self.db.execute("SELECT COUNT(*) FROM parts WHERE blob_id = ?", (blob_id,)).fetchone()
        return int(count)

    def extent_ranges(self, extent: str) -> list[tuple[int, int]]:
        """The ``(offset, length)`` runs of an extent that parts reference (any blob, any snapshot)."""
        return [(r[0], r[1]) for r in self.db.execute(
            "SELECT ext_offset, length FROM parts WHERE extent = ? AND extent <> '' ORDER BY ext_offset", (extent,))]

    def parts(self, blob_id: int, start: int = 0, end: int | None = None) -> list[Part]:
        """The parts of a blob overlapping bytes ``[start, end)``, in order."""
        if start > 0:  # from the part that holds ``start``: one statement, the common read of a range
            sql = (f"SELECT {_PART_COLUMNS} FROM parts WHERE blob_id = ? AND pos >= "
                   "(SELECT COALESCE(MAX(pos), 0) FROM parts WHERE blob_id = ? AND pos <= ?)")
            args: list[object] = [blob_id, blob_id, start]
        else:
            sql = f"SELECT {_PART_COLUMNS} FROM parts WHERE blob_id = ? AND pos >= 0"
            args = [blob_id]
        if end is not None:
            sql += " AND pos < ?"
            args.append(end)
        sql += " ORDER BY pos, seq"
        return [p for p in map(_part, self.db.execute(sql, args)) if p.pos + p.length > start]

    # --- staged (uncommitted) blocks ----------------------------------------------------------

    def staged(self, blob_id: int) -> list[StagedBlock]:
        return [StagedBlock(*r) for r in self.db.execute(
            "SELECT block_id, extent, size FROM staged WHERE blob_id = ? ORDER BY seq", (blob_id,)
        )]

    def get_staged(self, blob_id: int, block_id: str) -> StagedBlock | None:
        row = self.db.execute(
            "SELECT block_id, extent, size FROM staged WHERE blob_id = ? AND block_id = ?", (blob_id, block_id)
        ).fetchone()
        return StagedBlock(*row) if row else None

    def put_staged(self, blob_id: int, block: StagedBlock, now_us: int) -> str | None:
        """Stage a block (replacing one with the same id); return the replaced block's extent."""
        old = self.get_staged(blob_id, block.block_id)
        if old is not None:
            self.db.execute("DELETE FROM staged WHERE blob_id = ? AND block_id = ?", (blob_id, block.block_id))
        row = self.db.execute("SELECT MAX(seq) FROM staged WHERE blob_id = ?", (blob_id,)).fetchone()
        seq = (row[0] if row and row[0] is not None else 0) + 1
        self.db.execute(
            "INSERT INTO staged (blob_id, block_id, seq, extent, size, created_us) VALUES (?, ?, ?, ?, ?, ?)",
            (blob_id, block.block_id, seq, block.extent, block.size, now_us),
        )
        return old.extent if old else None

    def clear_staged(self, blob_id: int) -> list[str]:
        extents = [r[0] for r in self.db.execute("SELECT extent FROM staged WHERE blob_id = ?", (blob_id,))]
        if extents:
            self.db.execute("DELETE FROM staged WHERE blob_id = ?", (blob_id,))
        return extents

    def expire_staged(self, before_us: int) -> list[str]:
        """Drop blocks staged before ``before_us`` and blobs left with nothing; return their extents."""
        rows = self.db.execute("SELECT blob_id, extent FROM staged WHERE created_us < ?", (before_us,)).fetchall()
        if not rows:
            return []
        self.db.execute("DELETE FROM staged WHERE created_us < ?", (before_us,))
        for blob_id in {r[0] for r in rows}:
            (count,) = self.db.execute("SELECT COUNT(*) FROM staged WHERE blob_id = ?", (blob_id,)).fetchone()
            self.db.execute("UPDATE blobs SET staged_count = ? WHERE id = ?", (count, blob_id))
            if count == 0:
                self.db.execute("UPDATE blobs SET block_id_len = NULL WHERE id = ? AND committed = 1 "
                                "AND NOT EXISTS (SELECT 1 FROM parts WHERE blob_id = ? AND block_id IS NOT NULL)",
                                (blob_id, blob_id))
                self.db.execute("DELETE FROM blobs WHERE id = ? AND committed = 0", (blob_id,))
        return [r[1] for r in rows]

    # --- extents ------------------------------------------------------------------------------

    def is_referenced(self, extent: str) -> bool:
        return bool(
            self.db.execute("SELECT 1 FROM parts WHERE extent = ? AND extent <> '' LIMIT 1", (extent,)).fetchone()
            or self.db.execute("SELECT 1 FROM staged WHERE extent = ? LIMIT 1", (extent,)).fetchone()
        )

    def all_extents(self) -> set[str]:
        return {r[0] for r in self.db.execute(
            "SELECT DISTINCT extent FROM parts WHERE extent <> '' UNION SELECT extent FROM staged")}

    # --- service properties -------------------------------------------------------------------

    def get_service_properties(self, account: str) -> str | None:
        row = self.db.execute("SELECT body FROM service_properties WHERE account = ?", (account,)).fetchone()
        return str(row[0]) if row else None

    def all_service_properties(self) -> dict[str, str]:
        return {r[0]: str(r[1]) for r in self.db.execute("SELECT account, body FROM service_properties")}

    def set_service_properties(self, account: str, body: str) -> None:
        self.db.execute("DELETE FROM service_properties WHERE account = ?", (account,))
        self.db.execute("INSERT INTO service_properties (account, body) VALUES (?, ?)", (account, body))
