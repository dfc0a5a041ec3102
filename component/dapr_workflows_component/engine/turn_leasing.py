"""An orchestration turn leased to a worker: its instance claimed, its turn read, its work item.

Dispatch (dispatch.py) decides which key a worker takes; this reads what the key's turn is (the
instance, its deliverable inbox rows, its history, what its parent gave it) and holds the lease.
A turn whose label is not known yet is read before the claim when the worker may take only some
work on a shared store (labels.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..protos import dapr_dialect_pb2 as pb
from ..store import StoreTx
from ..workflows import Instance
from . import labels, propagation, routing, wire
from .eligibility import ORCHESTRATION, WorkLabel
from .turns import Turn, deliverable, turn_events
from .wire import now_us
from .work_items import InstanceWork
from .work_leases import TurnLease

if TYPE_CHECKING:
    from .dispatch import Dispatch


class TurnLeasing:
    def __init__(self, dispatch: Dispatch) -> None:
        self.dispatch = dispatch
        # What each child workflow was given by its parent (propagation.py), once read.
        self._received: dict[str, pb.PropagatedHistory | None] = {}

    def forget(self, instance_id: str) -> None:
        """The instance is done or gone."""
        self._received.pop(instance_id, None)

    async def lease(self, key: InstanceWork, worker_id: int) -> bytes | None:
        """The instance's next turn as a work item for the worker, or None when nothing may run now."""
        d = self.dispatch
        instance_id = key.instance_id
        now = now_us()
        worker = d.workers.get(worker_id)
        if worker is not None and d.items.label(key) is None and labels.read_first(d.leasing.shared, worker):
            label = await labels.read_turn_label(d.store, instance_id, now)  # before a claim
            if label is not None and not d.routed_here(key, worker_id, lambda: label):
                d.drop_arrival(instance_id)  # queued again, its turn will see what arrived
                d.put(key, worker.dialect)  # it waits for a worker that may take it
                return None
        cached = d.history.get(instance_id) if d.leasing.caches_history else None
        leasing = d.leasing

        received = self._received.get(instance_id, False)

        def take(tx: StoreTx, token: str) -> tuple[Instance | None, list[int], list[bytes], list[bytes]]:
            nonlocal received
            inst = tx.get_instance(instance_id)
            rows = deliverable(
                inst, [] if inst is None or inst.status.is_terminal else tx.inbox(instance_id, now)
            )
            if not rows:
                tx.release_instance(instance_id, token)
                return inst, [], [], []
            if inst is not None:
                d.limits.check_store(tx, key, inst.name)
            history = cached if cached is not None else tx.history(instance_id)
            if received is False and inst is not None:
                received = propagation.received_by(tx, inst)
            return inst, [r.id for r in rows], turn_events(rows, now), history

        # Only a concurrency gate kept in the store refuses a claimed turn (check_store).
        token, taken = await d.lease_instance(key, take, may_refuse=d.limits.enabled)
        inst, inbox_ids, new_events, history = taken or (None, [], [], [])
        if inst is None or not inbox_ids:
            if inst is None or inst.status.is_terminal:  # gone, done, or another engine's now
                d.items.forget(key)
            if d.drop_arrival(instance_id):  # an event came while the store was read
                if inst is not None:
                    d.mark_ready(instance_id, inst.dialect)
            return None
        if cached is None:
            d.history.remember(instance_id, history)
        d.limits.admit(key, inst.name)

        def learn() -> WorkLabel:
            app = routing.instance_app(history + new_events)
            return WorkLabel(ORCHESTRATION, inst.name, inst.version, app)

        if not d.routed_here(key, worker_id, learn):
            leasing.release_later(lambda t: t.release_instance(instance_id, token))
            d.drop_arrival(instance_id)
            d.put(key, inst.dialect)
            return None
        given = received if isinstance(received, pb.PropagatedHistory) else None
        cached_count = d.kept.base(worker_id, instance_id, len(history))
        self._received[instance_id] = given
        lease = TurnLease(
            Turn(instance_id, inst.execution_id, inbox_ids, new_events, inst.name, given),
            inst.dialect,
            token,
            worker_id,
        )
        lease.past_count = len(history)
        d.hold(lease, d.settings.orchestration_lease_seconds)
        d.observer.turn_started(instance_id, inst.name, token, history, new_events)
        return wire.encode_workflow_work_item(
            instance_id,
            inst.execution_id,
            history[cached_count:],
            new_events,
            token,
            given.SerializeToString() if given is not None else None,
            cached_count,
        )
