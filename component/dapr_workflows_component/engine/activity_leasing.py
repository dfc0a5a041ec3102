"""An activity leased to a worker: claimed in the store, its label known, its work item.

Dispatch (dispatch.py) decides which key a worker takes; this claims the activity's row, learns
who may take it where it was not known (labels.py) and holds the lease.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from . import labels, wire
from .eligibility import ACTIVITY, WorkLabel
from .work_items import ActivityWork
from .work_leases import ActivityLease

if TYPE_CHECKING:
    from .dispatch import Dispatch


async def lease_activity(d: Dispatch, key: ActivityWork, dialect: str, worker_id: int) -> bytes | None:
    """The activity as a work item for the worker, or None when it may not run now."""
    worker = d.workers.get(worker_id)
    if d.items.label(key) is None and labels.read_first(d.leasing.shared, worker):
        label = await labels.read_activity_label(d.store, key.activity_id)  # before a claim
        if label is not None and not d.routed_here(key, worker_id, lambda: label):
            d.put(key, dialect)  # it waits for a worker that may take it
            return None
    token = d.next_token()
    try:
        row = await d.leasing.take_activity(key.activity_id, token, d.limits.activity_check(key))
    except BaseException:
        # The claim may have committed anyway (see Dispatch.lease_instance): give it back.
        d.leasing.release_later(lambda t: t.release_activity(key.activity_id, token))
        raise
    finally:
        d.end_claim(key)
    if row is None:
        d.items.forget(key)  # done, or another engine's
        return None
    d.limits.admit_activity(key, row.request)
    if d.items.label(key) is None:  # work this engine did not create (labels.py)
        try:
            learned = await d.store.read(partial(labels.activity_label, row=row))
        except BaseException:
            # Not leased here after all: the claim goes back now, not when its store lease expires.
            d.leasing.release_later(lambda t: t.release_activity(key.activity_id, token))
            raise
        d.items.set_label(key, learned)
    if not d.routed_here(key, worker_id, lambda: WorkLabel(ACTIVITY, "")):
        d.leasing.release_later(lambda t: t.release_activity(key.activity_id, token))
        d.put(key, dialect)
        return None
    lease = ActivityLease(
        key.activity_id, dialect, token, worker_id, instance_id=row.instance_id, task_id=row.task_id
    )
    d.hold(lease, d.settings.activity_lease_seconds)
    d.observer.activity_dispatched(token, key, row.request)
    return wire.encode_activity_work_item(row.request, token)
