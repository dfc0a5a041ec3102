"""The PostgreSQL side of the concurrency limits (engine/concurrency.py): the live leases under a
limit, counted under its advisory lock, and which engines wait for it since when."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

# Schema migration 5: the activity name of a claimed activity (a limit of that name counts its live
# leases), and the engines waiting for a limit.
CONCURRENCY_MIGRATION = (
    "ALTER TABLE activities ADD COLUMN name TEXT",
    """
    CREATE TABLE concurrency_waits (
        gate TEXT NOT NULL,
        engine TEXT NOT NULL,
        since BIGINT NOT NULL,
        until BIGINT NOT NULL,
        PRIMARY KEY (gate, engine)
    )
    """,
)

# Leased entities are not workflows (engine/concurrency.py): the rows of `workflows.is_entity_id`
# (no '%' in the text: it goes through psycopg's placeholders).
_NO_ENTITY = (
    "NOT (dialect = 'durabletask' AND left(instance_id, 1) = '@' "
    "AND position('@' IN substr(instance_id, 2)) > 1) AND "
)

# Wait rows of engines that stopped waiting this long ago (they died) are dropped.
_FORGET_WAITS_US = 60_000_000


class ConcurrencySql:
    """Methods of the PostgreSQL transaction (`StoreTx.count_leased`, `StoreTx.wait_for_slot`)."""

    _db_now: str  # the database's clock in microseconds, as SQL

    if TYPE_CHECKING:  # the transaction's own (postgres_tx.py)

        def _send(self, sql: str, args: Sequence[Any] = ()) -> None: ...

        def _one(self, sql: str, args: Sequence[Any] = ()) -> Any: ...

        def _execute(self, sql: str, args: Sequence[Any] = ()) -> Any: ...

    def count_leased(
        self, kind: str, name: str, exclude: str | int, locks: list[str], engine: str
    ) -> tuple[int, int, list[str]]:
        now = self._db_now
        for key in locks:  # one statement each: taken in this order
            self._send("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (key,))
        if kind == "workflow":
            table, key_column = "instances", "instance_id"
            leased = f"lease_token IS NOT NULL AND {_NO_ENTITY}"
        else:
            table, key_column, leased = "activities", "id", ""
            self._send("UPDATE activities SET name = ? WHERE id = ? AND name IS NULL", (name, exclude))
        # After the locks: the claims of the transactions that held them before have committed.
        row = self._one(
            "SELECT count(*), count(*) FILTER (WHERE name = ?), ARRAY(SELECT w.gate FROM "
            "concurrency_waits w WHERE w.gate = ANY(?) AND w.engine <> ? AND "
            f"w.until >= {now} AND w.since < COALESCE((SELECT m.since FROM concurrency_waits m "
            f"WHERE m.gate = w.gate AND m.engine = ?), {now})) FROM {table} "
            f"WHERE {leased}lease_until >= {now} AND {key_column} <> ?",
            (name, locks, engine, engine, exclude),
        )
        # Served: this engine waits no more (its next wait queues behind the others').
        self._send("DELETE FROM concurrency_waits WHERE gate = ANY(?) AND engine = ?", (locks, engine))
        return (int(row[0]), int(row[1]), list(row[2])) if row else (0, 0, [])

    def wait_for_slot(self, lock: str, engine: str, seconds: float) -> None:
        now = self._db_now
        self._execute(
            f"WITH gone AS (DELETE FROM concurrency_waits WHERE until < {now} - {_FORGET_WAITS_US}) "
            "INSERT INTO concurrency_waits (gate, engine, since, until) "
            f"VALUES (?, ?, {now}, {now} + ?) "
            "ON CONFLICT (gate, engine) DO UPDATE SET until = EXCLUDED.until",
            (lock, engine, max(0, round(seconds * 1_000_000))),
        )
