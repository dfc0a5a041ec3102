"""The SQLite store keeps the inbox and activity rows it has read or written (store/sqlite_rows.py):
reading them again needs no statement, every write keeps them true to the file, and a rolled-back
transaction leaves nothing of its writes behind (each checked against the file itself, through a
second connection)."""

from __future__ import annotations

import asyncio
import random
import sqlite3

import pytest
from dapr_workflows_component.store import StoreTx, sqlite_rows
from dapr_workflows_component.store.base import InboxRow
from dapr_workflows_component.store.sqlite import SQLiteStore
from dapr_workflows_component.store.sqlite_rows import INSTANCE_ROWS, ROW_BYTES

from tests.unit.engine_parts import traced_statements
from tests.unit.store_contract import instance

END = 2**62


def _file_inbox(store: SQLiteStore, instance_id: str, visible_before: int = END) -> list[InboxRow]:
    conn = sqlite3.connect(store.path)
    try:
        rows = conn.execute(
            "SELECT id, instance_id, visible_at, event FROM inbox "
            "WHERE instance_id = ? AND visible_at <= ? ORDER BY id",
            (instance_id, visible_before),
        ).fetchall()
        return [InboxRow(*r) for r in rows]
    finally:
        conn.close()


def _run(store: SQLiteStore, fn: object) -> object:
    return asyncio.run(store.run(fn))  # type: ignore[arg-type]


def test_an_inbox_read_once_is_read_again_without_a_statement(store: SQLiteStore) -> None:
    _run(store, lambda t: [t.add_inbox("a", b"one", 10), t.add_inbox("a", b"later", 500)])
    store._tx.forget()  # as after a restart: nothing kept
    seen = traced_statements(store)
    first = asyncio.run(store.read(lambda t: t.inbox("a", 100)))
    assert [r.event for r in first] == [b"one"]
    assert len([s for s in seen if "FROM inbox" in s]) == 1
    seen.clear()
    # The whole inbox was kept, the timer not yet visible too.
    assert [r.event for r in asyncio.run(store.read(lambda t: t.inbox("a", 1000)))] == [b"one", b"later"]
    assert seen == []


def test_kept_rows_follow_every_write(store: SQLiteStore) -> None:
    rng = random.Random(16)
    ids = ["a", "b", "c"]
    for step in range(300):
        target = rng.choice(ids)

        def change(t: StoreTx, target: str = target, step: int = step) -> None:
            roll = rng.random()
            if roll < 0.5:
                t.add_inbox(target, f"e{step}".encode(), rng.choice([0, 50, 5000]))
            elif roll < 0.75:
                rows = t.inbox(target, END)
                if rows:
                    t.delete_inbox([r.id for r in rng.sample(rows, rng.randint(1, len(rows)))])
            elif roll < 0.85:
                t.clear_inbox(target)
            elif roll < 0.9:
                t.delete_instance(target)
            else:
                t.add_inbox(target, b"rolled back", 0)
                raise RuntimeError("undo")

        try:
            _run(store, change)
        except RuntimeError:
            pass
        for instance_id in ids:
            kept = asyncio.run(store.read(lambda t, i=instance_id: t.inbox(i, 100)))
            assert kept == _file_inbox(store, instance_id, 100), (step, instance_id)


def test_a_rolled_back_inbox_row_is_forgotten(store: SQLiteStore) -> None:
    _run(store, lambda t: t.add_inbox("a", b"kept", 0))

    def fail(t: StoreTx) -> None:
        t.add_inbox("a", b"undone", 0)
        raise RuntimeError("undo")

    with pytest.raises(RuntimeError):
        _run(store, fail)
    assert [r.event for r in asyncio.run(store.read(lambda t: t.inbox("a", END)))] == [b"kept"]


def test_large_or_many_inbox_rows_are_read_from_the_file(store: SQLiteStore) -> None:
    big = b"x" * (ROW_BYTES + 1)
    _run(store, lambda t: [t.add_inbox("big", big, 0), t.add_inbox("many", b"0", 0)])
    _run(store, lambda t: [t.add_inbox("many", str(n).encode(), 0) for n in range(INSTANCE_ROWS + 1)])
    seen = traced_statements(store)
    for instance_id in ("big", "many"):
        for _ in range(2):
            rows = asyncio.run(store.read(lambda t, i=instance_id: t.inbox(i, END)))
            assert rows == _file_inbox(store, instance_id)
    assert len([s for s in seen if "FROM inbox" in s]) == 4


def test_an_activity_row_is_kept_until_deleted(store: SQLiteStore) -> None:
    _run(store, lambda t: t.put_instance(instance("a")))
    first = _run(store, lambda t: t.add_activity("a", "exec", "dapr", 1, b"req"))
    second = _run(store, lambda t: t.add_activity("a", "exec", "dapr", 2, b"req2"))
    seen = traced_statements(store)
    row = asyncio.run(store.read(lambda t: t.get_activity(first)))  # type: ignore[arg-type]
    assert row is not None and (row.instance_id, row.task_id, row.request) == ("a", 1, b"req")
    assert seen == []
    assert _run(store, lambda t: t.delete_activity(first)) is True  # type: ignore[arg-type]
    assert asyncio.run(store.read(lambda t: t.get_activity(first))) is None  # type: ignore[arg-type]
    assert _run(store, lambda t: t.clear_activities("a")) == [second]
    assert asyncio.run(store.read(lambda t: t.get_activity(second))) is None  # type: ignore[arg-type]


def test_a_rolled_back_activity_is_forgotten(store: SQLiteStore) -> None:
    added: list[int] = []

    def fail(t: StoreTx) -> None:
        added.append(t.add_activity("a", "exec", "dapr", 1, b"req"))
        raise RuntimeError("undo")

    with pytest.raises(RuntimeError):
        _run(store, fail)
    assert asyncio.run(store.read(lambda t: t.get_activity(added[0]))) is None


def test_kept_inboxes_hold_a_bounded_number_of_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_rows, "INBOX_BYTES", 1000)
    kept = sqlite_rows.InboxRows()
    event = b"x" * 300
    for n, instance_id in enumerate(["a", "b", "c"]):
        kept.load(instance_id, [InboxRow(n * 10 + 1, instance_id, 0, event)])
    assert kept.kept_bytes == 900 and kept.rows("c") is not None
    kept.added(InboxRow(40, "a", 0, event))  # past the budget: everything is dropped
    assert kept.kept_bytes == 0 and kept.rows("a") is None and kept.rows("c") is None
    kept.load("a", [InboxRow(50, "a", 0, event), InboxRow(51, "a", 0, event)])
    kept.deleted([50])
    kept.load("b", [InboxRow(60, "b", 0, event)])
    assert kept.kept_bytes == 600
    kept.drop("a")
    assert kept.kept_bytes == 300 and [r.id for r in kept.rows("b") or []] == [60]


def test_a_failed_transaction_forgets_every_row_cache(store: SQLiteStore) -> None:
    _run(store, lambda t: [t.put_instance(instance("a")), t.add_inbox("a", b"e", 0)])
    _run(
        store,
        lambda t: [t.get_instance("a"), t.inbox("a", END), t.add_activity("a", "exec", "dapr", 1, b"r")],
    )
    caches = {
        name: cache for name, cache in vars(store._tx).items() if isinstance(cache, sqlite_rows.RowCache)
    }
    # Instance, inbox and activity rows: each one a RowCache, each holding rows now.
    assert sorted(caches) == ["_activities", "_inbox", "_known"]
    assert store._tx._known and store._tx._inbox.rows("a") and store._tx._activities.get(1)

    def fail(t: StoreTx) -> None:
        t.add_inbox("a", b"undone", 0)
        raise RuntimeError("undo")

    with pytest.raises(RuntimeError):
        _run(store, fail)
    assert (
        not store._tx._known and store._tx._inbox.rows("a") is None and store._tx._activities.get(1) is None
    )
