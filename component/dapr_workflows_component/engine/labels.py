"""A work item's label (who may take it: eligibility.py) read back from the store.

Work this engine did not create (read back after a restart, or announced by another engine sharing
the store) comes without its label. With a shared store, an engine whose worker may take only some
work (it said its app, or sent work-item filters) reads the label before it claims the activity or
the turn: a claim of work it then gives back would count, however briefly, under the concurrency
limits in the store, and use up this engine's turn among the engines waiting for a slot, while the
work that its worker may take waits behind (concurrency.py).
"""

from __future__ import annotations

import logging
from typing import Protocol

from ..protos import dapr_dialect_pb2 as pb
from ..store import ActivityRow, Store, StoreTx
from . import routing
from .eligibility import ACTIVITY, ORCHESTRATION, Eligibility, WorkLabel

log = logging.getLogger("dapr_workflows.engine")


class HasEligibility(Protocol):
    @property
    def eligibility(self) -> Eligibility: ...


def read_first(shared: bool, worker: HasEligibility | None) -> bool:
    """Whether to read a label not known yet before claiming the work for `worker`: with a shared
    store, when the worker may take only some work (it said its app, or sent filters)."""
    if not shared or worker is None:
        return False
    return worker.eligibility.app is not None or worker.eligibility.filters is not None


def activity_label(tx: StoreTx, row: ActivityRow) -> WorkLabel:
    """The label of the activity `row`: its name and version, and its app from the history."""
    inst = tx.get_instance(row.instance_id)
    request = pb.ActivityRequest.FromString(row.request)
    version = request.version.value if request.HasField("version") else None
    if version is None and inst is not None:
        version = inst.version
    app = routing.activity_app(tx.history(row.instance_id), row.task_id)
    return WorkLabel(ACTIVITY, request.name, version, app)


async def read_activity_label(store: Store, activity_id: int) -> WorkLabel | None:
    """The label of a scheduled activity, read without claiming it; None when it is gone, or when
    the store failed (the claim that follows then meets the failure, and handles it as usual)."""

    def read(tx: StoreTx) -> WorkLabel | None:
        row = tx.get_activity(activity_id)
        return activity_label(tx, row) if row is not None else None

    try:
        return await store.read(read)
    except Exception as err:
        log.debug("reading the label of activity %d failed: %s", activity_id, err)
        return None


def turn_label(tx: StoreTx, instance_id: str, now: int) -> WorkLabel | None:
    """The label of the instance's turns: its name and version, and its app from the router of its
    executionStarted event (in the history, or in the inbox for a new start); None when it has no
    turn to run."""
    inst = tx.get_instance(instance_id)
    if inst is None or inst.status.is_terminal:
        return None
    events = tx.history(instance_id) + [row.event for row in tx.inbox(instance_id, now)]
    return WorkLabel(ORCHESTRATION, inst.name, inst.version, routing.instance_app(events))


async def read_turn_label(store: Store, instance_id: str, now: int) -> WorkLabel | None:
    """The label of an instance's turns, read without claiming its lease; None when it has no turn
    to run, or when the store failed (the claim that follows then meets the failure, or finds
    nothing to do, and handles it as usual)."""
    try:
        return await store.read(lambda tx: turn_label(tx, instance_id, now))
    except Exception as err:
        log.debug("reading the label of workflow %r failed: %s", instance_id, err)
        return None
