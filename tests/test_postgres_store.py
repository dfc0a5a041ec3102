"""The PostgreSQL store against a real server: schema, transactions, leases, announcements.

Two store objects on one database stand for two engine replicas. Each test gets a fresh database.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
import pytest
from dapr_workflows_component.store import (
    Announcement,
    Store,
    StoreTx,
    StoreUnavailable,
    open_store,
    postgres_loop,
)
from dapr_workflows_component.store import postgres as pg_store
from dapr_workflows_component.store.postgres import SCHEMA_VERSION, PostgresStore
from dapr_workflows_component.store.postgres_loop import await_only
from dapr_workflows_component.workflows import ErrorCode, Instance, InstanceQuery, RuntimeStatus

from tests.harness.postgres import PostgresServer
from tests.unit.store_contract import Column, Schema, StoreContract, StoreKind, schema_differences
from tests.unit.test_store_contract import SQLiteKind

T = TypeVar("T")

pytestmark = pytest.mark.timeout(60)

ALL = ["dapr", "durabletask"]  # the dialects a sweep looks for


def now_us() -> int:
    return time.time_ns() // 1000


def instance(instance_id: str, **fields: Any) -> Instance:
    values: dict[str, Any] = {
        "name": "wf",
        "dialect": "dapr",
        "status": RuntimeStatus.RUNNING,
        "execution_id": "e1",
        "created_at": 1_000,
        "updated_at": 2_000,
    }
    values.update(fields)
    return Instance(instance_id=instance_id, **values)


def open_pg(url: str) -> PostgresStore:
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    return store


@asynccontextmanager
async def stores(url: str, count: int = 2) -> AsyncIterator[list[PostgresStore]]:
    """`count` stores on one database: the replicas of a test."""
    opened = [open_pg(url) for _ in range(count)]
    try:
        yield opened
    finally:
        for store in opened:
            await store.close()


def sql(url: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Runs one statement on a connection of its own (autocommit) and returns its rows."""
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def put(item: Instance) -> Callable[[StoreTx], None]:
    return lambda t: t.put_instance(item)


def get(instance_id: str) -> Callable[[StoreTx], Instance | None]:
    return lambda t: t.get_instance(instance_id)


def release_instance(instance_id: str, token: str) -> Callable[[StoreTx], None]:
    return lambda t: t.release_instance(instance_id, token)


def release_activity(activity_id: int, token: str) -> Callable[[StoreTx], None]:
    return lambda t: t.release_activity(activity_id, token)


def put_ready(instance_id: str, visible_at: int = 0) -> Callable[[StoreTx], None]:
    """A transaction that stores an instance with one inbox event (visible at `visible_at`)."""

    def tx(t: StoreTx) -> None:
        t.put_instance(instance(instance_id))
        t.add_inbox(instance_id, b"event", visible_at)

    return tx


def pause_until(event: asyncio.Event, seconds: float = 5) -> None:
    """Inside a transaction (which runs on the loop): lets the loop run until `event` is set."""
    await_only(asyncio.wait_for(event.wait(), seconds))


class Meeting:
    """Transactions that wait for each other inside (`pause_until`) until `count` have arrived."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.arrived = 0
        self.everyone = asyncio.Event()

    def wait(self) -> None:
        self.arrived += 1
        if self.arrived >= self.count:
            self.everyone.set()
        pause_until(self.everyone)


async def within(seconds: float, awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, seconds)


# the store contract (tests/unit/store_contract.py), as SQLite runs it in tests/unit

_PG_KINDS = {"text": "text", "bigint": "integer", "integer": "integer", "bytea": "bytes", "uuid": "text"}


class PostgresKind(StoreKind):
    name = "postgresql"
    schema_version = SCHEMA_VERSION

    def __init__(self, url: str) -> None:
        self.url = url

    def open(self) -> Store:
        return open_pg(self.url)

    def versions(self) -> list[int]:
        return sorted(pg_store._MIGRATIONS)

    def create_old_schema(self, version: int) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY)")
            for v in (v for v in sorted(pg_store._MIGRATIONS) if v <= version):
                for statement in pg_store._MIGRATIONS[v]:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (v,))

    def sql(self, statement: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return sql(self.url, statement.replace("?", "%s"), args)

    def schema(self) -> Schema:
        schema = Schema()
        columns = sql(
            self.url,
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name <> 'schema_version' "
            "ORDER BY table_name, ordinal_position",
        )
        for table, name, kind, nullable in columns:
            schema.tables.setdefault(table, []).append(Column(name, _PG_KINDS[kind], nullable == "NO"))
        indexes = sql(
            self.url,
            "SELECT i.relname, t.relname, array_agg(a.attname ORDER BY k.n) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
            "JOIN pg_namespace ns ON ns.oid = t.relnamespace "
            "CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, n) "
            "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum "
            "WHERE ns.nspname = 'public' AND NOT x.indisprimary GROUP BY i.relname, t.relname",
        )
        for name, table, cols in indexes:
            schema.indexes[name] = (table, tuple(cols))
        return schema


class TestPostgresStoreContract(StoreContract):
    @pytest.fixture
    def kind(self, postgres_url: str) -> StoreKind:
        return PostgresKind(postgres_url)


def test_the_schema_is_the_sqlite_schema_plus_the_leases(postgres_url: str, tmp_path: Any) -> None:
    asyncio.run(open_pg(postgres_url).close())
    sqlite_kind = SQLiteKind(tmp_path / "store.db")
    asyncio.run(sqlite_kind.open().close())
    assert schema_differences(sqlite_kind.schema(), PostgresKind(postgres_url).schema()) == []


# schema


def test_opening_creates_the_schema_once_even_when_replicas_start_together(postgres_url: str) -> None:
    barrier = threading.Barrier(4)
    opened: list[PostgresStore] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        barrier.wait()
        try:
            opened.append(open_pg(postgres_url))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(opened) == 4
    for store in opened:
        asyncio.run(store.close())
    assert sql(postgres_url, "SELECT version FROM schema_version ORDER BY version") == [
        (v,) for v in sorted(pg_store._MIGRATIONS)
    ]
    lease_columns = sql(
        postgres_url,
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE column_name LIKE 'lease_%%' ORDER BY 1, 2",
    )
    assert lease_columns == [
        ("activities", "lease_token"),
        ("activities", "lease_until"),
        ("instances", "lease_token"),
        ("instances", "lease_until"),
    ]
    # Opening a current store again applies nothing.
    asyncio.run(open_pg(postgres_url).close())
    assert len(sql(postgres_url, "SELECT version FROM schema_version")) == len(pg_store._MIGRATIONS)


def test_a_store_newer_than_the_code_is_refused(postgres_url: str) -> None:
    asyncio.run(open_pg(postgres_url).close())
    sql(postgres_url, "INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    with pytest.raises(RuntimeError, match=r"newer than this engine's .*upgrade dapr-workflows"):
        open_pg(postgres_url)


def test_url_options_and_description(postgres_url: str, postgres_server: PostgresServer) -> None:
    store = open_pg(postgres_url + "?pool_size=2&pool_timeout=3&application_name=replica-a")
    try:
        dbname = postgres_url.rsplit("/", 1)[1]
        assert store.description == f"PostgreSQL 127.0.0.1:{postgres_server.port}/{dbname}"
        # Our own options are taken out; libpq's reach the server.
        asyncio.run(store.read(lambda t: t.get_instance("x")))
        names = sql(
            postgres_url, "SELECT application_name FROM pg_stat_activity WHERE datname = %s", (dbname,)
        )
        assert ("replica-a",) in names
    finally:
        asyncio.run(store.close())
    with pytest.raises(ValueError, match="pool_size"):
        open_store(postgres_url + "?pool_size=0")
    # An unreachable server: a clear error that names the server but never the password.
    with pytest.raises(RuntimeError, match=r"cannot connect to PostgreSQL 127\.0\.0\.1:1/x") as info:
        open_store("postgres://someone:s3cret@127.0.0.1:1/x")
    assert "s3cret" not in str(info.value)


# transactions


def hold(seconds: float) -> Callable[[StoreTx], None]:
    """A transaction that keeps its connection for `seconds`."""

    def tx(t: StoreTx) -> None:
        t.get_instance("x")
        await_only(asyncio.sleep(seconds))

    return tx


def test_a_backlog_waits_for_a_connection_beyond_the_pool_timeout(postgres_url: str) -> None:
    # Each connection is held for 6 x 0.2 s in all, far longer than the pool's timeout: a backlog
    # waits its turn, and only an unreachable server is "unavailable".
    async def main() -> None:
        async with stores(postgres_url + "?pool_size=2&pool_timeout=0.5", 1) as (store,):
            await within(20, asyncio.gather(*(store.run(hold(0.2)) for _ in range(12))))

    asyncio.run(main())


def test_cancelled_callers_leave_no_connection_out_and_no_change_half_made(postgres_url: str) -> None:
    pool_size = 3
    began: set[int] = set()  # the transactions that got a connection and started

    def write_pair(
        n: int, begun: asyncio.Event | None = None, wait: Callable[[StoreTx], object] | None = None
    ) -> Callable[[StoreTx], None]:
        def tx(t: StoreTx) -> None:
            began.add(n)
            t.put_instance(instance(f"a{n}"))
            if begun is not None and wait is not None:  # half made: its caller is cancelled meanwhile
                begun.set()
                wait(t)
            await_only(asyncio.sleep(random.uniform(0, 0.01)))
            t.get_instance(f"a{n}")
            t.put_instance(instance(f"b{n}"))

        return tx

    async def main() -> None:
        # The pool's timeout only bounds how long a connection takes to make, which a loaded machine
        # stretches; a connection left out still shows below, as a meeting that cannot gather.
        async with stores(postgres_url + f"?pool_size={pool_size}&pool_timeout=10", 1) as (store,):

            async def cancelled_soon(n: int) -> None:
                task = asyncio.ensure_future(store.run(write_pair(n)))
                await asyncio.sleep(random.uniform(0, 0.03))
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

            # Whether a random point falls inside a transaction depends on the machine's speed (on a
            # loaded one, none may), so every fifth caller is cancelled inside its own for certain.
            cancelled_midway: set[int] = set()

            async def cancelled_inside(n: int) -> None:
                begun, cancelled = asyncio.Event(), asyncio.Event()
                task = asyncio.ensure_future(
                    store.run(write_pair(n, begun, lambda t: await_only(cancelled.wait())))
                )
                waiting = asyncio.ensure_future(begun.wait())
                await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
                if task.cancel() and begun.is_set():
                    cancelled_midway.add(n)
                cancelled.set()
                await asyncio.gather(task, return_exceptions=True)

            callers = (cancelled_inside(n) if n % 5 == 0 else cancelled_soon(n) for n in range(150))
            await within(30, asyncio.gather(*callers))
            assert cancelled_midway == set(range(0, 150, 5))

            # The same with the callers cancelled while their transactions wait for the server (for
            # a row the test holds locked), one on each of the pool's connections.
            await store.run(lambda t: t.put_instance(instance("gate")))
            at_gate = range(150, 150 + pool_size)
            async with await psycopg.AsyncConnection.connect(postgres_url) as locker:
                await locker.execute("SELECT 1 FROM instances WHERE instance_id = 'gate' FOR UPDATE")
                begun = {n: asyncio.Event() for n in at_gate}
                tasks = [
                    asyncio.ensure_future(
                        store.run(write_pair(n, begun[n], lambda t: t.get_instance("gate")))
                    )
                    for n in at_gate
                ]
                await within(15, asyncio.gather(*(event.wait() for event in begun.values())))
                assert all(task.cancel() for task in tasks)
                await asyncio.gather(*tasks, return_exceptions=True)
                assert all(task.cancelled() for task in tasks)
            # The lock is gone with its transaction: they go on by themselves.

            # The transactions whose callers went away finish by themselves.
            deadline = time.monotonic() + 10
            while postgres_loop._orphans and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert not postgres_loop._orphans
            # Every connection can be had at once: none is held by a transaction gone astray. (The
            # pool may still be making one in the background, say for a caller cancelled during the
            # pool's check, which costs that connection, so its counts are read after this.)
            everyone = Meeting(pool_size)
            await within(
                15, asyncio.gather(*(store.run(lambda t: everyone.wait()) for _ in range(pool_size)))
            )
            stats = store._pool.get_stats()
            assert stats["pool_size"] == stats["pool_available"] == pool_size, stats
            rows = sql(postgres_url, "SELECT instance_id FROM instances WHERE instance_id <> 'gate'")
            ids = {row[0] for row in rows}
            # A transaction that had begun when its caller was cancelled still commits, whole; one
            # that had not begun leaves nothing.
            assert began.issuperset(at_gate)
            assert ids == {f"{half}{n}" for n in began for half in "ab"}

    asyncio.run(main())


def test_store_methods_round_trip(postgres_url: str) -> None:
    async def main() -> None:
        async with stores(postgres_url, 1) as (store,):
            full = instance(
                "full",
                version="v2",
                input='"in"',
                output='"out"',
                custom_status='"cs"',
                failure=b"\x00\xfffailure",
                parent_instance_id="parent",
                parent_task_id=7,
                parent_execution_id="pe",
                tags={"a": "b"},
                completed_at=3_000,
                scheduled_start_at=4_000,
                rerun={"task_id": 3, "input": None},
                status=RuntimeStatus.COMPLETED,
            )
            await store.run(lambda t: t.put_instance(full))
            assert await store.read(lambda t: t.get_instance("full")) == full
            assert await store.read(lambda t: t.get_instance("missing")) is None
            assert await store.read(lambda t: t.child_ids("parent")) == ["full"]

            # The upsert replaces the instance but leaves its lease alone.
            assert await store.run(lambda t: t.claim_instance("full", "tok", 60))
            until = sql(postgres_url, "SELECT lease_until FROM instances WHERE instance_id = 'full'")
            changed = instance("full", status=RuntimeStatus.RUNNING, custom_status='"new"')
            await store.run(lambda t: t.put_instance(changed))
            assert await store.read(lambda t: t.get_instance("full")) == changed
            assert await store.run(lambda t: t.holds_instance("full", "tok"))
            assert sql(postgres_url, "SELECT lease_until FROM instances WHERE instance_id = 'full'") == until

            # History keeps its order across appends.
            await store.run(lambda t: t.append_history("full", 0, [b"e0", b"e1"]))
            await store.run(lambda t: t.append_history("full", 2, [b"e2"]))
            assert await store.read(lambda t: t.history("full")) == [b"e0", b"e1", b"e2"]
            with pytest.raises(psycopg.errors.UniqueViolation):
                await store.run(lambda t: t.append_history("full", 1, [b"again"]))
            await store.run(lambda t: t.clear_history("full"))
            assert await store.read(lambda t: t.history("full")) == []

            # The inbox shows what is visible by then, in order; timers wait.
            for event, visible_at in ((b"soon", 100), (b"later", 200), (b"first", 50)):
                await store.run(lambda t, e=event, v=visible_at: t.add_inbox("full", e, v))
            ids = {r.event: r.id for r in await store.read(lambda t: t.inbox("full", 10_000))}
            soon, later, first = ids[b"soon"], ids[b"later"], ids[b"first"]
            assert soon < later < first  # IDs grow: the inbox's order is arrival
            rows = await store.read(lambda t: t.inbox("full", 150))
            assert [(r.id, r.event, r.visible_at) for r in rows] == [
                (soon, b"soon", 100),
                (first, b"first", 50),
            ]
            assert await store.read(lambda t: t.ready_instances(150)) == [("full", "dapr")]
            assert await store.read(lambda t: t.future_timers(150)) == [(200, "full", "dapr")]
            await store.run(lambda t: t.delete_inbox([soon, first]))
            assert [r.id for r in await store.read(lambda t: t.inbox("full", 10_000))] == [later]
            await store.run(lambda t: t.clear_inbox("full"))
            assert await store.read(lambda t: t.ready_instances(10_000)) == []

            # Activities.
            a1 = await store.run(lambda t: t.add_activity("full", "e1", "dapr", 1, b"req1"))
            a2 = await store.run(lambda t: t.add_activity("full", "e1", "durabletask", 2, b"req2"))
            row = await store.read(lambda t: t.get_activity(a2))
            assert row is not None
            assert (row.id, row.instance_id, row.execution_id, row.dialect, row.task_id, row.request) == (
                a2,
                "full",
                "e1",
                "durabletask",
                2,
                b"req2",
            )
            assert await store.read(lambda t: t.all_activities()) == [(a1, "dapr"), (a2, "durabletask")]
            assert await store.run(lambda t: t.delete_activity(a1))
            assert not await store.run(lambda t: t.delete_activity(a1))
            a3 = await store.run(lambda t: t.add_activity("full", "e1", "dapr", 3, b"req3"))
            assert await store.run(lambda t: t.clear_activities("full")) == [a2, a3]
            assert await store.read(lambda t: t.all_activities()) == []

            # Outbox.
            for n in (1, 2, 3):
                await store.run(lambda t, n=n: t.add_outbox(f'{{"n":{n}}}', 10 * n))
            o1, o2, o3 = [event_id for event_id, _ in await store.read(lambda t: t.outbox(0, 10))]
            assert await store.read(lambda t: t.outbox(0, 2)) == [(o1, '{"n":1}'), (o2, '{"n":2}')]
            assert await store.read(lambda t: t.outbox(o1, 10)) == [(o2, '{"n":2}'), (o3, '{"n":3}')]
            assert await store.run(lambda t: t.delete_outbox(o2))
            assert not await store.run(lambda t: t.delete_outbox(o2))
            assert await store.run(lambda t: t.expire_outbox(30)) == 1
            assert await store.read(lambda t: t.outbox(0, 10)) == [(o3, '{"n":3}')]

            # Deleting an instance takes its history, inbox and activities along.
            await store.run(lambda t: t.append_history("full", 0, [b"h"]))
            await store.run(lambda t: t.add_inbox("full", b"i", 0))
            await store.run(lambda t: t.add_activity("full", "e1", "dapr", 9, b"r"))
            await store.run(lambda t: t.delete_instance("full"))
            for table in ("instances", "history", "inbox", "activities"):
                assert sql(postgres_url, f"SELECT count(*) FROM {table}") == [(0,)], table

    asyncio.run(main())


def test_query_filters_and_pages_in_byte_order(postgres_url: str) -> None:
    async def main() -> None:
        async with stores(postgres_url, 1) as (store,):
            ids = ["B", "a", "a_1", "a%2", "ab", "ax"]
            for n, instance_id in enumerate(ids):
                status = RuntimeStatus.COMPLETED if n % 2 else RuntimeStatus.RUNNING
                item = instance(instance_id, status=status, created_at=n, completed_at=100 + n)
                await store.run(put(item))

            def ids_of(q: InstanceQuery) -> Callable[[StoreTx], list[str]]:
                return lambda t: [i.instance_id for i in t.query(q)]

            # Byte order, as in SQLite: upper case before lower case.
            assert await store.read(ids_of(InstanceQuery())) == sorted(ids)
            # "_" and "%" in a prefix are literal characters.
            assert await store.read(ids_of(InstanceQuery(id_prefix="a_"))) == ["a_1"]
            assert await store.read(ids_of(InstanceQuery(id_prefix="a%"))) == ["a%2"]
            assert await store.read(ids_of(InstanceQuery(id_prefix="a"))) == ["a", "a%2", "a_1", "ab", "ax"]
            page = await store.read(ids_of(InstanceQuery(limit=2)))
            rest = await store.read(ids_of(InstanceQuery(after_id=page[-1], limit=10)))
            assert page + rest == sorted(ids)
            completed = InstanceQuery(statuses=frozenset({RuntimeStatus.COMPLETED}))
            assert await store.read(ids_of(completed)) == ["a", "a%2", "ax"]
            window = InstanceQuery(created_from=1, created_to=3, completed_from=102)
            assert await store.read(ids_of(window)) == ["a_1"]

    asyncio.run(main())


def test_read_sees_one_snapshot_and_never_waits_for_row_locks(postgres_url: str) -> None:
    async def main() -> None:
        async with stores(postgres_url, 1) as (store,):
            await store.run(lambda t: t.put_instance(instance("x", custom_status="before")))
            first_read = asyncio.Event()
            committed = asyncio.Event()

            def read_twice(t: StoreTx) -> tuple[str | None, str | None]:
                a = t.get_instance("x")
                first_read.set()
                pause_until(committed)
                b = t.get_instance("x")
                assert a is not None and b is not None
                return a.custom_status, b.custom_status

            reading = asyncio.ensure_future(store.read(read_twice))
            await asyncio.wait_for(first_read.wait(), 5)
            with psycopg.connect(postgres_url) as conn:
                conn.execute("UPDATE instances SET custom_status = 'after' WHERE instance_id = 'x'")
                conn.commit()
                committed.set()
                assert await within(5, reading) == ("before", "before")
                # An open transaction holds the row; a read still answers at once.
                conn.execute("SELECT * FROM instances WHERE instance_id = 'x' FOR UPDATE")
                seen = await within(2, store.read(lambda t: t.get_instance("x")))
                assert seen is not None and seen.custom_status == "after"
                conn.rollback()

    asyncio.run(main())


def test_writers_to_one_instance_serialize(postgres_url: str) -> None:
    async def main() -> None:
        async with stores(postgres_url) as (a, b):
            await a.run(lambda t: t.put_instance(instance("x", custom_status="")))

            def append(mark: str) -> Callable[[StoreTx], None]:
                def tx(t: StoreTx) -> None:
                    current = t.get_instance("x")
                    assert current is not None
                    time.sleep(0.005)  # widens the window in which an unlocked read would go stale
                    current.custom_status = (current.custom_status or "") + mark
                    t.put_instance(current)

                return tx

            marks = [f"{n % 10}" for n in range(24)]
            await within(
                20, asyncio.gather(*((a if n % 2 else b).run(append(m)) for n, m in enumerate(marks)))
            )
            final = await a.read(lambda t: t.get_instance("x"))
            assert final is not None and final.custom_status is not None
            assert sorted(final.custom_status) == sorted(marks)

    asyncio.run(main())


def test_a_deadlock_is_retried_until_both_commit(postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dapr_workflows.store")

    async def main() -> None:
        async with stores(postgres_url) as (a, b):
            for instance_id in ("p", "q"):
                await a.run(put(instance(instance_id, custom_status="")))
            both_hold_one = Meeting(2)
            attempts: list[str] = []

            def lock_in_order(first: str, second: str, mark: str) -> Callable[[StoreTx], None]:
                def tx(t: StoreTx) -> None:
                    attempts.append(mark)
                    one = t.get_instance(first)
                    if attempts.count(mark) == 1:
                        both_hold_one.wait()  # each holds one row and now asks for the other's
                    two = t.get_instance(second)
                    for row in (one, two):
                        assert row is not None
                        row.custom_status = (row.custom_status or "") + mark
                        t.put_instance(row)

                return tx

            await within(
                20, asyncio.gather(a.run(lock_in_order("p", "q", "A")), b.run(lock_in_order("q", "p", "B")))
            )
            for instance_id in ("p", "q"):
                row = await a.read(get(instance_id))
                assert row is not None and sorted(row.custom_status or "") == ["A", "B"]
            # At least one side ran again (under load a second deadlock may cost another retry).
            assert len(attempts) >= 3 and {"A", "B"} <= set(attempts)
            assert "DeadlockDetected" in caplog.text

    asyncio.run(main())


# leases


def test_two_replicas_racing_for_a_lease_never_both_win(postgres_url: str) -> None:
    async def main() -> None:
        async with stores(postgres_url) as (a, b):
            await a.run(put_ready("x"))
            activity_id = await a.run(lambda t: t.add_activity("x", "e1", "dapr", 1, b"req"))
            for round_no in range(15):
                together = Meeting(2)

                def claim(token: str, b: Meeting = together) -> Callable[[StoreTx], tuple[bool, bool]]:
                    def tx(t: StoreTx) -> tuple[bool, bool]:
                        b.wait()  # both transactions are open before either claims
                        got_instance = t.claim_instance("x", token, 30)
                        got_activity = t.claim_activity(activity_id, token, 30) is not None
                        return got_instance, got_activity

                    return tx

                results = await within(10, asyncio.gather(a.run(claim("A")), b.run(claim("B"))))
                (a_inst, a_act), (b_inst, b_act) = results
                assert a_inst != b_inst, f"round {round_no}: {results}"
                assert a_act != b_act, f"round {round_no}: {results}"
                inst_winner = a if a_inst else b
                act_winner = a if a_act else b
                inst_token = "A" if a_inst else "B"
                act_token = "A" if a_act else "B"
                await inst_winner.run(release_instance("x", inst_token))
                await act_winner.run(release_activity(activity_id, act_token))

    asyncio.run(main())


def test_a_lapsed_lease_goes_to_the_next_claimant_and_fences_the_old_holder(postgres_url: str) -> None:
    async def main() -> None:
        async with stores(postgres_url) as (a, b):
            await a.run(put_ready("x"))
            act = await a.run(lambda t: t.add_activity("x", "e1", "dapr", 1, b"req"))

            assert await a.run(lambda t: t.claim_instance("x", "A", 0.2))
            row = await a.run(lambda t: t.claim_activity(act, "A", 0.2))
            assert row is not None and row.request == b"req"
            assert not await b.run(lambda t: t.claim_instance("x", "B", 30))
            assert await b.run(lambda t: t.claim_activity(act, "B", 30)) is None
            # The holder may claim again (renew).
            assert await a.run(lambda t: t.claim_instance("x", "A", 0.2))

            await asyncio.sleep(0.3)
            assert await b.run(lambda t: t.claim_instance("x", "B", 30))
            assert await b.run(lambda t: t.claim_activity(act, "B", 30)) is not None
            assert not await a.run(lambda t: t.holds_instance("x", "A"))
            assert not await a.run(lambda t: t.holds_activity(act, "A"))
            assert await b.run(lambda t: t.holds_instance("x", "B"))
            assert await b.run(lambda t: t.holds_activity(act, "B"))
            # The old holder's release changes nothing.
            await a.run(lambda t: t.release_instance("x", "A"))
            await a.run(lambda t: t.release_activity(act, "A"))
            assert not await a.run(lambda t: t.claim_instance("x", "A", 30))
            assert await a.run(lambda t: t.claim_activity(act, "A", 30)) is None

            # A release frees the lease at once.
            await b.run(lambda t: t.release_instance("x", "B"))
            await b.run(lambda t: t.release_activity(act, "B"))
            assert await a.run(lambda t: t.claim_instance("x", "A", 30))
            assert await a.run(lambda t: t.claim_activity(act, "A", 30)) is not None
            # Gone rows cannot be claimed.
            assert not await a.run(lambda t: t.claim_instance("nothing", "A", 30))
            assert await a.run(lambda t: t.claim_activity(act + 1000, "A", 30)) is None

    asyncio.run(main())


def test_leases_are_renewed_and_released_by_token(postgres_url: str) -> None:
    async def main() -> None:
        async with stores(postgres_url) as (a, b):
            for instance_id in ("x", "y", "z"):
                await a.run(put_ready(instance_id))
            act = await a.run(lambda t: t.add_activity("x", "e1", "dapr", 1, b"req"))
            assert await a.run(lambda t: t.claim_instance("x", "A1", 0.2))
            assert await a.run(lambda t: t.claim_instance("y", "A2", 0.2))
            assert await a.run(lambda t: t.claim_instance("z", "A3", 0.2))
            assert await a.run(lambda t: t.claim_activity(act, "A1", 0.2)) is not None
            await a.run(lambda t: t.renew_leases(["A1", "A2"], 30))
            await asyncio.sleep(0.3)
            # Renewed leases live on; the one left out lapsed.
            assert not await b.run(lambda t: t.claim_instance("x", "B", 30))
            assert not await b.run(lambda t: t.claim_instance("y", "B", 30))
            assert await b.run(lambda t: t.claim_activity(act, "B", 30)) is None
            assert await b.run(lambda t: t.claim_instance("z", "B", 30))
            # Renewing never takes back a lease another engine claimed since.
            await a.run(lambda t: t.renew_leases(["A3"], 30))
            assert await b.run(lambda t: t.holds_instance("z", "B"))
            await a.run(lambda t: t.release_leases(["A1", "A2", "A3"]))
            assert await b.run(lambda t: t.claim_instance("x", "B", 30))
            assert await b.run(lambda t: t.claim_instance("y", "B", 30))
            assert await b.run(lambda t: t.claim_activity(act, "B", 30)) is not None
            assert await b.run(lambda t: t.holds_instance("z", "B"))

    asyncio.run(main())


def test_a_holder_checking_its_lease_keeps_a_claimant_out_until_it_commits(postgres_url: str) -> None:
    async def main() -> None:
        async with stores(postgres_url) as (a, b):
            await a.run(put_ready("x"))
            assert await a.run(lambda t: t.claim_instance("x", "A", 0.2))
            await asyncio.sleep(0.3)  # A's lease has lapsed, but nobody has claimed it yet
            checked = asyncio.Event()
            finish = asyncio.Event()

            def record_turn(t: StoreTx) -> bool:
                held = t.holds_instance("x", "A")
                checked.set()
                pause_until(finish)
                t.release_instance("x", "A")
                return held

            turn = asyncio.ensure_future(a.run(record_turn))
            await asyncio.wait_for(checked.wait(), 5)
            claim = asyncio.ensure_future(b.run(lambda t: t.claim_instance("x", "B", 30)))
            await asyncio.sleep(0.2)
            assert not claim.done()  # waits for the holder's transaction
            finish.set()
            assert await within(5, turn) is True
            assert await within(5, claim) is True

    asyncio.run(main())


def test_claimable_work_skips_live_leases_and_rows_others_have_locked(postgres_url: str) -> None:
    async def main() -> None:
        async with stores(postgres_url) as (a, b):
            for instance_id in ("leased", "locked", "free", "lapsed"):
                await a.run(put_ready(instance_id))
            await a.run(put_ready("timer", visible_at=now_us() + 60_000_000))
            await a.run(lambda t: t.put_instance(instance("idle")))
            act = {}
            for name in ("leased", "locked", "free", "lapsed"):
                act[name] = await a.run(lambda t: t.add_activity("free", "e1", "durabletask", 1, b"r"))
            assert await a.run(lambda t: t.claim_instance("leased", "A", 30))
            assert await a.run(lambda t: t.claim_activity(act["leased"], "A", 30)) is not None
            assert await a.run(lambda t: t.claim_instance("lapsed", "A", 0.05))
            assert await a.run(lambda t: t.claim_activity(act["lapsed"], "A", 0.05)) is not None
            await asyncio.sleep(0.1)

            def scan(t: StoreTx) -> tuple[list[tuple[str, str]], list[tuple[int, str]]]:
                return t.claimable_instances(now_us(), 100, ALL), t.claimable_activities(100, ALL)

            with psycopg.connect(postgres_url) as other:
                # Another transaction is working on these rows.
                other.execute("SELECT 1 FROM instances WHERE instance_id = 'locked' FOR UPDATE")
                other.execute("SELECT 1 FROM activities WHERE id = %s FOR UPDATE", (act["locked"],))
                started = time.monotonic()
                instances, activities = await within(5, b.run(scan))
                assert time.monotonic() - started < 1
                assert sorted(instances) == [("free", "dapr"), ("lapsed", "dapr")]
                assert sorted(activities) == [(act["free"], "durabletask"), (act["lapsed"], "durabletask")]
                other.rollback()
            instances, activities = await b.run(scan)
            assert sorted(i for i, _ in instances) == ["free", "lapsed", "locked"]
            assert await b.run(lambda t: t.claimable_instances(now_us(), 1, ALL)) != []
            assert len(await b.run(lambda t: t.claimable_activities(2, ALL))) == 2

    asyncio.run(main())


def test_the_sweep_takes_running_instances_of_the_dialects_asked_longest_waiting_first(
    postgres_url: str,
) -> None:
    async def main() -> None:
        async with stores(postgres_url, 1) as (a,):
            now = now_us()
            rows = [
                ("newer", RuntimeStatus.RUNNING, "dapr", now - 1_000),
                ("older", RuntimeStatus.PENDING, "dapr", now - 5_000),
                ("suspended", RuntimeStatus.SUSPENDED, "dapr", now - 5_000),
                ("done", RuntimeStatus.COMPLETED, "dapr", now - 5_000),
                ("other-dialect", RuntimeStatus.RUNNING, "durabletask", now - 5_000),
            ]
            for name, status, dialect, due in rows:

                def tx(
                    t: StoreTx, row: tuple[str, RuntimeStatus, str, int] = (name, status, dialect, due)
                ) -> None:
                    t.put_instance(instance(row[0], status=row[1], dialect=row[2]))
                    t.add_inbox(row[0], b"event", row[3])

                await a.run(tx)
            act_dapr = await a.run(lambda t: t.add_activity("newer", "e1", "dapr", 1, b"r"))
            await a.run(lambda t: t.add_activity("other-dialect", "e1", "durabletask", 1, b"r"))
            found = await a.run(lambda t: t.claimable_instances(now_us(), 10, ["dapr"]))
            assert found == [("older", "dapr"), ("newer", "dapr")]
            assert await a.run(lambda t: t.claimable_activities(10, ["dapr"])) == [(act_dapr, "dapr")]

    asyncio.run(main())


def test_an_engine_claims_again_what_its_own_earlier_token_holds(postgres_url: str) -> None:
    """An engine that gave a lease up locally may take it again at once, before the store heard of
    the release; another engine may not."""

    async def main() -> None:
        async with stores(postgres_url) as (a, b):
            await a.run(put_ready("x"))
            act = await a.run(lambda t: t.add_activity("x", "e1", "dapr", 1, b"req"))
            assert await a.run(lambda t: t.claim_instance("x", "e1a-1", 30))
            assert await a.run(lambda t: t.claim_activity(act, "e1a-1", 30)) is not None
            assert not await b.run(lambda t: t.claim_instance("x", "e2b-1", 30))
            assert await b.run(lambda t: t.claim_activity(act, "e2b-1", 30)) is None
            assert await a.run(lambda t: t.claim_instance("x", "e1a-2", 30))
            assert await a.run(lambda t: t.claim_activity(act, "e1a-2", 30)) is not None
            # The newer token fences the older one.
            assert not await a.run(lambda t: t.holds_instance("x", "e1a-1"))
            assert await a.run(lambda t: t.holds_activity(act, "e1a-2"))

    asyncio.run(main())


def test_two_engines_creating_one_instance_at_once_create_it_once(postgres_url: str) -> None:
    """Both transactions see no instance, both insert: the second one runs again and sees the first's."""

    async def main() -> None:
        async with stores(postgres_url) as (a, b):
            together = Meeting(2)
            attempts: list[str] = []

            def start(name: str) -> Callable[[StoreTx], str]:
                def tx(t: StoreTx) -> str:
                    attempts.append(name)
                    if t.get_instance("same") is not None:
                        return "exists"
                    if attempts.count(name) == 1:
                        together.wait()  # both have seen no instance
                    t.create_instance(instance("same", input=name))
                    return "created"

                return tx

            results = await within(10, asyncio.gather(a.run(start("a")), b.run(start("b"))))
            assert sorted(results) == ["created", "exists"]
            created = "a" if results[0] == "created" else "b"
            stored = await a.run(lambda t: t.get_instance("same"))
            assert stored is not None and stored.input == created

    asyncio.run(main())


def test_the_claimable_scans_of_two_replicas_do_not_hand_out_the_same_rows(postgres_url: str) -> None:
    async def main() -> None:
        async with stores(postgres_url) as (a, b):
            for n in range(6):
                await a.run(put_ready(f"i{n}"))
            together = Meeting(2)

            def scan_and_hold(t: StoreTx) -> list[str]:
                found = [i for i, _ in t.claimable_instances(now_us(), 3, ALL)]
                together.wait()  # both scans hold their rows locked at once
                return found

            found_a, found_b = await within(10, asyncio.gather(a.run(scan_and_hold), b.run(scan_and_hold)))
            assert len(found_a) == len(found_b) == 3
            assert set(found_a).isdisjoint(found_b)

    asyncio.run(main())


# announcements


class Heard:
    """What one store's listener received."""

    def __init__(self) -> None:
        self.items: list[Announcement] = []
        self.changed = asyncio.Event()

    def __call__(self, item: Announcement) -> None:
        self.items.append(item)
        self.changed.set()

    async def wait_for(self, count: int, timeout: float = 5) -> list[Announcement]:
        deadline = time.monotonic() + timeout
        while len(self.items) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - time.monotonic()))
        return self.items


RESYNC = Announcement("resync", "", "")


def test_announcements_reach_the_other_replicas_when_the_transaction_commits(postgres_url: str) -> None:
    async def main() -> None:
        async with stores(postgres_url) as (a, b):
            heard_a, heard_b = Heard(), Heard()
            listeners = [asyncio.ensure_future(a.listen(heard_a)), asyncio.ensure_future(b.listen(heard_b))]
            try:
                assert await heard_a.wait_for(1) == [RESYNC]
                assert await heard_b.wait_for(1) == [RESYNC]
                await a.run(put_ready("x|y"))
                announced = asyncio.Event()
                commit = asyncio.Event()

                def announce(t: StoreTx) -> None:
                    t.add_inbox("x|y", b"event", 0)
                    t.announce([("x|y", "dapr")], [(42, "durabletask")], ["x|y"])
                    announced.set()
                    pause_until(commit)

                running = asyncio.ensure_future(a.run(announce))
                await asyncio.wait_for(announced.wait(), 5)
                await asyncio.sleep(0.3)
                assert heard_b.items == [RESYNC]  # nothing before the commit
                commit.set()
                await within(5, running)
                assert await heard_b.wait_for(4) == [
                    RESYNC,
                    Announcement("instance", "dapr", "x|y"),
                    Announcement("activity", "durabletask", "42"),
                    Announcement("changed", "", "x|y"),
                ]

                # A rolled back transaction announces nothing.
                def announce_then_fail(t: StoreTx) -> None:
                    t.announce([("lost", "dapr")], [], [])
                    raise RuntimeError("rolled back")

                with pytest.raises(RuntimeError, match="rolled back"):
                    await a.run(announce_then_fail)
                # Notifications arrive in commit order: the marker would come after the lost one.
                await a.run(lambda t: t.announce([], [], ["marker"]))
                assert (await heard_b.wait_for(5))[4:] == [Announcement("changed", "", "marker")]
                await asyncio.sleep(0.1)
                assert len(heard_b.items) == 5
                # A never hears itself; B's announcements reach A.
                await b.run(lambda t: t.announce([], [], ["from-b"]))
                assert await heard_a.wait_for(2) == [RESYNC, Announcement("changed", "", "from-b")]
            finally:
                for task in listeners:
                    task.cancel()
                await asyncio.gather(*listeners, return_exceptions=True)

    asyncio.run(main())


def test_a_server_restart_fails_transactions_then_both_pool_and_listener_recover() -> None:
    # A server of its own: the session's server stays up for the other tests.
    server = PostgresServer().start()
    try:
        url = server.create_database()

        async def main() -> None:
            async with stores(url + "?pool_timeout=1", 2) as (a, b):
                heard = Heard()
                listener = asyncio.ensure_future(b.listen(heard))
                try:
                    await heard.wait_for(1)
                    await a.run(put_ready("x"))
                    await asyncio.to_thread(server.kill)
                    # While the server is down, a transaction fails within the pool's timeout.
                    started = time.monotonic()
                    with pytest.raises(StoreUnavailable) as down:
                        await within(10, a.run(lambda t: t.get_instance("x")))
                    assert down.value.code == ErrorCode.UNAVAILABLE
                    assert "is unavailable" in down.value.message and "127.0.0.1" in down.value.message
                    assert time.monotonic() - started < 5
                    await asyncio.to_thread(server.restart)
                    # The pool reconnects by itself (it backs off between attempts).
                    deadline = time.monotonic() + 20
                    while True:
                        try:
                            row = await within(10, a.run(lambda t: t.get_instance("x")))
                            break
                        except StoreUnavailable:
                            assert time.monotonic() < deadline, "the pool did not reconnect"
                            await asyncio.sleep(0.1)
                    assert row is not None
                    # The listener reconnects by itself and asks for a resync.
                    assert (await heard.wait_for(2, timeout=15))[1] == RESYNC
                    await a.run(lambda t: t.announce([], [], ["after-restart"]))
                    assert (await heard.wait_for(3))[2] == Announcement("changed", "", "after-restart")
                finally:
                    listener.cancel()
                    await asyncio.gather(listener, return_exceptions=True)

        asyncio.run(main())
    finally:
        server.stop()
