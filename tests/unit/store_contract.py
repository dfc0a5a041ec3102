"""The store contract: what every store does, written once and run on each store kind.

`StoreContract` holds the tests; a test module subclasses it with a `kind` fixture giving a
`StoreKind`: tests/unit/test_store_contract.py on SQLite (in-process, no server), and
tests/test_postgres_store.py on a real PostgreSQL. Each test gets a fresh database.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from dapr_workflows_component.store import EntityRow, LockRequestRow, Store, StoreTx
from dapr_workflows_component.workflows import Instance, InstanceQuery, RuntimeStatus

T = TypeVar("T")

ALL_DIALECTS = ["dapr", "durabletask"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "text", "integer" or "bytes"
    not_null: bool


@dataclass
class Schema:
    """Tables (their columns in order) and indexes (name -> table and columns) of a store."""

    tables: dict[str, list[Column]] = field(default_factory=dict)
    indexes: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)


class StoreKind(abc.ABC):
    """One kind of store on one fresh database."""

    name: str
    schema_version: int

    def versions(self) -> list[int]:
        """The migrations' numbers, in order (a store's numbers may have gaps)."""
        return list(range(1, self.schema_version + 1))

    @abc.abstractmethod
    def open(self) -> Store:
        """A store on this kind's database (opened again, it reaches the same data)."""

    @abc.abstractmethod
    def create_old_schema(self, version: int) -> None:
        """Brings the empty database to schema `version` with the kind's own migrations, as an
        engine of that version left it."""

    @abc.abstractmethod
    def sql(self, statement: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Runs one statement (written with `?` placeholders) outside any store, committed."""

    @abc.abstractmethod
    def schema(self) -> Schema: ...


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


def full_instance(instance_id: str = "full") -> Instance:
    """An instance with every field set, bytes that are not text and tags that need quoting."""
    return instance(
        instance_id,
        version="v2",
        input='"in"',
        output='"out"',
        custom_status='"cs"',
        failure=b"\x00\xfffailure",
        parent_instance_id="parent",
        parent_task_id=7,
        parent_execution_id="pe",
        tags={"a": "b", 'q"uote': "ü"},
        completed_at=3_000,
        scheduled_start_at=4_000,
        rerun={"task_id": 3, "input": None},
        status=RuntimeStatus.COMPLETED,
    )


class Session:
    """A store opened for one test, with short forms of its calls."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def do(self, fn: Callable[[StoreTx], T]) -> T:
        return await self.store.run(fn)

    async def see(self, fn: Callable[[StoreTx], T]) -> T:
        return await self.store.read(fn)

    async def ids(self, query: InstanceQuery) -> list[str]:
        return await self.see(lambda t: [i.instance_id for i in t.query(query)])


def with_store(kind: StoreKind, body: Callable[[Session], Awaitable[None]]) -> None:
    """Runs `body` with a store of `kind` on a fresh event loop, and closes the store."""

    async def main() -> None:
        store = kind.open()
        try:
            await body(Session(store))
        finally:
            await store.close()

    asyncio.run(asyncio.wait_for(main(), 30))


class StoreContract:
    """What every store does. Subclasses provide the `kind` fixture."""

    # -- instances

    def test_an_instance_round_trips_with_every_field(self, kind: StoreKind) -> None:
        async def body(s: Session) -> None:
            full = full_instance()
            await s.do(lambda t: t.put_instance(full))
            assert await s.see(lambda t: t.get_instance("full")) == full
            assert await s.see(lambda t: t.get_instance("missing")) is None
            bare = instance("bare")  # every optional field empty
            await s.do(lambda t: t.create_instance(bare))
            assert await s.see(lambda t: t.get_instance("bare")) == bare

        with_store(kind, body)

    def test_put_replaces_the_instance_and_children_are_found_by_parent(self, kind: StoreKind) -> None:
        async def body(s: Session) -> None:
            await s.do(lambda t: t.put_instance(full_instance()))
            changed = instance("full", status=RuntimeStatus.RUNNING, custom_status='"new"', tags={})
            await s.do(lambda t: t.put_instance(changed))
            assert await s.see(lambda t: t.get_instance("full")) == changed
            for child in ("c2", "c1"):
                await s.do(lambda t, c=child: t.put_instance(instance(c, parent_instance_id="p")))
            await s.do(lambda t: t.put_instance(instance("other", parent_instance_id="q")))
            assert sorted(await s.see(lambda t: t.child_ids("p"))) == ["c1", "c2"]
            assert await s.see(lambda t: t.child_ids("nobody")) == []

        with_store(kind, body)

    def test_deleting_an_instance_takes_its_history_inbox_and_activities(self, kind: StoreKind) -> None:
        async def body(s: Session) -> None:
            for instance_id in ("gone", "kept"):

                def fill(t: StoreTx, i: str = instance_id) -> None:
                    t.put_instance(instance(i))
                    t.append_history(i, 0, [b"h"])
                    t.add_inbox(i, b"e", 0)
                    t.add_activity(i, "e1", "dapr", 1, b"r")

                await s.do(fill)
            await s.do(lambda t: t.delete_instance("gone"))
            assert await s.see(lambda t: t.get_instance("gone")) is None
            assert await s.see(lambda t: t.history("gone")) == []
            assert await s.see(lambda t: t.inbox("gone", 10)) == []
            kept_activities = kind.sql("SELECT id FROM activities WHERE instance_id = ?", ("kept",))
            assert [(kept_activities[0][0], "dapr")] == await s.see(lambda t: t.all_activities())
            assert await s.see(lambda t: t.history("kept")) == [b"h"]
            assert len(await s.see(lambda t: t.inbox("kept", 10))) == 1
            for table in ("instances", "history", "inbox", "activities"):
                assert kind.sql(f"SELECT count(*) FROM {table} WHERE instance_id = ?", ("gone",)) == [(0,)]

        with_store(kind, body)

    # -- history, inbox, activities, outbox

    def test_history_keeps_its_order_and_refuses_a_sequence_number_twice(self, kind: StoreKind) -> None:
        async def body(s: Session) -> None:
            await s.do(lambda t: t.put_instance(instance("x")))
            await s.do(lambda t: t.append_history("x", 0, [b"e0", b"e1"]))
            await s.do(lambda t: t.append_history("x", 2, [b"e2\x00\xff"]))
            await s.do(lambda t: t.append_history("x", 3, []))
            assert await s.see(lambda t: t.history("x")) == [b"e0", b"e1", b"e2\x00\xff"]

            def overwrite(t: StoreTx) -> None:
                t.append_history("x", 3, [b"e3"])
                t.append_history("x", 1, [b"again"])

            with pytest.raises(Exception):  # noqa: B017 (each driver has its own error class)
                await s.do(overwrite)
            # The transaction failed as a whole: e3 is not there either.
            assert await s.see(lambda t: t.history("x")) == [b"e0", b"e1", b"e2\x00\xff"]
            await s.do(lambda t: t.clear_history("x"))
            assert await s.see(lambda t: t.history("x")) == []

        with_store(kind, body)

    def test_the_inbox_shows_what_is_visible_in_order_and_timers_wait(self, kind: StoreKind) -> None:
        async def body(s: Session) -> None:
            await s.do(lambda t: t.put_instance(instance("x", dialect="durabletask")))
            for event, visible_at in ((b"soon", 100), (b"later", 200), (b"first", 50)):
                await s.do(lambda t, e=event, v=visible_at: t.add_inbox("x", e, v))
            ids = {r.event: r.id for r in await s.see(lambda t: t.inbox("x", 10_000))}
            soon, later, first = ids[b"soon"], ids[b"later"], ids[b"first"]
            assert soon < later < first  # IDs grow: the inbox's order is arrival
            rows = await s.see(lambda t: t.inbox("x", 150))
            assert [(r.id, r.instance_id, r.event, r.visible_at) for r in rows] == [
                (soon, "x", b"soon", 100),
                (first, "x", b"first", 50),
            ]
            assert await s.see(lambda t: t.ready_instances(150)) == [("x", "durabletask")]
            assert await s.see(lambda t: t.ready_instances(49)) == []
            assert await s.see(lambda t: t.future_timers(150)) == [(200, "x", "durabletask")]
            await s.do(lambda t: t.delete_inbox([soon, first]))
            assert [r.id for r in await s.see(lambda t: t.inbox("x", 10_000))] == [later]
            await s.do(lambda t: t.delete_inbox([]))
            await s.do(lambda t: t.clear_inbox("x"))
            assert await s.see(lambda t: t.inbox("x", 10_000)) == []
            assert await s.see(lambda t: t.future_timers(0)) == []

        with_store(kind, body)

    def test_activities_are_kept_until_deleted(self, kind: StoreKind) -> None:
        async def body(s: Session) -> None:
            await s.do(lambda t: t.put_instance(instance("x")))
            a1 = await s.do(lambda t: t.add_activity("x", "e1", "dapr", 1, b"req1"))
            a2 = await s.do(lambda t: t.add_activity("x", "e1", "durabletask", 2, b"req2\x00"))
            row = await s.see(lambda t: t.get_activity(a2))
            assert row is not None
            assert (row.id, row.instance_id, row.execution_id, row.dialect, row.task_id, row.request) == (
                a2,
                "x",
                "e1",
                "durabletask",
                2,
                b"req2\x00",
            )
            assert await s.see(lambda t: t.get_activity(a2 + 1000)) is None
            assert await s.see(lambda t: t.all_activities()) == [(a1, "dapr"), (a2, "durabletask")]
            assert await s.do(lambda t: t.delete_activity(a1))
            assert not await s.do(lambda t: t.delete_activity(a1))  # a second result finds it gone
            a3 = await s.do(lambda t: t.add_activity("x", "e1", "dapr", 3, b"req3"))
            assert sorted(await s.do(lambda t: t.clear_activities("x"))) == [a2, a3]
            assert await s.see(lambda t: t.all_activities()) == []

        with_store(kind, body)

    def test_the_outbox_pages_acknowledges_and_expires(self, kind: StoreKind) -> None:
        async def body(s: Session) -> None:
            for n in (1, 2, 3):
                await s.do(lambda t, n=n: t.add_outbox(f'{{"n":{n}}}', 10 * n))
            o1, o2, o3 = [event_id for event_id, _ in await s.see(lambda t: t.outbox(0, 10))]
            assert o1 < o2 < o3
            assert await s.see(lambda t: t.outbox(0, 2)) == [(o1, '{"n":1}'), (o2, '{"n":2}')]
            assert await s.see(lambda t: t.outbox(o1, 10)) == [(o2, '{"n":2}'), (o3, '{"n":3}')]
            assert await s.do(lambda t: t.delete_outbox(o2))
            assert not await s.do(lambda t: t.delete_outbox(o2))
            assert await s.see(lambda t: t.outbox_count()) == 2
            assert await s.do(lambda t: t.expire_outbox(30)) == 1  # created before 30: o1
            assert await s.see(lambda t: t.outbox(0, 10)) == [(o3, '{"n":3}')]
            assert await s.see(lambda t: t.outbox_count()) == 1
            assert await s.do(lambda t: t.expire_outbox(0)) == 0

        with_store(kind, body)

    # -- queries

    def test_query_filters_by_status_and_time_windows(self, kind: StoreKind) -> None:
        async def body(s: Session) -> None:
            for n in range(6):
                status = RuntimeStatus.COMPLETED if n % 2 else RuntimeStatus.RUNNING
                item = instance(f"i{n}", status=status, created_at=n, completed_at=100 + n if n % 2 else None)
                await s.do(lambda t, item=item: t.put_instance(item))
            completed = frozenset({RuntimeStatus.COMPLETED})
            assert await s.ids(InstanceQuery(statuses=completed)) == ["i1", "i3", "i5"]
            both = frozenset({RuntimeStatus.COMPLETED, RuntimeStatus.RUNNING})
            assert len(await s.ids(InstanceQuery(statuses=both))) == 6
            assert await s.ids(InstanceQuery(created_from=2, created_to=4)) == ["i2", "i3"]
            assert await s.ids(InstanceQuery(completed_from=103)) == ["i3", "i5"]
            assert await s.ids(InstanceQuery(completed_to=103)) == ["i1"]
            assert await s.ids(InstanceQuery(statuses=completed, created_to=5, completed_from=102)) == ["i3"]
            assert await s.ids(InstanceQuery(statuses=frozenset({RuntimeStatus.FAILED}))) == []

        with_store(kind, body)

    def test_query_pages_by_id_in_byte_order_and_prefixes_are_literal(self, kind: StoreKind) -> None:
        async def body(s: Session) -> None:
            ids = ["B", "a", "a_1", "a%2", "ab", "ax", "é", "b"]
            for instance_id in ids:
                await s.do(lambda t, i=instance_id: t.put_instance(instance(i)))
            # Byte order (UTF-8): upper case before lower case, "é" last.
            assert await s.ids(InstanceQuery()) == sorted(ids, key=str.encode)
            assert await s.ids(InstanceQuery(id_prefix="a_")) == ["a_1"]
            assert await s.ids(InstanceQuery(id_prefix="a%")) == ["a%2"]
            assert await s.ids(InstanceQuery(id_prefix="a")) == ["a", "a%2", "a_1", "ab", "ax"]
            seen: list[str] = []
            after: str | None = None
            while True:
                page = await s.ids(InstanceQuery(after_id=after, limit=3))
                seen += page
                if len(page) < 3:
                    break
                after = page[-1]
            assert seen == sorted(ids, key=str.encode)
            assert await s.ids(InstanceQuery(id_prefix="a", after_id="a_1", limit=1)) == ["ab"]

        with_store(kind, body)

    # -- transactions

    def test_a_failed_transaction_changes_nothing(self, kind: StoreKind) -> None:
        async def body(s: Session) -> None:
            await s.do(lambda t: t.put_instance(instance("x", custom_status="before")))

            def half_done(t: StoreTx) -> None:
                t.put_instance(instance("x", custom_status="after"))
                t.put_instance(instance("y"))
                t.add_inbox("x", b"e", 0)
                t.add_outbox("{}", 1)
                raise ValueError("refused halfway")

            with pytest.raises(ValueError, match="refused halfway"):
                await s.do(half_done)
            kept = await s.see(lambda t: t.get_instance("x"))
            assert kept is not None and kept.custom_status == "before"
            assert await s.see(lambda t: t.get_instance("y")) is None
            assert await s.see(lambda t: t.inbox("x", 10)) == []
            assert await s.see(lambda t: t.outbox(0, 10)) == []
            # The store still works after the failure.
            await s.do(lambda t: t.put_instance(instance("y")))
            assert await s.see(lambda t: t.get_instance("y")) is not None

        with_store(kind, body)

    def test_what_was_committed_is_there_after_reopening(self, kind: StoreKind) -> None:
        async def write(s: Session) -> None:
            def tx(t: StoreTx) -> None:
                t.put_instance(full_instance("kept"))
                t.append_history("kept", 0, [b"h0"])
                t.add_inbox("kept", b"timer", 5_000)
                t.add_activity("kept", "e1", "dapr", 1, b"r")
                t.add_outbox("{}", 1)

            await s.do(tx)

        async def check(s: Session) -> None:
            assert await s.see(lambda t: t.get_instance("kept")) == full_instance("kept")
            assert await s.see(lambda t: t.history("kept")) == [b"h0"]
            assert await s.see(lambda t: t.future_timers(0)) == [(5_000, "kept", "dapr")]
            assert len(await s.see(lambda t: t.all_activities())) == 1
            assert len(await s.see(lambda t: t.outbox(0, 10))) == 1

        with_store(kind, write)
        with_store(kind, check)

    # -- leases

    def test_leases_claim_renew_release(self, kind: StoreKind) -> None:
        async def body(s: Session) -> None:
            await s.do(lambda t: t.put_instance(instance("x")))
            act = await s.do(lambda t: t.add_activity("x", "e1", "dapr", 1, b"r"))
            assert await s.do(lambda t: t.claim_instance("x", "A-1", 60))
            claimed = await s.do(lambda t: t.claim_activity(act, "A-2", 60))
            assert claimed is not None and claimed.id == act
            assert await s.do(lambda t: t.holds_instance("x", "A-1"))
            assert await s.do(lambda t: t.holds_activity(act, "A-2"))
            if not s.store.shared:
                # One engine owns an exclusive store: its leases live in the engine, and the
                # store's lease calls succeed and record nothing.
                assert await s.do(lambda t: t.claim_instance("x", "B-1", 60))
                assert await s.see(lambda t: t.claimable_instances(10**18, 10, ALL_DIALECTS)) == []
                assert await s.see(lambda t: t.claimable_activities(10, ALL_DIALECTS)) == []
                return
            # Another engine is kept out while the lease lives; the holder renews it.
            assert not await s.do(lambda t: t.claim_instance("x", "B-1", 60))
            assert await s.do(lambda t: t.claim_activity(act, "B-2", 60)) is None
            assert not await s.do(lambda t: t.holds_instance("x", "B-1"))
            await s.do(lambda t: t.renew_leases(["A-1", "A-2"], 60))
            assert await s.do(lambda t: t.holds_instance("x", "A-1"))
            # An engine may claim again what one of its own tokens holds.
            assert await s.do(lambda t: t.claim_instance("x", "A-3", 60))
            # Releasing with a token that does not hold the lease changes nothing.
            await s.do(lambda t: t.release_instance("x", "A-1"))
            assert await s.do(lambda t: t.holds_instance("x", "A-3"))
            await s.do(lambda t: t.release_instance("x", "A-3"))
            assert await s.do(lambda t: t.claim_instance("x", "B-1", 60))
            # An engine that stops gives all of its leases back at once.
            await s.do(lambda t: t.release_leases(["A-2", "B-1"]))
            assert await s.do(lambda t: t.claim_instance("x", "C-1", 60))
            assert await s.do(lambda t: t.claim_activity(act, "C-2", 60)) is not None

        with_store(kind, body)

    def test_a_lapsed_lease_goes_to_the_next_claimant_and_fences_the_old_holder(
        self, kind: StoreKind
    ) -> None:
        async def body(s: Session) -> None:
            if not s.store.shared:
                pytest.skip("an exclusive store's leases live in its one engine")
            await s.do(lambda t: t.put_instance(instance("x")))
            act = await s.do(lambda t: t.add_activity("x", "e1", "dapr", 1, b"r"))
            assert await s.do(lambda t: t.claim_instance("x", "A-1", 0.05))
            assert await s.do(lambda t: t.claim_activity(act, "A-2", 0.05)) is not None
            await asyncio.sleep(0.2)
            # Lapsed but unclaimed: the holder may still record its work.
            assert await s.do(lambda t: t.holds_instance("x", "A-1"))
            assert await s.do(lambda t: t.claim_instance("x", "B-1", 60))
            assert await s.do(lambda t: t.claim_activity(act, "B-2", 60)) is not None
            assert not await s.do(lambda t: t.holds_instance("x", "A-1"))
            assert not await s.do(lambda t: t.holds_activity(act, "A-2"))
            # The old holder's renewal and release do not take the lease back.
            await s.do(lambda t: t.renew_leases(["A-1", "A-2"], 60))
            await s.do(lambda t: t.release_activity(act, "A-2"))
            assert await s.do(lambda t: t.holds_activity(act, "B-2"))

        with_store(kind, body)

    def test_claimable_work_is_running_unleased_and_visible(self, kind: StoreKind) -> None:
        async def body(s: Session) -> None:
            if not s.store.shared:
                pytest.skip("an exclusive store's engine finds its work in memory")
            now = int(time.time() * 1_000_000)
            cases = {
                "ready": (RuntimeStatus.RUNNING, 0, "dapr"),
                "other-dialect": (RuntimeStatus.RUNNING, 0, "durabletask"),
                "future": (RuntimeStatus.RUNNING, now + 10**9, "dapr"),
                "suspended": (RuntimeStatus.SUSPENDED, 0, "dapr"),
                "done": (RuntimeStatus.COMPLETED, 0, "dapr"),
                "leased": (RuntimeStatus.RUNNING, 0, "dapr"),
            }
            for instance_id, (status, visible_at, dialect) in cases.items():
                item = instance(instance_id, status=status, dialect=dialect)

                def tx(t: StoreTx, item: Instance = item, visible_at: int = visible_at) -> None:
                    t.put_instance(item)
                    t.add_inbox(item.instance_id, b"e", visible_at)

                await s.do(tx)
            assert await s.do(lambda t: t.claim_instance("leased", "A-1", 60))
            found = await s.do(lambda t: t.claimable_instances(now, 10, ["dapr"]))
            assert found == [("ready", "dapr")]
            both = await s.do(lambda t: t.claimable_instances(now, 10, ALL_DIALECTS))
            assert sorted(both) == [("other-dialect", "durabletask"), ("ready", "dapr")]
            a1 = await s.do(lambda t: t.add_activity("ready", "e1", "dapr", 1, b"r"))
            a2 = await s.do(lambda t: t.add_activity("ready", "e1", "dapr", 2, b"r"))
            assert await s.do(lambda t: t.claim_activity(a1, "A-2", 60)) is not None
            assert await s.do(lambda t: t.claimable_activities(10, ["dapr"])) == [(a2, "dapr")]
            assert await s.do(lambda t: t.claimable_activities(10, ["durabletask"])) == []

        with_store(kind, body)

    # -- durable entities

    def test_entities_keep_state_and_locks_and_page_by_id(self, kind: StoreKind) -> None:
        async def body(s: Session) -> None:
            for key, modified in (("b", 20), ("a", 10), ("c", 30)):
                row = EntityRow(f"@counter@{key}", None if key == "c" else f'"{key}"', None, None, modified)
                await s.do(lambda t, r=row: t.put_entity(r))
            await s.do(lambda t: t.put_entity(EntityRow("@other@x", "1", "cs-1", "orch", 5)))
            assert await s.see(lambda t: t.get_entity("@counter@a")) == EntityRow(
                "@counter@a", '"a"', None, None, 10
            )
            assert await s.see(lambda t: t.get_entity("@counter@missing")) is None
            locked = EntityRow("@counter@a", '"a2"', "cs-2", "orch", 11)
            await s.do(lambda t: t.put_entity(locked))  # replaces
            assert await s.see(lambda t: t.get_entity("@counter@a")) == locked
            ids = await s.see(
                lambda t: [e.instance_id for e in t.query_entities("@counter@", None, None, None, 10)]
            )
            assert ids == ["@counter@a", "@counter@b", "@counter@c"]
            page = await s.see(lambda t: t.query_entities(None, 11, 30, "@counter@a", 10))
            assert [e.instance_id for e in page] == ["@counter@b"]
            assert [e.instance_id for e in await s.see(lambda t: t.entities_locked_by("orch"))] == [
                "@counter@a",
                "@other@x",
            ]
            await s.do(lambda t: t.delete_entity("@other@x"))
            assert await s.see(lambda t: t.get_entity("@other@x")) is None

        with_store(kind, body)

    def test_lock_requests_wait_in_order_until_deleted(self, kind: StoreKind) -> None:
        async def body(s: Session) -> None:
            first = await s.do(lambda t: t.add_lock_request("cs-1", "o1", ["@a@1", "@b@1"]))
            second = await s.do(lambda t: t.add_lock_request("cs-2", "o2", ["@a@1"]))
            assert await s.see(lambda t: t.lock_requests()) == [
                LockRequestRow(first, "cs-1", "o1", ["@a@1", "@b@1"]),
                LockRequestRow(second, "cs-2", "o2", ["@a@1"]),
            ]
            assert await s.see(lambda t: [t.has_entity_locks(o) for o in ("o1", "o2", "o3")]) == [
                True,
                True,
                False,
            ]
            await s.do(lambda t: t.delete_lock_requests([first]))
            assert [r.id for r in await s.see(lambda t: t.lock_requests())] == [second]
            assert await s.see(lambda t: t.has_entity_locks("o1")) is False
            await s.do(lambda t: t.put_entity(EntityRow("@a@1", None, "cs-1", "o1", 1)))
            assert await s.see(lambda t: t.has_entity_locks("o1")) is True

        with_store(kind, body)

    # -- migrations

    def test_a_fresh_database_gets_the_whole_schema_once(self, kind: StoreKind) -> None:
        with_store(kind, _noop)
        versions = kind.sql("SELECT version FROM schema_version ORDER BY version")
        assert versions == [(v,) for v in kind.versions()]
        schema = kind.schema()
        assert {"instances", "history", "inbox", "activities", "outbox"} <= set(schema.tables)
        assert schema.indexes["outbox_created"] == ("outbox", ("created_at",))
        assert [c.name for c in schema.tables["instances"]][:3] == ["instance_id", "dialect", "name"]
        with_store(kind, _noop)  # opening a current store again applies nothing
        assert len(kind.sql("SELECT version FROM schema_version")) == len(kind.versions())

    def test_an_old_schema_is_brought_up_to_date_and_keeps_its_data(self, kind: StoreKind) -> None:
        kind.create_old_schema(1)  # the first release: no outbox yet
        kind.sql(
            "INSERT INTO instances "
            "(instance_id, dialect, name, status, execution_id, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("old", "dapr", "wf", int(RuntimeStatus.RUNNING), "e1", 1_000, 2_000),
        )
        kind.sql("INSERT INTO history (instance_id, seq, event) VALUES (?, ?, ?)", ("old", 0, b"h0"))

        async def body(s: Session) -> None:
            assert await s.see(lambda t: t.get_instance("old")) == instance("old")
            assert await s.see(lambda t: t.history("old")) == [b"h0"]
            await s.do(lambda t: t.add_outbox("{}", 1))
            assert [payload for _, payload in await s.see(lambda t: t.outbox(0, 10))] == ["{}"]

        with_store(kind, body)
        versions = kind.sql("SELECT version FROM schema_version ORDER BY version")
        assert versions == [(v,) for v in kind.versions()]
        assert "outbox_created" in kind.schema().indexes

    def test_a_store_newer_than_the_code_is_refused(self, kind: StoreKind) -> None:
        with_store(kind, _noop)
        kind.sql("INSERT INTO schema_version (version) VALUES (?)", (kind.schema_version + 1,))
        with pytest.raises(RuntimeError, match=r"newer than this engine's .*upgrade dapr-workflows"):
            kind.open()


async def _noop(s: Session) -> None:
    return None


# What only a shared store has: leases live in the rows they guard (an exclusive store's engine
# holds them in memory).
SHARED_ONLY_COLUMNS = {
    ("instances", "lease_token"),
    ("instances", "lease_until"),
    ("activities", "lease_token"),
    ("activities", "lease_until"),
    ("instances", "history_version"),  # validates an engine's cached history
    # Concurrency limits across engines count the leases of an activity name.
    ("activities", "name"),
}
SHARED_ONLY_INDEXES = {"activities_lease", "instances_lease_token", "activities_lease_token"}
# Which engines wait for a concurrency limit's slots (engine/concurrency.py).
SHARED_ONLY_TABLES = {"concurrency_waits"}


def schema_differences(exclusive: Schema, shared: Schema) -> list[str]:
    """How a shared store's schema differs from an exclusive store's, beyond its leases."""
    differences: list[str] = []
    for table in sorted(set(exclusive.tables) | set(shared.tables) - SHARED_ONLY_TABLES):
        mine = exclusive.tables.get(table, [])
        theirs = [c for c in shared.tables.get(table, []) if (table, c.name) not in SHARED_ONLY_COLUMNS]
        if mine != theirs:
            differences.append(f"table {table}: {mine} != {theirs}")
    for name in sorted(set(exclusive.indexes) | set(shared.indexes) - SHARED_ONLY_INDEXES):
        if exclusive.indexes.get(name) != shared.indexes.get(name):
            differences.append(f"index {name}: {exclusive.indexes.get(name)} != {shared.indexes.get(name)}")
    return differences
