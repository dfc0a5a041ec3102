"""The PostgreSQL store's history cache and what one transaction remembers of the rows it read, on a
real server: a store reads an instance's history only when its cached one is stale, by the instance's
`history_version`, whichever engine (store object) wrote the history in between."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from dapr_workflows_component.store import StoreTx
from dapr_workflows_component.store.postgres import PostgresStore
from dapr_workflows_component.workflows import Instance, RuntimeStatus

from tests.test_postgres_store import instance, open_pg, pause_until, sql

pytestmark = pytest.mark.timeout(60)


def turn(instance_id: str, token: str) -> Callable[[StoreTx], tuple[bool, Instance | None, list[bytes]]]:
    """What a turn reads: the claim, the row, the history; the lease is given back."""

    def tx(t: StoreTx) -> tuple[bool, Instance | None, list[bytes]]:
        claimed = t.claim_instance(instance_id, token, 60)
        found = (claimed, t.get_instance(instance_id), t.history(instance_id) if claimed else [])
        t.release_instance(instance_id, token)
        return found

    return tx


def record(instance_id: str, token: str, events: list[bytes]) -> Callable[[StoreTx], bool]:
    """What recording a turn writes, under the lease check."""

    def tx(t: StoreTx) -> bool:
        if not t.holds_instance(instance_id, token):
            return False
        history = t.history(instance_id)
        t.append_history(instance_id, len(history), events)
        return True

    return tx


def tamper(url: str, instance_id: str, event: bytes) -> None:
    """Changes the history behind every engine's back, leaving the version as it is."""
    sql(url, "UPDATE history SET event = %s WHERE instance_id = %s", (event, instance_id))


def test_a_history_is_read_again_only_when_its_version_changed(postgres_url: str) -> None:
    async def main() -> None:
        a, b = open_pg(postgres_url), open_pg(postgres_url)
        try:
            await a.run(lambda t: t.create_instance(instance("x")))
            assert await a.run(record("x", "A-1", [b"e0"])) is False  # no lease: nothing recorded
            assert (await a.run(turn("x", "A-1")))[2] == []
            await a.run(lambda t: t.claim_instance("x", "A-2", 60))
            assert await a.run(record("x", "A-2", [b"e0"])) is True
            # Engine A kept what it wrote: with the version unchanged it does not read the table.
            tamper(postgres_url, "x", b"not read")
            assert (await a.run(turn("x", "A-3")))[2] == [b"e0"]
            # Another engine writes: A's cached history is stale, and A reads it again.
            await b.run(lambda t: t.claim_instance("x", "B-1", 60))
            assert await b.run(record("x", "B-1", [b"e1"])) is True
            await b.run(lambda t: t.release_instance("x", "B-1"))
            assert (await a.run(turn("x", "A-4")))[2] == [b"not read", b"e1"]
            await b.run(lambda t: t.clear_history("x"))
            assert (await a.run(turn("x", "A-5")))[2] == []
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_a_purged_and_recreated_instance_is_not_served_the_old_history(postgres_url: str) -> None:
    async def main() -> None:
        a, b = open_pg(postgres_url), open_pg(postgres_url)
        try:
            await a.run(lambda t: t.create_instance(instance("x")))
            await a.run(lambda t: t.claim_instance("x", "A-1", 60))
            await a.run(record("x", "A-1", [b"old"]))
            assert (await a.run(turn("x", "A-2")))[2] == [b"old"]

            def recreate(t: StoreTx) -> None:
                t.delete_instance("x")
                t.append_history("x", 0, [b"new"])  # before the row exists: no version to set
                t.create_instance(instance("x"))

            await b.run(recreate)
            assert (await a.run(turn("x", "A-3")))[2] == [b"new"]
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_a_rolled_back_write_leaves_the_cache_as_it_was(postgres_url: str) -> None:
    async def main() -> None:
        store = open_pg(postgres_url)
        try:
            await store.run(lambda t: t.create_instance(instance("x")))
            await store.run(lambda t: t.claim_instance("x", "A-1", 60))
            await store.run(record("x", "A-1", [b"e0"]))

            def fails(t: StoreTx) -> None:
                record("x", "A-1", [b"lost"])(t)
                raise RuntimeError("the turn could not be recorded")

            with pytest.raises(RuntimeError):
                await store.run(fails)
            assert (await store.run(turn("x", "A-2")))[2] == [b"e0"]
            assert await store.read(lambda t: t.history("x")) == [b"e0"]
        finally:
            await store.close()

    asyncio.run(main())


def test_a_claim_brings_the_row_and_only_the_inbox_visible_now(postgres_url: str) -> None:
    async def main() -> None:
        store: PostgresStore = open_pg(postgres_url)
        try:

            def setup(t: StoreTx) -> None:
                t.create_instance(instance("x"))
                t.add_inbox("x", b"now", 0)
                t.add_inbox("x", b"later", 2**62)

            await store.run(setup)

            now = time.time_ns() // 1000

            def take(t: StoreTx) -> tuple[Instance | None, list[bytes]]:
                assert t.claim_instance("x", "A-1", 60)
                inst = t.get_instance("x")
                return inst, [r.event for r in t.inbox("x", now)]

            inst, events = await store.run(take)
            assert inst is not None and inst.status == RuntimeStatus.RUNNING
            assert events == [b"now"]
            # Rows written in the transaction are read back, not remembered ones.
            changed = await store.run(
                lambda t: (
                    t.claim_instance("x", "A-1", 60),
                    t.put_instance(instance("x", status=RuntimeStatus.SUSPENDED)),
                    t.get_instance("x"),
                )[2]
            )
            assert changed is not None and changed.status == RuntimeStatus.SUSPENDED
        finally:
            await store.close()

    asyncio.run(main())


def test_a_claim_that_waited_for_a_writer_reads_what_the_writer_committed(postgres_url: str) -> None:
    """The claim waits for the row lock of a turn being recorded by another engine (whose lease
    lapsed); once that commits, the history the claim brings includes its events (read after the
    wait, not before)."""

    async def main() -> None:
        a, b = open_pg(postgres_url), open_pg(postgres_url)
        inside, go = asyncio.Event(), asyncio.Event()
        try:
            await a.run(lambda t: t.create_instance(instance("x")))
            assert (await b.run(turn("x", "B-1")))[2] == []  # B caches the empty history
            # A's lease lapses at once: B's claim then waits for the row's lock, not for the lease.
            await a.run(lambda t: t.claim_instance("x", "A-1", 0))

            def record_slowly(t: StoreTx) -> None:
                assert record("x", "A-1", [b"e0"])(t)
                t.release_instance("x", "A-1")
                inside.set()
                pause_until(go, 30)  # until the claim waits for the row's lock

            recording = asyncio.create_task(a.run(record_slowly))
            await asyncio.wait_for(inside.wait(), 30)
            claiming = asyncio.create_task(b.run(turn("x", "B-2")))

            def claim_waits() -> bool:
                waiting = sql(
                    postgres_url,
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'",
                )
                return int(waiting[0][0]) > 0

            while not await asyncio.to_thread(claim_waits):
                await asyncio.sleep(0.02)
            go.set()
            await recording
            claimed, _, history = await claiming
            assert claimed and history == [b"e0"]
        finally:
            go.set()
            await a.close()
            await b.close()

    asyncio.run(main())
