"""History propagation (Dapr 1.18): a workflow hands its history to the work it schedules.

`call_activity(..., propagation=...)` / `call_child_workflow(..., propagation=...)` put
`historyPropagationScope` on the action. The resulting activity request, and every turn of the
child, carry `propagatedHistory{scope, chunks}`: one chunk per workflow, oldest ancestor first,
each the caller's history up to the scheduling action (with its app, instance ID and name).
OWN_HISTORY sends the caller's chunk only; LINEAGE also the chunks the caller itself received.

An activity's request is stored with it, so its propagated history is written once. A child's is
not stored: it is read back from its parent's history (the `childWorkflowInstanceCreated` event
records the scope), and from the grandparent's for a lineage, when the child's turn is leased.
"""

from __future__ import annotations

from ..protos import dapr_dialect_pb2 as pb
from ..store import StoreTx
from ..workflows import Instance
from . import routing

# Dapr's SDK requires an app ID on every chunk; an instance that runs on no particular app
# (a single-app setup whose workers do not say their app) gets this one.
NO_APP_ID = "dapr-workflows"
NONE = pb.HISTORY_PROPAGATION_SCOPE_NONE
LINEAGE = pb.HISTORY_PROPAGATION_SCOPE_LINEAGE


def scope_of(action: pb.ScheduleTaskAction | pb.CreateChildWorkflowAction) -> int:
    return action.historyPropagationScope if action.HasField("historyPropagationScope") else NONE


def propagate(
    scope: int, received: pb.PropagatedHistory | None, caller: Instance, app: str, events: list[bytes]
) -> pb.PropagatedHistory | None:
    """What the work scheduled with `scope` gets from `caller`, whose history is `events` and
    which itself received `received`; None for no propagation."""
    if scope == NONE:
        return None
    out = pb.PropagatedHistory(scope=scope)  # type: ignore[arg-type]
    if scope == LINEAGE and received is not None:
        out.chunks.extend(received.chunks)
    out.chunks.append(
        pb.PropagatedHistoryChunk(
            rawEvents=events, appId=app or NO_APP_ID, instanceId=caller.instance_id, workflowName=caller.name
        )
    )
    return out


def received_by(t: StoreTx, child: Instance, depth: int = 0) -> pb.PropagatedHistory | None:
    """The history a child workflow was given by its parent (None when none), read from the
    parent's history; a lineage goes up through the ancestors."""
    if not child.parent_instance_id or depth > 100 or child.dialect != "dapr":
        return None
    parent = t.get_instance(child.parent_instance_id)
    if parent is None:
        return None
    history = t.history(parent.instance_id)
    for index, raw in enumerate(history):
        event = pb.HistoryEvent.FromString(raw)
        if event.eventId != child.parent_task_id or not event.HasField("childWorkflowInstanceCreated"):
            continue
        created = event.childWorkflowInstanceCreated
        scope = created.historyPropagationScope if created.HasField("historyPropagationScope") else NONE
        if scope == NONE:
            return None
        lineage = received_by(t, parent, depth + 1) if scope == LINEAGE else None
        return propagate(scope, lineage, parent, routing.instance_app(history), history[:index])
    return None
