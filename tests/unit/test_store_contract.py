"""The store contract (tests/unit/store_contract.py) on SQLite, in-process; PostgreSQL runs the same
tests in tests/test_postgres_store.py. Also: both stores' migrations declare one schema."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from dapr_workflows_component.store import Store, open_store
from dapr_workflows_component.store import postgres as pg_store
from dapr_workflows_component.store import sqlite as sqlite_store

from tests.unit.store_contract import Column, Schema, StoreContract, StoreKind, schema_differences

_SQLITE_KINDS = {"TEXT": "text", "INTEGER": "integer", "BLOB": "bytes"}


def sqlite_schema(conn: sqlite3.Connection) -> Schema:
    schema = Schema()
    tables = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "AND name <> 'schema_version' ORDER BY name"
    ).fetchall()
    for (table,) in tables:
        columns = conn.execute(f"PRAGMA table_info({table})").fetchall()
        schema.tables[table] = [
            # A PRIMARY KEY column is NOT NULL (SQLite only enforces it in WITHOUT ROWID tables).
            Column(name, _SQLITE_KINDS[kind.upper()], bool(not_null or pk))
            for _, name, kind, not_null, _, pk in columns
        ]
        for _, index, _unique, origin, _ in conn.execute(f"PRAGMA index_list({table})").fetchall():
            if origin == "c":  # declared with CREATE INDEX, not a primary key's own
                cols = tuple(r[2] for r in conn.execute(f"PRAGMA index_info({index})").fetchall())
                schema.indexes[index] = (table, cols)
    return schema


class SQLiteKind(StoreKind):
    name = "sqlite"
    schema_version = sqlite_store.SCHEMA_VERSION

    def __init__(self, path: Path) -> None:
        self.path = path

    def open(self) -> Store:
        return open_store(f"sqlite:///{self.path}")

    def versions(self) -> list[int]:
        return sorted(sqlite_store._MIGRATIONS)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, isolation_level=None)

    def create_old_schema(self, version: int) -> None:
        conn = self._connect()
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for v in (v for v in sorted(sqlite_store._MIGRATIONS) if v <= version):
            conn.executescript(sqlite_store._MIGRATIONS[v])
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (v,))
        conn.close()

    def sql(self, statement: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self._connect()
        try:
            return conn.execute(statement, args).fetchall()
        finally:
            conn.close()

    def schema(self) -> Schema:
        conn = self._connect()
        try:
            return sqlite_schema(conn)
        finally:
            conn.close()


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def kind(self, tmp_path: Path) -> StoreKind:
        return SQLiteKind(tmp_path / "store.db")


# PostgreSQL's column types, as the contract's kinds.
_PG_KINDS = {"TEXT": "text", "BIGINT": "integer", "INTEGER": "integer", "BYTEA": "bytes", "UUID": "text"}


def declared_postgres_schema() -> Schema:
    """The schema PostgreSQL's migrations declare, read from their statements."""
    schema = Schema()
    for statements in pg_store._MIGRATIONS.values():
        for statement in statements:
            text = " ".join(statement.split())
            if match := re.fullmatch(r"CREATE TABLE (\w+) \((.*)\)", text):
                table, body = match.groups()
                columns = []
                for part in re.split(r",(?![^(]*\))", body):
                    words = part.split()
                    if words[0].upper() in ("PRIMARY", "UNIQUE"):
                        continue
                    not_null = "NOT NULL" in part.upper() or "PRIMARY KEY" in part.upper()
                    columns.append(Column(words[0], _PG_KINDS[words[1].upper()], not_null))
                schema.tables[table] = columns
            elif match := re.fullmatch(r"ALTER TABLE (\w+) (.*)", text):
                table, changes = match.groups()
                for change in changes.split(","):
                    words = change.split()
                    if words[:2] == ["ALTER", "COLUMN"]:
                        continue  # a default, not a column
                    assert words[:2] == ["ADD", "COLUMN"], statement
                    schema.tables[table].append(Column(words[2], _PG_KINDS[words[3].upper()], False))
            elif match := re.fullmatch(r"CREATE INDEX (\w+) ON (\w+) \(([^)]*)\)( WHERE .*)?", text):
                name, table, cols, _ = match.groups()
                schema.indexes[name] = (table, tuple(c.strip() for c in cols.split(",")))
            elif match := re.fullmatch(r"DROP INDEX (\w+)", text):
                del schema.indexes[match.group(1)]
            else:
                raise AssertionError(f"a PostgreSQL migration this test cannot read: {statement}")
    return schema


def test_both_stores_migrations_declare_one_schema(tmp_path: Path) -> None:
    """The PostgreSQL tests compare a live database too; this needs no server."""
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    conn = sqlite3.connect(tmp_path / "store.db")
    try:
        assert schema_differences(sqlite_schema(conn), declared_postgres_schema()) == []
    finally:
        conn.close()
        asyncio.run(store.close())


def test_the_schema_comparison_sees_a_missing_index(tmp_path: Path) -> None:
    kind = SQLiteKind(tmp_path / "old.db")
    kind.create_old_schema(2)  # before the SQLite store had outbox_created
    conn = kind._connect()
    conn.executescript(sqlite_store._MIGRATIONS[4])  # the management indexes, which came later
    conn.executescript(sqlite_store._MIGRATIONS[6])  # durable entities
    conn.close()
    differences = schema_differences(kind.schema(), declared_postgres_schema())
    assert differences == ["index outbox_created: None != ('outbox', ('created_at',))"]
