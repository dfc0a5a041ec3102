"""Lease policies: what a lease means in the store, for one engine alone or several sharing it.

`LocalLeases`: one engine owns the store (a SQLite file). A lease lives only in the engine's memory;
the store is read, not locked, to give out work, and the history of an instance may be cached.

`SharedLeases`: several engines share the store (PostgreSQL). A lease is also a row lock in the
store, claimed in the transaction that reads the work and checked in the one that records the result
(so an engine whose lease expired records nothing). Every commit announces what it made ready; a
periodic sweep finds what nobody announced (leases of an engine that died, timers that came due); a
live engine renews its leases, and gives them back when it stops. Nothing read from the store is
cached between transactions, since another engine may change it at any time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol, TypeVar

from ..store import ActivityRow, Announcement, Store, StoreTx
from .effects import Effects
from .wire import now_us

log = logging.getLogger("dapr_workflows.engine")

T = TypeVar("T")


class WorkSink(Protocol):
    """What a lease policy needs of the dispatcher: where found work goes, what is held."""

    def mark_ready(self, instance_id: str, dialect: str) -> None: ...

    def queue_activity(self, activity_id: int, dialect: str) -> None: ...

    def held_tokens(self) -> list[str]: ...

    def worker_dialects(self) -> list[str]: ...

    def knows_dialect(self, dialect: str) -> bool: ...


class LeasePolicy:
    """What a lease means in the store. This base is the local policy (`LocalLeases`);
    `SharedLeases` overrides what differs."""

    shared = False
    # The instance's history may be kept in memory between turns.
    caches_history = True
    # How often a waiter looks at an instance (or the outbox) again by itself; None: only when told
    # of a change.
    change_poll_seconds: float | None = None
    # Rows commit in the order of their IDs (one writer): a reader may read on from the last ID seen.
    ids_commit_in_order = True

    def __init__(self, store: Store) -> None:
        self.store = store

    def start(self, work: WorkSink, wake: Callable[[str], None]) -> None:
        """Starts what the policy runs in the background."""

    async def stop(self, held: Callable[[], list[str]]) -> None:
        """Stops the background work; `held()` gives the tokens of the leases still held."""

    def begin_attempt(self, fx: Effects) -> None:
        """Called at the start of each attempt of a transaction."""

    def announce(self, t: StoreTx, fx: Effects) -> None:
        """Tells the other engines, in the transaction, what it made ready."""

    def claim_instance(self, t: StoreTx, instance_id: str, token: str) -> bool:
        """Takes the instance's lease in the store; False when another engine holds it."""
        return True

    async def take_turn(self, fn: Callable[[StoreTx], T], may_refuse: bool = True) -> T:
        """Runs the transaction that reads a turn (and claims its lease); `may_refuse`: `fn` may
        raise after its claim to undo it (a concurrency gate full in the store)."""
        return await self.store.read(fn)

    async def take_activity(
        self, activity_id: int, token: str, check: Callable[[StoreTx, ActivityRow], None] | None = None
    ) -> ActivityRow | None:
        """The activity's row, its lease taken; None when it is gone or another engine has it.
        `check` runs in a shared store's claim, on the row claimed (it may raise to undo it)."""
        return await self.store.read(lambda tx: tx.get_activity(activity_id))

    def release_later(self, release: Callable[[StoreTx], None]) -> None:
        """Gives a lease back in the store without waiting (the local side is already released)."""


class LocalLeases(LeasePolicy):
    """One engine owns the store: leases live in its memory only."""


class SharedLeases(LeasePolicy):
    shared = True
    caches_history = False
    # Another engine's transaction may commit a lower ID after a higher one.
    ids_commit_in_order = False

    def __init__(
        self, store: Store, poll_seconds: float, sweep_batch: int, store_lease_seconds: float
    ) -> None:
        super().__init__(store)
        self.change_poll_seconds = poll_seconds
        self.sweep_batch = sweep_batch
        self.store_lease_seconds = store_lease_seconds
        self._tasks: list[asyncio.Task[None]] = []
        self._releases: set[asyncio.Task[None]] = set()
        self._sweep_now = asyncio.Event()

    def start(self, work: WorkSink, wake: Callable[[str], None]) -> None:
        loop = asyncio.get_running_loop()

        def on_announcement(news: Announcement) -> None:
            """Another engine committed something: queue what it made ready, wake who waits."""
            if news.kind == "instance" and work.knows_dialect(news.dialect):
                work.mark_ready(news.key, news.dialect)
            elif news.kind == "activity" and work.knows_dialect(news.dialect) and news.key.isdigit():
                work.queue_activity(int(news.key), news.dialect)
            elif news.kind == "changed":
                wake(news.key)
            elif news.kind == "resync":
                self._sweep_now.set()

        self._tasks = [
            loop.create_task(self.store.listen(on_announcement)),
            loop.create_task(self._sweep(work)),
            loop.create_task(self._renew_leases(work)),
        ]

    async def stop(self, held: Callable[[], list[str]]) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._releases, return_exceptions=True)
        tokens = held()
        if not tokens:
            return
        # Other engines may take this engine's work at once instead of when the leases expire.
        try:
            await self.store.run(lambda t: t.release_leases(tokens))
            log.info("gave %d leases back to the store", len(tokens))
        except Exception as err:
            log.warning("giving leases back to the store failed (they expire by themselves): %s", err)

    def begin_attempt(self, fx: Effects) -> None:
        fx.reset()  # a shared store may run the transaction again: only the last attempt counts

    def announce(self, t: StoreTx, fx: Effects) -> None:
        if fx.ready or fx.activities or fx.changed:
            t.announce(list(fx.ready.items()), list(fx.activities), sorted(fx.changed))

    def claim_instance(self, t: StoreTx, instance_id: str, token: str) -> bool:
        return t.claim_instance(instance_id, token, self.store_lease_seconds)

    async def take_turn(self, fn: Callable[[StoreTx], T], may_refuse: bool = True) -> T:
        # A claim that cannot be refused commits in the round trip that claims it.
        return await (self.store.run(fn) if may_refuse else self.store.run_claim(fn))

    async def take_activity(
        self, activity_id: int, token: str, check: Callable[[StoreTx, ActivityRow], None] | None = None
    ) -> ActivityRow | None:
        seconds = self.store_lease_seconds

        def claim(tx: StoreTx) -> ActivityRow | None:
            row = tx.claim_activity(activity_id, token, seconds)
            if row is not None and check is not None:
                check(tx, row)
            return row

        return await (self.store.run(claim) if check is not None else self.store.run_claim(claim))

    def release_later(self, release: Callable[[StoreTx], None]) -> None:
        async def run() -> None:
            try:
                await self.store.run(release)
            except Exception as err:  # the lease then expires by itself
                log.warning("giving a lease back to the store failed: %s", err)

        task = asyncio.get_running_loop().create_task(run())
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _sweep(self, work: WorkSink) -> None:
        """Queues claimable work that no announcement brought: leases that expired with the engine
        that held them, timers that came due, announcements missed while the listener reconnected."""
        batch = self.sweep_batch
        while True:
            try:
                await asyncio.wait_for(self._sweep_now.wait(), timeout=self.change_poll_seconds)
            except asyncio.TimeoutError:
                pass
            self._sweep_now.clear()
            # Only work that a worker here could take: the engines with workers of a dialect find
            # theirs.
            dialects = work.worker_dialects()
            if not dialects:
                continue
            try:
                instances, activities = await self._claimable(dialects, batch)
            except Exception as err:  # the store is down: try again at the next sweep
                log.warning("looking for claimable work failed: %s", err)
                continue
            for instance_id, dialect in instances:
                work.mark_ready(instance_id, dialect)
            for activity_id, dialect in activities:
                work.queue_activity(activity_id, dialect)

    async def _claimable(
        self, dialects: list[str], batch: int
    ) -> tuple[list[tuple[str, str]], list[tuple[int, str]]]:
        return await self.store.run(
            lambda t: (
                t.claimable_instances(now_us(), batch, dialects),
                t.claimable_activities(batch, dialects),
            )
        )

    async def _renew_leases(self, work: WorkSink) -> None:
        """Keeps this engine's leases alive in the store while it runs: when it dies, they expire
        within `store_lease_seconds` and other engines take the work."""
        seconds = self.store_lease_seconds
        while True:
            await asyncio.sleep(seconds / 3)
            held = work.held_tokens()
            if held:
                try:
                    await self._renew(held, seconds)
                except Exception as err:  # the leases may expire; results then find them taken
                    log.warning("renewing %d leases failed: %s", len(held), err)

    async def _renew(self, tokens: list[str], seconds: float) -> None:
        await self.store.run(lambda t: t.renew_leases(tokens, seconds))


def lease_policy(
    store: Store, poll_seconds: float, sweep_batch: int, store_lease_seconds: float
) -> LeasePolicy:
    """The policy the store calls for: shared when other engines may use it too."""
    if store.shared:
        return SharedLeases(store, poll_seconds, sweep_batch, store_lease_seconds)
    return LocalLeases(store)
