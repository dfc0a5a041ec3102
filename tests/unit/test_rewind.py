"""Rewind planning (engine/rewind.py): what a failed history becomes, and which children it waits
for again; and the rule of which instances rewind (workflows.py)."""

from __future__ import annotations

import pytest
from dapr_workflows_component.engine.rewind import ChildToRewind, plan_rewind
from dapr_workflows_component.engine.wire import history_event
from dapr_workflows_component.protos import dapr_dialect_pb2 as pb
from dapr_workflows_component.protos import durabletask_dialect_pb2 as mpb
from dapr_workflows_component.workflows import (
    MAX_REWIND_REASON_BYTES,
    ErrorCode,
    Instance,
    RuntimeStatus,
    WorkflowError,
    check_rewind_allowed,
)

NOW = 1_700_000_000_000_000


def _ev(event_id: int = -1, **event: object) -> bytes:
    return history_event(NOW, event_id, **event).SerializeToString()


def _started(parent: str | None = None) -> bytes:
    started = pb.ExecutionStartedEvent(
        name="flow", workflowInstance=pb.WorkflowInstance(instanceId="i", executionId=pb_str("old"))
    )
    if parent:
        started.parentInstance.workflowInstance.instanceId = parent
        started.parentInstance.workflowInstance.executionId.value = "parent-old"
    return _ev(executionStarted=started)


def pb_str(value: str) -> object:
    from google.protobuf.wrappers_pb2 import StringValue

    return StringValue(value=value)


def _kinds(history: list[bytes]) -> list[tuple[str | None, int]]:
    out = []
    for raw in history:
        e = pb.HistoryEvent.FromString(raw)
        out.append((e.WhichOneof("eventType"), e.eventId))
    return out


def failed_history() -> list[bytes]:
    """Activity 0 succeeds, activity 1 fails, child 2 fails, child 3 was created and never answered,
    child 4 completed; the last turn fails the execution."""
    return [
        _ev(workflowStarted=pb.WorkflowStartedEvent()),
        _started(),
        _ev(0, taskScheduled=pb.TaskScheduledEvent(name="ok")),
        _ev(1, taskScheduled=pb.TaskScheduledEvent(name="bad")),
        _ev(
            2, childWorkflowInstanceCreated=pb.ChildWorkflowInstanceCreatedEvent(instanceId="c2", name="kid")
        ),
        _ev(
            3,
            childWorkflowInstanceCreated=pb.ChildWorkflowInstanceCreatedEvent(
                instanceId="c3", name="kid", input=pb_str('"in"'), version=pb_str("v2")
            ),
        ),
        _ev(
            4, childWorkflowInstanceCreated=pb.ChildWorkflowInstanceCreatedEvent(instanceId="c4", name="kid")
        ),
        _ev(workflowStarted=pb.WorkflowStartedEvent()),
        _ev(taskCompleted=pb.TaskCompletedEvent(taskScheduledId=0)),
        _ev(taskFailed=pb.TaskFailedEvent(taskScheduledId=1)),
        _ev(childWorkflowInstanceFailed=pb.ChildWorkflowInstanceFailedEvent(taskScheduledId=2)),
        _ev(childWorkflowInstanceCompleted=pb.ChildWorkflowInstanceCompletedEvent(taskScheduledId=4)),
        _ev(executionCompleted=pb.ExecutionCompletedEvent(workflowStatus=pb.ORCHESTRATION_STATUS_FAILED)),
    ]


def test_failed_work_is_dropped_and_successes_kept() -> None:
    plan = plan_rewind(failed_history(), "new", NOW, "oops")
    assert _kinds(plan.history) == [
        ("workflowStarted", -1),
        ("executionStarted", -1),
        ("taskScheduled", 0),
        # activity 1's taskScheduled is gone: the replay schedules it again
        ("childWorkflowInstanceCreated", 2),
        ("childWorkflowInstanceCreated", 3),
        ("childWorkflowInstanceCreated", 4),
        ("workflowStarted", -1),
        ("taskCompleted", -1),
        ("childWorkflowInstanceCompleted", -1),
    ]
    started = pb.HistoryEvent.FromString(plan.history[1]).executionStarted
    assert started.workflowInstance.executionId.value == "new"
    assert not started.HasField("parentInstance")


def test_unanswered_children_are_waited_for_again() -> None:
    plan = plan_rewind(failed_history(), "new", NOW)
    assert plan.children == [
        ChildToRewind(2, "c2", "kid", None, None),
        ChildToRewind(3, "c3", "kid", '"in"', "v2"),
    ]


def test_marker_is_durabletasks_execution_rewound() -> None:
    plan = plan_rewind(failed_history(), "new", NOW, "oops", parent_execution_id="parent-new")
    marker = mpb.HistoryEvent.FromString(plan.marker)
    assert marker.WhichOneof("eventType") == "executionRewound"
    assert marker.executionRewound.reason.value == "oops"
    assert marker.executionRewound.parentExecutionId.value == "parent-new"
    # Readable in the engine's own (Dapr dialect) types too, as every history event must be.
    assert pb.HistoryEvent.FromString(plan.marker).eventId == -1
    without_reason = mpb.HistoryEvent.FromString(plan_rewind(failed_history(), "n", NOW).marker)
    assert not without_reason.executionRewound.HasField("reason")


def test_a_childs_parent_execution_follows_the_parents_rewind() -> None:
    history = [_ev(workflowStarted=pb.WorkflowStartedEvent()), _started(parent="p")]
    plan = plan_rewind(history, "new", NOW, parent_execution_id="parent-new")
    started = pb.HistoryEvent.FromString(plan.history[1]).executionStarted
    assert started.parentInstance.workflowInstance.instanceId == "p"
    assert started.parentInstance.workflowInstance.executionId.value == "parent-new"


def test_a_second_rewind_keeps_the_first_ones_record() -> None:
    first = plan_rewind(failed_history(), "e1", NOW, "first")
    rerun_turn = [
        _ev(workflowStarted=pb.WorkflowStartedEvent()),
        first.marker,
        _ev(5, taskScheduled=pb.TaskScheduledEvent(name="bad")),
        _ev(workflowStarted=pb.WorkflowStartedEvent()),
        _ev(taskFailed=pb.TaskFailedEvent(taskScheduledId=5)),
        _ev(executionCompleted=pb.ExecutionCompletedEvent(workflowStatus=pb.ORCHESTRATION_STATUS_FAILED)),
    ]
    second = plan_rewind(first.history + rerun_turn, "e2", NOW)
    markers = [raw for raw in second.history if mpb.HistoryEvent.FromString(raw).HasField("executionRewound")]
    assert markers == [first.marker]
    assert all(kind != "taskFailed" and eid != 5 for kind, eid in _kinds(second.history))


def _instance(status: RuntimeStatus, dialect: str = "durabletask") -> Instance:
    return Instance(
        instance_id="i",
        name="flow",
        dialect=dialect,
        status=status,
        execution_id="e",
        created_at=0,
        updated_at=0,
    )


@pytest.mark.parametrize("status", [s for s in RuntimeStatus if s != RuntimeStatus.FAILED])
def test_only_failed_instances_rewind(status: RuntimeStatus) -> None:
    with pytest.raises(WorkflowError) as err:
        check_rewind_allowed(_instance(status), None)
    assert err.value.code == ErrorCode.FAILED_PRECONDITION


def test_rewind_rules() -> None:
    check_rewind_allowed(_instance(RuntimeStatus.FAILED), "x" * MAX_REWIND_REASON_BYTES)
    with pytest.raises(WorkflowError) as err:
        check_rewind_allowed(_instance(RuntimeStatus.FAILED, "dapr"), None)
    assert err.value.code == ErrorCode.FAILED_PRECONDITION
    with pytest.raises(WorkflowError) as err:
        check_rewind_allowed(_instance(RuntimeStatus.FAILED), "é" * MAX_REWIND_REASON_BYTES)
    assert err.value.code == ErrorCode.INVALID_ARGUMENT


def test_management_history_names_the_rewind() -> None:
    from dapr_workflows_component.http_management import history_json

    shown = history_json([plan_rewind(failed_history(), "new", NOW, "oops").marker])
    assert shown[0]["type"] == "executionRewound" and shown[0]["details"] == {"reason": "oops"}
