"""Planning a rewind: from a failed instance's history, the history it runs on from.

Pure: history events in, a plan out. As durabletask's reference backend has it, the rewound history
keeps every successful result and drops what failed: each failed activity's result and its
`taskScheduled` event (so the worker's replay schedules it again), each failed child workflow's
result (its `childWorkflowInstanceCreated` event stays: the child itself is rewound, or created again
if it was purged, and its result arrives as usual) and the `executionCompleted` event. The
execution gets a new ID. The rewind is recorded by an `executionRewound` event that the next turn
brings to the worker (which ignores it on replay) and so into the history.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..protos import dapr_dialect_pb2 as pb
from ..protos import durabletask_dialect_pb2 as mpb
from . import wire

# Kinds of event the rewound history drops outright.
_DROPPED = frozenset({"taskFailed", "childWorkflowInstanceFailed", "executionCompleted"})


@dataclass
class ChildToRewind:
    """A child workflow the rewound instance waits for again: rewound if it failed, created anew
    (from the parent's record of it) if it was purged."""

    task_id: int
    instance_id: str
    name: str
    input: str | None
    version: str | None


@dataclass
class RewindPlan:
    history: list[bytes]  # the rewound history, in order
    marker: bytes  # the executionRewound event, the first new event of the next turn
    children: list[ChildToRewind]


def rewound_event(now: int, reason: str | None, parent_execution_id: str | None) -> bytes:
    """The executionRewound event (durabletask's own type; the Dapr dialect has none)."""
    event = mpb.ExecutionRewoundEvent()
    if reason:
        event.reason.value = reason
    if parent_execution_id:
        event.parentExecutionId.value = parent_execution_id
    return mpb.HistoryEvent(
        eventId=-1, timestamp=wire.timestamp(now), executionRewound=event
    ).SerializeToString()


def plan_rewind(
    history: list[bytes],
    execution_id: str,
    now: int,
    reason: str | None = None,
    parent_execution_id: str | None = None,
) -> RewindPlan:
    """The plan of rewinding the failed execution whose history is given, as execution
    `execution_id`; a child's `parent_execution_id` is its parent's execution after the parent's
    own rewind."""
    events = [pb.HistoryEvent.FromString(raw) for raw in history]
    failed_tasks = {e.taskFailed.taskScheduledId for e in events if e.HasField("taskFailed")}
    kept: list[bytes] = []
    created: dict[int, pb.ChildWorkflowInstanceCreatedEvent] = {}
    completed: set[int] = set()
    for raw, e in zip(history, events, strict=True):
        kind = e.WhichOneof("eventType")
        if kind in _DROPPED or (kind == "taskScheduled" and e.eventId in failed_tasks):
            continue
        if kind == "executionStarted":
            started = e.executionStarted
            started.workflowInstance.executionId.value = execution_id
            if parent_execution_id and started.HasField("parentInstance"):
                started.parentInstance.workflowInstance.executionId.value = parent_execution_id
            raw = e.SerializeToString()
        elif kind == "childWorkflowInstanceCreated":
            created[e.eventId] = e.childWorkflowInstanceCreated
        elif kind == "childWorkflowInstanceCompleted":
            completed.add(e.childWorkflowInstanceCompleted.taskScheduledId)
        kept.append(raw)
    children = [
        ChildToRewind(
            task_id=task_id,
            instance_id=c.instanceId,
            name=c.name,
            input=c.input.value if c.HasField("input") else None,
            version=c.version.value if c.HasField("version") else None,
        )
        for task_id, c in created.items()
        if task_id not in completed
    ]
    return RewindPlan(kept, rewound_event(now, reason, parent_execution_id), children)


def rewound_details(raw: bytes) -> dict[str, str] | None:
    """The details of an executionRewound event (None for any other event), for showing a history
    in the Dapr dialect's terms, which have no such event."""
    event = mpb.HistoryEvent.FromString(raw)
    if not event.HasField("executionRewound"):
        return None
    rewound = event.executionRewound
    return {
        name: getattr(rewound, name).value
        for name in ("reason", "parentExecutionId")
        if rewound.HasField(name)
    }
