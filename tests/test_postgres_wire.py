"""The PostgreSQL store's transactions on the loop (store/postgres_wire.py, postgres_loop.py): a read
of one round trip commits in it, one of more still sees one snapshot; an engine alone sends no
announcements, and sends them again once another engine listens (a real PostgreSQL server)."""

from __future__ import annotations

import asyncio
import time

import psycopg
from dapr_workflows_component.store import StoreTx
from dapr_workflows_component.store.postgres_tx import PostgresTx

from tests.test_postgres_store import (
    RESYNC,
    Heard,
    instance,
    pause_until,
    put_ready,
    sql,
    stores,
)


def test_a_read_of_two_round_trips_sees_one_snapshot(postgres_url: str) -> None:
    async def main() -> None:
        async with stores(postgres_url, 1) as (store,):
            for instance_id in ("x", "y"):
                await store.run(lambda t, i=instance_id: t.put_instance(instance(i, custom_status="before")))
            first_read = asyncio.Event()
            committed = asyncio.Event()

            def read_both(t: StoreTx) -> tuple[str | None, str | None]:
                x = t.get_instance("x")  # one round trip: it commits there
                first_read.set()
                pause_until(committed)
                y = t.get_instance("y")  # a second one: the read runs again as a transaction
                assert x is not None and y is not None
                return x.custom_status, y.custom_status

            reading = asyncio.ensure_future(store.read(read_both))
            await asyncio.wait_for(first_read.wait(), 5)
            sql(postgres_url, "UPDATE instances SET custom_status = 'after'")
            committed.set()
            assert await asyncio.wait_for(reading, 5) == ("after", "after")

    asyncio.run(main())


def test_an_engine_alone_announces_nothing_until_another_listens(postgres_url: str) -> None:
    async def main() -> None:
        async with stores(postgres_url) as (a, b):
            heard_a, heard_b = Heard(), Heard()
            listening = [asyncio.ensure_future(a.listen(heard_a))]
            # A bare LISTEN (not an engine's listener: it is not counted) shows what is sent.
            with psycopg.connect(postgres_url, autocommit=True) as spy:
                spy.execute("LISTEN dapr_workflows")
                try:
                    assert await heard_a.wait_for(1) == [RESYNC]
                    deadline = time.monotonic() + 5
                    while a._others_listen and time.monotonic() < deadline:  # counted every second
                        await asyncio.sleep(0.1)
                    assert not a._others_listen
                    await a.run(put_ready("alone"))
                    await a.run(lambda t: t.announce([("alone", "dapr")], [], ["alone"]))
                    sent = [n.payload for n in spy.notifies(timeout=0.5)]
                    assert [p for p in sent if "|hello|" not in p] == []  # nobody else listens

                    listening.append(asyncio.ensure_future(b.listen(heard_b)))
                    assert await heard_b.wait_for(1) == [RESYNC]
                    deadline = time.monotonic() + 5
                    while not a._others_listen and time.monotonic() < deadline:  # b's hello
                        await asyncio.sleep(0.05)
                    await a.run(lambda t: t.announce([("again", "dapr")], [], []))
                    assert (await heard_b.wait_for(2))[1:] == [
                        type(RESYNC)("instance", "dapr", "again")
                    ]
                finally:
                    for task in listening:
                        task.cancel()
                    await asyncio.gather(*listening, return_exceptions=True)

    asyncio.run(main())


def test_a_round_trip_larger_than_the_socket_buffers_completes(postgres_url: str) -> None:
    # The server answers while we still send: once both sides' buffers are full it waits for us to
    # read, so sending must read what arrived meanwhile instead of waiting only to write.
    big = "x" * 100_000
    echoes = 300  # 30 MB each way, far more than the sockets buffer

    def echo_a_lot(t: StoreTx) -> int:
        assert isinstance(t, PostgresTx)
        for _ in range(echoes):
            t._send("SELECT ?::text", (big,))
        row = t._one("SELECT count(*) FROM instances")
        assert row is not None
        return int(row[0])

    async def main() -> None:
        async with stores(postgres_url, 1) as (store,):
            assert await asyncio.wait_for(store.run(echo_a_lot), 30) == 0

    asyncio.run(main())
