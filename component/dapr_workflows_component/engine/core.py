"""The engine: instances, orchestration turns, activities, timers and leases.

State lives in the store; every change is one store transaction. What is in memory can be rebuilt
from the store at start-up: the queues of ready work, the leases given to connected workers (a lease
dies with the engine, so after a restart all work is offered again) and the timer heap.

An orchestration turn: the instance's visible inbox events are leased to one worker together with
the instance's history; the worker answers with actions; one transaction appends the turn to the
history, removes the consumed inbox rows and writes what the actions cause (activities, timers,
child instances, events to other instances, completion). A completion whose token is not the current
lease's is stale (the lease expired, the worker was replaced, the instance was terminated) and is
ignored, so no result is ever applied twice.

Several engines may share one store (PostgreSQL). Then a lease is also a row lock in the store,
claimed when a worker takes the item and checked in the transaction that records the result (so a
replica whose lease expired cannot record anything); every commit announces what it made ready to the
other engines, and a periodic sweep finds work nobody announced (expired leases of a dead replica,
timers that came due). Nothing read from a shared store is cached between transactions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..protos import dapr_dialect_pb2 as pb
from ..store import Announcement, Store, StoreTx, StoreUnavailable
from ..workflows import (
    TERMINAL_STATUSES,
    ErrorCode,
    Instance,
    InstanceQuery,
    LifecycleEvent,
    ReusePolicy,
    RuntimeStatus,
    StartRequest,
    WorkflowError,
    check_event_allowed,
    check_payload_size,
    check_purge_allowed,
    check_resume_allowed,
    check_start_allowed,
    check_suspend_allowed,
    lifecycle_json,
    not_found,
    require_instance_id,
    require_workflow_name,
    validate_new_instance_id,
)
from . import wire
from .wire import history_event, now_us

log = logging.getLogger("dapr_workflows.engine")

T = TypeVar("T")

DIALECTS = ("dapr", "durabletask")

# While suspended, an instance's worker sees only these events; the rest wait in the inbox.
_DELIVERED_WHILE_SUSPENDED = frozenset({"executionSuspended", "executionResumed", "executionTerminated"})
# The failure type recorded when the engine refuses what a worker sent, by the reason's code.
FAILURE_TYPES = {
    ErrorCode.RESOURCE_EXHAUSTED: "PayloadTooLarge",
    ErrorCode.UNIMPLEMENTED: "UnsupportedAction",
    ErrorCode.INVALID_ARGUMENT: "InvalidAction",
}
# A rerun can start again from the point where one of these was recorded.
_RERUNNABLE_EVENTS = frozenset({"taskScheduled", "timerCreated", "childWorkflowInstanceCreated"})
# On continue-as-new, inbox events of these kinds belong to the ended execution and are dropped.
_EXECUTION_BOUND_EVENTS = frozenset(
    {
        "timerFired",
        "taskCompleted",
        "taskFailed",
        "childWorkflowInstanceCompleted",
        "childWorkflowInstanceFailed",
    }
)


@dataclass
class EngineSettings:
    orchestration_lease_seconds: float = 60.0
    activity_lease_seconds: float = 300.0
    max_payload_bytes: int = 4 * 1024 * 1024
    health_ping_seconds: float = 15.0
    # Work items one worker may hold at once (unless it asks for fewer): the rest stay queued for
    # other workers, and a crash returns no more than this.
    worker_max_in_flight: int = 100
    history_cache_size: int = 10_000
    # Record lifecycle events in the outbox for the input binding (on when the component socket is).
    lifecycle_events: bool = False
    # With a shared store: how often to look for work no other engine announced (expired leases of
    # a replica that died, timers that came due on another replica).
    poll_seconds: float = 1.0
    # With a shared store: how many claimable items one sweep takes into the local queues.
    sweep_batch: int = 500
    # With a shared store: how long the leases of an engine outlive it. A live engine renews its
    # leases in the store every third of this; a worker's own time limit is the lease seconds above.
    store_lease_seconds: float = 10.0


@dataclass
class _OrchestrationLease:
    instance_id: str
    dialect: str
    execution_id: str
    token: str
    worker_id: int
    inbox_ids: list[int]
    new_events: list[bytes]
    expiry: asyncio.TimerHandle | None = None


@dataclass
class _ActivityLease:
    activity_id: int
    dialect: str
    token: str
    worker_id: int
    expiry: asyncio.TimerHandle | None = None


@dataclass
class _Effects:
    """What a committed transaction asks of the in-memory side, applied only after the commit."""

    ready: dict[str, str] = field(default_factory=dict)  # instance_id -> dialect
    activities: list[tuple[int, str]] = field(default_factory=list)
    timers: list[tuple[int, str, str]] = field(default_factory=list)  # (visible_at, instance, dialect)
    changed: set[str] = field(default_factory=set)  # instances whose status may have changed
    dropped: set[str] = field(default_factory=set)  # instances whose lease and cache are void
    finished: set[str] = field(default_factory=set)  # instances that will have no more turns
    cancelled_activities: list[int] = field(default_factory=list)
    history: dict[str, list[bytes]] = field(default_factory=dict)  # new full history per instance
    outbox: bool = False  # lifecycle events were recorded

    def reset(self) -> None:
        """Forgets what an attempt recorded: a shared store may run a transaction again."""
        fresh = _Effects()
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(fresh, f.name))


Key = tuple[str, Any]  # ("o", instance_id) or ("a", activity_id)


@dataclass
class _Worker:
    """A connected worker's stream: what it holds, and how much it may hold."""

    dialect: str
    capacity: int
    held: int = 0
    freed: asyncio.Event = field(default_factory=asyncio.Event)


class Engine:
    def __init__(self, store: Store, settings: EngineSettings | None = None) -> None:
        self.store = store
        self.settings = settings or EngineSettings()
        self._queues: dict[str, asyncio.Queue[Key]] = {}
        self._queued: set[str] = set()
        self._queued_activities: set[int] = set()
        # Work items whose lease is being taken right now (the store call awaits): not offered twice.
        self._claiming: set[Key] = set()
        self._shared = store.shared
        self._orch_leases: dict[str, _OrchestrationLease] = {}
        self._act_leases: dict[int, _ActivityLease] = {}
        self._tokens: dict[str, tuple[Key, int]] = {}  # token -> (work item, worker ID)
        self._dirty: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._history: dict[str, list[bytes]] = {}
        self._timer_heap: list[tuple[int, str, str]] = []
        self._timer_wakeup = asyncio.Event()
        self._timer_task: asyncio.Task[None] | None = None
        self._shared_tasks: list[asyncio.Task[None]] = []
        self._sweep_now = asyncio.Event()
        self._store_releases: set[asyncio.Task[None]] = set()
        # Tokens are unique across the engines sharing a store: the boot ID tells them apart.
        self._boot = uuid.uuid4().hex[:12]
        self._counter = itertools.count(1)
        self._worker_ids = itertools.count(1)
        self.workers: dict[int, _Worker] = {}
        # Set after a commit that recorded lifecycle events; the input binding waits on it.
        self.outbox_signal = asyncio.Event()
        # Set when the process shuts down: workers' streams end instead of waiting for work.
        self.closing = asyncio.Event()

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        for dialect in DIALECTS:
            self._queues[dialect] = asyncio.Queue()
        now = now_us()

        def recover(
            tx: StoreTx,
        ) -> tuple[list[tuple[str, str]], list[tuple[int, str]], list[tuple[int, str, str]]]:
            return tx.ready_instances(now), tx.all_activities(), tx.future_timers(now)

        ready, activities, timers = await self.store.read(recover)
        for instance_id, dialect in ready:
            self._mark_ready(instance_id, dialect)
        for activity_id, dialect in activities:
            self._queue_activity(activity_id, dialect)
        for entry in timers:
            heapq.heappush(self._timer_heap, entry)
        loop = asyncio.get_running_loop()
        self._timer_task = loop.create_task(self._run_timers())
        if self._shared:
            self._shared_tasks = [
                loop.create_task(self.store.listen(self._on_announcement)),
                loop.create_task(self._sweep()),
                loop.create_task(self._renew_leases()),
            ]
        log.info(
            "engine ready: %d instances with pending events, %d pending activities, %d future timers",
            len(ready),
            len(activities),
            len(timers),
        )

    def close_streams(self) -> None:
        """Ends the workers' work-item streams, so that a shutdown need not wait them out."""
        self.closing.set()

    async def stop(self) -> None:
        self.closing.set()
        if self._timer_task:
            self._timer_task.cancel()
        for task in self._shared_tasks:
            task.cancel()
        await asyncio.gather(*self._shared_tasks, *self._store_releases, return_exceptions=True)
        held = self._held_tokens()
        if self._shared and held:
            # Other engines may take this engine's work at once instead of when the leases expire.
            try:
                await self.store.run(lambda t: t.release_leases(held))
                log.info("gave %d leases back to the store", len(held))
            except Exception as err:
                log.warning("giving leases back to the store failed (they expire by themselves): %s", err)
        for waiters in self._waiters.values():
            for fut in waiters:
                if not fut.done():
                    fut.cancel()

    # ---------------------------------------------------------------- in-memory scheduling

    def _mark_ready(self, instance_id: str, dialect: str) -> None:
        if instance_id in self._orch_leases or ("o", instance_id) in self._claiming:
            self._dirty.add(instance_id)
            return
        if instance_id in self._queued:
            return
        self._queued.add(instance_id)
        self._queues[dialect].put_nowait(("o", instance_id))

    def _queue_activity(self, activity_id: int, dialect: str) -> None:
        if (
            activity_id in self._queued_activities
            or activity_id in self._act_leases
            or ("a", activity_id) in self._claiming
        ):
            return
        self._queued_activities.add(activity_id)
        self._queues[dialect].put_nowait(("a", activity_id))

    async def _commit(self, fn: Callable[[StoreTx], T], fx: _Effects) -> T:
        """Runs `fn` in one transaction that also announces its effects to the engines sharing the
        store, then applies the effects here."""

        def tx(t: StoreTx) -> T:
            if self._shared:
                fx.reset()  # a shared store may run `tx` again: only the last attempt counts
            result = fn(t)
            if self._shared and (fx.ready or fx.activities or fx.changed):
                t.announce(list(fx.ready.items()), list(fx.activities), sorted(fx.changed))
            return result

        result = await self.store.run(tx)
        self._apply(fx)
        return result

    # ---------------------------------------------------------------- engines sharing the store

    def _on_announcement(self, news: Announcement) -> None:
        """Another engine committed something: queue what it made ready, wake who waits on changes."""
        if news.kind == "instance" and news.dialect in self._queues:
            self._mark_ready(news.key, news.dialect)
        elif news.kind == "activity" and news.dialect in self._queues and news.key.isdigit():
            self._queue_activity(int(news.key), news.dialect)
        elif news.kind == "changed":
            self._wake(news.key)
        elif news.kind == "resync":
            self._sweep_now.set()

    async def _sweep(self) -> None:
        """Queues claimable work that no announcement brought: leases that expired with the engine
        that held them, timers that came due, announcements missed while the listener reconnected."""
        batch = self.settings.sweep_batch
        while True:
            try:
                await asyncio.wait_for(self._sweep_now.wait(), timeout=self.settings.poll_seconds)
            except asyncio.TimeoutError:
                pass
            self._sweep_now.clear()
            # Only work that a worker here could take: the engines with workers of a dialect find
            # theirs.
            dialects = sorted({worker.dialect for worker in self.workers.values()})
            if not dialects:
                continue
            try:
                instances, activities = await self._claimable(dialects, batch)
            except Exception as err:  # the store is down: try again at the next sweep
                log.warning("looking for claimable work failed: %s", err)
                continue
            for instance_id, dialect in instances:
                self._mark_ready(instance_id, dialect)
            for activity_id, dialect in activities:
                self._queue_activity(activity_id, dialect)

    async def _claimable(
        self, dialects: list[str], batch: int
    ) -> tuple[list[tuple[str, str]], list[tuple[int, str]]]:
        return await self.store.run(
            lambda t: (
                t.claimable_instances(now_us(), batch, dialects),
                t.claimable_activities(batch, dialects),
            )
        )

    def _held_tokens(self) -> list[str]:
        return [lease.token for lease in self._orch_leases.values()] + [
            act.token for act in self._act_leases.values()
        ]

    async def _renew_leases(self) -> None:
        """Keeps this engine's leases alive in the store while it runs: when it dies, they expire
        within `store_lease_seconds` and other engines take the work."""
        seconds = self.settings.store_lease_seconds
        while True:
            await asyncio.sleep(seconds / 3)
            held = self._held_tokens()
            if held:
                try:
                    await self._renew(held, seconds)
                except Exception as err:  # the leases may expire; results then find them taken
                    log.warning("renewing %d leases failed: %s", len(held), err)

    async def _renew(self, tokens: list[str], seconds: float) -> None:
        await self.store.run(lambda t: t.renew_leases(tokens, seconds))

    def _release_in_store(self, release: Callable[[StoreTx], None]) -> None:
        """Gives a lease back in a shared store at once, so other engines need not wait for it to
        expire; in the background, since the local side is already released."""
        if not self._shared:
            return

        async def run() -> None:
            try:
                await self.store.run(release)
            except Exception as err:  # the lease then expires by itself
                log.warning("giving a lease back to the store failed: %s", err)

        task = asyncio.get_running_loop().create_task(run())
        self._store_releases.add(task)
        task.add_done_callback(self._store_releases.discard)

    def _apply(self, fx: _Effects) -> None:
        for instance_id in fx.dropped:
            self._history.pop(instance_id, None)
            lease = self._orch_leases.pop(instance_id, None)
            if lease:
                self._forget_lease(lease.token, lease.expiry)
            self._dirty.discard(instance_id)
        for activity_id in fx.cancelled_activities:
            act = self._act_leases.pop(activity_id, None)
            if act:
                self._forget_lease(act.token, act.expiry)
        for instance_id, events in fx.history.items():
            if instance_id not in fx.dropped and instance_id not in fx.finished:
                self._remember_history(instance_id, events)
        for instance_id in fx.finished:
            self._history.pop(instance_id, None)
        for instance_id, dialect in fx.ready.items():
            self._mark_ready(instance_id, dialect)
        for activity_id, dialect in fx.activities:
            self._queue_activity(activity_id, dialect)
        if fx.timers:
            for entry in fx.timers:
                heapq.heappush(self._timer_heap, entry)
            self._timer_wakeup.set()
        if fx.outbox:
            self.outbox_signal.set()
        for instance_id in fx.changed:
            self._wake(instance_id)

    def _wake(self, instance_id: str) -> None:
        for fut in self._waiters.pop(instance_id, ()):
            if not fut.done():
                fut.set_result(None)

    def _remember_history(self, instance_id: str, events: list[bytes]) -> None:
        if self._shared:
            return  # another engine may append to the history at any time
        cache = self._history
        cache.pop(instance_id, None)
        cache[instance_id] = events
        if len(cache) > self.settings.history_cache_size:
            del cache[next(iter(cache))]

    def _forget_lease(self, token: str, expiry: asyncio.TimerHandle | None) -> None:
        entry = self._tokens.pop(token, None)
        if expiry:
            expiry.cancel()
        worker = self.workers.get(entry[1]) if entry else None
        if worker is not None:
            worker.held -= 1
            worker.freed.set()

    def _next_token(self) -> str:
        return f"{self._boot}-{next(self._counter)}"

    def _hold(self, token: str, key: Key, worker_id: int) -> None:
        """Records that the worker holds `key` under `token`."""
        self._tokens[token] = (key, worker_id)
        worker = self.workers.get(worker_id)
        if worker is not None:
            worker.held += 1

    async def _run_timers(self) -> None:
        while True:
            self._timer_wakeup.clear()
            now = now_us()
            while self._timer_heap and self._timer_heap[0][0] <= now:
                _, instance_id, dialect = heapq.heappop(self._timer_heap)
                self._mark_ready(instance_id, dialect)
            delay = (self._timer_heap[0][0] - now) / 1e6 if self._timer_heap else 3600.0
            try:
                await asyncio.wait_for(self._timer_wakeup.wait(), timeout=max(delay, 0.0) + 0.001)
            except asyncio.TimeoutError:
                pass

    # ---------------------------------------------------------------- workers

    def connect_worker(self, dialect: str, capacity: int = 0) -> int:
        """Registers a worker's stream; `capacity` > 0 caps what it holds below the engine's limit."""
        worker_id = next(self._worker_ids)
        limit = self.settings.worker_max_in_flight
        self.workers[worker_id] = _Worker(dialect, min(capacity, limit) if capacity > 0 else limit)
        log.info(
            "worker %d connected (%s dialect); %d workers connected", worker_id, dialect, len(self.workers)
        )
        return worker_id

    def disconnect_worker(self, worker_id: int) -> None:
        """Returns everything leased to the worker to the queues at once."""
        returned = 0
        for lease in [lease for lease in self._orch_leases.values() if lease.worker_id == worker_id]:
            self._release_orchestration(lease)
            returned += 1
        for act in [a for a in self._act_leases.values() if a.worker_id == worker_id]:
            self._release_activity(act)
            returned += 1
        self.workers.pop(worker_id, None)
        log.info("worker %d disconnected; %d leased work items returned to the queue", worker_id, returned)

    async def next_work_item(self, dialect: str, worker_id: int) -> bytes | None:
        """Waits for the next work item for a worker of `dialect`.

        None when none came before the next health ping is due, or when the engine is closing.
        """
        queue = self._queues[dialect]
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
            if queue.empty():
                getter = asyncio.ensure_future(queue.get())
                closing = asyncio.ensure_future(self.closing.wait())
                try:
                    await asyncio.wait(
                        (getter, closing),
                        timeout=max(deadline - loop.time(), 0.0),
                        return_when=asyncio.FIRST_COMPLETED,
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
            try:
                if key[0] == "o":
                    self._queued.discard(key[1])
                    item = await self._lease_orchestration(key[1], worker_id)
                else:
                    self._queued_activities.discard(key[1])
                    item = await self._lease_activity(key[1], dialect, worker_id)
            except asyncio.CancelledError:
                # The stream went away between taking the key and leasing it: offer it again.
                self._reoffer(key, dialect)
                raise
            if item is not None:
                return item
        return None

    async def _wait_any(self, event: asyncio.Event, timeout: float) -> bool:
        """Waits for `event` or the engine closing; False when the time ran out or the engine closes."""
        waits = (asyncio.ensure_future(event.wait()), asyncio.ensure_future(self.closing.wait()))
        try:
            await asyncio.wait(waits, timeout=max(timeout, 0.0), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        return event.is_set() and not self.closing.is_set()

    def _reoffer(self, key: Key, dialect: str) -> None:
        if key[0] == "o":
            self._queued.discard(key[1])
            self._mark_ready(key[1], dialect)
        else:
            self._queued_activities.discard(key[1])
            self._queue_activity(key[1], dialect)

    async def _lease_orchestration(self, instance_id: str, worker_id: int) -> bytes | None:
        key: Key = ("o", instance_id)
        if instance_id in self._orch_leases or key in self._claiming:
            self._dirty.add(instance_id)
            return None
        now = now_us()
        cached = None if self._shared else self._history.get(instance_id)
        token = self._next_token()
        seconds = self.settings.store_lease_seconds

        def take(tx: StoreTx) -> tuple[Instance | None, list[Any], list[bytes]]:
            if self._shared and not tx.claim_instance(instance_id, token, seconds):
                return None, [], []  # another engine's worker has it
            inst = tx.get_instance(instance_id)
            rows = [] if inst is None or inst.status.is_terminal else tx.inbox(instance_id, now)
            if inst is not None and inst.status == RuntimeStatus.SUSPENDED:
                rows = [r for r in rows if wire.event_type(r.event) in _DELIVERED_WHILE_SUSPENDED]
            if not rows:
                tx.release_instance(instance_id, token)
                return inst, [], []
            history = cached if cached is not None else tx.history(instance_id)
            return inst, rows, history

        # A shared store claims the lease in the same transaction that reads the turn.
        self._claiming.add(key)
        try:
            inst, rows, history = await (self.store.run(take) if self._shared else self.store.read(take))
        except asyncio.CancelledError:
            # The claim may still commit in the store's thread: give it back.
            self._release_in_store(lambda t: t.release_instance(instance_id, token))
            raise
        finally:
            self._claiming.discard(key)
        if inst is None or not rows:
            if instance_id in self._dirty:  # an event came while the store was read
                self._dirty.discard(instance_id)
                if inst is not None:
                    self._mark_ready(instance_id, inst.dialect)
            return None
        if cached is None:
            self._remember_history(instance_id, history)
        started = history_event(now, workflowStarted=pb.WorkflowStartedEvent()).SerializeToString()
        new_events = [started] + [r.event for r in rows]
        self._hold(token, ("o", instance_id), worker_id)
        lease = _OrchestrationLease(
            instance_id, inst.dialect, inst.execution_id, token, worker_id, [r.id for r in rows], new_events
        )
        lease.expiry = asyncio.get_running_loop().call_later(
            self.settings.orchestration_lease_seconds, self._expire_orchestration, lease
        )
        self._orch_leases[instance_id] = lease
        return wire.encode_workflow_work_item(instance_id, inst.execution_id, history, new_events, token)

    async def _lease_activity(self, activity_id: int, dialect: str, worker_id: int) -> bytes | None:
        key: Key = ("a", activity_id)
        if activity_id in self._act_leases or key in self._claiming:
            return None
        token = self._next_token()
        self._claiming.add(key)
        try:
            if self._shared:
                seconds = self.settings.store_lease_seconds
                row = await self.store.run(lambda tx: tx.claim_activity(activity_id, token, seconds))
            else:
                row = await self.store.read(lambda tx: tx.get_activity(activity_id))
        except asyncio.CancelledError:
            self._release_in_store(lambda t: t.release_activity(activity_id, token))
            raise
        finally:
            self._claiming.discard(key)
        if row is None:
            return None
        self._hold(token, ("a", activity_id), worker_id)
        lease = _ActivityLease(activity_id, dialect, token, worker_id)
        lease.expiry = asyncio.get_running_loop().call_later(
            self.settings.activity_lease_seconds, self._expire_activity, lease
        )
        self._act_leases[activity_id] = lease
        return wire.encode_activity_work_item(row.request, token)

    def _expire_orchestration(self, lease: _OrchestrationLease) -> None:
        if self._orch_leases.get(lease.instance_id) is lease:
            log.warning(
                "orchestration lease of %r expired after %.0fs; offering it again",
                lease.instance_id,
                self.settings.orchestration_lease_seconds,
            )
            lease.expiry = None
            self._release_orchestration(lease)

    def _expire_activity(self, lease: _ActivityLease) -> None:
        if self._act_leases.get(lease.activity_id) is lease:
            log.warning(
                "activity lease %d expired after %.0fs; offering it again",
                lease.activity_id,
                self.settings.activity_lease_seconds,
            )
            lease.expiry = None
            self._release_activity(lease)

    def _release_orchestration(self, lease: _OrchestrationLease) -> None:
        self._orch_leases.pop(lease.instance_id, None)
        self._forget_lease(lease.token, lease.expiry)
        self._dirty.discard(lease.instance_id)
        self._release_in_store(lambda t: t.release_instance(lease.instance_id, lease.token))
        self._mark_ready(lease.instance_id, lease.dialect)

    def _release_activity(self, lease: _ActivityLease) -> None:
        self._act_leases.pop(lease.activity_id, None)
        self._forget_lease(lease.token, lease.expiry)
        self._release_in_store(lambda t: t.release_activity(lease.activity_id, lease.token))
        self._queue_activity(lease.activity_id, lease.dialect)

    def abandon(self, token: str) -> None:
        """A worker gives a work item back (durabletask's Abandon* calls)."""
        entry = self._tokens.get(token)
        if entry is None:
            return
        key = entry[0]
        if key[0] == "o":
            lease = self._orch_leases.get(key[1])
            if lease and lease.token == token:
                self._release_orchestration(lease)
        else:
            act = self._act_leases.get(key[1])
            if act and act.token == token:
                self._release_activity(act)

    # ---------------------------------------------------------------- completions

    async def complete_activity(self, response: pb.ActivityResponse) -> None:
        entry = self._tokens.get(response.completionToken)
        act = self._act_leases.get(entry[0][1]) if entry and entry[0][0] == "a" else None
        if act is None or act.token != response.completionToken:
            log.info(
                "ignored a stale activity result for %r task %d (its lease is gone)",
                response.instanceId,
                response.taskId,
            )
            return
        refused: WorkflowError | None = None
        if response.HasField("result"):
            try:
                check_payload_size("activity result", response.result.value, self.settings.max_payload_bytes)
            except WorkflowError as err:
                # Recorded as the activity's failure (running it again would give the same result);
                # the worker still hears why.
                refused = err
                response = pb.ActivityResponse(
                    instanceId=response.instanceId,
                    taskId=response.taskId,
                    completionToken=response.completionToken,
                    failureDetails=wire.failure_details(FAILURE_TYPES[err.code], err.message),
                )
        fx = _Effects()

        def tx(t: StoreTx) -> None:
            if not t.holds_activity(act.activity_id, act.token):
                log.info(
                    "ignored an activity result: another engine took the activity after its lease expired"
                )
                return
            row = t.get_activity(act.activity_id)
            if row is None:
                return
            t.delete_activity(act.activity_id)
            inst = t.get_instance(row.instance_id)
            if inst is None or inst.status.is_terminal or inst.execution_id != row.execution_id:
                return
            now = now_us()
            if response.HasField("failureDetails"):
                event = history_event(
                    now,
                    taskFailed=pb.TaskFailedEvent(
                        taskScheduledId=row.task_id, failureDetails=response.failureDetails
                    ),
                )
            else:
                done = pb.TaskCompletedEvent(taskScheduledId=row.task_id)
                if response.HasField("result"):
                    done.result.CopyFrom(response.result)
                event = history_event(now, taskCompleted=done)
            t.add_inbox(row.instance_id, event.SerializeToString(), now)
            fx.ready[row.instance_id] = inst.dialect

        self._act_leases.pop(act.activity_id, None)
        self._forget_lease(act.token, act.expiry)
        try:
            await self._commit(tx, fx)
        except BaseException:
            self._release_in_store(lambda t: t.release_activity(act.activity_id, act.token))
            self._queue_activity(act.activity_id, act.dialect)
            raise
        if refused is not None:
            raise refused

    async def complete_orchestration(self, response: pb.WorkflowResponse) -> None:
        lease = self._orch_leases.get(response.instanceId)
        if lease is None or lease.token != response.completionToken:
            log.info("ignored a stale orchestration result for %r (its lease is gone)", response.instanceId)
            return
        fx = _Effects()
        try:
            await self._commit(
                lambda t: self._fenced(t, lease, lambda: self._apply_turn(t, lease, response, fx)), fx
            )
        except WorkflowError as err:
            if isinstance(err, StoreUnavailable):
                self._offer_turn_again(lease)
                raise
            # The turn cannot be recorded as asked (e.g. an oversized output): fail the instance instead.
            log.warning("workflow %r: %s; failing the instance", response.instanceId, err.message)
            fx = _Effects()
            refused = err
            await self._commit(
                lambda t: self._fenced(t, lease, lambda: self._fail_turn(t, lease, refused, fx)), fx
            )
        except BaseException:
            self._offer_turn_again(lease)
            raise
        if self._orch_leases.get(lease.instance_id) is lease:
            self._orch_leases.pop(lease.instance_id)
            self._forget_lease(lease.token, lease.expiry)
        if lease.instance_id in self._dirty:
            self._dirty.discard(lease.instance_id)
            self._mark_ready(lease.instance_id, lease.dialect)

    def _offer_turn_again(self, lease: _OrchestrationLease) -> None:
        """Nothing of the turn was recorded: it is offered again (unless the lease is gone already)."""
        if self._orch_leases.get(lease.instance_id) is lease:
            self._release_orchestration(lease)

    async def refuse_turn(self, instance_id: str, token: str, err: WorkflowError) -> None:
        """A worker's answer that cannot be applied at all (e.g. an action of a feature we lack):
        the instance fails with the reason, instead of the turn coming back after every lease."""
        lease = self._orch_leases.get(instance_id)
        if lease is None or lease.token != token:
            return
        log.warning("workflow %r: %s; failing the instance", instance_id, err.message)
        fx = _Effects()
        try:
            await self._commit(
                lambda t: self._fenced(t, lease, lambda: self._fail_turn(t, lease, err, fx)), fx
            )
        finally:
            if self._orch_leases.get(instance_id) is lease:
                self._orch_leases.pop(instance_id)
                self._forget_lease(lease.token, lease.expiry)

    @staticmethod
    def _fenced(t: StoreTx, lease: _OrchestrationLease, record: Callable[[], None]) -> None:
        """Records a turn only while the store still holds the lease for it, and gives the lease
        back in the same transaction (an engine whose lease expired and was taken records nothing)."""
        if not t.holds_instance(lease.instance_id, lease.token):
            log.info(
                "ignored a turn of %r: another engine took it after its lease expired", lease.instance_id
            )
            return
        record()
        t.release_instance(lease.instance_id, lease.token)

    def _fail_turn(self, t: StoreTx, lease: _OrchestrationLease, err: WorkflowError, fx: _Effects) -> None:
        inst = t.get_instance(lease.instance_id)
        if inst is None or inst.status.is_terminal or inst.execution_id != lease.execution_id:
            return
        t.delete_inbox(lease.inbox_ids)
        failure = wire.failure_details(FAILURE_TYPES.get(err.code, "WorkflowTurnRefused"), err.message)
        self._finish(t, inst, RuntimeStatus.FAILED, None, failure, now_us(), fx)

    def _apply_turn(
        self, t: StoreTx, lease: _OrchestrationLease, resp: pb.WorkflowResponse, fx: _Effects
    ) -> None:
        inst = t.get_instance(lease.instance_id)
        if inst is None or inst.status.is_terminal or inst.execution_id != lease.execution_id:
            return
        limit = self.settings.max_payload_bytes
        now = now_us()
        started = pb.HistoryEvent.FromString(lease.new_events[0])
        if resp.HasField("version"):
            started.workflowStarted.version.CopyFrom(resp.version)
        turn = [started.SerializeToString(), *lease.new_events[1:]]
        t.delete_inbox(lease.inbox_ids)
        if inst.status == RuntimeStatus.PENDING:
            inst.status = RuntimeStatus.RUNNING
            fx.changed.add(inst.instance_id)
            self._emit(t, LifecycleEvent.STARTED, inst, now, fx)
        if resp.HasField("customStatus"):
            check_payload_size("custom status", resp.customStatus.value, limit)
            inst.custom_status = resp.customStatus.value
        history = self._history.get(inst.instance_id)
        if history is None:
            history = t.history(inst.instance_id)
        for action in resp.actions:
            kind = action.WhichOneof("workflowActionType")
            if kind == "scheduleTask":
                turn.append(self._schedule_activity(t, inst, action, now, fx))
            elif kind == "createTimer":
                timer = action.createTimer
                created = pb.TimerCreatedEvent(fireAt=timer.fireAt)
                if timer.HasField("name"):
                    created.name = timer.name
                origin = timer.WhichOneof("origin")
                if origin:
                    getattr(created, origin).CopyFrom(getattr(timer, origin))
                turn.append(history_event(now, action.id, timerCreated=created).SerializeToString())
                fire_at = wire.micros(timer.fireAt)
                fired = history_event(
                    now, timerFired=pb.TimerFiredEvent(fireAt=timer.fireAt, timerId=action.id)
                )
                t.add_inbox(inst.instance_id, fired.SerializeToString(), fire_at)
                if fire_at <= now:
                    fx.ready[inst.instance_id] = inst.dialect
                else:
                    fx.timers.append((fire_at, inst.instance_id, inst.dialect))
            elif kind == "createChildWorkflow":
                turn.append(self._create_child(t, inst, action, now, fx))
            elif kind == "sendEvent":
                send = action.sendEvent
                sent = pb.EventSentEvent(instanceId=send.instance.instanceId, name=send.name)
                if send.HasField("data"):
                    sent.input.CopyFrom(send.data)
                turn.append(history_event(now, action.id, eventSent=sent).SerializeToString())
                self._deliver_event(
                    t,
                    send.instance.instanceId,
                    send.name,
                    send.data.value if send.HasField("data") else None,
                    now,
                    fx,
                )
            elif kind == "terminateWorkflow":
                term = action.terminateWorkflow
                target = t.get_instance(term.instanceId)
                if target is not None:
                    reason = term.reason.value if term.HasField("reason") else None
                    self._terminate(t, target, reason, term.recurse, now, fx)
            elif kind == "createDetachedWorkflow":
                detached = action.createDetachedWorkflow
                if t.get_instance(detached.instanceId) is None:
                    self._create_instance(
                        t,
                        detached.instanceId,
                        detached.name,
                        inst.dialect,
                        detached.input.value if detached.HasField("input") else None,
                        detached.version.value if detached.HasField("version") else None,
                        now,
                        fx,
                        tags=dict(detached.tags),
                    )
            elif kind == "workflowVersionNotAvailable":
                inst.status = RuntimeStatus.STALLED
                fx.changed.add(inst.instance_id)
                stalled = pb.ExecutionStalledEvent(
                    reason=pb.VERSION_NOT_AVAILABLE, description="no worker has this workflow version"
                )
                turn.append(history_event(now, action.id, executionStalled=stalled).SerializeToString())
            elif kind == "completeWorkflow":
                done = action.completeWorkflow
                result = done.result.value if done.HasField("result") else None
                check_payload_size("workflow output", result, limit)
                if done.workflowStatus == pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW:
                    self._continue_as_new(t, inst, done, now, fx)
                    return
                wire.explain_unregistered(done, inst.name, (w.dialect for w in self.workers.values()))
                completed = pb.ExecutionCompletedEvent(workflowStatus=done.workflowStatus)
                if done.HasField("result"):
                    completed.result.CopyFrom(done.result)
                if done.HasField("failureDetails"):
                    completed.failureDetails.CopyFrom(done.failureDetails)
                turn.append(history_event(now, action.id, executionCompleted=completed).SerializeToString())
                t.append_history(inst.instance_id, len(history), turn)
                fx.history[inst.instance_id] = history + turn
                self._finish(
                    t,
                    inst,
                    RuntimeStatus(done.workflowStatus),
                    result,
                    done.failureDetails if done.HasField("failureDetails") else None,
                    now,
                    fx,
                )
                return
            else:
                raise WorkflowError(
                    ErrorCode.UNIMPLEMENTED, f"the workflow asked for an unsupported action {kind!r}"
                )
        t.append_history(inst.instance_id, len(history), turn)
        fx.history[inst.instance_id] = history + turn
        inst.updated_at = now
        t.put_instance(inst)

    def _schedule_activity(
        self, t: StoreTx, inst: Instance, action: pb.WorkflowAction, now: int, fx: _Effects
    ) -> bytes:
        a = action.scheduleTask
        check_payload_size("activity input", a.input.value, self.settings.max_payload_bytes)
        scheduled = pb.TaskScheduledEvent(name=a.name, taskExecutionId=a.taskExecutionId)
        if a.HasField("version"):
            scheduled.version.CopyFrom(a.version)
        if a.HasField("input"):
            scheduled.input.CopyFrom(a.input)
        if inst.rerun and inst.rerun.get("task_id") == action.id:
            # A rerun from this activity with a new input: the new input replaces the recorded one.
            if inst.rerun.get("input") is not None:
                scheduled.input.value = inst.rerun["input"]
            inst.rerun = None
        request = pb.ActivityRequest(
            name=a.name,
            workflowInstance=pb.WorkflowInstance(
                instanceId=inst.instance_id, executionId=wire.string_value(inst.execution_id)
            ),
            taskId=action.id,
            taskExecutionId=a.taskExecutionId,
        )
        if scheduled.HasField("version"):
            request.version.CopyFrom(scheduled.version)
        if scheduled.HasField("input"):
            request.input.CopyFrom(scheduled.input)
        activity_id = t.add_activity(
            inst.instance_id, inst.execution_id, inst.dialect, action.id, request.SerializeToString()
        )
        fx.activities.append((activity_id, inst.dialect))
        return history_event(now, action.id, taskScheduled=scheduled).SerializeToString()

    def _create_child(
        self, t: StoreTx, inst: Instance, action: pb.WorkflowAction, now: int, fx: _Effects
    ) -> bytes:
        a = action.createChildWorkflow
        child_id = a.instanceId or f"{inst.instance_id}:{action.id:04x}"
        if inst.rerun and inst.rerun.get("task_id") == action.id:
            # A rerun from this child workflow, under the child instance ID the caller chose.
            child_id = inst.rerun.get("child_id") or child_id
            inst.rerun = None
        created = pb.ChildWorkflowInstanceCreatedEvent(instanceId=child_id, name=a.name)
        if a.HasField("version"):
            created.version.CopyFrom(a.version)
        if a.HasField("input"):
            created.input.CopyFrom(a.input)
        existing = t.get_instance(child_id)
        if existing is not None and not existing.status.is_terminal:
            failed = pb.ChildWorkflowInstanceFailedEvent(
                taskScheduledId=action.id,
                failureDetails=wire.failure_details(
                    "InstanceAlreadyExists",
                    f"child workflow instance {child_id!r} already exists and is {existing.status.name}",
                ),
            )
            t.add_inbox(
                inst.instance_id,
                history_event(now, childWorkflowInstanceFailed=failed).SerializeToString(),
                now,
            )
            fx.ready[inst.instance_id] = inst.dialect
        else:
            if existing is not None:
                # A retried child reuses its instance ID: the failed attempt makes way.
                self._delete(t, existing, fx)
            parent = pb.ParentInstanceInfo(
                taskScheduledId=action.id,
                name=wire.string_value(inst.name),
                workflowInstance=pb.WorkflowInstance(
                    instanceId=inst.instance_id, executionId=wire.string_value(inst.execution_id)
                ),
            )
            self._create_instance(
                t,
                child_id,
                a.name,
                inst.dialect,
                a.input.value if a.HasField("input") else None,
                a.version.value if a.HasField("version") else None,
                now,
                fx,
                parent=parent,
                parent_execution_id=inst.execution_id,
            )
        return history_event(now, action.id, childWorkflowInstanceCreated=created).SerializeToString()

    def _continue_as_new(
        self, t: StoreTx, inst: Instance, a: pb.CompleteWorkflowAction, now: int, fx: _Effects
    ) -> None:
        # Events raised during the ended execution's last turn carry over; its timers and results don't.
        kept = [
            r
            for r in t.inbox(inst.instance_id, 2**62)
            if wire.event_type(r.event) not in _EXECUTION_BOUND_EVENTS
        ]
        t.clear_inbox(inst.instance_id)
        t.clear_history(inst.instance_id)
        fx.cancelled_activities.extend(t.clear_activities(inst.instance_id))
        inst.execution_id = wire.new_execution_id()
        inst.input = a.result.value if a.HasField("result") else None
        if a.HasField("newVersion"):
            inst.version = a.newVersion.value
        inst.output = None
        inst.status = RuntimeStatus.RUNNING
        inst.updated_at = now
        started = self._execution_started(inst, now)
        t.add_inbox(inst.instance_id, started, now)
        for event in a.carryoverEvents:
            t.add_inbox(inst.instance_id, event.SerializeToString(), now)
        for row in kept:
            t.add_inbox(inst.instance_id, row.event, row.visible_at)
        t.put_instance(inst)
        fx.history[inst.instance_id] = []
        fx.ready[inst.instance_id] = inst.dialect
        fx.changed.add(inst.instance_id)

    def _execution_started(
        self, inst: Instance, now: int, parent: pb.ParentInstanceInfo | None = None
    ) -> bytes:
        started = pb.ExecutionStartedEvent(
            name=inst.name,
            workflowInstance=pb.WorkflowInstance(
                instanceId=inst.instance_id, executionId=wire.string_value(inst.execution_id)
            ),
            tags=inst.tags,
        )
        if inst.input is not None:
            started.input.value = inst.input
        if inst.version is not None:
            started.version.value = inst.version
        if inst.scheduled_start_at is not None:
            started.scheduledStartTimestamp.CopyFrom(wire.timestamp(inst.scheduled_start_at))
        if parent is None and inst.parent_instance_id:
            parent = pb.ParentInstanceInfo(
                taskScheduledId=inst.parent_task_id or 0,
                workflowInstance=pb.WorkflowInstance(
                    instanceId=inst.parent_instance_id,
                    executionId=wire.string_value(inst.parent_execution_id),
                ),
            )
        if parent is not None:
            started.parentInstance.CopyFrom(parent)
        return history_event(now, executionStarted=started).SerializeToString()

    def _create_instance(
        self,
        t: StoreTx,
        instance_id: str,
        name: str,
        dialect: str,
        input: str | None,
        version: str | None,
        now: int,
        fx: _Effects,
        *,
        parent: pb.ParentInstanceInfo | None = None,
        parent_execution_id: str | None = None,
        scheduled_start_at: int | None = None,
        tags: dict[str, str] | None = None,
    ) -> Instance:
        inst = Instance(
            instance_id=instance_id,
            name=name,
            dialect=dialect,
            status=RuntimeStatus.PENDING,
            execution_id=wire.new_execution_id(),
            created_at=now,
            updated_at=now,
            version=version,
            input=input,
            parent_instance_id=parent.workflowInstance.instanceId if parent else None,
            parent_task_id=parent.taskScheduledId if parent else None,
            parent_execution_id=parent_execution_id,
            tags=tags or {},
            scheduled_start_at=scheduled_start_at,
        )
        t.create_instance(inst)
        visible_at = scheduled_start_at if scheduled_start_at and scheduled_start_at > now else now
        t.add_inbox(instance_id, self._execution_started(inst, now, parent), visible_at)
        fx.history[instance_id] = []
        fx.changed.add(instance_id)
        fx.dropped.discard(instance_id)
        if visible_at > now:
            fx.timers.append((visible_at, instance_id, dialect))
        else:
            fx.ready[instance_id] = dialect
        return inst

    def _deliver_event(
        self, t: StoreTx, instance_id: str, name: str, data: str | None, now: int, fx: _Effects
    ) -> None:
        target = t.get_instance(instance_id)
        if target is None or target.status.is_terminal:
            log.info("dropped event %r sent to %r: no running instance has that ID", name, instance_id)
            return
        raised = pb.EventRaisedEvent(name=name)
        if data is not None:
            raised.input.value = data
        t.add_inbox(instance_id, history_event(now, eventRaised=raised).SerializeToString(), now)
        fx.ready[instance_id] = target.dialect

    def _finish(
        self,
        t: StoreTx,
        inst: Instance,
        status: RuntimeStatus,
        output: str | None,
        failure: pb.TaskFailureDetails | None,
        now: int,
        fx: _Effects,
    ) -> None:
        """Records a terminal status, drops pending work and tells the parent."""
        inst.status = status
        inst.output = output
        inst.failure = failure.SerializeToString() if failure is not None else None
        inst.completed_at = now
        inst.updated_at = now
        t.put_instance(inst)
        t.clear_inbox(inst.instance_id)
        fx.cancelled_activities.extend(t.clear_activities(inst.instance_id))
        fx.changed.add(inst.instance_id)
        fx.finished.add(inst.instance_id)
        self._emit(t, LifecycleEvent.of_terminal(status), inst, now, fx)
        log.info("workflow %r (%s) %s", inst.instance_id, inst.name, status.name)
        if not inst.parent_instance_id:
            return
        parent = t.get_instance(inst.parent_instance_id)
        if (
            parent is None
            or parent.status.is_terminal
            or (inst.parent_execution_id and parent.execution_id != inst.parent_execution_id)
        ):
            return
        task_id = inst.parent_task_id or 0
        if status == RuntimeStatus.COMPLETED:
            done = pb.ChildWorkflowInstanceCompletedEvent(taskScheduledId=task_id)
            if output is not None:
                done.result.value = output
            event = history_event(now, childWorkflowInstanceCompleted=done)
        else:
            details = (
                failure
                if failure is not None
                else wire.failure_details(
                    f"Workflow{status.name.capitalize()}",
                    f"child workflow {inst.instance_id!r} was {status.name.lower()}",
                )
            )
            event = history_event(
                now,
                childWorkflowInstanceFailed=pb.ChildWorkflowInstanceFailedEvent(
                    taskScheduledId=task_id, failureDetails=details
                ),
            )
        t.add_inbox(parent.instance_id, event.SerializeToString(), now)
        fx.ready[parent.instance_id] = parent.dialect

    def _terminate(
        self, t: StoreTx, inst: Instance, output: str | None, recursive: bool, now: int, fx: _Effects
    ) -> None:
        if inst.status.is_terminal:
            return
        terminated = pb.ExecutionTerminatedEvent(recurse=recursive)
        completed = pb.ExecutionCompletedEvent(workflowStatus=pb.ORCHESTRATION_STATUS_TERMINATED)
        if output is not None:
            terminated.input.value = output
            completed.result.value = output
        history = t.history(inst.instance_id)
        events = [
            history_event(now, executionTerminated=terminated).SerializeToString(),
            history_event(now, executionCompleted=completed).SerializeToString(),
        ]
        t.append_history(inst.instance_id, len(history), events)
        # A turn in flight is void: its completion will find no lease.
        fx.dropped.add(inst.instance_id)
        self._finish(t, inst, RuntimeStatus.TERMINATED, output, None, now, fx)
        if recursive:
            for child_id in t.child_ids(inst.instance_id):
                child = t.get_instance(child_id)
                if child is not None:
                    self._terminate(t, child, output, True, now, fx)

    def _emit(self, t: StoreTx, kind: LifecycleEvent, inst: Instance, now: int, fx: _Effects) -> None:
        """Records a lifecycle event in the outbox, in the transaction of the change it reports."""
        if self.settings.lifecycle_events:
            t.add_outbox(json.dumps(lifecycle_json(kind, inst, now)), now)
            fx.outbox = True

    def _delete(self, t: StoreTx, inst: Instance, fx: _Effects) -> None:
        fx.cancelled_activities.extend(t.clear_activities(inst.instance_id))
        t.delete_instance(inst.instance_id)
        fx.dropped.add(inst.instance_id)
        fx.changed.add(inst.instance_id)

    # ---------------------------------------------------------------- management (the workflows interface)

    async def start_workflow(self, req: StartRequest) -> str:
        validate_new_instance_id(req.instance_id)
        require_workflow_name(req.name)
        check_payload_size("workflow input", req.input, self.settings.max_payload_bytes)
        fx = _Effects()

        def tx(t: StoreTx) -> None:
            existing = t.get_instance(req.instance_id)
            check_start_allowed(req.instance_id, existing, req.reuse.replaceable)
            if existing is not None:
                self._delete(t, existing, fx)
            self._create_instance(
                t,
                req.instance_id,
                req.name,
                req.dialect,
                req.input,
                req.version,
                now_us(),
                fx,
                scheduled_start_at=req.scheduled_start_at,
                tags=req.tags,
            )

        await self._commit(tx, fx)
        log.info("started workflow %r (%s)", req.instance_id, req.name)
        return req.instance_id

    async def get_instance(self, instance_id: str) -> Instance | None:
        return await self.store.read(lambda t: t.get_instance(instance_id))

    async def require_instance(self, instance_id: str) -> Instance:
        require_instance_id(instance_id)
        inst = await self.get_instance(instance_id)
        if inst is None:
            raise not_found(instance_id)
        return inst

    async def _change(
        self, instance_id: str, change: Callable[[StoreTx, Instance, int, _Effects], None]
    ) -> None:
        """Runs a management change on an existing instance in one transaction."""
        require_instance_id(instance_id)
        fx = _Effects()

        def tx(t: StoreTx) -> None:
            inst = t.get_instance(instance_id)
            if inst is None:
                raise not_found(instance_id)
            change(t, inst, now_us(), fx)

        await self._commit(tx, fx)

    async def raise_event(self, instance_id: str, name: str, data: str | None) -> None:
        if not name:
            raise WorkflowError(ErrorCode.INVALID_ARGUMENT, "the event name is empty")
        check_payload_size("event payload", data, self.settings.max_payload_bytes)

        def change(t: StoreTx, inst: Instance, now: int, fx: _Effects) -> None:
            check_event_allowed(inst)
            self._deliver_event(t, inst.instance_id, name, data, now, fx)

        await self._change(instance_id, change)

    async def suspend(self, instance_id: str, reason: str | None = None) -> None:
        def change(t: StoreTx, inst: Instance, now: int, fx: _Effects) -> None:
            if not check_suspend_allowed(inst):
                return
            inst.status = RuntimeStatus.SUSPENDED
            inst.updated_at = now
            t.put_instance(inst)
            self._emit(t, LifecycleEvent.SUSPENDED, inst, now, fx)
            event = pb.ExecutionSuspendedEvent(input=wire.string_value(reason))
            t.add_inbox(
                inst.instance_id, history_event(now, executionSuspended=event).SerializeToString(), now
            )
            fx.ready[inst.instance_id] = inst.dialect
            fx.changed.add(inst.instance_id)

        await self._change(instance_id, change)
        log.info("suspended workflow %r", instance_id)

    async def resume(self, instance_id: str, reason: str | None = None) -> None:
        def change(t: StoreTx, inst: Instance, now: int, fx: _Effects) -> None:
            if not check_resume_allowed(inst):
                return
            inst.status = RuntimeStatus.RUNNING
            inst.updated_at = now
            t.put_instance(inst)
            self._emit(t, LifecycleEvent.RESUMED, inst, now, fx)
            event = pb.ExecutionResumedEvent(input=wire.string_value(reason))
            t.add_inbox(inst.instance_id, history_event(now, executionResumed=event).SerializeToString(), now)
            fx.ready[inst.instance_id] = inst.dialect
            fx.changed.add(inst.instance_id)

        await self._change(instance_id, change)
        log.info("resumed workflow %r", instance_id)

    async def terminate(self, instance_id: str, output: str | None = None, recursive: bool = True) -> None:
        check_payload_size("terminate output", output, self.settings.max_payload_bytes)

        def change(t: StoreTx, inst: Instance, now: int, fx: _Effects) -> None:
            self._terminate(t, inst, output, recursive, now, fx)

        await self._change(instance_id, change)

    async def purge(self, instance_id: str, recursive: bool = True, force: bool = False) -> int:
        """Deletes a terminal instance (and, recursively, its children); returns how many were deleted."""
        require_instance_id(instance_id)
        fx = _Effects()

        def purge_tree(t: StoreTx, inst: Instance) -> int:
            check_purge_allowed(inst, force)
            count = 1
            if recursive:
                for child_id in t.child_ids(inst.instance_id):
                    child = t.get_instance(child_id)
                    if child is not None:
                        count += purge_tree(t, child)
            self._delete(t, inst, fx)
            return count

        def tx(t: StoreTx) -> int:
            inst = t.get_instance(instance_id)
            if inst is None:
                raise not_found(instance_id)
            return purge_tree(t, inst)

        count = await self._commit(tx, fx)
        log.info("purged workflow %r (%d instances)", instance_id, count)
        return count

    async def purge_where(self, query: InstanceQuery, recursive: bool = True) -> int:
        """Purges every terminal instance that matches the query."""
        query.statuses = frozenset(s for s in (query.statuses or RuntimeStatus) if s.is_terminal)
        query.limit = 2**31
        total = 0
        for inst in await self.query(query):
            try:
                total += await self.purge(inst.instance_id, recursive)
            except WorkflowError as err:
                if err.code != ErrorCode.NOT_FOUND:  # a child purged with its parent
                    raise
        return total

    async def query(self, query: InstanceQuery) -> list[Instance]:
        return await self.store.read(lambda t: t.query(query))

    async def history(self, instance_id: str) -> list[bytes]:
        require_instance_id(instance_id)

        def tx(t: StoreTx) -> list[bytes]:
            if t.get_instance(instance_id) is None:
                raise not_found(instance_id)
            return t.history(instance_id)

        return await self.store.read(tx)

    async def wait_for(self, instance_id: str, done: Callable[[Instance], bool]) -> Instance | None:
        """Waits until `done(instance)` holds; None if the instance does not exist (or is purged)."""
        while True:
            inst = await self.get_instance(instance_id)
            if inst is None or done(inst):
                return inst
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(instance_id, []).append(fut)
            try:
                if self._shared:
                    # Other engines' changes arrive as announcements; the poll covers one missed.
                    await asyncio.wait_for(fut, timeout=self.settings.poll_seconds)
                else:
                    await fut
            except asyncio.TimeoutError:
                pass
            finally:
                waiters = self._waiters.get(instance_id)
                if waiters and fut in waiters:
                    waiters.remove(fut)
                    if not waiters:
                        del self._waiters[instance_id]

    async def restart(self, instance_id: str, new_instance_id: bool) -> str:
        """Starts a finished instance again with its name and input (durabletask's RestartInstance)."""
        inst = await self.require_instance(instance_id)
        if not inst.status.is_terminal:
            raise WorkflowError(
                ErrorCode.FAILED_PRECONDITION,
                f"workflow instance {instance_id!r} is {inst.status.name}; only finished instances restart",
            )
        return await self.start_workflow(
            StartRequest(
                name=inst.name,
                instance_id=uuid.uuid4().hex if new_instance_id else instance_id,
                input=inst.input,
                version=inst.version,
                tags=inst.tags,
                reuse=ReusePolicy(TERMINAL_STATUSES),
                dialect=inst.dialect,
            )
        )

    async def rerun_from_event(
        self,
        source_id: str,
        event_id: int,
        new_id: str | None,
        new_input: str | None,
        overwrite_input: bool,
        new_child_id: str | None = None,
    ) -> str:
        """Runs a finished instance again from an activity, timer or child workflow, under a new ID.

        The new instance replays the source's history up to that event; the event's work and
        everything after it run again (an activity with `new_input` as its input if asked, a child
        under `new_child_id` if given). Results of earlier work that arrived later are carried over.
        The error codes are those Dapr's SDK documents for this call.
        """
        if new_child_id is not None:
            validate_new_instance_id(new_child_id)
        target_id = new_id or uuid.uuid4().hex
        validate_new_instance_id(target_id)
        check_payload_size("activity input", new_input, self.settings.max_payload_bytes)
        fx = _Effects()

        def tx(t: StoreTx) -> None:
            src = t.get_instance(source_id)
            if src is None:
                raise not_found(source_id)
            if not src.status.is_terminal:
                raise WorkflowError(
                    ErrorCode.INVALID_ARGUMENT,
                    f"workflow instance {source_id!r} is {src.status.name}; only finished instances rerun",
                )
            if src.parent_instance_id:
                raise WorkflowError(
                    ErrorCode.INVALID_ARGUMENT,
                    f"workflow instance {source_id!r} is a child workflow; rerun its parent instead",
                )
            check_start_allowed(target_id, t.get_instance(target_id), frozenset())
            events = [pb.HistoryEvent.FromString(e) for e in t.history(source_id)]
            cut = next(
                (
                    n
                    for n, e in enumerate(events)
                    if e.WhichOneof("eventType") in _RERUNNABLE_EVENTS and e.eventId == event_id
                ),
                None,
            )
            if cut is None:
                raise WorkflowError(
                    ErrorCode.NOT_FOUND,
                    f"event {event_id} of workflow instance {source_id!r} is not a scheduled activity, "
                    "a created timer or a created child workflow",
                )
            kind = events[cut].WhichOneof("eventType")
            if overwrite_input and kind != "taskScheduled":
                raise WorkflowError(
                    ErrorCode.INVALID_ARGUMENT,
                    f"event {event_id} is a {kind} event, which takes no new input",
                )
            if new_child_id is not None and kind != "childWorkflowInstanceCreated":
                raise WorkflowError(
                    ErrorCode.INVALID_ARGUMENT,
                    f"event {event_id} created no child workflow, so it takes no new child instance ID",
                )
            now = now_us()
            inst = Instance(
                instance_id=target_id,
                name=src.name,
                dialect=src.dialect,
                status=RuntimeStatus.PENDING,
                execution_id=wire.new_execution_id(),
                created_at=now,
                updated_at=now,
                version=src.version,
                input=src.input,
                tags=src.tags,
                rerun={
                    "task_id": event_id,
                    "input": new_input if overwrite_input else None,
                    "child_id": new_child_id,
                },
            )
            # The new instance's history ends before the turn that scheduled the activity; that
            # turn's events up to the activity become its first new events, so it replays from there.
            turn_start = max(
                (n for n, e in enumerate(events[:cut]) if e.HasField("workflowStarted")), default=0
            )
            prefix = events[:turn_start]
            replayed = events[turn_start + 1 : cut]
            if not replayed:
                raise WorkflowError(
                    ErrorCode.FAILED_PRECONDITION,
                    f"workflow instance {source_id!r} cannot be rerun from event {event_id}",
                )
            scheduled = {e.eventId for e in events[:cut] if e.WhichOneof("eventType") in _RERUNNABLE_EVENTS}
            carried: list[bytes] = []
            for e in events[cut:]:
                kind = e.WhichOneof("eventType")
                ref = {
                    "taskCompleted": e.taskCompleted.taskScheduledId,
                    "taskFailed": e.taskFailed.taskScheduledId,
                    "childWorkflowInstanceCompleted": e.childWorkflowInstanceCompleted.taskScheduledId,
                    "childWorkflowInstanceFailed": e.childWorkflowInstanceFailed.taskScheduledId,
                    "timerFired": e.timerFired.timerId,
                }.get(kind or "")
                if kind == "eventRaised" or (ref is not None and ref in scheduled and ref != event_id):
                    carried.append(e.SerializeToString())

            def renamed(e: pb.HistoryEvent) -> bytes:
                if e.HasField("executionStarted"):
                    e.executionStarted.workflowInstance.instanceId = target_id
                    e.executionStarted.workflowInstance.executionId.value = inst.execution_id
                return e.SerializeToString()

            stored = [renamed(e) for e in prefix]
            t.put_instance(inst)
            t.append_history(target_id, 0, stored)
            for event in [renamed(e) for e in replayed] + carried:
                t.add_inbox(target_id, event, now)
            fx.history[target_id] = stored
            fx.ready[target_id] = inst.dialect
            fx.changed.add(target_id)

        await self._commit(tx, fx)
        log.info("rerunning workflow %r from event %d as %r", source_id, event_id, target_id)
        return target_id

    # ---------------------------------------------------------------- lifecycle events (the outbox)

    async def lifecycle_events(self, after_id: int, limit: int = 100) -> list[tuple[int, str]]:
        """Recorded lifecycle events after `after_id`, oldest first, as (event ID, JSON)."""
        return await self.store.read(lambda t: t.outbox(after_id, limit))

    async def ack_lifecycle_event(self, event_id: int) -> None:
        """The event reached the app: it is deleted."""
        await self.store.run(lambda t: t.delete_outbox(event_id))

    async def expire_lifecycle_events(self, older_than_seconds: float) -> int:
        cutoff = now_us() - int(older_than_seconds * 1_000_000)
        count = await self.store.run(lambda t: t.expire_outbox(cutoff))
        if count:
            log.warning(
                "dropped %d lifecycle events older than %.0f hours that no input binding took",
                count,
                older_than_seconds / 3600,
            )
        return count
