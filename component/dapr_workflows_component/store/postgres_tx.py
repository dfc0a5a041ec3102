"""A transaction of the PostgreSQL store (see `postgres.py`): the statements, run on one pooled
connection in pipeline mode, and what the transaction remembers of the rows it read (`TxMemo`)."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from ..workflows import Instance, RuntimeStatus
from .base import ActivityRow, InboxRow
from .postgres_cache import HistoryCache, TxMemo
from .postgres_concurrency import ConcurrencySql
from .postgres_ids import ActivityIds
from .postgres_loop import await_only
from .postgres_wire import Wire
from .sql import (
    ACTIVITY_COLUMNS,
    INSTANCE_COLUMNS,
    INSTANCE_FIELDS,
    INSTANCE_VALUES,
    Cursor,
    SqlTx,
    instance_row,
    row_instance,
)

# The NOTIFY channel every engine of one database listens on.
CHANNEL = "dapr_workflows"

# Every engine's listener holds this advisory lock (shared) while it listens; its two keys are
# "dapr" and "list" in ASCII.
LISTENER_LOCK = "1684107378, 1818850164"
_LISTENERS = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
    "(SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid = 1684107378 AND objid = 1818850164 AND objsubid = 2 AND pid <> ?"
)

# The database's clock in microseconds since the epoch: the one clock all engines share.
_DB_NOW = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"

# A lease is free when nobody holds it or it lapsed; release clears both columns together.
_LEASE_FREE = f"(lease_until IS NULL OR lease_until < {_DB_NOW})"

# pg_notify refuses payloads of 8000 bytes or more; work with a longer key is left to the sweep.
_MAX_NOTIFY_BYTES = 7900
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


def placeholders(sql: str) -> str:
    """The statement in psycopg's placeholder style: this store writes every statement with `?`,
    as the SQL both stores share does (no statement here has a `?` or a `%` of its own)."""
    return sql.replace("?", "%s")


def _micros(seconds: float) -> int:
    return max(0, round(seconds * 1_000_000))


# The instance row with its history version (the last column), as the memo keeps it.
_INSTANCE_ROW = f"{INSTANCE_COLUMNS}, history_version"

# The history of the instance row `i`, as an array, unless the version this engine caches is current
# (then NULL; a NULL version never matches).
_HISTORY_IF_STALE = (
    "(SELECT array_agg(h.event ORDER BY h.seq) FROM history h WHERE h.instance_id = i.instance_id "
    "AND (i.history_version = ?::uuid) IS NOT TRUE)"
)
# What a turn reads after its claim or lease check: the history (if stale) and the inbox rows visible
# by a bound (as three arrays), if the lease is this transaction's. A statement of its own, sent in
# the same round trip: it reads a snapshot taken after the claim got the row's lock, so it sees what
# a writer that held the lock committed (a subquery of the claim itself would read the snapshot from
# before the wait, older than the row it returns).
_TURN_READS = (
    f"SELECT {_HISTORY_IF_STALE}, b.ids, b.visible, b.events FROM instances i LEFT JOIN LATERAL "
    "(SELECT array_agg(id ORDER BY id) AS ids, array_agg(visible_at ORDER BY id) AS visible, "
    "array_agg(event ORDER BY id) AS events FROM inbox "
    "WHERE inbox.instance_id = i.instance_id AND visible_at <= ?) b ON true "
    "WHERE i.instance_id = ? AND i.lease_token = ?"
)
_HISTORY_READ = f"SELECT {_HISTORY_IF_STALE} FROM instances i WHERE i.instance_id = ? AND i.lease_token = ?"
# A result's activity row with its instance's row, both locked (as recording the result does).
_HELD_ACTIVITY = (
    "SELECT a.lease_token, {}, {} FROM activities a JOIN instances i ON i.instance_id = a.instance_id "
    "WHERE a.id = ? AND a.lease_token = ? FOR UPDATE"
).format(
    ", ".join(f"a.{c}" for c in ACTIVITY_COLUMNS.split(", ")),
    ", ".join(f"i.{c}" for c in _INSTANCE_ROW.split(", ")),
)


async def _copy_instances(conn: psycopg.AsyncConnection[TupleRow], instances: list[Instance]) -> None:
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS instances_import (LIKE instances) ON COMMIT DELETE ROWS"
    )
    async with conn.cursor() as cur:
        async with cur.copy(f"COPY instances_import ({INSTANCE_COLUMNS}) FROM STDIN") as copy:
            for inst in instances:
                await copy.write_row(instance_row(inst))
        await cur.execute(
            f"INSERT INTO instances ({INSTANCE_COLUMNS}) SELECT {INSTANCE_COLUMNS} FROM instances_import "
            f"ON CONFLICT (instance_id) DO UPDATE SET {_INSTANCE_UPDATE}"
        )


def listeners_besides(t: PostgresTx, pid: int) -> int:
    """How many sessions listen for announcements, the one of backend `pid` aside."""
    row = t._one(_LISTENERS, (pid,))
    return int(row[0]) if row else 0


class PostgresTx(ConcurrencySql, SqlTx):
    _db_now = _DB_NOW

    def __init__(
        self,
        conn: psycopg.AsyncConnection[TupleRow],
        origin: str,
        writable: bool,
        cache: HistoryCache,
        activity_ids: ActivityIds,
    ) -> None:
        self._c = conn
        self._origin = origin
        self._cache = cache
        self._activity_ids = activity_ids
        self._memo = TxMemo()  # a new one for each attempt (the store's `_transaction`)
        # False while no other engine listens: `announce` sends nothing.
        self.announcing = True
        # Statements whose results are not needed are queued and sent with the next one that is,
        # or with the COMMIT (`_send`).
        self._wire = Wire(conn)
        # A read-only snapshot takes no row locks (PostgreSQL refuses FOR UPDATE there anyway).
        self._lock = " FOR UPDATE" if writable else ""
        # Rows another transaction has locked are being worked on: skipped, never waited for.
        self._skip_locked = " FOR UPDATE SKIP LOCKED" if writable else ""

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        self.flush()
        # The caller may read rowcount or rows: this statement's result, and the queued ones'
        # before it (whose errors surface here).
        return self._wire.fetch(sql, args)

    def end(self, statement: str) -> None:
        """Sends what is held back and `statement` (COMMIT) and waits for the answers; the first
        error of any raises here."""
        self.flush()
        if self._wire.single_shot:
            self._wire.finish_single_shot()
            return
        self._wire.send(statement)
        self._wire.leave()

    def abandon(self) -> None:
        """Forgets what is queued and leaves pipeline mode (after an error)."""
        self._wire.abandon()

    def flush(self) -> None:
        """Sends what is held back to be sent in one statement (the inbox rows to delete): before a
        statement that reads, and before the COMMIT."""
        deletes = self._memo.inbox_deletes
        if deletes:
            self._memo.inbox_deletes = []
            self._send("DELETE FROM inbox WHERE id = ANY(?)", (deletes,))

    def _send(self, sql: str, args: Sequence[Any] = ()) -> None:
        """A statement whose result nobody reads: queued, it goes in one round trip with the next
        statement that waits for its result, or with the COMMIT; an error it meets aborts the
        transaction (PostgreSQL skips the rest of the pipeline, COMMIT included) and is raised there."""
        self._wire.send(sql, args)

    def _batch(self, *statements: tuple[str, Sequence[Any]]) -> list[list[TupleRow]]:
        """The rows of several statements, sent in one round trip (in pipeline mode)."""
        self.flush()
        return [result.rows for result in self._wire.fetch_many(statements)]

    def _id_prefix(self, prefix: str) -> tuple[str, list[Any]]:
        # A LIKE prefix can use the primary key's index (instance_id is COLLATE "C").
        return "instance_id LIKE ?", [_like_prefix(prefix)]

    def _contains(self, column: str, text: str) -> tuple[str, list[Any]]:
        return f"strpos({column}, ?) > 0", [text]

    def put_instances(self, instances: list[Instance]) -> None:
        # COPY into a scratch table, then one upsert: far fewer round trips than a row at a time.
        # COPY refuses pipeline mode: the queued statements' results, errors included, come first.
        self.flush()
        self._wire.leave()
        self._memo.instances.clear()
        await_only(_copy_instances(self._c, instances))

    def _one(self, sql: str, args: Sequence[Any] = ()) -> TupleRow | None:
        row: TupleRow | None = self._execute(sql, args).fetchone()
        return row

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[TupleRow]:
        return self._execute(sql, args).fetchall()

    # instances

    def get_instance(self, instance_id: str) -> Instance | None:
        # A row read under this transaction's lock (or in its snapshot) is still the same.
        memo = self._memo.instances.get(instance_id)
        if memo is not None:
            # A copy, as a query would give: the caller may change it without storing it.
            return copy.copy(memo[0])
        row = self._one(
            f"SELECT {_INSTANCE_ROW} FROM instances WHERE instance_id = ?{self._lock}", (instance_id,)
        )
        self._memo.remember_row(instance_id, row)
        return row_instance(row) if row else None

    def put_instance(self, i: Instance) -> None:
        self._memo.instances.pop(i.instance_id, None)
        if i.status.is_terminal:
            self._memo.dropped.add(i.instance_id)  # it takes no more turns: not worth keeping
        self._send(
            f"INSERT INTO instances ({INSTANCE_COLUMNS}) VALUES ({INSTANCE_VALUES}) "
            f"ON CONFLICT (instance_id) DO UPDATE SET {_INSTANCE_UPDATE}",
            instance_row(i),
        )

    def delete_instance(self, instance_id: str) -> None:
        for memo in (self._memo.instances, self._memo.inboxes, self._memo.histories, self._memo.written):
            memo.pop(instance_id, None)
        self._memo.dropped.add(instance_id)
        self._memo.activities.clear()
        # One round trip for the four tables.
        self._execute(
            "WITH h AS (DELETE FROM history WHERE instance_id = ?), "
            "b AS (DELETE FROM inbox WHERE instance_id = ?), "
            "a AS (DELETE FROM activities WHERE instance_id = ?) "
            "DELETE FROM instances WHERE instance_id = ?",
            (instance_id,) * 4,
        )

    # history

    def history(self, instance_id: str) -> list[bytes]:
        events = self._memo.histories.get(instance_id)
        if events is not None:
            return events
        memo = self._memo.instances.get(instance_id)
        version = memo[1] if memo is not None else None
        events = self._cache.get(instance_id, version)
        if events is None:
            events = super().history(instance_id)
            if memo is not None:
                self._cache.put(instance_id, version, events)
        self._memo.histories[instance_id] = events
        return events

    def _new_version(self, instance_id: str, events: list[bytes] | None) -> uuid.UUID:
        """A new history version, recorded with the whole history when it is known."""
        version = uuid.uuid4()
        self._memo.written[instance_id] = (version, events)
        self._memo.instances.pop(instance_id, None)  # its version changed
        if events is None:
            self._memo.histories.pop(instance_id, None)
        else:
            self._memo.histories[instance_id] = events
        return version

    def append_history(self, instance_id: str, first_seq: int, events: list[bytes]) -> None:
        if not events:
            return
        base = self._memo.histories.get(instance_id)
        whole = base + events if base is not None and len(base) == first_seq else None
        self._send(
            "WITH h AS (INSERT INTO history (instance_id, seq, event) "
            "SELECT ?, ? + n - 1, e FROM unnest(?::bytea[]) WITH ORDINALITY AS t(e, n)) "
            "UPDATE instances SET history_version = ? WHERE instance_id = ?",
            (instance_id, first_seq, events, self._new_version(instance_id, whole), instance_id),
        )

    def clear_history(self, instance_id: str) -> None:
        self._send(
            "WITH h AS (DELETE FROM history WHERE instance_id = ?) "
            "UPDATE instances SET history_version = ? WHERE instance_id = ?",
            (instance_id, self._new_version(instance_id, []), instance_id),
        )

    # inbox

    def inbox(self, instance_id: str, visible_before: int) -> list[InboxRow]:
        memo = self._memo.inboxes.get(instance_id)
        if memo is not None and visible_before <= memo[0]:
            return [r for r in memo[1] if r.visible_at <= visible_before]
        return super().inbox(instance_id, visible_before)

    def clear_inbox(self, instance_id: str) -> None:
        # With the rows deleted by ID but not yet sent: one statement.
        self._memo.inboxes.clear()
        deletes, self._memo.inbox_deletes = self._memo.inbox_deletes, []
        self._send("DELETE FROM inbox WHERE instance_id = ? OR id = ANY(?)", (instance_id, deletes))

    def add_inbox(self, instance_id: str, event: bytes, visible_at: int) -> None:
        # Nobody reads the ID: queued, without a round trip of its own.
        self._memo.inboxes.clear()
        self._send(
            "INSERT INTO inbox (instance_id, visible_at, event) VALUES (?, ?, ?)",
            (instance_id, visible_at, event),
        )

    def delete_inbox(self, row_ids: list[int]) -> None:
        # Held back: sent with the next statement that reads, merged with the next ones.
        self._memo.inboxes.clear()
        self._memo.inbox_deletes.extend(row_ids)

    # activities

    def add_activity(
        self, instance_id: str, execution_id: str, dialect: str, task_id: int, request: bytes
    ) -> int:
        # The ID is taken ahead (postgres_ids.py), so the row is queued without a round trip.
        activity_id = self._activity_ids.take(self._all)
        self._send(
            "INSERT INTO activities (id, instance_id, execution_id, dialect, task_id, request) "
            "OVERRIDING SYSTEM VALUE VALUES (?, ?, ?, ?, ?, ?)",
            (activity_id, instance_id, execution_id, dialect, task_id, request),
        )
        return activity_id

    def clear_activities(self, instance_id: str) -> list[int]:
        self._memo.activities.clear()
        rows = self._all("DELETE FROM activities WHERE instance_id = ? RETURNING id", (instance_id,))
        return sorted(r[0] for r in rows)

    # outbox

    def add_outbox(self, payload: str, created_at: int) -> None:
        self._send("INSERT INTO outbox (created_at, payload) VALUES (?, ?)", (created_at, payload))

    # leases

    def create_instance(self, i: Instance) -> None:
        self._memo.instances.pop(i.instance_id, None)
        # A plain INSERT: a concurrent start of the same ID fails it, at the next statement that
        # waits or at the COMMIT, and the transaction is run again (the store's _RETRYABLE).
        self._send(f"INSERT INTO instances ({INSTANCE_COLUMNS}) VALUES ({INSTANCE_VALUES})", instance_row(i))

    def claim_instance(self, instance_id: str, token: str, seconds: float) -> bool:
        # Two claims of one row serialize on its lock; the later one re-checks the condition
        # against the committed winner and updates nothing. The same round trip brings what the
        # turn reads next, if the claim succeeded: the row, the inbox up to now, the history unless
        # the cached one is current.
        cached = self._cache.version(instance_id)
        bound = time.time_ns() // 1000
        claimed, reads = self._batch(
            (
                f"UPDATE instances SET lease_token = ?, lease_until = {_DB_NOW} + ? "
                f"WHERE instance_id = ? AND ({_LEASE_FREE} OR lease_token = ? OR lease_token LIKE ?) "
                f"RETURNING {_INSTANCE_ROW}",
                (token, _micros(seconds), instance_id, token, _own_tokens(token)),
            ),
            (_TURN_READS, (cached, bound, instance_id, token)),
        )
        if not claimed or not reads:
            return bool(claimed)
        self._memo.remember_row(instance_id, claimed[0])
        history, ids, visible, events = reads[0]
        self._memo.inboxes[instance_id] = (
            bound,
            [
                InboxRow(row_id, instance_id, visible_at, event)
                for row_id, visible_at, event in zip(ids or (), visible or (), events or (), strict=True)
            ],
        )
        self._memo.remember_history(self._cache, instance_id, cached, history)
        return True

    def holds_instance(self, instance_id: str, token: str) -> bool:
        # The row lock keeps another engine from claiming the lapsed lease until this transaction,
        # which is about to record the holder's work, has committed. The row and the history (if
        # the cached one is stale) come in the same round trip.
        cached = self._cache.version(instance_id)
        held, reads = self._batch(
            (
                f"SELECT lease_token, {_INSTANCE_ROW} FROM instances WHERE instance_id = ?{self._lock}",
                (instance_id,),
            ),
            (_HISTORY_READ, (cached, instance_id, token)),
        )
        if not held or held[0][0] != token:
            return False
        self._memo.remember_row(instance_id, held[0][1:])
        if reads:
            self._memo.remember_history(self._cache, instance_id, cached, reads[0][0])
        return True

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
        row = self._one(_HELD_ACTIVITY, (activity_id, token))
        if row is None:  # not held, or its instance is gone
            held = self._one(f"SELECT lease_token FROM activities WHERE id = ?{self._lock}", (activity_id,))
            return held is not None and held[0] == token
        activity = ActivityRow(*row[1:7])
        self._memo.activities[activity_id] = activity
        self._memo.remember_row(activity.instance_id, row[7:])
        return True

    def get_activity(self, activity_id: int) -> ActivityRow | None:
        if activity_id in self._memo.activities:
            return self._memo.activities[activity_id]
        return super().get_activity(activity_id)

    def delete_activity(self, activity_id: int) -> bool:
        if self._memo.activities.get(activity_id) is not None:
            # The row is locked by this transaction: it is there to delete.
            self._memo.activities[activity_id] = None
            self._send("DELETE FROM activities WHERE id = ?", (activity_id,))
            return True
        self._memo.activities.pop(activity_id, None)
        return super().delete_activity(activity_id)

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
        if not self.announcing:
            return  # nobody else listens: an engine that starts listening scans for work first
        payloads = [f"{self._origin}|instance|{dialect}|{key}" for key, dialect in ready]
        payloads += [f"{self._origin}|activity|{dialect}|{key}" for key, dialect in activities]
        payloads += [f"{self._origin}|changed||{key}" for key in changed]
        payloads = [p for p in payloads if len(p.encode()) < _MAX_NOTIFY_BYTES]
        if payloads:
            # NOTIFY is transactional: the others hear it at commit, and never after a rollback.
            self._send("SELECT pg_notify(?, p) FROM unnest(?::text[]) AS p", (CHANNEL, payloads))
