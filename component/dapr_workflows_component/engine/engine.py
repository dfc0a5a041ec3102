"""The engine: the one object adapters (gRPC, binding, HTTP, triggers, CLI) call.

State lives in the store; every change is one store transaction. What is in memory can be rebuilt
from the store at start-up: the queues of ready work and the leases given to connected workers
(`dispatch`), and the timer heap (`timers`). The parts, and who calls whom:

- `management`: the calls of the workflow component interface (start, terminate, purge, ...).
- `completions`: results from workers; `dispatch`: work items for workers.
- `turns`: the state machine both write with, inside their transaction; `rerun`: a rerun's plan,
  `rewind`: a rewind's.
- `leasing`: what a lease means in the store (one engine alone, or several sharing it).
- `outbox`: lifecycle events, recorded by `turns`, delivered to the input binding.

Every transaction goes through `commit`, which applies its effects (`effects.Effects`) to the
in-memory side once it committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

from ..protos import dapr_dialect_pb2 as pb
from ..store import Store, StoreTx
from ..telemetry.observer import EngineObserver, observed
from ..workflows import Instance, InstanceQuery, RuntimeStatus, StartRequest, WorkflowError
from .completions import Completions
from .dispatch import DIALECTS, Dispatch, Worker
from .effects import Effects
from .eligibility import WorkFilters
from .entity_service import EntityService
from .leasing import lease_policy
from .management import InstanceWatch, Management
from .outbox import LifecycleOutbox
from .routing import metadata_app_id
from .settings import EngineSettings
from .signals import Signal
from .timers import TimerEntry, Timers
from .turns import Turns
from .wire import now_us

log = logging.getLogger("dapr_workflows.engine")

T = TypeVar("T")

__all__ = ["DIALECTS", "Engine", "EngineSettings", "WorkFilters", "metadata_app_id"]


class Engine:
    def __init__(
        self, store: Store, settings: EngineSettings | None = None, observer: EngineObserver | None = None
    ) -> None:
        self.store = store
        self.settings = s = settings or EngineSettings()
        # Told what happens (telemetry); does nothing by default.
        self.observer = observer = observer or EngineObserver()
        self.leasing = lease_policy(store, s.poll_seconds, s.sweep_batch, s.store_lease_seconds)
        # Set after a commit that recorded lifecycle events; the input binding waits on it.
        self.outbox_signal = asyncio.Event()
        # Set when the process shuts down: workers' streams end instead of waiting for work.
        self.closing = Signal()
        self.dispatch = Dispatch(store, s, self.leasing, self.closing, observer)
        self.timers = Timers(self.dispatch.mark_ready)
        self.watch = InstanceWatch()
        self.turns = Turns(s.max_payload_bytes, LifecycleOutbox(s.lifecycle_events), observer)
        self.completions = Completions(self.dispatch, self.turns, self.commit, s.max_payload_bytes)
        self.management = Management(
            store, self.turns, self.commit, self.watch, s.max_payload_bytes, self.leasing.change_poll_seconds
        )
        self.entities = EntityService(store, self.dispatch, self.turns, self.commit, s.max_payload_bytes)

    @property
    def workers(self) -> dict[int, Worker]:
        """The connected workers' streams, by worker ID."""
        return self.dispatch.workers

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self.dispatch.start()
        now = now_us()

        def recover(
            tx: StoreTx,
        ) -> tuple[list[tuple[str, str]], list[tuple[int, str]], list[TimerEntry]]:
            return tx.ready_instances(now), tx.all_activities(), tx.future_timers(now)

        ready, activities, timers = await self.store.read(recover)
        for instance_id, dialect in ready:
            self.dispatch.mark_ready(instance_id, dialect)
        for activity_id, dialect in activities:
            self.dispatch.queue_activity(activity_id, dialect)
        self.timers.add(timers)
        self.timers.start()
        self.leasing.start(self.dispatch, self.watch.wake)
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
        self.timers.stop()
        await self.leasing.stop(self.dispatch.held_tokens)
        self.watch.cancel_all()

    async def commit(self, fn: Callable[[StoreTx], T], fx: Effects) -> T:
        """Runs `fn` in one transaction that also announces its effects to the engines sharing the
        store, then applies the effects here."""
        leasing = self.leasing

        def tx(t: StoreTx) -> T:
            leasing.begin_attempt(fx)
            result = fn(t)
            leasing.announce(t, fx)
            return result

        result = await self.store.run(tx)
        self.dispatch.apply(fx)
        self.timers.add(fx.timers)
        if fx.outbox:
            self.outbox_signal.set()
        for instance_id in fx.changed:
            self.watch.wake(instance_id)
        for note in fx.notes:
            note()
        return result

    # ---------------------------------------------------------------- workers

    def connect_worker(self, dialect: str, capacity: int = 0, peer: str = "") -> int:
        return self.dispatch.connect_worker(dialect, capacity, peer)

    @property
    def ignored_completions(self) -> dict[str, int]:
        """Results from workers that were ignored, by reason: "stale" (no current lease has the token:
        late, duplicate or guessed) and "forged" (the token is another work item's)."""
        return dict(self.completions.ignored)

    def heard_from(self, peer: str) -> None:
        """A client connection made a call: a worker on it is alive (dispatch's stall watch)."""
        self.dispatch.stalls.heard(peer)

    def identify_worker(self, worker_id: int, app_id: str) -> None:
        """The worker's stream serves `app_id` (multi-app routing); "" leaves it unidentified."""
        self.dispatch.identify_worker(worker_id, app_id)

    def filter_work(self, worker_id: int, filters: WorkFilters | None) -> None:
        """The worker takes only the work its filters name (None: all of its dialect's)."""
        self.dispatch.filter_work(worker_id, filters)

    def keep_histories(self, worker_id: int) -> None:
        """The worker advertised stateful history: its turns get only the new history events."""
        if worker_id in self.dispatch.workers:
            self.dispatch.kept.keep(worker_id)

    def disconnect_worker(self, worker_id: int) -> None:
        self.dispatch.disconnect_worker(worker_id)

    async def next_work_item(self, dialect: str, worker_id: int) -> bytes | None:
        return await self.dispatch.next_work_item(dialect, worker_id)

    def abandon(self, token: str) -> None:
        self.dispatch.abandon(token)

    async def complete_activity(self, response: pb.ActivityResponse) -> None:
        await self.completions.complete_activity(response)

    async def complete_orchestration(
        self, response: pb.WorkflowResponse, entity_messages: list[tuple[int, bytes]] | None = None
    ) -> None:
        await self.completions.complete_orchestration(response, entity_messages)

    async def refuse_turn(self, instance_id: str, token: str, err: WorkflowError) -> None:
        await self.completions.refuse_turn(instance_id, token, err)

    # ---------------------------------------------------------------- management

    @observed("create_workflow")
    async def start_workflow(self, req: StartRequest) -> str:
        return await self.management.start_workflow(req)

    @observed("get_workflow")
    async def get_instance(self, instance_id: str) -> Instance | None:
        return await self.management.get_instance(instance_id)

    @observed("get_workflow")
    async def require_instance(self, instance_id: str) -> Instance:
        return await self.management.require_instance(instance_id)

    @observed("add_event")
    async def raise_event(self, instance_id: str, name: str, data: str | None) -> None:
        await self.management.raise_event(instance_id, name, data)

    @observed("suspend_workflow")
    async def suspend(self, instance_id: str, reason: str | None = None) -> None:
        await self.management.suspend(instance_id, reason)

    @observed("resume_workflow")
    async def resume(self, instance_id: str, reason: str | None = None) -> None:
        await self.management.resume(instance_id, reason)

    @observed("terminate_workflow")
    async def terminate(self, instance_id: str, output: str | None = None, recursive: bool = True) -> None:
        await self.management.terminate(instance_id, output, recursive)

    @observed("purge_workflow")
    async def purge(self, instance_id: str, recursive: bool = True, force: bool = False) -> int:
        return await self.management.purge(instance_id, recursive, force)

    async def purge_where(self, query: InstanceQuery, recursive: bool = True) -> int:
        return await self.management.purge_where(query, recursive)

    async def purge_batch(self, query: InstanceQuery) -> list[str]:
        return await self.management.purge_batch(query)

    @observed("list_workflows")
    async def query(self, query: InstanceQuery) -> list[Instance]:
        return await self.management.query(query)

    @observed("get_workflow_history")
    async def history(self, instance_id: str) -> list[bytes]:
        return await self.management.history(instance_id)

    async def wait_for(self, instance_id: str, done: Callable[[Instance], bool]) -> Instance | None:
        return await self.management.wait_for(instance_id, done)

    async def wait_until_started(
        self, instance_id: str, timeout: float, time_remaining: float | None = None
    ) -> None:
        """Like Dapr's built-in engine, a start returns once a worker has begun the instance.

        The wait ends after `timeout` seconds, in time to answer before the caller's deadline
        (`time_remaining` seconds from now, if it has one), or when the engine closes: the instance
        is recorded either way.
        """
        if time_remaining is not None:
            timeout = min(timeout, max(time_remaining - 0.25, 0.0))
        if timeout <= 0:
            return
        started = asyncio.ensure_future(
            self.wait_for(instance_id, lambda i: i.status != RuntimeStatus.PENDING)
        )
        closing = asyncio.ensure_future(self.closing.wait())
        try:
            await asyncio.wait([started, closing], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            started.cancel()
        if not started.done():
            log.info("workflow %r not picked up by a worker within %.1fs", instance_id, timeout)
        elif not started.cancelled():
            started.result()

    async def restart(self, instance_id: str, new_instance_id: bool) -> str:
        return await self.management.restart(instance_id, new_instance_id)

    async def rewind(self, instance_id: str, reason: str | None = None) -> None:
        await self.management.rewind(instance_id, reason)

    @observed("rerun_workflow")
    async def rerun_from_event(
        self,
        source_id: str,
        event_id: int,
        new_id: str | None,
        new_input: str | None,
        overwrite_input: bool,
        new_child_id: str | None = None,
    ) -> str:
        return await self.management.rerun_from_event(
            source_id, event_id, new_id, new_input, overwrite_input, new_child_id
        )

    # ---------------------------------------------------------------- lifecycle events (the outbox)

    async def lifecycle_events(self, after_id: int, limit: int = 100) -> list[tuple[int, str]]:
        """Recorded lifecycle events after `after_id`, oldest first, as (event ID, JSON)."""
        return await self.store.read(lambda t: t.outbox(after_id, limit))

    async def check_store(self) -> None:
        """One short read transaction; raises when the store does not answer (readiness)."""
        await self.store.read(lambda t: None)

    async def lifecycle_backlog(self) -> int:
        """How many recorded lifecycle events no input binding has taken yet."""
        return await self.store.read(lambda t: t.outbox_count())

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
