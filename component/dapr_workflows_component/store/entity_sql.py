"""The SQL of durable entities, the same in both stores (schema migration 6).

`entities` holds each entity's state and lock; `entity_lock_requests` the critical sections that
wait for a lock set. An entity's messages wait in the inbox of its instance row, like any event.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from typing import Any

from .entity_base import EntityRow, EntityTx, LockRequestRow

ENTITY_COLUMNS = "instance_id, state, locked_by, lock_owner, modified_at"


# Migration 6, statement by statement; each store writes its own ID column and text collation.
def entity_tables(identity: str, text_id: str, big: str) -> tuple[str, ...]:
    return (
        f"""
        CREATE TABLE entities (
            instance_id {text_id} PRIMARY KEY,
            state TEXT,
            locked_by TEXT,
            lock_owner {text_id},
            modified_at {big} NOT NULL
        )
        """,
        "CREATE INDEX entities_lock_owner ON entities (lock_owner)",
        f"""
        CREATE TABLE entity_lock_requests (
            id {identity},
            critical_section_id TEXT NOT NULL,
            owner {text_id} NOT NULL,
            lock_set TEXT NOT NULL
        )
        """,
    )


def _entity(row: Sequence[Any]) -> EntityRow:
    return EntityRow(row[0], row[1], row[2], row[3], int(row[4]))


class EntitySql(EntityTx):
    """The entity methods of a store transaction; `_execute` and `_id_prefix` are the store's."""

    @abc.abstractmethod
    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Any: ...

    @abc.abstractmethod
    def _id_prefix(self, prefix: str) -> tuple[str, list[Any]]: ...

    def get_entity(self, instance_id: str) -> EntityRow | None:
        row = self._execute(
            f"SELECT {ENTITY_COLUMNS} FROM entities WHERE instance_id = ?", (instance_id,)
        ).fetchone()
        return _entity(row) if row else None

    def put_entity(self, entity: EntityRow) -> None:
        self._execute(
            f"INSERT INTO entities ({ENTITY_COLUMNS}) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (instance_id) DO UPDATE SET state = EXCLUDED.state, "
            "locked_by = EXCLUDED.locked_by, lock_owner = EXCLUDED.lock_owner, "
            "modified_at = EXCLUDED.modified_at",
            (entity.instance_id, entity.state, entity.locked_by, entity.lock_owner, entity.modified_at),
        )

    def delete_entity(self, instance_id: str) -> None:
        self._execute("DELETE FROM entities WHERE instance_id = ?", (instance_id,))

    def query_entities(
        self,
        id_prefix: str | None,
        modified_from: int | None,
        modified_to: int | None,
        after: str | None,
        limit: int,
    ) -> list[EntityRow]:
        where: list[str] = []
        args: list[Any] = []
        if id_prefix:
            condition, condition_args = self._id_prefix(id_prefix)
            where.append(condition)
            args.extend(condition_args)
        for condition, value in (
            ("modified_at >= ?", modified_from),
            ("modified_at < ?", modified_to),
            ("instance_id > ?", after),
        ):
            if value is not None:
                where.append(condition)
                args.append(value)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        rows = self._execute(
            f"SELECT {ENTITY_COLUMNS} FROM entities{clause} ORDER BY instance_id LIMIT ?", [*args, limit]
        )
        return [_entity(r) for r in rows.fetchall()]

    def entities_locked_by(self, owner: str) -> list[EntityRow]:
        rows = self._execute(
            f"SELECT {ENTITY_COLUMNS} FROM entities WHERE lock_owner = ? ORDER BY instance_id", (owner,)
        )
        return [_entity(r) for r in rows.fetchall()]

    def has_entity_locks(self, owner: str) -> bool:
        row = self._execute(
            "SELECT 1 FROM entities WHERE lock_owner = ? "
            "UNION ALL SELECT 1 FROM entity_lock_requests WHERE owner = ? LIMIT 1",
            (owner, owner),
        ).fetchone()
        return row is not None

    def add_lock_request(self, critical_section_id: str, owner: str, lock_set: list[str]) -> int:
        row = self._execute(
            "INSERT INTO entity_lock_requests (critical_section_id, owner, lock_set) VALUES (?, ?, ?) "
            "RETURNING id",
            (critical_section_id, owner, json.dumps(lock_set)),
        ).fetchone()
        return int(row[0])

    def lock_requests(self) -> list[LockRequestRow]:
        rows = self._execute(
            "SELECT id, critical_section_id, owner, lock_set FROM entity_lock_requests ORDER BY id"
        )
        return [LockRequestRow(int(r[0]), r[1], r[2], json.loads(r[3])) for r in rows.fetchall()]

    def delete_lock_requests(self, ids: list[int]) -> None:
        for request_id in ids:
            self._execute("DELETE FROM entity_lock_requests WHERE id = ?", (request_id,))
