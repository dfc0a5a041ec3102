"""Dispatch: the queues of ready work and the leases of connected workers.

A work item is an orchestration turn of an instance (`InstanceWork`) or one activity
(`ActivityWork`). Each is in one state at a time:

    (none) --ready--> QUEUED --a worker takes it--> CLAIMING --store read--> LEASED --done--> (none)
                                                        |                       |
                                                        +-- nothing to do ------+-- expired, abandoned,
                                                            (none)                  disconnected: QUEUED

Invariants:
- A work key is in its dialect's queue at most once, and exactly when its state is QUEUED (a taken
  key is CLAIMING from the moment it leaves the queue).
- At most one lease per work key, and only in the LEASED state; each lease has a token that is
  unique across the engines sharing a store. A completion is applied only with the current token.
- An instance made ready while CLAIMING or LEASED is not queued again: it is marked "arrived while
  busy" and queued when the lease ends (its turn would not see the new events otherwise).
- A worker holds at most its capacity of leases; `held` counts them.
- Leases live in memory only: after a restart every item is offered again, from the store.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import uuid
from dataclasses import dataclass, field

from ..store import Store, StoreTx
from ..telemetry.observer import EngineObserver
from ..workflows import Instance
from . import wire
from .effects import Effects
from .leasing import LeasePolicy
from .settings import EngineSettings
from .turns import Turn, deliverable, turn_events
from .wire import now_us

log = logging.getLogger("dapr_workflows.engine")

DIALECTS = ("dapr", "durabletask")


@dataclass(frozen=True)
class InstanceWork:
    """The next orchestration turn of an instance."""

    instance_id: str


@dataclass(frozen=True)
class ActivityWork:
    """One scheduled activity."""

    activity_id: int


WorkKey = InstanceWork | ActivityWork


class WorkState(enum.Enum):
    QUEUED = "queued"  # in its dialect's queue, offered to the next worker that asks
    CLAIMING = "claiming"  # taken by a worker; the store is being read (and, if shared, locked)
    LEASED = "leased"  # held by a worker under a token until it completes, gives up or expires


@dataclass
class TurnLease:
    turn: Turn
    dialect: str
    token: str
    worker_id: int
    expiry: asyncio.TimerHandle | None = None

    @property
    def key(self) -> InstanceWork:
        return InstanceWork(self.turn.instance_id)


@dataclass
class ActivityLease:
    activity_id: int
    dialect: str
    token: str
    worker_id: int
    expiry: asyncio.TimerHandle | None = None

    @property
    def key(self) -> ActivityWork:
        return ActivityWork(self.activity_id)


Lease = TurnLease | ActivityLease


@dataclass
class Worker:
    """A connected worker's stream: what it holds, and how much it may hold."""

    dialect: str
    capacity: int
    held: int = 0
    freed: asyncio.Event = field(default_factory=asyncio.Event)


class HistoryCache:
    """Instances' histories kept between turns (least recently stored dropped first), if allowed."""

    def __init__(self, size: int, enabled: bool, observer: EngineObserver) -> None:
        self.size = size
        self.enabled = enabled
        self.observer = observer
        self._cache: dict[str, list[bytes]] = {}

    def get(self, instance_id: str) -> list[bytes] | None:
        return self._cache.get(instance_id)

    def remember(self, instance_id: str, events: list[bytes]) -> None:
        if not self.enabled:
            return  # another engine may append to the history at any time
        self._cache.pop(instance_id, None)
        self._cache[instance_id] = events
        self.observer.history_cached(instance_id, events)
        if len(self._cache) > self.size:
            self.forget(next(iter(self._cache)))

    def forget(self, instance_id: str) -> None:
        if self._cache.pop(instance_id, None) is not None:
            self.observer.history_cached(instance_id, None)


class Dispatch:
    def __init__(
        self,
        store: Store,
        settings: EngineSettings,
        leasing: LeasePolicy,
        closing: asyncio.Event,
        observer: EngineObserver,
    ) -> None:
        self.store = store
        self.settings = settings
        self.leasing = leasing
        self.closing = closing
        self.observer = observer
        self.history = HistoryCache(settings.history_cache_size, leasing.caches_history, observer)
        self.workers: dict[int, Worker] = {}
        self._queues: dict[str, asyncio.Queue[WorkKey]] = {}
        self._state: dict[WorkKey, WorkState] = {}
        self._arrived_while_busy: set[str] = set()  # instances
        self._leases: dict[WorkKey, Lease] = {}
        self._tokens: dict[str, WorkKey] = {}
        # Tokens are unique across the engines sharing a store: the boot ID tells them apart.
        self._boot = uuid.uuid4().hex[:12]
        self._counter = itertools.count(1)
        self._worker_ids = itertools.count(1)

    def start(self) -> None:
        for dialect in DIALECTS:
            self._queues[dialect] = asyncio.Queue()

    # ------------------------------------------------------------ what is ready

    def state(self, key: WorkKey) -> WorkState | None:
        """The key's state; None when it is neither queued nor taken."""
        return self._state.get(key)

    def arrived_while_busy(self, instance_id: str) -> bool:
        return instance_id in self._arrived_while_busy

    def queued(self) -> list[WorkKey]:
        """What waits in the queues to be offered to a worker."""
        return [key for key, state in self._state.items() if state == WorkState.QUEUED]

    def knows_dialect(self, dialect: str) -> bool:
        return dialect in self._queues

    def mark_ready(self, instance_id: str, dialect: str) -> None:
        """The instance has events a turn should see."""
        key = InstanceWork(instance_id)
        state = self._state.get(key)
        if state in (WorkState.CLAIMING, WorkState.LEASED):
            self._arrived_while_busy.add(instance_id)
            return
        if state == WorkState.QUEUED:
            return
        self._state[key] = WorkState.QUEUED
        self._queues[dialect].put_nowait(key)
        self.observer.work_queued("orchestration", key, dialect)

    def queue_activity(self, activity_id: int, dialect: str) -> None:
        key = ActivityWork(activity_id)
        if key in self._state:
            return
        self._state[key] = WorkState.QUEUED
        self._queues[dialect].put_nowait(key)
        self.observer.work_queued("activity", key, dialect)

    def _reoffer(self, key: WorkKey, dialect: str) -> None:
        self._state.pop(key, None)
        if isinstance(key, InstanceWork):
            self.mark_ready(key.instance_id, dialect)
        else:
            self.queue_activity(key.activity_id, dialect)

    # ------------------------------------------------------------ workers

    def connect_worker(self, dialect: str, capacity: int = 0) -> int:
        """Registers a worker's stream; `capacity` > 0 caps what it holds below the engine's limit."""
        worker_id = next(self._worker_ids)
        limit = self.settings.worker_max_in_flight
        self.workers[worker_id] = Worker(dialect, min(capacity, limit) if capacity > 0 else limit)
        self.observer.worker_connected(dialect)
        log.info(
            "worker %d connected (%s dialect); %d workers connected", worker_id, dialect, len(self.workers)
        )
        return worker_id

    def disconnect_worker(self, worker_id: int) -> None:
        """Returns everything leased to the worker to the queues at once."""
        held = [lease for lease in self._leases.values() if lease.worker_id == worker_id]
        for lease in held:
            self.release(lease)
        gone = self.workers.pop(worker_id, None)
        if gone is not None:
            self.observer.worker_disconnected(gone.dialect)
        log.info("worker %d disconnected; %d leased work items returned to the queue", worker_id, len(held))

    def worker_dialects(self) -> list[str]:
        return sorted({worker.dialect for worker in self.workers.values()})

    def held_tokens(self) -> list[str]:
        return [lease.token for lease in self._leases.values()]

    async def next_work_item(self, dialect: str, worker_id: int) -> bytes | None:
        """Waits for the next work item for a worker of `dialect`.

        None when none came before the next health ping is due, or when the engine is closing.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.health_ping_seconds
        worker = self.workers[worker_id]
        while not self.closing.is_set():
            if worker.held >= worker.capacity:
                # Full: wait until the worker finishes something (or a ping is due).
                worker.freed.clear()
                if not await self._wait_any(worker.freed, deadline - loop.time()):
                    return None
                continue
            key = await self._take(dialect, deadline - loop.time())
            if key is None:
                return None
            try:
                if isinstance(key, InstanceWork):
                    item = await self._lease_turn(key, worker_id)
                else:
                    item = await self._lease_activity(key, dialect, worker_id)
            except asyncio.CancelledError:
                # The stream went away between taking the key and leasing it: offer it again.
                self._reoffer(key, dialect)
                raise
            if item is not None:
                return item
        return None

    async def _take(self, dialect: str, timeout: float) -> WorkKey | None:
        """The next key of the dialect's queue, now CLAIMING; None when the time ran out or the
        engine closes."""
        queue = self._queues[dialect]
        if queue.empty():
            getter = asyncio.ensure_future(queue.get())
            closing = asyncio.ensure_future(self.closing.wait())
            try:
                await asyncio.wait(
                    (getter, closing), timeout=max(timeout, 0.0), return_when=asyncio.FIRST_COMPLETED
                )
            except asyncio.CancelledError:
                if getter.done() and not getter.cancelled():
                    self._reoffer(getter.result(), dialect)
                raise
            finally:
                closing.cancel()
                if not getter.done():
                    getter.cancel()
            if not getter.done() or getter.cancelled():
                return None
            key = getter.result()
        else:
            key = queue.get_nowait()
        self._state[key] = WorkState.CLAIMING
        self.observer.work_taken(key)
        return key

    async def _wait_any(self, event: asyncio.Event, timeout: float) -> bool:
        """Waits for `event` or the engine closing; False when the time ran out or the engine closes."""
        waits = (asyncio.ensure_future(event.wait()), asyncio.ensure_future(self.closing.wait()))
        try:
            await asyncio.wait(waits, timeout=max(timeout, 0.0), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        return event.is_set() and not self.closing.is_set()

    def _next_token(self) -> str:
        return f"{self._boot}-{next(self._counter)}"

    async def _lease_turn(self, key: InstanceWork, worker_id: int) -> bytes | None:
        instance_id = key.instance_id
        now = now_us()
        cached = self.history.get(instance_id) if self.leasing.caches_history else None
        token = self._next_token()
        leasing = self.leasing

        def take(tx: StoreTx) -> tuple[Instance | None, list[int], list[bytes], list[bytes]]:
            if not leasing.claim_instance(tx, instance_id, token):
                return None, [], [], []  # another engine's worker has it
            inst = tx.get_instance(instance_id)
            rows = deliverable(
                inst, [] if inst is None or inst.status.is_terminal else tx.inbox(instance_id, now)
            )
            if not rows:
                tx.release_instance(instance_id, token)
                return inst, [], [], []
            history = cached if cached is not None else tx.history(instance_id)
            return inst, [r.id for r in rows], turn_events(rows, now), history

        # A shared store claims the lease in the same transaction that reads the turn.
        try:
            inst, inbox_ids, new_events, history = await leasing.take_turn(take)
        except asyncio.CancelledError:
            # The claim may still commit in the store's thread: give it back.
            leasing.release_later(lambda t: t.release_instance(instance_id, token))
            raise
        finally:
            # No longer CLAIMING, whatever happened (a store that failed loses the key until a
            # sweep or a restart finds the work again); leased again below if a turn was read.
            self._state.pop(key, None)
        if inst is None or not inbox_ids:
            if instance_id in self._arrived_while_busy:  # an event came while the store was read
                self._arrived_while_busy.discard(instance_id)
                if inst is not None:
                    self.mark_ready(instance_id, inst.dialect)
            return None
        if cached is None:
            self.history.remember(instance_id, history)
        lease = TurnLease(
            Turn(instance_id, inst.execution_id, inbox_ids, new_events, inst.name),
            inst.dialect,
            token,
            worker_id,
        )
        self._hold(lease, self.settings.orchestration_lease_seconds)
        self.observer.turn_started(instance_id, inst.name, token, history, new_events)
        return wire.encode_workflow_work_item(instance_id, inst.execution_id, history, new_events, token)

    async def _lease_activity(self, key: ActivityWork, dialect: str, worker_id: int) -> bytes | None:
        token = self._next_token()
        try:
            row = await self.leasing.take_activity(key.activity_id, token)
        except asyncio.CancelledError:
            self.leasing.release_later(lambda t: t.release_activity(key.activity_id, token))
            raise
        finally:
            self._state.pop(key, None)
        if row is None:
            return None
        self._hold(
            ActivityLease(key.activity_id, dialect, token, worker_id), self.settings.activity_lease_seconds
        )
        self.observer.activity_dispatched(token, key, row.request)
        return wire.encode_activity_work_item(row.request, token)

    # ------------------------------------------------------------ leases

    def _hold(self, lease: Lease, seconds: float) -> None:
        """Records that the worker holds the lease, until it ends or `seconds` pass."""
        self._state[lease.key] = WorkState.LEASED
        self._leases[lease.key] = lease
        self._tokens[lease.token] = lease.key
        worker = self.workers.get(lease.worker_id)
        if worker is not None:
            worker.held += 1
        lease.expiry = asyncio.get_running_loop().call_later(seconds, self._expire, lease)

    def turn_lease(self, instance_id: str, token: str | None = None) -> TurnLease | None:
        """The instance's current lease (with that token, if given)."""
        lease = self._leases.get(InstanceWork(instance_id))
        if not isinstance(lease, TurnLease) or (token is not None and lease.token != token):
            return None
        return lease

    def activity_lease(self, token: str) -> ActivityLease | None:
        """The activity lease with that token, if it is still current."""
        key = self._tokens.get(token)
        lease = self._leases.get(key) if key is not None else None
        return lease if isinstance(lease, ActivityLease) and lease.token == token else None

    def is_current(self, lease: Lease) -> bool:
        return self._leases.get(lease.key) is lease

    def end(self, lease: Lease) -> None:
        """The lease is over (its result was recorded or it is void); nothing is offered again."""
        if self._leases.get(lease.key) is not lease:
            return
        del self._leases[lease.key]
        if self._state.get(lease.key) == WorkState.LEASED:
            del self._state[lease.key]
        self._tokens.pop(lease.token, None)
        self.observer.lease_ended(lease.token)
        if lease.expiry:
            lease.expiry.cancel()
        worker = self.workers.get(lease.worker_id)
        if worker is not None:
            worker.held -= 1
            worker.freed.set()

    def settle(self, instance_id: str, dialect: str) -> None:
        """After an instance's lease ended: queues it again if events arrived meanwhile."""
        if instance_id in self._arrived_while_busy:
            self._arrived_while_busy.discard(instance_id)
            self.mark_ready(instance_id, dialect)

    def release(self, lease: Lease) -> None:
        """Gives the work back: it is offered again (in a shared store, to any engine)."""
        self.observer.lease_returned(lease.token)
        self.end(lease)
        if isinstance(lease, TurnLease):
            instance_id, token = lease.turn.instance_id, lease.token
            self._arrived_while_busy.discard(instance_id)
            self.leasing.release_later(lambda t: t.release_instance(instance_id, token))
            self.mark_ready(instance_id, lease.dialect)
        else:
            activity_id, token = lease.activity_id, lease.token
            self.leasing.release_later(lambda t: t.release_activity(activity_id, token))
            self.queue_activity(activity_id, lease.dialect)

    def _expire(self, lease: Lease) -> None:
        if not self.is_current(lease):
            return
        if isinstance(lease, TurnLease):
            what, seconds = (
                f"orchestration lease of {lease.turn.instance_id!r}",
                self.settings.orchestration_lease_seconds,
            )
        else:
            what, seconds = f"activity lease {lease.activity_id}", self.settings.activity_lease_seconds
        instance = {"instanceID": lease.turn.instance_id} if isinstance(lease, TurnLease) else None
        log.warning("%s expired after %.0fs; offering it again", what, seconds, extra=instance)
        self.observer.lease_expired("orchestration" if isinstance(lease, TurnLease) else "activity")
        lease.expiry = None
        self.release(lease)

    def abandon(self, token: str) -> None:
        """A worker gives a work item back (durabletask's Abandon* calls)."""
        key = self._tokens.get(token)
        lease = self._leases.get(key) if key is not None else None
        if lease is not None and lease.token == token:
            self.release(lease)

    # ------------------------------------------------------------ after a commit

    def apply(self, fx: Effects) -> None:
        """The dispatch side of a committed transaction's effects."""
        for instance_id in fx.dropped:
            self.history.forget(instance_id)
            lease = self._leases.get(InstanceWork(instance_id))
            if lease is not None:
                self.end(lease)
            self._arrived_while_busy.discard(instance_id)
        for activity_id in fx.cancelled_activities:
            act = self._leases.get(ActivityWork(activity_id))
            if act is not None:
                self.end(act)
        for instance_id, events in fx.history.items():
            if instance_id not in fx.dropped and instance_id not in fx.finished:
                self.history.remember(instance_id, events)
        for instance_id in fx.finished:
            self.history.forget(instance_id)
        for instance_id, dialect in fx.ready.items():
            self.mark_ready(instance_id, dialect)
        for activity_id, dialect in fx.activities:
            self.queue_activity(activity_id, dialect)
