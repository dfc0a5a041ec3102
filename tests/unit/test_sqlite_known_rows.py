"""The SQLite store keeps the instance rows it has read or written: a read of one needs no
statement, a write changes only the columns that differ, and a rolled-back transaction leaves
nothing of its writes behind (tests the file itself, through a second connection)."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3

import pytest
from dapr_workflows_component.store import StoreTx
from dapr_workflows_component.store.sqlite import SQLiteStore
from dapr_workflows_component.workflows import Instance, RuntimeStatus

from tests.unit.engine_parts import traced_statements
from tests.unit.store_contract import full_instance, instance


def _on_file(store: SQLiteStore, instance_id: str) -> tuple[object, ...] | None:
    conn = sqlite3.connect(store.path)
    try:
        row: tuple[object, ...] | None = conn.execute(
            "SELECT status, updated_at, output FROM instances WHERE instance_id = ?", (instance_id,)
        ).fetchone()
        return row
    finally:
        conn.close()


def test_a_known_row_is_read_without_a_statement_and_written_by_its_changes(store: SQLiteStore) -> None:
    asyncio.run(store.run(lambda t: t.put_instance(full_instance("a"))))
    seen = traced_statements(store)

    def finish(t: StoreTx) -> None:
        inst = t.get_instance("a")
        assert inst is not None
        t.put_instance(dataclasses.replace(inst, status=RuntimeStatus.TERMINATED, updated_at=9_000))

    asyncio.run(store.run(finish))
    writes = [s for s in seen if "instances" in s]
    assert len(writes) == 1 and writes[0].startswith(
        "UPDATE instances SET status = 5, updated_at = 9000 WHERE"
    )
    assert _on_file(store, "a") == (int(RuntimeStatus.TERMINATED), 9_000, full_instance("a").output)
    got = asyncio.run(store.read(lambda t: t.get_instance("a")))
    assert got == dataclasses.replace(full_instance("a"), status=RuntimeStatus.TERMINATED, updated_at=9_000)


def test_an_unchanged_row_is_not_written_again(store: SQLiteStore) -> None:
    asyncio.run(store.run(lambda t: t.put_instance(instance("a"))))
    seen = traced_statements(store)
    asyncio.run(store.run(lambda t: t.put_instance(instance("a"))))
    assert not [s for s in seen if "instances" in s]


def test_a_rolled_back_write_is_forgotten(store: SQLiteStore) -> None:
    asyncio.run(store.run(lambda t: t.put_instance(instance("a"))))

    def fail(t: StoreTx) -> None:
        t.put_instance(instance("a", status=RuntimeStatus.FAILED, updated_at=5_000))
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError):
        asyncio.run(store.run(fail))
    assert asyncio.run(store.read(lambda t: t.get_instance("a"))) == instance("a")
    # Written again with the values the rolled-back transaction had: the row must really change.
    asyncio.run(
        store.run(lambda t: t.put_instance(instance("a", status=RuntimeStatus.FAILED, updated_at=5_000)))
    )
    assert _on_file(store, "a") == (int(RuntimeStatus.FAILED), 5_000, None)


def test_deleted_and_bulk_written_rows_are_read_from_the_file(store: SQLiteStore) -> None:
    asyncio.run(store.run(lambda t: t.put_instance(instance("a"))))
    asyncio.run(store.run(lambda t: t.delete_instance("a")))
    assert asyncio.run(store.read(lambda t: t.get_instance("a"))) is None
    asyncio.run(store.run(lambda t: t.put_instance(instance("b"))))
    asyncio.run(store.run(lambda t: t.put_instances([instance("b", output="bulk")])))
    got: Instance | None = asyncio.run(store.read(lambda t: t.get_instance("b")))
    assert got is not None and got.output == "bulk"


def test_a_row_with_a_large_payload_is_not_kept(store: SQLiteStore) -> None:
    asyncio.run(store.run(lambda t: t.put_instance(instance("big", input="x" * 100_000))))
    seen = traced_statements(store)
    got = asyncio.run(store.read(lambda t: t.get_instance("big")))
    assert got is not None and got.input == "x" * 100_000
    assert [s for s in seen if s.startswith("SELECT")]
