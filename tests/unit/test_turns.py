"""The state machine (engine/turns.py), action by action, on a store transaction: no engine, no worker."""

from __future__ import annotations

import pytest
from dapr_workflows_component.engine.effects import Effects
from dapr_workflows_component.engine.turns import Turn, deliverable
from dapr_workflows_component.engine.wire import failure_details, history_event, now_us
from dapr_workflows_component.protos import dapr_dialect_pb2 as pb
from dapr_workflows_component.workflows import ErrorCode, RuntimeStatus, WorkflowError
from google.protobuf import wrappers_pb2

from tests.unit.engine_parts import (
    Machine,
    child,
    complete,
    detached,
    events_of,
    kinds,
    raised,
    schedule,
    send_event,
    terminate,
    timer,
    version_stall,
)


@pytest.fixture
def m() -> Machine:
    return Machine()


def test_a_start_waits_pending_with_its_execution_started_event_in_the_inbox(m: Machine) -> None:
    fx = m.start("a", input='"in"')
    assert m.instance("a").status == RuntimeStatus.PENDING
    assert fx.ready == {"a": "dapr"} and "a" in fx.changed
    [started] = events_of(m.inbox("a"))
    assert started.executionStarted.name == "wf"
    assert started.executionStarted.input.value == '"in"'
    assert started.executionStarted.workflowInstance.executionId.value == m.instance("a").execution_id


def test_the_first_turn_runs_the_instance_and_records_the_started_lifecycle_event(m: Machine) -> None:
    m.start("a")
    fx = m.turn("a")
    inst = m.instance("a")
    assert inst.status == RuntimeStatus.RUNNING
    assert "a" in fx.changed and fx.outbox
    assert m.outbox_types() == ["started"]
    assert kinds(m.history("a")) == ["workflowStarted", "executionStarted"]
    assert m.inbox("a") == []  # the consumed inbox rows are gone


def test_schedule_task_records_the_event_and_queues_the_activity_request(m: Machine) -> None:
    m.start("a")
    fx = m.turn("a", schedule(1, "charge", '"5"'))
    [(activity_id, dialect)] = fx.activities
    assert dialect == "dapr"
    row = m.tx(lambda t: t.get_activity(activity_id))
    assert row is not None and row.task_id == 1
    request = pb.ActivityRequest.FromString(row.request)
    assert (request.name, request.input.value, request.taskId) == ("charge", '"5"', 1)
    assert request.workflowInstance.executionId.value == m.instance("a").execution_id
    scheduled = events_of(m.history("a"))[-1]
    assert scheduled.eventId == 1 and scheduled.taskScheduled.name == "charge"


def test_a_future_timer_arms_the_timer_and_its_fired_event_stays_hidden_until_due(m: Machine) -> None:
    m.start("a")
    due = now_us() + 60_000_000
    fx = m.turn("a", timer(1, due))
    assert fx.timers == [(due, "a", "dapr")]
    assert "a" not in fx.ready
    assert m.inbox("a") == []  # not visible yet
    [fired] = events_of(m.inbox("a", visible_before=due + 1))
    assert fired.timerFired.timerId == 1
    assert kinds(m.history("a"))[-1] == "timerCreated"


def test_a_timer_already_due_makes_the_instance_ready_at_once(m: Machine) -> None:
    m.start("a")
    fx = m.turn("a", timer(1, now_us() - 1))
    assert fx.ready == {"a": "dapr"} and fx.timers == []
    assert kinds(m.inbox("a")) == ["timerFired"]


def test_a_child_workflow_is_created_pending_with_its_parent_recorded(m: Machine) -> None:
    m.start("p")
    fx = m.turn("p", child(3, "kid", input='"x"'))
    child_id = "p:0003"  # the default child ID: parent ID and action ID
    kid = m.instance(child_id)
    assert (kid.status, kid.name, kid.input) == (RuntimeStatus.PENDING, "kid", '"x"')
    assert (kid.parent_instance_id, kid.parent_task_id) == ("p", 3)
    assert kid.parent_execution_id == m.instance("p").execution_id
    assert fx.ready[child_id] == "dapr"
    [started] = events_of(m.inbox(child_id))
    assert started.executionStarted.parentInstance.workflowInstance.instanceId == "p"
    created = events_of(m.history("p"))[-1].childWorkflowInstanceCreated
    assert created.instanceId == child_id


def test_a_child_id_held_by_a_running_instance_fails_the_child_task(m: Machine) -> None:
    m.start("busy")
    m.start("p")
    m.turn("p", child(1, instance_id="busy"))
    assert m.instance("busy").parent_instance_id is None  # untouched
    [failed] = events_of(m.inbox("p"))
    assert failed.childWorkflowInstanceFailed.taskScheduledId == 1
    assert failed.childWorkflowInstanceFailed.failureDetails.errorType == "InstanceAlreadyExists"


def test_a_finished_child_reports_its_result_to_its_parent(m: Machine) -> None:
    m.start("p")
    m.turn("p", child(2, instance_id="kid"))
    m.turn("kid")
    fx = m.turn("kid", complete(1, '"done"'))
    assert m.instance("kid").status == RuntimeStatus.COMPLETED
    assert fx.ready == {"p": "dapr"}
    [result] = events_of(m.inbox("p"))
    assert result.childWorkflowInstanceCompleted.taskScheduledId == 2
    assert result.childWorkflowInstanceCompleted.result.value == '"done"'


def test_send_event_reaches_a_running_instance_and_is_dropped_for_a_missing_one(m: Machine) -> None:
    m.start("target")
    m.turn("target")
    m.start("a")
    fx = m.turn("a", send_event(1, "target", "ping", '"hi"'), send_event(2, "nobody", "ping"))
    assert fx.ready == {"target": "dapr"}
    [event] = events_of(m.inbox("target"))
    assert (event.eventRaised.name, event.eventRaised.input.value) == ("ping", '"hi"')
    assert m.tx(lambda t: t.get_instance("nobody")) is None
    sent = [e.eventSent.instanceId for e in events_of(m.history("a")) if e.HasField("eventSent")]
    assert sent == ["target", "nobody"]


def test_terminate_action_ends_the_target_and_its_children(m: Machine) -> None:
    m.start("target")
    m.turn("target", child(1, instance_id="target-kid"))
    m.start("a")
    fx = m.turn("a", terminate(1, "target", '"enough"'))
    assert m.instance("target").status == RuntimeStatus.TERMINATED
    assert m.instance("target").output == '"enough"'
    assert m.instance("target-kid").status == RuntimeStatus.TERMINATED
    assert {"target", "target-kid"} <= fx.dropped
    assert kinds(m.history("target"))[-2:] == ["executionTerminated", "executionCompleted"]
    assert m.instance("a").status == RuntimeStatus.RUNNING


def test_a_detached_workflow_has_no_parent_and_an_id_in_use_is_left_alone(m: Machine) -> None:
    m.start("taken", name="other")
    m.start("a")
    m.turn("a", detached(1, "free", "side"), detached(2, "taken", "side"))
    free = m.instance("free")
    assert (free.name, free.status, free.parent_instance_id) == ("side", RuntimeStatus.PENDING, None)
    assert m.instance("taken").name == "other"


def test_a_missing_workflow_version_stalls_the_instance(m: Machine) -> None:
    m.start("a")
    fx = m.turn("a", version_stall(1))
    assert m.instance("a").status == RuntimeStatus.STALLED
    assert "a" in fx.changed
    stalled = events_of(m.history("a"))[-1].executionStalled
    assert stalled.reason == pb.VERSION_NOT_AVAILABLE


def test_complete_records_the_output_drops_pending_work_and_reports_completion(m: Machine) -> None:
    m.start("a")
    m.turn("a", schedule(1), timer(2, now_us() + 60_000_000))
    fx = m.turn("a", complete(3, '"out"'))
    inst = m.instance("a")
    assert (inst.status, inst.output) == (RuntimeStatus.COMPLETED, '"out"')
    assert inst.completed_at is not None
    assert len(fx.cancelled_activities) == 1  # the activity still scheduled
    assert m.inbox("a", visible_before=2**62) == []  # the timer is gone too
    assert "a" in fx.finished
    assert kinds(m.history("a"))[-1] == "executionCompleted"
    assert m.outbox_types() == ["started", "completed"]


def test_a_failed_completion_keeps_the_failure_details(m: Machine) -> None:
    m.start("a")
    m.turn("a")
    m.turn(
        "a", complete(1, status=pb.ORCHESTRATION_STATUS_FAILED, failure=failure_details("Boom", "it broke"))
    )
    inst = m.instance("a")
    assert inst.status == RuntimeStatus.FAILED
    assert inst.failure is not None
    assert pb.TaskFailureDetails.FromString(inst.failure).errorMessage == "it broke"
    assert m.outbox_types()[-1] == "failed"


def test_continue_as_new_starts_a_new_execution_carrying_events_but_not_results(m: Machine) -> None:
    m.start("a", input='"1"')
    first = m.instance("a").execution_id
    m.turn("a", timer(1, now_us() - 1))  # its timerFired waits in the inbox
    turn = m.next_turn("a")
    fired_row = turn.inbox_ids  # consumed by this turn
    m.tx(
        lambda t: t.add_inbox(
            "a",
            history_event(now_us(), eventRaised=pb.EventRaisedEvent(name="late")).SerializeToString(),
            now_us(),
        )
    )
    m.tx(
        lambda t: t.add_inbox(
            "a",
            history_event(
                now_us(), taskCompleted=pb.TaskCompletedEvent(taskScheduledId=9)
            ).SerializeToString(),
            now_us(),
        )
    )
    fx = m.answer(
        turn,
        complete(
            2, '"2"', status=pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW, carryover=[raised("carried", '"c"')]
        ),
    )
    inst = m.instance("a")
    assert fired_row and inst.execution_id != first
    assert (inst.status, inst.input, inst.output) == (RuntimeStatus.RUNNING, '"2"', None)
    assert m.history("a") == [] and fx.history["a"] == []
    inbox = events_of(m.inbox("a"))
    assert [e.WhichOneof("eventType") for e in inbox] == ["executionStarted", "eventRaised", "eventRaised"]
    assert inbox[0].executionStarted.workflowInstance.executionId.value == inst.execution_id
    assert [e.eventRaised.name for e in inbox[1:]] == ["carried", "late"]  # the old result is dropped
    assert fx.ready == {"a": "dapr"}


def test_a_turn_of_an_ended_execution_records_nothing(m: Machine) -> None:
    m.start("a")
    stale = m.next_turn("a")
    m.turn("a", complete(1, status=pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW))
    history_before = m.history("a")
    fx = m.answer(stale, complete(1, '"late"'))
    assert m.instance("a").status == RuntimeStatus.RUNNING
    assert m.history("a") == history_before
    assert not fx.changed and not fx.finished


def test_the_version_the_worker_reports_goes_into_the_turns_workflow_started_event(m: Machine) -> None:
    m.start("a")
    version = pb.WorkflowVersion(patches=["p1"])
    m.turn("a", version=version)
    started = events_of(m.history("a"))[0]
    assert list(started.workflowStarted.version.patches) == ["p1"]


def test_an_action_of_an_unknown_kind_is_refused_and_nothing_is_recorded(m: Machine) -> None:
    m.start("a")
    with pytest.raises(WorkflowError) as refused:
        m.turn("a", pb.WorkflowAction(id=1))
    assert refused.value.code == ErrorCode.UNIMPLEMENTED
    assert m.instance("a").status == RuntimeStatus.PENDING  # the transaction rolled back
    assert kinds(m.inbox("a")) == ["executionStarted"]


def test_an_oversized_output_is_refused_and_refusing_fails_the_instance_with_the_reason() -> None:
    m = Machine(max_payload_bytes=10)
    m.start("a")
    turn = m.next_turn("a")
    with pytest.raises(WorkflowError) as refused:
        m.answer(turn, complete(1, '"' + "x" * 20 + '"'))
    assert refused.value.code == ErrorCode.RESOURCE_EXHAUSTED
    reason = refused.value
    fx = Effects()
    m.tx(lambda t: m.turns.refuse(t, turn, reason, fx))
    inst = m.instance("a")
    assert inst.status == RuntimeStatus.FAILED and inst.failure is not None
    assert pb.TaskFailureDetails.FromString(inst.failure).errorType == "PayloadTooLarge"


def test_the_custom_status_is_kept(m: Machine) -> None:
    m.start("a")
    m.turn("a", customStatus=wrappers_pb2.StringValue(value='"half"'))
    assert m.instance("a").custom_status == '"half"'


def test_a_suspended_instance_is_delivered_only_suspend_resume_and_terminate_events(m: Machine) -> None:
    m.start("a")
    m.turn("a")
    inst = m.instance("a")
    inst.status = RuntimeStatus.SUSPENDED
    now = now_us()
    rows_events = [
        history_event(now, eventRaised=pb.EventRaisedEvent(name="go")),
        history_event(now, executionSuspended=pb.ExecutionSuspendedEvent()),
        history_event(now, timerFired=pb.TimerFiredEvent(timerId=1)),
        history_event(now, executionResumed=pb.ExecutionResumedEvent()),
    ]
    for e in rows_events:
        m.tx(lambda t, e=e: t.add_inbox("a", e.SerializeToString(), now))
    rows = m.tx(lambda t: t.inbox("a", now + 1))
    assert [r.event for r in deliverable(inst, rows)] == [
        rows_events[1].SerializeToString(),
        rows_events[3].SerializeToString(),
    ]
    inst.status = RuntimeStatus.RUNNING
    assert len(deliverable(inst, rows)) == 4
    inst.status = RuntimeStatus.COMPLETED
    assert deliverable(inst, rows) == []


def test_a_turn_given_no_events_still_appends_only_its_started_marker(m: Machine) -> None:
    m.start("a")
    m.turn("a")
    before = len(m.history("a"))
    turn = m.next_turn("a")
    assert turn.inbox_ids == []
    m.answer(Turn(turn.instance_id, turn.execution_id, [], turn.new_events))
    assert kinds(m.history("a"))[before:] == ["workflowStarted"]
