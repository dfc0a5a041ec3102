"""The SQL both stores share: the instance row, the instance query, and the transaction methods whose
statements are the same in SQLite and PostgreSQL. Statements are written with `?` placeholders;
each store's `_execute` runs them in its own driver's style."""

from __future__ import annotations

import abc
import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..workflows import Instance, InstanceQuery, RuntimeStatus
from .base import ActivityRow, InboxRow, StoreTx
from .entity_sql import EntitySql


def _parse_tags(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    value = json.loads(text)
    return {str(k): str(v) for k, v in value.items()}


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


# One index per filter of the management listing, each ending in the listing's order (creation time,
# then ID) so that a filtered page is read in order without a sort; (status, completed_at) serves
# retention. The two indexes they replace were prefixes of new ones.
MANAGEMENT_INDEXES = """
    DROP INDEX instances_created;
    DROP INDEX instances_parent;
    CREATE INDEX instances_created_id ON instances (created_at, instance_id);
    CREATE INDEX instances_parent_created ON instances (parent_instance_id, created_at, instance_id);
    CREATE INDEX instances_status_created ON instances (status, created_at, instance_id);
    CREATE INDEX instances_name_created ON instances (name, created_at, instance_id);
    CREATE INDEX instances_updated ON instances (updated_at);
    CREATE INDEX instances_status_completed ON instances (status, completed_at);
"""


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
        tags=_parse_tags(row[13]),
        created_at=row[14],
        updated_at=row[15],
        completed_at=row[16],
        scheduled_start_at=row[17],
        rerun=json.loads(row[18]) if row[18] else None,
    )


def where_sql(
    q: InstanceQuery,
    id_prefix: Callable[[str], tuple[str, list[Any]]],
    contains: Callable[[str, str], tuple[str, list[Any]]] | None = None,
) -> tuple[str, list[Any]]:
    """The WHERE clause (empty when nothing is filtered) of an instance query and its arguments;
    `id_prefix` and `contains` give the store's own conditions for an ID prefix and a substring."""
    where: list[str] = []
    args: list[Any] = []
    if q.statuses:
        where.append(f"status IN ({', '.join('?' * len(q.statuses))})")
        args.extend(sorted(int(s) for s in q.statuses))
    for column, op, value in (
        ("created_at", ">=", q.created_from),
        ("created_at", "<", q.created_to),
        ("completed_at", ">=", q.completed_from),
        ("completed_at", "<", q.completed_to),
        ("updated_at", ">=", q.updated_from),
        ("updated_at", "<", q.updated_to),
        ("instance_id", ">", q.after_id),
        ("name", "=", q.name),
        ("parent_instance_id", "=", q.parent_instance_id),
    ):
        if value is not None:
            where.append(f"{column} {op} ?")
            args.append(value)
    if q.id_prefix:
        condition, condition_args = id_prefix(q.id_prefix)
        where.append(condition)
        args.extend(condition_args)
    if q.custom_status and contains is not None:
        condition, condition_args = contains("custom_status", q.custom_status)
        where.append(condition)
        args.extend(condition_args)
    if q.after is not None and q.order in ("newest", "oldest"):
        # A row value comparison walks the (created_at, instance_id) indexes from the last row on.
        where.append(f"(created_at, instance_id) {'<' if q.order == 'newest' else '>'} (?, ?)")
        args.extend(q.after)
    return (" WHERE " + " AND ".join(where)) if where else "", args


_ORDER_BY = {
    "id": "instance_id",
    "newest": "created_at DESC, instance_id DESC",
    "oldest": "created_at, instance_id",
    "completed": "completed_at",
}


def query_sql(
    q: InstanceQuery,
    id_prefix: Callable[[str], tuple[str, list[Any]]],
    contains: Callable[[str, str], tuple[str, list[Any]]] | None = None,
) -> tuple[str, list[Any]]:
    """The SELECT of an instance query and its arguments (see `where_sql`)."""
    if len(q.statuses) > 1 and q.order in ("newest", "oldest") and not q.skip_locked:
        # One index range per status, each cut at the limit, then merged: no sort of every match.
        parts: list[str] = []
        args = []
        for status in sorted(q.statuses):
            where, part_args = where_sql(
                dataclasses.replace(q, statuses=frozenset({status})), id_prefix, contains
            )
            parts.append(
                f"SELECT * FROM (SELECT {INSTANCE_COLUMNS} FROM instances{where} "
                f"ORDER BY {_ORDER_BY[q.order]} LIMIT ?) AS status_{int(status)}"
            )
            args += [*part_args, q.limit]
        return " UNION ALL ".join(parts) + f" ORDER BY {_ORDER_BY[q.order]} LIMIT ?", [*args, q.limit]
    where, args = where_sql(q, id_prefix, contains)
    sql = f"SELECT {INSTANCE_COLUMNS} FROM instances{where} ORDER BY {_ORDER_BY[q.order]} LIMIT ?"
    return sql, [*args, q.limit]


ACTIVITY_COLUMNS = "id, instance_id, execution_id, dialect, task_id, request"


class Cursor(Protocol):
    """What both drivers' cursors offer."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class SqlTx(EntitySql, StoreTx):
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

    # A store whose transactions can skip rows others have locked sets the clause here.
    _skip_locked = ""

    def _contains(self, column: str, text: str) -> tuple[str, list[Any]]:
        """The condition (and its arguments) for values of `column` that contain `text`."""
        return f"instr({column}, ?) > 0", [text]

    def query(self, q: InstanceQuery) -> list[Instance]:
        sql, args = query_sql(q, self._id_prefix, self._contains)
        if q.skip_locked:
            sql += self._skip_locked
        return [row_instance(r) for r in self._execute(sql, args).fetchall()]

    def count_by_status(self, q: InstanceQuery) -> dict[RuntimeStatus, int]:
        where, args = where_sql(q, self._id_prefix, self._contains)
        rows = self._execute(f"SELECT status, COUNT(*) FROM instances{where} GROUP BY status", args)
        return {RuntimeStatus(r[0]): int(r[1]) for r in rows.fetchall()}

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
