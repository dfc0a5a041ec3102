"""Planning a rerun: from a finished instance's history, what the new instance keeps, replays, carries.

Pure: history events in, a plan out. The new instance's history ends before the turn that recorded
the event the rerun starts from; that turn's events up to the event become its first new events, so
its worker replays from there and issues the event's work again. Results of earlier work, and events
raised, that arrived after the event are carried into its inbox.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..protos import dapr_dialect_pb2 as pb
from ..workflows import check_rerun_event, rerun_impossible

# A rerun can start again from the point where one of these was recorded.
RERUNNABLE_EVENTS = frozenset({"taskScheduled", "timerCreated", "childWorkflowInstanceCreated"})


@dataclass
class RerunPlan:
    kept: list[bytes]  # the new instance's history
    replayed: list[bytes]  # the first new events of its first turn, up to the rerun's event
    carried: list[bytes]  # results and raised events that arrived after the event

    @property
    def inbox(self) -> list[bytes]:
        """The new instance's inbox, in order."""
        return self.replayed + self.carried


def _result_of(e: pb.HistoryEvent) -> int | None:
    """The event ID of the work that `e` is the result of, if it is one."""
    kind = e.WhichOneof("eventType")
    ref = {
        "taskCompleted": e.taskCompleted.taskScheduledId,
        "taskFailed": e.taskFailed.taskScheduledId,
        "childWorkflowInstanceCompleted": e.childWorkflowInstanceCompleted.taskScheduledId,
        "childWorkflowInstanceFailed": e.childWorkflowInstanceFailed.taskScheduledId,
        "timerFired": e.timerFired.timerId,
    }.get(kind or "")
    return ref


def plan_rerun(
    source_id: str,
    history: list[bytes],
    event_id: int,
    target_id: str,
    execution_id: str,
    overwrite_input: bool = False,
    new_child_id: str | None = None,
) -> RerunPlan:
    """The plan of rerunning `source_id` (whose history is given) from event `event_id` as
    `target_id`, whose first execution is `execution_id`."""
    events = [pb.HistoryEvent.FromString(e) for e in history]
    cut = next(
        (
            n
            for n, e in enumerate(events)
            if e.WhichOneof("eventType") in RERUNNABLE_EVENTS and e.eventId == event_id
        ),
        None,
    )
    kind = events[cut].WhichOneof("eventType") if cut is not None else None
    check_rerun_event(source_id, event_id, kind, overwrite_input, new_child_id)
    assert cut is not None
    turn_start = max((n for n, e in enumerate(events[:cut]) if e.HasField("workflowStarted")), default=0)
    prefix = events[:turn_start]
    replayed = events[turn_start + 1 : cut]
    if not replayed:
        raise rerun_impossible(source_id, event_id)
    scheduled = {e.eventId for e in events[:cut] if e.WhichOneof("eventType") in RERUNNABLE_EVENTS}
    carried: list[bytes] = []
    for e in events[cut:]:
        ref = _result_of(e)
        if e.WhichOneof("eventType") == "eventRaised" or (
            ref is not None and ref in scheduled and ref != event_id
        ):
            carried.append(e.SerializeToString())

    def renamed(e: pb.HistoryEvent) -> bytes:
        if e.HasField("executionStarted"):
            e.executionStarted.workflowInstance.instanceId = target_id
            e.executionStarted.workflowInstance.executionId.value = execution_id
        return e.SerializeToString()

    return RerunPlan([renamed(e) for e in prefix], [renamed(e) for e in replayed], carried)
