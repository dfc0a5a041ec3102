"""PostgreSQL store: several engines share one database and split the work through leases.

Each transaction runs in a worker thread on a pooled connection (psycopg's blocking API, since a
store function calls the transaction's methods synchronously). There are as many worker threads as
pooled connections, so a thread never waits for another thread's connection.

Leases live in the rows they guard (`lease_token`, `lease_until`) and expire by the database's
clock, so engines whose clocks disagree still agree on when a lease has lapsed. Writers to one
instance serialize on its row lock (`SELECT ... FOR UPDATE`); the scans that look for work skip rows
another transaction has locked. Commits that make work ready are announced with NOTIFY, delivered
only when the transaction commits, so other engines react at once instead of polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from ..workflows import Instance, RuntimeStatus
from .base import ActivityRow, Announcement, Store, StoreTx, StoreUnavailable
from .postgres_concurrency import CONCURRENCY_MIGRATION, ConcurrencySql
from .sql import (
    ACTIVITY_COLUMNS,
    INSTANCE_COLUMNS,
    INSTANCE_FIELDS,
    INSTANCE_VALUES,
    MANAGEMENT_INDEXES,
    SqlTx,
    instance_row,
    row_instance,
)

T = TypeVar("T")

log = logging.getLogger("dapr_workflows.store")

SCHEMA_VERSION = 5

# The NOTIFY channel every engine of one database listens on.
CHANNEL = "dapr_workflows"

# Serializes schema migrations of engines that start at once (an arbitrary, fixed 64-bit key).
_MIGRATION_LOCK = 0x6461707277666C77

# The database's clock in microseconds since the epoch: the one clock all engines share.
_DB_NOW = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"

# A lease is free when nobody holds it or it lapsed; release clears both columns together.
_LEASE_FREE = f"(lease_until IS NULL OR lease_until < {_DB_NOW})"

_DEFAULT_POOL_SIZE = 8
_DEFAULT_POOL_TIMEOUT = 10.0
_CHECK_AFTER_IDLE = 1.0  # seconds a pooled connection may sit unused before it is checked
_RETRIES = 5  # attempts after the first, on a deadlock or a serialization failure
# A unique violation is a row another transaction created first (e.g. two starts of one ID):
# running the transaction again sees it.
_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure, pg_errors.UniqueViolation)
# pg_notify refuses payloads of 8000 bytes or more; work with a longer key is left to the sweep.
_MAX_NOTIFY_BYTES = 7900
_LISTEN_BACKOFF_FIRST = 0.5
_LISTEN_BACKOFF_MAX = 10.0

# libpq settings unless the URL sets them: a dead server or network is noticed within half a
# minute, even on a connection that only waits (a listener, an idle pooled connection).
_NETWORK_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}

# instance_id is compared byte by byte (COLLATE "C"), as in SQLite: listing pages by ID then match
# the SQLite store's order, and the primary key's index also serves prefix searches.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """
        CREATE TABLE instances (
            instance_id TEXT COLLATE "C" PRIMARY KEY,
            dialect TEXT NOT NULL,
            name TEXT NOT NULL,
            version TEXT,
            status INTEGER NOT NULL,
            execution_id TEXT NOT NULL,
            input TEXT,
            output TEXT,
            custom_status TEXT,
            failure BYTEA,
            parent_instance_id TEXT COLLATE "C",
            parent_task_id BIGINT,
            parent_execution_id TEXT,
            tags TEXT,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            completed_at BIGINT,
            scheduled_start_at BIGINT,
            rerun TEXT
        )
        """,
        "CREATE INDEX instances_parent ON instances (parent_instance_id)",
        "CREATE INDEX instances_created ON instances (created_at)",
        """
        CREATE TABLE history (
            instance_id TEXT COLLATE "C" NOT NULL,
            seq BIGINT NOT NULL,
            event BYTEA NOT NULL,
            PRIMARY KEY (instance_id, seq)
        )
        """,
        """
        CREATE TABLE inbox (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            instance_id TEXT COLLATE "C" NOT NULL,
            visible_at BIGINT NOT NULL,
            event BYTEA NOT NULL
        )
        """,
        "CREATE INDEX inbox_instance ON inbox (instance_id, id)",
        "CREATE INDEX inbox_visible ON inbox (visible_at)",
        """
        CREATE TABLE activities (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            instance_id TEXT COLLATE "C" NOT NULL,
            execution_id TEXT NOT NULL,
            dialect TEXT NOT NULL,
            task_id BIGINT NOT NULL,
            request BYTEA NOT NULL
        )
        """,
        "CREATE INDEX activities_instance ON activities (instance_id)",
    ),
    2: (
        """
        CREATE TABLE outbox (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            created_at BIGINT NOT NULL,
            payload TEXT NOT NULL
        )
        """,
        "CREATE INDEX outbox_created ON outbox (created_at)",
    ),
    3: (
        "ALTER TABLE instances ADD COLUMN lease_token TEXT, ADD COLUMN lease_until BIGINT",
        "ALTER TABLE activities ADD COLUMN lease_token TEXT, ADD COLUMN lease_until BIGINT",
        # The activity scan filters on the lease alone; the instance scan starts from inbox_visible.
        "CREATE INDEX activities_lease ON activities (lease_until)",
        # An engine renews and releases its leases by token.
        "CREATE INDEX instances_lease_token ON instances (lease_token) WHERE lease_token IS NOT NULL",
        "CREATE INDEX activities_lease_token ON activities (lease_token) WHERE lease_token IS NOT NULL",
    ),
    # The management listing's filters and orders, and retention (management indexes).
    4: tuple(s.strip() for s in MANAGEMENT_INDEXES.split(";") if s.strip()),
    5: CONCURRENCY_MIGRATION,
}

# The upsert rewrites every column but the lease, which only claims and releases change.
_INSTANCE_UPDATE = ", ".join(
    f"{column} = EXCLUDED.{column}" for column in INSTANCE_FIELDS if column != "instance_id"
)


# Statuses whose instances the sweep leaves out: finished ones take no more turns; what a
# suspended one takes is announced, and a resume makes it running again.
_NOT_CLAIMABLE = sorted(int(s) for s in RuntimeStatus if s.is_terminal or s == RuntimeStatus.SUSPENDED)


def _own_tokens(token: str) -> str:
    """A LIKE pattern of the tokens of the engine that issued `token` ("<engine>-<number>")."""
    engine, _, number = token.rpartition("-")
    return _like_prefix(engine + "-") if engine and number else _like_escape(token)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _like_prefix(prefix: str) -> str:
    return _like_escape(prefix) + "%"


def _placeholders(sql: str) -> str:
    """The statement in psycopg's placeholder style: this store writes every statement with `?`,
    as the SQL both stores share does (no statement here has a `?` or a `%` of its own)."""
    return sql.replace("?", "%s")


def _micros(seconds: float) -> int:
    return max(0, round(seconds * 1_000_000))


class _PostgresTx(ConcurrencySql, SqlTx):
    _db_now = _DB_NOW

    def __init__(self, conn: psycopg.Connection[TupleRow], origin: str, writable: bool) -> None:
        self._c = conn
        self._origin = origin
        # The transaction runs in pipeline mode (set by the store): statements whose results are
        # not needed are sent with the next one that is, or with the COMMIT (`_send`).
        self._pipeline: psycopg.Pipeline | None = None
        self._end_pipeline: Callable[[], None] = lambda: None
        # A read-only snapshot takes no row locks (PostgreSQL refuses FOR UPDATE there anyway).
        self._lock = " FOR UPDATE" if writable else ""
        # Rows another transaction has locked are being worked on: skipped, never waited for.
        self._skip_locked = " FOR UPDATE SKIP LOCKED" if writable else ""

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> psycopg.Cursor[TupleRow]:
        cur = self._c.execute(_placeholders(sql), args)
        if self._pipeline is not None:
            # The caller may read rowcount or rows: wait for this statement's result (and the
            # queued ones' before it, whose errors surface here).
            self._pipeline.sync()
        return cur

    def _leave_pipeline(self) -> None:
        """Plain mode for the rest of the transaction (COPY refuses pipeline mode); the queued
        statements' results, errors included, come first."""
        if self._pipeline is not None:
            self._pipeline = None
            self._end_pipeline()

    def _send(self, sql: str, args: Sequence[Any] = ()) -> None:
        """A statement whose result nobody reads: queued, it goes in one round trip with the next
        statement that waits for its result, or with the COMMIT; an error it meets aborts the
        transaction (PostgreSQL skips the rest of the pipeline, COMMIT included) and is raised there.

        Never a prepared statement: psycopg's cache of them gets out of step with the server when a
        statement it prepares in a batch is skipped after an error in that batch."""
        self._c.execute(_placeholders(sql), args, prepare=False)

    def _id_prefix(self, prefix: str) -> tuple[str, list[Any]]:
        # A LIKE prefix can use the primary key's index (instance_id is COLLATE "C").
        return "instance_id LIKE ?", [_like_prefix(prefix)]

    def _contains(self, column: str, text: str) -> tuple[str, list[Any]]:
        return f"strpos({column}, ?) > 0", [text]

    def put_instances(self, instances: list[Instance]) -> None:
        # COPY into a scratch table, then one upsert: far fewer round trips than a row at a time.
        self._leave_pipeline()
        self._c.execute(
            "CREATE TEMP TABLE IF NOT EXISTS instances_import (LIKE instances) ON COMMIT DELETE ROWS"
        )
        with self._c.cursor() as cur:
            with cur.copy(f"COPY instances_import ({INSTANCE_COLUMNS}) FROM STDIN") as copy:
                for inst in instances:
                    copy.write_row(instance_row(inst))
            cur.execute(
                f"INSERT INTO instances ({INSTANCE_COLUMNS}) SELECT {INSTANCE_COLUMNS} FROM instances_import "
                f"ON CONFLICT (instance_id) DO UPDATE SET {_INSTANCE_UPDATE}"
            )

    def _one(self, sql: str, args: Sequence[Any] = ()) -> TupleRow | None:
        return self._execute(sql, args).fetchone()

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[TupleRow]:
        return self._execute(sql, args).fetchall()

    # instances

    def get_instance(self, instance_id: str) -> Instance | None:
        row = self._one(
            f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE instance_id = ?{self._lock}", (instance_id,)
        )
        return row_instance(row) if row else None

    def put_instance(self, i: Instance) -> None:
        self._send(
            f"INSERT INTO instances ({INSTANCE_COLUMNS}) VALUES ({INSTANCE_VALUES}) "
            f"ON CONFLICT (instance_id) DO UPDATE SET {_INSTANCE_UPDATE}",
            instance_row(i),
        )

    def delete_instance(self, instance_id: str) -> None:
        # One round trip for the four tables.
        self._execute(
            "WITH h AS (DELETE FROM history WHERE instance_id = ?), "
            "b AS (DELETE FROM inbox WHERE instance_id = ?), "
            "a AS (DELETE FROM activities WHERE instance_id = ?) "
            "DELETE FROM instances WHERE instance_id = ?",
            (instance_id,) * 4,
        )

    # history

    def append_history(self, instance_id: str, first_seq: int, events: list[bytes]) -> None:
        if not events:
            return
        self._send(
            "INSERT INTO history (instance_id, seq, event) "
            "SELECT ?, ? + n - 1, e FROM unnest(?::bytea[]) WITH ORDINALITY AS t(e, n)",
            (instance_id, first_seq, events),
        )

    # inbox

    def add_inbox(self, instance_id: str, event: bytes, visible_at: int) -> int:
        row = self._one(
            "INSERT INTO inbox (instance_id, visible_at, event) VALUES (?, ?, ?) RETURNING id",
            (instance_id, visible_at, event),
        )
        assert row is not None
        return int(row[0])

    def delete_inbox(self, row_ids: list[int]) -> None:
        if row_ids:
            self._send("DELETE FROM inbox WHERE id = ANY(?)", (row_ids,))

    # activities

    def add_activity(
        self, instance_id: str, execution_id: str, dialect: str, task_id: int, request: bytes
    ) -> int:
        row = self._one(
            "INSERT INTO activities (instance_id, execution_id, dialect, task_id, request) "
            "VALUES (?, ?, ?, ?, ?) RETURNING id",
            (instance_id, execution_id, dialect, task_id, request),
        )
        assert row is not None
        return int(row[0])

    def clear_activities(self, instance_id: str) -> list[int]:
        rows = self._all("DELETE FROM activities WHERE instance_id = ? RETURNING id", (instance_id,))
        return sorted(r[0] for r in rows)

    # outbox

    def add_outbox(self, payload: str, created_at: int) -> int:
        row = self._one(
            "INSERT INTO outbox (created_at, payload) VALUES (?, ?) RETURNING id", (created_at, payload)
        )
        assert row is not None
        return int(row[0])

    # leases

    def create_instance(self, i: Instance) -> None:
        # A plain INSERT: a concurrent start of the same ID fails here and is run again (_RETRYABLE).
        self._execute(
            f"INSERT INTO instances ({INSTANCE_COLUMNS}) VALUES ({INSTANCE_VALUES})", instance_row(i)
        )

    def claim_instance(self, instance_id: str, token: str, seconds: float) -> bool:
        # Two claims of one row serialize on its lock; the later one re-checks the condition
        # against the committed winner and updates nothing.
        cur = self._execute(
            f"UPDATE instances SET lease_token = ?, lease_until = {_DB_NOW} + ? "
            f"WHERE instance_id = ? AND ({_LEASE_FREE} OR lease_token = ? OR lease_token LIKE ?)",
            (token, _micros(seconds), instance_id, token, _own_tokens(token)),
        )
        return cur.rowcount > 0

    def holds_instance(self, instance_id: str, token: str) -> bool:
        # The row lock keeps another engine from claiming the lapsed lease until this transaction,
        # which is about to record the holder's work, has committed.
        row = self._one(
            f"SELECT lease_token FROM instances WHERE instance_id = ?{self._lock}", (instance_id,)
        )
        return row is not None and row[0] == token

    def release_instance(self, instance_id: str, token: str) -> None:
        self._send(
            "UPDATE instances SET lease_token = NULL, lease_until = NULL "
            "WHERE instance_id = ? AND lease_token = ?",
            (instance_id, token),
        )

    def claim_activity(self, activity_id: int, token: str, seconds: float) -> ActivityRow | None:
        row = self._one(
            f"UPDATE activities SET lease_token = ?, lease_until = {_DB_NOW} + ? "
            f"WHERE id = ? AND ({_LEASE_FREE} OR lease_token = ? OR lease_token LIKE ?) "
            f"RETURNING {ACTIVITY_COLUMNS}",
            (token, _micros(seconds), activity_id, token, _own_tokens(token)),
        )
        return ActivityRow(*row) if row else None

    def holds_activity(self, activity_id: int, token: str) -> bool:
        row = self._one(f"SELECT lease_token FROM activities WHERE id = ?{self._lock}", (activity_id,))
        return row is not None and row[0] == token

    def release_activity(self, activity_id: int, token: str) -> None:
        self._send(
            "UPDATE activities SET lease_token = NULL, lease_until = NULL WHERE id = ? AND lease_token = ?",
            (activity_id, token),
        )

    def renew_leases(self, tokens: list[str], seconds: float) -> None:
        if tokens:
            us = _micros(seconds)
            self._execute(
                f"WITH i AS (UPDATE instances SET lease_until = {_DB_NOW} + ? WHERE lease_token = ANY(?)) "
                f"UPDATE activities SET lease_until = {_DB_NOW} + ? WHERE lease_token = ANY(?)",
                (us, tokens, us, tokens),
            )

    def release_leases(self, tokens: list[str]) -> None:
        if tokens:
            self._execute(
                "WITH i AS (UPDATE instances SET lease_token = NULL, lease_until = NULL "
                "WHERE lease_token = ANY(?)) "
                "UPDATE activities SET lease_token = NULL, lease_until = NULL WHERE lease_token = ANY(?)",
                (tokens, tokens),
            )

    def claimable_instances(self, now: int, limit: int, dialects: list[str]) -> list[tuple[str, str]]:
        # From the visible inbox rows (their index), the instances waiting longest first; only the
        # instance rows are locked, and rows another transaction has locked are skipped.
        rows = self._all(
            "SELECT i.instance_id, i.dialect FROM instances i JOIN "
            "(SELECT instance_id, min(visible_at) AS due FROM inbox WHERE visible_at <= ? "
            "GROUP BY instance_id) b ON b.instance_id = i.instance_id "
            f"WHERE i.status <> ALL(?) AND i.dialect = ANY(?) AND {_LEASE_FREE} "
            f"ORDER BY b.due LIMIT ?{self._skip_locked.replace('UPDATE', 'UPDATE OF i')}",
            (now, _NOT_CLAIMABLE, dialects, limit),
        )
        return [(r[0], r[1]) for r in rows]

    def claimable_activities(self, limit: int, dialects: list[str]) -> list[tuple[int, str]]:
        rows = self._all(
            f"SELECT id, dialect FROM activities WHERE dialect = ANY(?) AND {_LEASE_FREE} "
            f"ORDER BY id LIMIT ?{self._skip_locked}",
            (dialects, limit),
        )
        return [(r[0], r[1]) for r in rows]

    def announce(
        self, ready: list[tuple[str, str]], activities: list[tuple[int, str]], changed: list[str]
    ) -> None:
        payloads = [f"{self._origin}|instance|{dialect}|{key}" for key, dialect in ready]
        payloads += [f"{self._origin}|activity|{dialect}|{key}" for key, dialect in activities]
        payloads += [f"{self._origin}|changed||{key}" for key in changed]
        payloads = [p for p in payloads if len(p.encode()) < _MAX_NOTIFY_BYTES]
        if payloads:
            # NOTIFY is transactional: the others hear it at commit, and never after a rollback.
            self._send("SELECT pg_notify(?, p) FROM unnest(?::text[]) AS p", (CHANNEL, payloads))


_OWN_OPTIONS = ("pool_size", "pool_timeout")


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    """The URL for libpq without this store's own query options, and those options."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _OWN_OPTIONS:
            ours[key] = value
        else:
            theirs.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(theirs))), ours


def _describe(conninfo: str) -> str:
    params = conninfo_to_dict(conninfo)
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or 5432)
    dbname = str(params.get("dbname") or params.get("user") or "")
    return f"PostgreSQL {host}:{port}/{dbname}"


class PostgresStore(Store):
    shared = True

    def __init__(
        self, conninfo: str, pool_size: int = _DEFAULT_POOL_SIZE, pool_timeout: float = _DEFAULT_POOL_TIMEOUT
    ) -> None:
        self.description = _describe(conninfo)
        given = conninfo_to_dict(conninfo)
        self._conninfo = conninfo
        self._connect_options = {k: v for k, v in _NETWORK_DEFAULTS.items() if k not in given}
        # Tells this store's own announcements apart from the other engines'.
        self._origin = uuid.uuid4().hex
        self._closed = False
        self._listen_tasks: set[asyncio.Task[None]] = set()
        try:
            with psycopg.connect(conninfo, autocommit=True, **self._connect_options) as conn:
                self._migrate(conn)
        except psycopg.OperationalError as err:
            raise RuntimeError(f"cannot connect to {self.description}: {str(err).strip()}") from None
        except psycopg.Error as err:  # e.g. a user without the right to create tables
            raise RuntimeError(
                f"cannot create the schema in {self.description}: {str(err).strip()}"
            ) from None
        # When each pooled connection last committed: one used a moment ago is not checked again.
        self._last_used: weakref.WeakKeyDictionary[psycopg.Connection[TupleRow], float] = (
            weakref.WeakKeyDictionary()
        )
        self._pool: ConnectionPool[psycopg.Connection[TupleRow]] = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, **self._connect_options},
            # Checked as it leaves the pool, a connection the server dropped (say, in a restart) is
            # replaced before a transaction uses it, so transactions succeed again once the server is
            # back instead of each failing on a dead connection first.
            check=self._check_connection,
            timeout=pool_timeout,
            name="dapr-workflows",
            open=False,
        )
        self._pool.open(wait=False)
        # One thread per pooled connection: a thread never waits for another thread's connection.
        self._executor = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="dapr-workflows-pg")

    def _check_connection(self, conn: psycopg.Connection[TupleRow]) -> None:
        """The pool's check before a transaction takes a connection: a round trip, so skipped for a
        connection that committed within the last `_CHECK_AFTER_IDLE` seconds (a server that went
        away since then fails that one transaction, and the pool replaces the broken connection)."""
        if time.monotonic() - self._last_used.get(conn, float("-inf")) >= _CHECK_AFTER_IDLE:
            ConnectionPool.check_connection(conn)

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        """`postgresql://user:password@host:port/dbname?pool_size=8&pool_timeout=10` (libpq's URL form)."""
        conninfo, options = _split_url(url)
        try:
            pool_size = int(options.get("pool_size", _DEFAULT_POOL_SIZE))
            pool_timeout = float(options.get("pool_timeout", _DEFAULT_POOL_TIMEOUT))
        except ValueError:
            raise ValueError(
                "pool_size must be a whole number and pool_timeout a number of seconds"
            ) from None
        if pool_size < 1:
            raise ValueError(f"pool_size={pool_size} is not supported: use 1 or more")
        if pool_timeout <= 0:
            raise ValueError(
                f"pool_timeout={pool_timeout:g} is not supported: use a positive number of seconds"
            )
        try:
            conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as err:
            raise ValueError(f"malformed PostgreSQL URL: {err}") from None
        return cls(conninfo, pool_size=pool_size, pool_timeout=pool_timeout)

    def _migrate(self, conn: psycopg.Connection[TupleRow]) -> None:
        with conn.transaction():
            # Engines starting at once take turns here; each reads the version under the lock.
            conn.execute(_placeholders("SELECT pg_advisory_xact_lock(?)"), (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = int(row[0]) if row and row[0] is not None else 0
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"the store has schema version {current}, newer than this engine's {SCHEMA_VERSION}: "
                    "upgrade dapr-workflows"
                )
            for version in sorted(v for v in _MIGRATIONS if v > current):
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute(_placeholders("INSERT INTO schema_version (version) VALUES (?)"), (version,))
                log.info("%s: applied schema migration %d", self.description, version)

    def _transaction(self, fn: Callable[[StoreTx], T], writable: bool) -> T:
        begin = "BEGIN" if writable else "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
        with self._pool.connection() as conn:
            tx = _PostgresTx(conn, self._origin, writable)
            attempt = 0
            while True:
                try:
                    # Pipeline mode: BEGIN goes with the first statement, the statements nobody
                    # reads go with the next one or with the COMMIT, whose result the block's end
                    # waits for (a failed COMMIT raises there, before the result is returned).
                    with contextlib.ExitStack() as pipelined:
                        tx._pipeline = pipelined.enter_context(conn.pipeline())
                        tx._end_pipeline = pipelined.close
                        conn.execute(begin, prepare=False)  # nothing to plan
                        result = fn(tx)
                        conn.execute("COMMIT", prepare=False)
                    self._last_used[conn] = time.monotonic()
                    return result
                except _RETRYABLE as err:
                    conn.execute("ROLLBACK")
                    if attempt >= _RETRIES:
                        raise
                    attempt += 1
                    # Jittered, so the two sides of a deadlock do not meet again in step.
                    delay = random.uniform(0.5, 1.5) * 0.005 * 2**attempt
                    log.warning(
                        "%s: %s; running the transaction again in %.0f ms (retry %d of %d)",
                        self.description,
                        type(err).__name__,
                        delay * 1000,
                        attempt,
                        _RETRIES,
                    )
                    time.sleep(delay)
                except BaseException:
                    if not conn.closed and conn.info.transaction_status != pq.TransactionStatus.IDLE:
                        try:
                            conn.execute("ROLLBACK")
                        except psycopg.Error:
                            pass  # the connection is gone; the pool discards it
                    raise

    async def run(self, fn: Callable[[StoreTx], T]) -> T:
        return await self._in_thread(fn, True)

    async def read(self, fn: Callable[[StoreTx], T]) -> T:
        return await self._in_thread(fn, False)

    async def _in_thread(self, fn: Callable[[StoreTx], T], writable: bool) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._transaction, fn, writable)
        except psycopg.OperationalError as err:  # the server or the network is down; no commit
            raise StoreUnavailable(
                f"the store ({self.description}) is unavailable: {str(err).strip()}"
            ) from err

    async def listen(self, on_announcement: Callable[[Announcement], None]) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._listen_tasks.add(task)
        try:
            await self._listen(on_announcement)
        finally:
            self._listen_tasks.discard(task)

    async def _listen(self, on_announcement: Callable[[Announcement], None]) -> None:
        delay = _LISTEN_BACKOFF_FIRST
        while not self._closed:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, **self._connect_options
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    delay = _LISTEN_BACKOFF_FIRST
                    # What others committed while nobody listened is found only by a scan.
                    on_announcement(Announcement("resync", "", ""))
                    async for notify in conn.notifies():
                        parts = notify.payload.split("|", 3)  # an instance ID may hold "|"
                        if len(parts) == 4 and parts[0] != self._origin:
                            on_announcement(Announcement(parts[1], parts[2], parts[3]))
            except Exception as err:  # a lost connection, or anything else: listen again
                if self._closed:
                    return
                log.warning(
                    "%s: not listening for other engines' changes (retrying in %.1fs): %s",
                    self.description,
                    delay,
                    str(err).strip(),
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _LISTEN_BACKOFF_MAX)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in list(self._listen_tasks):
            task.cancel()
        await asyncio.to_thread(self._pool.close)
        self._executor.shutdown(wait=False)
