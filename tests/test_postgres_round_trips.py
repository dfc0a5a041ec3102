"""The round trips of the PostgreSQL store's transactions (a real server): a claim commits in the round
trip that claims it, and is already committed when the call returns; one that needs a second round
trip runs again whole; new inbox, outbox and activity rows wait for no answer of their own; activity
IDs taken ahead stay unique between engines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
from dapr_workflows_component.store import StoreTx
from dapr_workflows_component.store.postgres_wire import Wire
from dapr_workflows_component.workflows import Instance

from tests.test_postgres_store import instance, sql, stores

pytestmark = pytest.mark.timeout(60)


class RoundTrips:
    """Counts the round trips every transaction's wire makes (those that send something)."""

    def __init__(self) -> None:
        self.count = 0

    def since(self, mark: int) -> int:
        return self.count - mark


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[RoundTrips]:
    counter = RoundTrips()
    real = Wire.round_trip

    def counted(wire: Wire) -> None:
        if wire._queue:
            counter.count += 1
        real(wire)

    monkeypatch.setattr(Wire, "round_trip", counted)
    yield counter


def take_turn(instance_id: str, token: str) -> Callable[[StoreTx], tuple[Instance | None, list[bytes]]]:
    """What the dispatcher's turn claim does: the claim, the row, the inbox up to now, the history."""
    now = time.time_ns() // 1000

    def tx(t: StoreTx) -> tuple[Instance | None, list[bytes]]:
        if not t.claim_instance(instance_id, token, 60):
            return None, []
        t.history(instance_id)
        return t.get_instance(instance_id), [r.event for r in t.inbox(instance_id, now)]

    return tx


def lease_of(url: str, instance_id: str) -> str | None:
    rows = sql(url, "SELECT lease_token FROM instances WHERE instance_id = %s", (instance_id,))
    return rows[0][0] if rows else None


def test_a_claim_commits_in_the_round_trip_that_claims(postgres_url: str, trips: RoundTrips) -> None:
    async def main() -> None:
        async with stores(postgres_url, 1) as (store,):
            await store.run(lambda t: (t.create_instance(instance("x")), t.add_inbox("x", b"e", 0)))
            mark = trips.count
            inst, events = await store.run_claim(take_turn("x", "A-1"))
            assert inst is not None and events == [b"e"]
            assert trips.since(mark) == 1
            # Committed before the call returned: another session sees the lease at once.
            assert lease_of(postgres_url, "x") == "A-1"

            # Another engine's claim fails in its one round trip and changes nothing.
            mark = trips.count
            assert await store.run_claim(take_turn("x", "B-1")) == (None, [])
            assert trips.since(mark) == 1
            assert lease_of(postgres_url, "x") == "A-1"

            activity_id = await store.run(lambda t: t.add_activity("x", "e1", "dapr", 1, b"req"))
            mark = trips.count
            row = await store.run_claim(lambda t: t.claim_activity(activity_id, "A-2", 60))
            assert row is not None and row.request == b"req"
            assert trips.since(mark) == 1
            held = sql(postgres_url, "SELECT lease_token FROM activities WHERE id = %s", (activity_id,))
            assert held == [("A-2",)]

    asyncio.run(main())


def test_a_claim_that_needs_a_second_round_trip_runs_again_whole(
    postgres_url: str, trips: RoundTrips
) -> None:
    async def main() -> None:
        async with stores(postgres_url, 1) as (store,):
            await store.run(lambda t: (t.create_instance(instance("x")), t.create_instance(instance("y"))))
            attempts = 0

            def claim_and_read_another(t: StoreTx) -> tuple[bool, str | None]:
                nonlocal attempts
                attempts += 1
                claimed = t.claim_instance("x", "A-1", 60)
                other = t.get_instance("y")  # a second round trip
                return claimed, other.instance_id if other else None

            mark = trips.count
            assert await store.run_claim(claim_and_read_another) == (True, "y")
            # Committed in the first round trip, then run again as a transaction: claim and read
            # (one round trip each), COMMIT.
            assert attempts == 2 and trips.since(mark) == 1 + 3
            assert lease_of(postgres_url, "x") == "A-1"

            # A claim given back in the same call: the release commits too (in the run again).
            def claim_and_release(t: StoreTx) -> None:
                assert t.claim_instance("y", "A-2", 60)
                t.release_instance("y", "A-2")

            await store.run_claim(claim_and_release)
            assert lease_of(postgres_url, "y") is None

    asyncio.run(main())


def test_new_rows_wait_for_no_answer_of_their_own(postgres_url: str, trips: RoundTrips) -> None:
    async def main() -> None:
        async with stores(postgres_url, 1) as (store,):
            await store.run(lambda t: t.create_instance(instance("x")))
            await store.run_claim(take_turn("x", "A-1"))
            await store.run(lambda t: t.add_activity("x", "e1", "dapr", 0, b"first"))  # IDs taken ahead

            def record(t: StoreTx) -> list[int]:
                assert t.holds_instance("x", "A-1")
                history = t.history("x")
                t.append_history("x", len(history), [b"h0", b"h1"])
                scheduled = [t.add_activity("x", "e1", "dapr", n, b"req%d" % n) for n in (1, 2, 3)]
                t.add_inbox("x", b"timer", 2**62)
                t.add_outbox("{}", 1)
                t.release_instance("x", "A-1")
                return scheduled

            mark = trips.count
            scheduled = await store.run(record)
            # The lease check with the history, then everything else with the COMMIT.
            assert trips.since(mark) == 2
            assert scheduled == sorted(scheduled) and len(set(scheduled)) == 3
            rows = await store.read(lambda t: [t.get_activity(a) for a in scheduled])
            assert [(r.id, r.task_id, r.request) for r in rows if r] == [
                (a, n, b"req%d" % n) for a, n in zip(scheduled, (1, 2, 3), strict=True)
            ]
            assert [r.event for r in await store.read(lambda t: t.inbox("x", 2**62))] == [b"timer"]
            assert [p for _, p in await store.read(lambda t: t.outbox(0, 10))] == ["{}"]
            assert await store.read(lambda t: t.history("x")) == [b"h0", b"h1"]

    asyncio.run(main())


def test_activity_ids_taken_ahead_are_unique_between_engines(postgres_url: str) -> None:
    async def main() -> None:
        async with stores(postgres_url, 2) as (a, b):
            await a.run(lambda t: t.create_instance(instance("x")))

            async def schedule(store_index: int, n: int) -> int:
                store = (a, b)[store_index]
                return await store.run(lambda t: t.add_activity("x", "e1", "dapr", n, b"r"))

            # Interleaved, concurrently: each store uses IDs from blocks of its own.
            ids = await asyncio.gather(*(schedule(n % 2, n) for n in range(40)))
            assert len(set(ids)) == 40
            stored = sql(postgres_url, "SELECT id, task_id FROM activities ORDER BY task_id")
            assert stored == [(activity_id, n) for n, activity_id in enumerate(ids)]
            # A rolled-back transaction's ID is not used again (a gap, as the column's default leaves).
            rolled_back: list[int] = []

            def fail(t: StoreTx) -> None:
                rolled_back.append(t.add_activity("x", "e1", "dapr", 99, b"r"))
                raise RuntimeError("rolled back")

            with pytest.raises(RuntimeError):
                await a.run(fail)
            again = await a.run(lambda t: t.add_activity("x", "e1", "dapr", 100, b"r"))
            assert again not in ids and again != rolled_back[0]
            left = sql(postgres_url, "SELECT count(*) FROM activities WHERE id = %s", (rolled_back[0],))
            assert left == [(0,)]

    asyncio.run(main())
