"""The SQL both stores share: the instance row, the instance query, and the transaction methods whose
statements are the same in SQLite and PostgreSQL. Statements are written with `?` placeholders;
each store's `_execute` runs them in its own driver's style."""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..workflows import Instance, InstanceQuery, RuntimeStatus, parse_tags
from .base import ActivityRow, InboxRow, StoreTx

# The instance columns of both stores' `instances` table, in the order of the two functions below.
INSTANCE_FIELDS = (
    "instance_id",
    "dialect",
    "name",
    "version",
    "status",
    "execution_id",
    "input",
    "output",
    "custom_status",
    "failure",
    "parent_instance_id",
    "parent_task_id",
    "parent_execution_id",
    "tags",
    "created_at",
    "updated_at",
    "completed_at",
    "scheduled_start_at",
    "rerun",
)
INSTANCE_COLUMNS = ", ".join(INSTANCE_FIELDS)
# The placeholders of an INSERT of INSTANCE_COLUMNS.
INSTANCE_VALUES = ", ".join("?" * len(INSTANCE_FIELDS))


def instance_row(i: Instance) -> tuple[Any, ...]:
    """The values of INSTANCE_COLUMNS for an instance (tags and rerun as JSON text)."""
    return (
        i.instance_id,
        i.dialect,
        i.name,
        i.version,
        int(i.status),
        i.execution_id,
        i.input,
        i.output,
        i.custom_status,
        i.failure,
        i.parent_instance_id,
        i.parent_task_id,
        i.parent_execution_id,
        json.dumps(i.tags) if i.tags else None,
        i.created_at,
        i.updated_at,
        i.completed_at,
        i.scheduled_start_at,
        json.dumps(i.rerun) if i.rerun else None,
    )


def row_instance(row: Sequence[Any]) -> Instance:
    """The instance of a row of INSTANCE_COLUMNS."""
    return Instance(
        instance_id=row[0],
        dialect=row[1],
        name=row[2],
        version=row[3],
        status=RuntimeStatus(row[4]),
        execution_id=row[5],
        input=row[6],
        output=row[7],
        custom_status=row[8],
        failure=row[9],
        parent_instance_id=row[10],
        parent_task_id=row[11],
        parent_execution_id=row[12],
        tags=parse_tags(row[13]),
        created_at=row[14],
        updated_at=row[15],
        completed_at=row[16],
        scheduled_start_at=row[17],
        rerun=json.loads(row[18]) if row[18] else None,
    )


def query_sql(q: InstanceQuery, id_prefix: Callable[[str], tuple[str, list[Any]]]) -> tuple[str, list[Any]]:
    """The SELECT of an instance query and its arguments; `id_prefix` gives the store's own
    condition (and its arguments) for an ID prefix."""
    where: list[str] = []
    args: list[Any] = []
    if q.statuses:
        where.append(f"status IN ({', '.join('?' * len(q.statuses))})")
        args.extend(int(s) for s in q.statuses)
    for column, op, value in (
        ("created_at", ">=", q.created_from),
        ("created_at", "<", q.created_to),
        ("completed_at", ">=", q.completed_from),
        ("completed_at", "<", q.completed_to),
        ("instance_id", ">", q.after_id),
    ):
        if value is not None:
            where.append(f"{column} {op} ?")
            args.append(value)
    if q.id_prefix:
        condition, condition_args = id_prefix(q.id_prefix)
        where.append(condition)
        args.extend(condition_args)
    sql = f"SELECT {INSTANCE_COLUMNS} FROM instances"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY instance_id LIMIT ?"
    args.append(q.limit)
    return sql, args


ACTIVITY_COLUMNS = "id, instance_id, execution_id, dialect, task_id, request"


class Cursor(Protocol):
    """What both drivers' cursors offer."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class SqlTx(StoreTx):
    """The transaction methods whose SQL is the same in both stores."""

    @abc.abstractmethod
    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        """Runs one statement written with `?` placeholders."""

    @abc.abstractmethod
    def _id_prefix(self, prefix: str) -> tuple[str, list[Any]]:
        """The store's condition (and its arguments) for instance IDs that start with `prefix`."""

    def child_ids(self, instance_id: str) -> list[str]:
        rows = self._execute("SELECT instance_id FROM instances WHERE parent_instance_id = ?", (instance_id,))
        return [r[0] for r in rows.fetchall()]

    def query(self, q: InstanceQuery) -> list[Instance]:
        sql, args = query_sql(q, self._id_prefix)
        return [row_instance(r) for r in self._execute(sql, args).fetchall()]

    def history(self, instance_id: str) -> list[bytes]:
        rows = self._execute("SELECT event FROM history WHERE instance_id = ? ORDER BY seq", (instance_id,))
        return [r[0] for r in rows.fetchall()]

    def clear_history(self, instance_id: str) -> None:
        self._execute("DELETE FROM history WHERE instance_id = ?", (instance_id,))

    def inbox(self, instance_id: str, visible_before: int) -> list[InboxRow]:
        rows = self._execute(
            "SELECT id, instance_id, visible_at, event FROM inbox "
            "WHERE instance_id = ? AND visible_at <= ? ORDER BY id",
            (instance_id, visible_before),
        )
        return [InboxRow(*r) for r in rows.fetchall()]

    def clear_inbox(self, instance_id: str) -> None:
        self._execute("DELETE FROM inbox WHERE instance_id = ?", (instance_id,))

    def get_activity(self, activity_id: int) -> ActivityRow | None:
        row = self._execute(
            f"SELECT {ACTIVITY_COLUMNS} FROM activities WHERE id = ?", (activity_id,)
        ).fetchone()
        return ActivityRow(*row) if row else None

    def delete_activity(self, activity_id: int) -> bool:
        return self._execute("DELETE FROM activities WHERE id = ?", (activity_id,)).rowcount > 0

    def outbox(self, after_id: int, limit: int) -> list[tuple[int, str]]:
        rows = self._execute(
            "SELECT id, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        )
        return [(r[0], r[1]) for r in rows.fetchall()]

    def delete_outbox(self, event_id: int) -> bool:
        return self._execute("DELETE FROM outbox WHERE id = ?", (event_id,)).rowcount > 0

    def expire_outbox(self, created_before: int) -> int:
        return self._execute("DELETE FROM outbox WHERE created_at < ?", (created_before,)).rowcount

    def outbox_count(self) -> int:
        return int(self._execute("SELECT COUNT(*) FROM outbox", ()).fetchone()[0])

    def ready_instances(self, now: int) -> list[tuple[str, str]]:
        rows = self._execute(
            "SELECT DISTINCT i.instance_id, i.dialect FROM inbox b "
            "JOIN instances i ON i.instance_id = b.instance_id WHERE b.visible_at <= ?",
            (now,),
        )
        return [(r[0], r[1]) for r in rows.fetchall()]

    def future_timers(self, now: int) -> list[tuple[int, str, str]]:
        rows = self._execute(
            "SELECT DISTINCT b.visible_at, b.instance_id, i.dialect FROM inbox b "
            "JOIN instances i ON i.instance_id = b.instance_id WHERE b.visible_at > ?",
            (now,),
        )
        return [(r[0], r[1], r[2]) for r in rows.fetchall()]

    def all_activities(self) -> list[tuple[int, str]]:
        return [
            (r[0], r[1]) for r in self._execute("SELECT id, dialect FROM activities ORDER BY id").fetchall()
        ]
