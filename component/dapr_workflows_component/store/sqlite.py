"""SQLite store: one file, one engine process, one transaction per state change.

Transactions run on the event loop's thread: each is a handful of indexed statements, far shorter
than a hop to a worker thread. WAL mode with synchronous=NORMAL makes every commit survive a killed
process; `synchronous=FULL` (the `sync=full` URL option) also survives a power cut, at a cost.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from ..workflows import Instance
from .base import ActivityRow, InboxRow, Store, StoreTx, StoreUnavailable
from .entity_sql import entity_tables
from .sql import (
    INSTANCE_COLUMNS,
    INSTANCE_FIELDS,
    INSTANCE_VALUES,
    MANAGEMENT_INDEXES,
    SqlTx,
    instance_row,
    row_instance,
)
from .sqlite_guard import FileGuard, store_error
from .sqlite_rows import ActivityRows, InboxRows, InstanceRows, forget_all

T = TypeVar("T")

SCHEMA_VERSION = 6

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE instances (
        instance_id TEXT PRIMARY KEY,
        dialect TEXT NOT NULL,
        name TEXT NOT NULL,
        version TEXT,
        status INTEGER NOT NULL,
        execution_id TEXT NOT NULL,
        input TEXT,
        output TEXT,
        custom_status TEXT,
        failure BLOB,
        parent_instance_id TEXT,
        parent_task_id INTEGER,
        parent_execution_id TEXT,
        tags TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        completed_at INTEGER,
        scheduled_start_at INTEGER,
        rerun TEXT
    );
    CREATE INDEX instances_parent ON instances (parent_instance_id);
    CREATE INDEX instances_created ON instances (created_at);
    CREATE TABLE history (
        instance_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        event BLOB NOT NULL,
        PRIMARY KEY (instance_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE inbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        instance_id TEXT NOT NULL,
        visible_at INTEGER NOT NULL,
        event BLOB NOT NULL
    );
    CREATE INDEX inbox_instance ON inbox (instance_id, id);
    CREATE INDEX inbox_visible ON inbox (visible_at);
    CREATE TABLE activities (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        instance_id TEXT NOT NULL,
        execution_id TEXT NOT NULL,
        dialect TEXT NOT NULL,
        task_id INTEGER NOT NULL,
        request BLOB NOT NULL
    );
    CREATE INDEX activities_instance ON activities (instance_id);
    """,
    2: """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at INTEGER NOT NULL,
        payload TEXT NOT NULL
    );
    """,
    # PostgreSQL's outbox had this index from the start; lifecycle events expire by created_at.
    3: "CREATE INDEX outbox_created ON outbox (created_at);",
    # The management listing's filters and orders, and retention (management indexes).
    4: MANAGEMENT_INDEXES,
    # Durable entities: state, locks, waiting critical sections.
    6: ";".join(entity_tables("INTEGER PRIMARY KEY AUTOINCREMENT", "TEXT", "INTEGER")),
}


# Instance rows kept as last read or written (`_SQLiteTx._known`), at most this many, each with at
# most this many bytes of input, output, custom status and failure.
_KNOWN_ROWS = 4096
_KNOWN_ROW_BYTES = 16 * 1024
# The positions in an instance row of the columns whose size counts against _KNOWN_ROW_BYTES.
_PAYLOAD_COLUMNS = tuple(INSTANCE_FIELDS.index(c) for c in ("input", "output", "custom_status", "failure"))


class _SQLiteTx(SqlTx):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn
        # Instance rows as the file holds them, by ID: this connection is the file's only writer,
        # and every write of an instance row goes through put_instance(s) and delete_instance, so
        # a row seen here stays true until this connection changes it (`forget` after a rollback).
        # A read then needs no statement, and a write changes only the columns that differ (an
        # UPDATE of the status and times touches three of the table's indexes instead of the
        # seven a replaced row rewrites, and so far fewer pages to commit).
        self._known = InstanceRows()
        self._updates: dict[tuple[int, ...], str] = {}
        # Inbox and activity rows, kept alike (sqlite_rows.py).
        self._inbox = InboxRows()
        self._activities = ActivityRows()

    def forget(self) -> None:
        """The transaction rolled back: the rows seen during it may not be the file's."""
        forget_all(self)

    def _remember(self, row: tuple[Any, ...]) -> None:
        if sum(len(row[i]) for i in _PAYLOAD_COLUMNS if row[i] is not None) > _KNOWN_ROW_BYTES:
            self._known.pop(row[0], None)
            return
        if len(self._known) >= _KNOWN_ROWS:
            self._known.clear()
        self._known[row[0]] = row

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._c.execute(sql, args)

    def _id_prefix(self, prefix: str) -> tuple[str, list[Any]]:
        # The range lets the primary key's index find the rows (IDs compare as UTF-8 bytes, in the
        # order of code points); substr keeps the condition exact where no upper bound is found.
        last = ord(prefix[-1])
        upper = last + 1 if last + 1 != 0xD800 else 0xE000
        if upper > 0x10FFFF:
            return "instance_id >= ? AND substr(instance_id, 1, ?) = ?", [prefix, len(prefix), prefix]
        return "instance_id >= ? AND instance_id < ?", [prefix, prefix[:-1] + chr(upper)]

    def get_instance(self, instance_id: str) -> Instance | None:
        row = self._known.get(instance_id)
        if row is None:
            row = self._c.execute(
                f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE instance_id = ?", (instance_id,)
            ).fetchone()
            if row is None:
                return None
            self._remember(row)
        return row_instance(row)

    def put_instance(self, i: Instance) -> None:
        row = instance_row(i)
        known = self._known.get(i.instance_id)
        if known is None:
            self._c.execute(
                f"INSERT OR REPLACE INTO instances ({INSTANCE_COLUMNS}) VALUES ({INSTANCE_VALUES})", row
            )
        else:
            changed = tuple(n for n in range(1, len(row)) if row[n] != known[n])
            if changed:
                sql = self._updates.get(changed)
                if sql is None:
                    columns = ", ".join(f"{INSTANCE_FIELDS[n]} = ?" for n in changed)
                    sql = self._updates[changed] = f"UPDATE instances SET {columns} WHERE instance_id = ?"
                self._c.execute(sql, [*(row[n] for n in changed), i.instance_id])
        self._remember(row)

    def put_instances(self, instances: list[Instance]) -> None:
        self._c.executemany(
            f"INSERT OR REPLACE INTO instances ({INSTANCE_COLUMNS}) VALUES ({INSTANCE_VALUES})",
            [instance_row(i) for i in instances],
        )
        for i in instances:
            self._known.pop(i.instance_id, None)

    def delete_instance(self, instance_id: str) -> None:
        self._known.pop(instance_id, None)
        self._inbox.drop(instance_id)
        self._activities.forget()  # (rare) which of them were the instance's is not kept
        for table in ("instances", "history", "inbox", "activities"):
            self._c.execute(f"DELETE FROM {table} WHERE instance_id = ?", (instance_id,))

    def append_history(self, instance_id: str, first_seq: int, events: list[bytes]) -> None:
        self._c.executemany(
            "INSERT INTO history (instance_id, seq, event) VALUES (?, ?, ?)",
            [(instance_id, first_seq + n, e) for n, e in enumerate(events)],
        )

    def add_inbox(self, instance_id: str, event: bytes, visible_at: int) -> None:
        cur = self._c.execute(
            "INSERT INTO inbox (instance_id, visible_at, event) VALUES (?, ?, ?)",
            (instance_id, visible_at, event),
        )
        assert cur.lastrowid is not None
        self._inbox.added(InboxRow(cur.lastrowid, instance_id, visible_at, event))

    def inbox(self, instance_id: str, visible_before: int) -> list[InboxRow]:
        rows = self._inbox.rows(instance_id)
        if rows is None:
            cur = self._c.execute(
                "SELECT id, instance_id, visible_at, event FROM inbox WHERE instance_id = ? ORDER BY id",
                (instance_id,),
            )
            rows = [InboxRow(*r) for r in cur.fetchall()]
            self._inbox.load(instance_id, rows)
        return [r for r in rows if r.visible_at <= visible_before]

    def clear_inbox(self, instance_id: str) -> None:
        super().clear_inbox(instance_id)
        # Not kept as empty: every finished instance clears its inbox, and is read no more.
        self._inbox.drop(instance_id)

    def delete_inbox(self, row_ids: list[int]) -> None:
        self._inbox.deleted(row_ids)
        if len(row_ids) == 1:  # most turns consume one event: no list of parameters to build
            self._c.execute("DELETE FROM inbox WHERE id = ?", row_ids)
        elif row_ids:
            self._c.executemany("DELETE FROM inbox WHERE id = ?", [(i,) for i in row_ids])

    def add_activity(
        self, instance_id: str, execution_id: str, dialect: str, task_id: int, request: bytes
    ) -> int:
        cur = self._c.execute(
            "INSERT INTO activities (instance_id, execution_id, dialect, task_id, request) "
            "VALUES (?, ?, ?, ?, ?)",
            (instance_id, execution_id, dialect, task_id, request),
        )
        assert cur.lastrowid is not None
        row = ActivityRow(cur.lastrowid, instance_id, execution_id, dialect, task_id, request)
        self._activities.keep(row)
        return cur.lastrowid

    def get_activity(self, activity_id: int) -> ActivityRow | None:
        row = self._activities.get(activity_id)
        if row is None:
            row = super().get_activity(activity_id)
            if row is not None:
                self._activities.keep(row)
        return row

    def delete_activity(self, activity_id: int) -> bool:
        self._activities.deleted([activity_id])
        return super().delete_activity(activity_id)

    def clear_activities(self, instance_id: str) -> list[int]:
        ids = [
            r[0] for r in self._c.execute("SELECT id FROM activities WHERE instance_id = ?", (instance_id,))
        ]
        self._c.execute("DELETE FROM activities WHERE instance_id = ?", (instance_id,))
        self._activities.deleted(ids)
        return ids

    def add_outbox(self, payload: str, created_at: int) -> None:
        self._c.execute("INSERT INTO outbox (created_at, payload) VALUES (?, ?)", (created_at, payload))


def sqlite_path(url: str) -> str:
    """The file a `sqlite://` store URL names, or ":memory:"."""
    parts = urlsplit(url)
    if parts.netloc == ":memory:" or parts.path in ("/:memory:", ":memory:"):
        return ":memory:"
    # sqlite:///relative.db -> "relative.db"; sqlite:////abs/file.db -> "/abs/file.db"
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise ValueError(f"the store URL {url!r} names no file: use sqlite:///PATH")
    return path


def sqlite_files(url: str) -> list[str]:
    """Every file a store of this URL may create: the database first, then SQLite's `-wal` and
    `-shm` beside it (none for ":memory:")."""
    path = sqlite_path(url)
    if path == ":memory:":
        return []
    return [path, path + "-wal", path + "-shm"]


class SQLiteStore(Store):
    runs_in_caller = True

    def __init__(self, path: str, synchronous: str = "NORMAL") -> None:
        self.path = path
        self._guard: FileGuard | None = None
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._guard = FileGuard(path)
        where = os.path.abspath(path) if path != ":memory:" else path
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as err:
            self._close_guard()
            raise RuntimeError(
                store_error(err, where) or f"cannot open the SQLite store {where}: {err}"
            ) from None
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={synchronous}")
            self._conn.execute("PRAGMA foreign_keys=OFF")
            self._migrate()
        except BaseException as err:
            self._conn.close()
            self._close_guard()
            if isinstance(err, sqlite3.Error):
                sentence = store_error(err, where) or f"cannot open the SQLite store {where}: {err}"
                raise RuntimeError(sentence) from None
            raise
        self._tx = _SQLiteTx(self._conn)
        self.description = f"SQLite {os.path.abspath(path) if path != ':memory:' else ':memory:'}"

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        path = sqlite_path(url)
        options = parse_qs(urlsplit(url).query)
        sync = options.get("sync", ["normal"])[0].upper()
        if sync not in ("NORMAL", "FULL"):
            raise ValueError(f"sync={sync.lower()} is not supported: use sync=normal or sync=full")
        return cls(path, synchronous=sync)

    def _migrate(self) -> None:
        self._conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = row[0] or 0
        for version in sorted(v for v in _MIGRATIONS if v > current):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        if current > SCHEMA_VERSION:
            raise RuntimeError(
                f"the store has schema version {current}, newer than this engine's {SCHEMA_VERSION}: "
                "upgrade dapr-workflows"
            )

    async def run(self, fn: Callable[[StoreTx], T]) -> T:
        guard = self._guard
        if guard is not None:
            await guard.wait_turn()
            guard.refuse_if_lost()
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self._tx)
                conn.execute("COMMIT")
            except BaseException:
                self._tx.forget()
                if conn.in_transaction:  # a failed COMMIT may have rolled back already
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:
            unavailable = self._unavailable(err)
            if unavailable is None:
                raise
            raise unavailable from None
        if guard is not None:
            # Deleted or replaced during the transaction: its commit went to a file nobody opens
            # again, so it must not be acknowledged.
            guard.check()
            guard.succeeded()
        return result

    async def read(self, fn: Callable[[StoreTx], T]) -> T:
        # This process is the file's only writer and `fn` runs without yielding to the event loop,
        # so nothing changes under it: no transaction (and no write lock) is needed.
        if self._guard is not None:
            self._guard.refuse_if_lost()
        try:
            return fn(self._tx)
        except sqlite3.Error as err:
            unavailable = self._unavailable(err)
            if unavailable is None:
                raise
            raise unavailable from None

    def _unavailable(self, err: sqlite3.Error) -> StoreUnavailable | None:
        """StoreUnavailable for an error of the file or the disk; None for any other error."""
        return self._guard.failed(err) if self._guard is not None else None

    async def lost(self) -> str:
        if self._guard is None:
            return await super().lost()
        return await self._guard.lost()

    async def close(self) -> None:
        self._conn.close()
        self._close_guard()

    def _close_guard(self) -> None:
        # Only after the connection closed: closing any descriptor of the file drops the POSIX
        # locks SQLite holds on it.
        if self._guard is not None:
            self._guard.close()
            self._guard = None
