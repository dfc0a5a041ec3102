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
- A ready turn may be held instead of queued (state none) while its instance waits for more of its
  activities and workers hold other work (fan_in.py); the last result or the hold's time limit
  queues it.
- A worker holds at most its capacity of leases; `held` counts them.
- Leases live in memory only: after a restart every item is offered again, from the store.

Who may take what (eligibility.py, the one rule): each work item has a label (kind, name, version,
app; `label_of`), each worker an eligibility (its app, its work-item filters), and `may_take`
decides, for multi-app routing and durabletask's filters alike. An item's label comes with the work
when this engine created it, and is read from the store otherwise (after a restart, or work another
engine sharing the store created): such an item is offered to the first worker that asks, which
learns its label while leasing it and gives it back when it may not take it (with a shared store,
a worker that may take only some work reads it before the claim instead: labels.py). Work no connected
worker may take waits QUEUED (logged once per kind of work) until one connects.

Order (work_queue.py): continuing work (later turns, activities, children) of the instances that
started first goes before new starts' first turns, so completions stream out of a burst; at most
`work_queue.NEW_START_EVERY - 1` (3) continuing items in a row go before a waiting new start, so new
starts are never starved: one waits at most 4 takes of its dialect per new start ahead of it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

from ..store import Store, StoreTx, StoreUnavailable
from ..telemetry.observer import EngineObserver
from ..workflows import is_entity_id
from . import eligibility
from .activity_leasing import lease_activity
from .concurrency import Limiter, Throttled
from .effects import Effects
from .eligibility import WorkFilters, WorkLabel
from .history_cache import HistoryCache
from .history_deltas import KeptHistories
from .leasing import LeasePolicy
from .new_starts import NewStarts
from .ready_queues import ReadyQueues
from .settings import EngineSettings
from .signals import Signal
from .stalls import StallWatch
from .turn_leasing import TurnLeasing
from .work_items import ActivityWork, InstanceWork, WorkItems, WorkKey
from .work_leases import ActivityLease, Lease, TurnLease, Worker, WorkState
from .work_queue import WorkQueue

log = logging.getLogger("dapr_workflows.engine")

T = TypeVar("T")

DIALECTS = ("dapr", "durabletask")
# Random bytes of a completion token (128 bits).
TOKEN_BYTES = 16
# How long work whose claim the store failed waits before it is offered again.
REOFFER_AFTER_STORE_ERROR_SECONDS = 1.0


# (work_items.py and work_leases.py) with the rest
__all__ = [
    "ActivityLease",
    "ActivityWork",
    "InstanceWork",
    "Lease",
    "TurnLease",
    "WorkKey",
    "WorkState",
    "Worker",
]


class Dispatch:
    def __init__(
        self,
        store: Store,
        settings: EngineSettings,
        leasing: LeasePolicy,
        closing: Signal,
        observer: EngineObserver,
    ) -> None:
        self.store = store
        self.settings = settings
        self.leasing = leasing
        self.closing = closing
        self.observer = observer
        self.history = HistoryCache(
            settings.history_cache_size, settings.history_cache_bytes, leasing.caches_history, observer
        )
        self.workers: dict[int, Worker] = {}
        self.ready = ReadyQueues(closing)  # the queued keys, and the signals their takers wait on
        # What each work item is (for who may take it) and its age (for the order), where known.
        self.items = WorkItems(
            self.mark_ready,
            leasing.shared,
            lambda: len(self._leases),
            settings.fan_in_hold_seconds,
        )
        # Stateful-history workers: what each stream keeps (it then gets only newer events).
        self.kept = KeptHistories()
        self._state: dict[WorkKey, WorkState] = {}
        self._arrived_while_busy: set[str] = set()  # instances
        self._expired_on: dict[WorkKey, Worker] = {}  # the worker whose lease of it ran out
        self.stalled: dict[str, str] = {}  # instance -> dialect: stalled on a worker's code
        self._leases: dict[WorkKey, Lease] = {}
        self._tokens: dict[str, WorkKey] = {}
        # Tokens cannot be guessed from others (128 random bits); the boot ID in front tells the
        # engines sharing a store apart in logs and lease rows.
        self._boot = uuid.uuid4().hex[:12]
        self._worker_ids = itertools.count(1)
        self.stalls = StallWatch(settings.worker_stall_seconds, self._stalled)
        self.new_starts = NewStarts(settings.worker_max_new_starts)  # first turns per worker
        self.limits = Limiter(
            settings.concurrency, leasing, self._boot, self.ready.notify, DIALECTS, InstanceWork
        )
        # Leases a durable entity's batch instead of a turn (entity_service.py); set by the engine.
        self.entity_lease: Callable[[InstanceWork, int], Awaitable[bytes | None]] | None = None
        self.turn_leasing = TurnLeasing(self)

    def start(self) -> None:
        self.ready.start(DIALECTS)

    # ------------------------------------------------------------ what is ready

    def state(self, key: WorkKey) -> WorkState | None:
        """The key's state; None when it is neither queued nor taken."""
        return self._state.get(key)

    def arrived_while_busy(self, instance_id: str) -> bool:
        return instance_id in self._arrived_while_busy

    def drop_arrival(self, instance_id: str) -> bool:
        """Forgets that events arrived for the instance while it was busy; whether they had."""
        if instance_id not in self._arrived_while_busy:
            return False
        self._arrived_while_busy.discard(instance_id)
        return True

    def queued(self) -> list[WorkKey]:
        """What waits in the queues to be offered to a worker."""
        return [key for key, state in self._state.items() if state == WorkState.QUEUED]

    def knows_dialect(self, dialect: str) -> bool:
        return self.ready.knows(dialect)

    def mark_ready(self, instance_id: str, dialect: str) -> None:
        """The instance has events a turn should see."""
        key = InstanceWork(instance_id)
        state = self._state.get(key)
        if state in (WorkState.CLAIMING, WorkState.LEASED):
            self._arrived_while_busy.add(instance_id)
            return
        if state == WorkState.QUEUED or self.items.fan_in.holds(instance_id, dialect):
            return  # (fan_in.py: held while other work waits, for the rest of its activities)
        self.put(key, dialect)
        self.observer.work_queued("orchestration", key, dialect)

    def queue_activity(self, activity_id: int, dialect: str) -> None:
        key = ActivityWork(activity_id)
        if key in self._state:
            return
        self.put(key, dialect)
        self.observer.work_queued("activity", key, dialect)

    def put(self, key: WorkKey, dialect: str) -> None:
        self._state[key] = WorkState.QUEUED
        label = self.items.label_in(key, dialect)
        first_of_its_kind = self.ready.put(key, dialect, label, self.items.age(key), self.items.fresh(key))
        workers = [w for w in self.workers.values() if w.dialect == dialect] if first_of_its_kind else []
        if label is not None and first_of_its_kind and not any(self.may_take(w, label) for w in workers):
            what = f"workflow {key.instance_id!r}" if isinstance(key, InstanceWork) else "an activity"
            log.info("%s waits for a worker %s: none is connected", what, eligibility.describe(label))

    # ------------------------------------------------------------ routing

    def served_apps(self, dialect: str) -> set[str]:
        """The apps the connected workers of the dialect said they serve."""
        return {w.app_id for w in self.workers.values() if w.dialect == dialect and w.app_id}

    def may_take(self, worker: Worker, label: WorkLabel | None) -> bool:
        """The rule (eligibility.may_take): may `worker` take work of `label` (None: not known yet)?"""
        return eligibility.may_take(worker.eligibility, label, self.served_apps(worker.dialect))

    def label_of(self, key: WorkKey) -> WorkLabel | None:
        """What the work is (for who may take it); None when not known yet."""
        return self.items.label(key)

    def filter_work(self, worker_id: int, filters: WorkFilters | None) -> None:
        """The worker takes only the work its filters name (durabletask's workItemFilters)."""
        worker = self.workers.get(worker_id)
        if worker is not None and filters is not None:
            worker.filters = filters
            counts = ", ".join(f"{len(names)} {kind} names" for kind, names in filters.names.items())
            log.info("worker %d takes only the work its filters name (%s)", worker_id, counts)
            self.ready.notify(worker.dialect)

    def identify_worker(self, worker_id: int, app_id: str) -> None:
        """The worker serves `app_id` (it said so when it connected)."""
        worker = self.workers.get(worker_id)
        if worker is not None and app_id:
            worker.app_id = app_id
            log.info("worker %d serves app %r", worker_id, app_id)
            self.ready.notify(worker.dialect)

    def _reoffer(self, key: WorkKey, dialect: str, later: bool = False) -> None:
        """Queues a taken key again; `later`: after a store error, in a while, unless something else
        queued, took or leased it meanwhile."""
        if later:
            def again() -> None:
                if key not in self._state and not self.closing.is_set():
                    self._reoffer(key, dialect)

            asyncio.get_running_loop().call_later(REOFFER_AFTER_STORE_ERROR_SECONDS, again)
            return
        self._state.pop(key, None)
        if isinstance(key, InstanceWork):
            self.mark_ready(key.instance_id, dialect)
        else:
            self.queue_activity(key.activity_id, dialect)

    # ------------------------------------------------------------ workers

    def connect_worker(self, dialect: str, capacity: int = 0, peer: str = "") -> int:
        """Registers a worker's stream; `capacity` > 0 caps what it holds below the engine's limit;
        `peer` is its connection, which tells its process apart (stalls.py)."""
        worker_id = next(self._worker_ids)
        limit = self.settings.worker_max_in_flight
        self.workers[worker_id] = Worker(dialect, min(capacity, limit) if capacity > 0 else limit, peer=peer)
        self.observer.worker_connected(dialect)
        if peer:
            self.stalls.connected(peer)
        # Instances stalled on a worker's code: a newly connected worker may run code that matches.
        for instance_id in [i for i, d in self.stalled.items() if d == dialect]:
            del self.stalled[instance_id]
            self.mark_ready(instance_id, dialect)
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
        self.kept.drop_worker(worker_id)
        if gone is not None:
            self.observer.worker_disconnected(gone.dialect)
            if gone.peer and not any(other.peer == gone.peer for other in self.workers.values()):
                self.stalls.forget(gone.peer)
            self.ready.notify(gone.dialect)  # unidentified workers may now take what it served
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
            if worker.peer and self.stalls.is_stalled(worker.peer) and self._another_can_take(worker):
                # Stalled: nothing more until it is heard from (or a ping is due).
                await self.stalls.wait_heard(worker.peer, deadline - loop.time())
                if loop.time() >= deadline:
                    return None
                continue
            if worker.held >= worker.capacity:
                # Full: wait until the worker finishes something (or a ping is due).
                worker.freed.clear()
                if not await self.ready.wait_any(worker.freed, deadline - loop.time()):
                    return None
                continue
            key = await self._take(dialect, worker, deadline - loop.time(), worker_id)
            if key is None:
                return None
            if worker.peer and self.stalls.is_stalled(worker.peer) and self._another_can_take(worker):
                self._reoffer(key, dialect)  # it stalled while it waited for this key
                continue
            self.limits.reserve(key)
            try:
                if isinstance(key, InstanceWork):
                    entity = dialect == "durabletask" and is_entity_id(key.instance_id)
                    item = await ((entity and self.entity_lease) or self.turn_leasing.lease)(key, worker_id)
                else:
                    item = await lease_activity(self, key, dialect, worker_id)
            except asyncio.CancelledError:
                # The stream went away between taking the key and leasing it: offer it again.
                self._reoffer(key, dialect)
                raise
            except Throttled as full:  # a concurrency limit is reached: it waits, queued
                self.limits.refused(key, full)
                self._reoffer(key, dialect)
                continue
            except StoreUnavailable:
                # The store failed the claim or its read: the work is still there. Offer it again
                # once the store may be back (on SQLite nothing else would find it before a restart).
                self._reoffer(key, dialect, later=True)
                raise
            finally:
                state = self._state.get(key)
                self.limits.taken(key, state == WorkState.LEASED, state == WorkState.QUEUED)
            if item is not None:
                return item
        return None

    async def _take(self, dialect: str, worker: Worker, timeout: float, worker_id: int) -> WorkKey | None:
        """The next key of the dialect's queue the worker may take (work_queue.py), now CLAIMING;
        None when the time ran out or the engine closes."""

        def avoid(k: WorkKey) -> bool:
            # A concurrency limit it is under is full (concurrency.py); or its lease ran out on this
            # worker: it goes to another one if it can.
            if not self.limits.admits(k):
                return True
            return self._expired_on.get(k) is worker and self._another_can_take(worker)

        def pick(queue: WorkQueue[WorkKey]) -> WorkKey | None:
            return queue.take(
                partial(eligibility.may_take, worker.eligibility, served_apps=self.served_apps(dialect)),
                avoid,
                self.new_starts.has_room(worker_id),
            )

        key = await self.ready.take(dialect, pick, timeout)
        if key is None:
            return None
        self._state[key] = WorkState.CLAIMING
        self.observer.work_taken(key)
        return key

    def _another_can_take(self, worker: Worker) -> bool:
        """Whether a worker of the dialect on another connection, not stalled, has room for work."""
        return any(
            other.dialect == worker.dialect
            and other.peer != worker.peer
            and not (other.peer and self.stalls.is_stalled(other.peer))
            and other.held < other.capacity
            for other in self.workers.values()
        )

    def _stalled(self, peer: str) -> None:
        """The peer holds work it was given long ago and has not been heard from since."""
        workers = {wid: w for wid, w in self.workers.items() if w.peer == peer}
        if not workers:
            return
        turns = [
            lease
            for lease in self._leases.values()
            if isinstance(lease, TurnLease) and lease.worker_id in workers
        ]
        others = self._another_can_take(next(iter(workers.values())))
        log.warning(
            "worker %s (%d streams) has not been heard from for %.0fs while holding work: %s",
            peer,
            len(workers),
            self.stalls.stall_seconds,
            f"it gets no more work, and its {len(turns)} workflow turns are offered to other workers"
            if others
            else "no other worker could take its work",
        )
        if others:
            for lease in turns:
                self.release(lease)

    def next_token(self) -> str:
        return f"{self._boot}-{secrets.token_hex(TOKEN_BYTES)}"

    async def lease_instance(
        self, key: InstanceWork, read: Callable[[StoreTx, str], T], may_refuse: bool = True
    ) -> tuple[str, T | None]:
        """Claims the instance's lease and reads what its worker gets, in one transaction on a shared
        store: a turn (turn_leasing.py) or an entity's batch (entity_service.py). `read` gets the
        transaction and the lease's token, and gives the claim back itself when there is nothing to
        do. Returns the token and what `read` returned; None instead when another engine's worker
        holds the instance. The caller then holds the lease (`hold`) or settles the key. `may_refuse`:
        `read` may raise to undo the claim (else the claim may commit in its own round trip)."""
        instance_id = key.instance_id
        token = self.next_token()
        leasing = self.leasing

        def take(tx: StoreTx) -> T | None:
            if not leasing.claim_instance(tx, instance_id, token):
                return None  # another engine's worker has it
            return read(tx, token)

        try:
            return token, await leasing.take_turn(take, may_refuse)
        except BaseException:
            # The claim may have committed anyway: in the store's thread after a cancellation, or in
            # its own round trip before a later attempt failed (run_claim). Give it back.
            leasing.release_later(lambda t: t.release_instance(instance_id, token))
            raise
        finally:
            # No longer CLAIMING, whatever happened (a store that failed loses the key until a
            # sweep or a restart finds the work again); leased again if the caller holds it.
            self.end_claim(key)

    def end_claim(self, key: WorkKey) -> None:
        """The key's store read is over (CLAIMING no more): leased, queued again or done."""
        self._state.pop(key, None)

    def routed_here(self, key: WorkKey, worker_id: int, learn: Callable[[], WorkLabel]) -> bool:
        """Whether the worker may take the key it leases; a label not known yet is learned first."""
        label = self.items.label(key)
        if label is None:
            label = learn()
            self.items.set_label(key, label)
        worker = self.workers.get(worker_id)
        return worker is None or self.may_take(worker, label)

    # ------------------------------------------------------------ leases

    def hold(self, lease: Lease, seconds: float) -> None:
        """Records that the worker holds the lease, until it ends or `seconds` pass."""
        self._state[lease.key] = WorkState.LEASED
        self._leases[lease.key] = lease
        # Kept until now: a claim that failed (the store had not seen the release yet) offers it
        # again, still to another worker first.
        self._expired_on.pop(lease.key, None)
        self._tokens[lease.token] = lease.key
        if isinstance(lease, TurnLease) and self.items.fresh(lease.key):
            self.new_starts.hold(lease.key, lease.worker_id)
        worker = self.workers.get(lease.worker_id)
        if worker is not None:
            worker.held += 1
            if worker.peer:
                self.stalls.gave(worker.peer)
        lease.expiry = asyncio.get_running_loop().call_later(seconds, self._expire, lease)

    def turn_lease(self, instance_id: str, token: str | None = None) -> TurnLease | None:
        """The instance's current lease (with that token, if given)."""
        lease = self._leases.get(InstanceWork(instance_id))
        if not isinstance(lease, TurnLease) or (token is not None and lease.token != token):
            return None
        return lease

    def lease_of(self, token: str) -> Lease | None:
        """The lease with that token, if it is still current."""
        key = self._tokens.get(token)
        lease = self._leases.get(key) if key is not None else None
        return lease if lease is not None and lease.token == token else None

    def activity_lease(self, token: str) -> ActivityLease | None:
        """The activity lease with that token, if it is still current."""
        lease = self.lease_of(token)
        return lease if isinstance(lease, ActivityLease) else None

    def knows_token(self, token: str) -> bool:
        """Whether the token is a current lease's (of whatever work item)."""
        return token in self._tokens

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
        if isinstance(lease, ActivityLease):
            self.items.forget(lease.key)  # done; release() keeps what is known when it is offered again
        else:
            self.items.started(lease.turn.instance_id)
        self.observer.lease_ended(lease.token)
        self.limits.free(lease.key)
        if self.new_starts.end(lease.key):
            self.ready.notify(lease.dialect)  # its worker may take new starts again
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
        known = self.items.known(lease.key)
        self.end(lease)
        self.items.restore(lease.key, known)
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
        expired_on = self.workers.get(lease.worker_id)
        if expired_on is not None:
            self._expired_on[lease.key] = expired_on
        self.release(lease)

    def abandon(self, token: str) -> None:
        """A worker gives a work item back (durabletask's Abandon* calls)."""
        key = self._tokens.get(token)
        lease = self._leases.get(key) if key is not None else None
        if lease is not None and lease.token == token:
            worker = self.workers.get(lease.worker_id)
            if worker is not None:  # (e.g. a version it rejects) another worker gets it first, if one can
                self._expired_on[lease.key] = worker
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
                self.history.remember(instance_id, events, fx.patches.get(instance_id))
        for instance_id in fx.finished:
            self.history.forget(instance_id)
        for instance_id in fx.dropped | fx.finished:
            self.items.forget(InstanceWork(instance_id))
            self.limits.forget(InstanceWork(instance_id))
            self.turn_leasing.forget(instance_id)
            self.kept.forget(instance_id)
        for instance_id, events in fx.history.items():
            if not events:  # a new execution: what any worker kept is void
                self.kept.forget(instance_id)
        for activity_id in fx.cancelled_activities:
            self.items.forget(ActivityWork(activity_id))
            self.limits.forget(ActivityWork(activity_id))
        self.items.learn(fx)
        self.stalled.update(fx.stalled)
        for instance_id, dialect in fx.ready.items():
            self.mark_ready(instance_id, dialect)
        for activity_id, dialect in fx.activities:
            self.queue_activity(activity_id, dialect)
