"""Rerun planning (engine/rerun.py) on histories the state machine wrote, and a rerun end to end in
an in-process engine: the new instance replays up to the event and runs its work again."""

from __future__ import annotations

import pytest
from dapr_workflows_component.engine.rerun import plan_rerun
from dapr_workflows_component.engine.wire import history_event, now_us
from dapr_workflows_component.protos import dapr_dialect_pb2 as pb
from dapr_workflows_component.workflows import ErrorCode, WorkflowError

from tests.unit.engine_parts import (
    Machine,
    child,
    complete,
    engine_on,
    events_of,
    kinds,
    response,
    run,
    schedule,
    start,
    take,
    timer,
)


def _result(m: Machine, instance_id: str, task_id: int, value: str) -> None:
    done = pb.TaskCompletedEvent(taskScheduledId=task_id)
    done.result.value = value
    event = history_event(now_us(), taskCompleted=done).SerializeToString()
    m.tx(lambda t: t.add_inbox(instance_id, event, now_us()))


def _raise(m: Machine, instance_id: str, name: str) -> None:
    event = history_event(now_us(), eventRaised=pb.EventRaisedEvent(name=name)).SerializeToString()
    m.tx(lambda t: t.add_inbox(instance_id, event, now_us()))


def fan_out_history() -> list[bytes]:
    """Turn 1 schedules activities 0 and 1; 0's result comes in turn 2, an event and 1's in turn 3."""
    m = Machine()
    m.start("src")
    m.turn("src", schedule(0, "a"), schedule(1, "b"))
    _result(m, "src", 0, '"r0"')
    m.turn("src")
    _raise(m, "src", "poke")
    _result(m, "src", 1, '"r1"')
    m.turn("src", complete(2, '"end"'))
    return m.history("src")


def chain_history() -> list[bytes]:
    """Turn 1 schedules activity 0; turn 2 takes its result and starts timer 1; turn 3 completes."""
    m = Machine()
    m.start("src")
    m.turn("src", schedule(0, "a"))
    _result(m, "src", 0, '"r0"')
    m.turn("src", timer(1, now_us() - 1))
    m.turn("src", complete(2, '"end"'))
    return m.history("src")


def test_a_rerun_from_a_later_turn_keeps_the_earlier_turns_and_replays_the_one_that_recorded_it() -> None:
    history = chain_history()
    plan = plan_rerun("src", history, 1, "copy", "exec-2")
    # Kept: turn 1 as it was, but under the new instance's ID and execution.
    assert kinds(plan.kept) == ["workflowStarted", "executionStarted", "taskScheduled"]
    started = events_of(plan.kept)[1].executionStarted.workflowInstance
    assert (started.instanceId, started.executionId.value) == ("copy", "exec-2")
    # Replayed: turn 2's new events before the timer, so its worker creates the timer again.
    assert kinds(plan.replayed) == ["taskCompleted"]
    assert plan.carried == []  # the timer's own firing is not carried: it fires again
    assert plan.inbox == plan.replayed


def test_results_of_earlier_work_that_arrived_after_the_event_are_carried() -> None:
    plan = plan_rerun("src", fan_out_history(), 1, "copy", "exec-2")
    assert plan.kept == []  # the event is in the first turn
    assert kinds(plan.replayed) == ["executionStarted", "taskScheduled"]
    carried = events_of(plan.carried)
    # Activity 0 was scheduled before the cut: its result and the raised event carry over; the
    # result of activity 1 (the one that runs again) does not.
    assert [e.WhichOneof("eventType") for e in carried] == ["taskCompleted", "eventRaised"]
    assert carried[0].taskCompleted.taskScheduledId == 0


def test_work_scheduled_after_the_event_is_not_carried() -> None:
    plan = plan_rerun("src", fan_out_history(), 0, "copy", "exec-2")
    assert kinds(plan.replayed) == ["executionStarted"]
    assert kinds(plan.carried) == ["eventRaised"]  # activity 1 is issued again by the replay


def test_a_rerun_needs_a_rerunnable_event_with_that_id() -> None:
    with pytest.raises(WorkflowError) as missing:
        plan_rerun("src", chain_history(), 7, "copy", "exec-2")
    assert missing.value.code == ErrorCode.NOT_FOUND


def test_only_an_activity_takes_a_new_input_and_only_a_child_a_new_child_id() -> None:
    with pytest.raises(WorkflowError) as timer_input:
        plan_rerun("src", chain_history(), 1, "copy", "exec-2", overwrite_input=True)
    assert timer_input.value.code == ErrorCode.INVALID_ARGUMENT
    with pytest.raises(WorkflowError) as task_child:
        plan_rerun("src", chain_history(), 0, "copy", "exec-2", new_child_id="kid")
    assert task_child.value.code == ErrorCode.INVALID_ARGUMENT
    assert plan_rerun("src", chain_history(), 0, "copy", "exec-2", overwrite_input=True).replayed


def test_an_event_with_no_turn_events_before_it_cannot_be_replayed() -> None:
    now = now_us()
    history = [
        history_event(now, workflowStarted=pb.WorkflowStartedEvent()).SerializeToString(),
        history_event(now, 0, taskScheduled=pb.TaskScheduledEvent(name="a")).SerializeToString(),
    ]
    with pytest.raises(WorkflowError) as impossible:
        plan_rerun("src", history, 0, "copy", "exec-2")
    assert impossible.value.code == ErrorCode.FAILED_PRECONDITION


def test_a_rerun_from_an_activity_runs_it_again_with_the_new_input() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "src")
        first = await take(engine, worker)
        await engine.complete_orchestration(response(first, schedule(0, "a", '"old"')))
        act = await take(engine, worker)
        await engine.complete_activity(
            pb.ActivityResponse(instanceId="src", taskId=0, completionToken=act.completionToken)
        )
        second = await take(engine, worker)
        await engine.complete_orchestration(response(second, complete(1, '"end"')))
        await engine.rerun_from_event("src", 0, "copy", '"new"', True)
        turn = await take(engine, worker)
        assert turn.workflowRequest.instanceId == "copy"
        assert [e.WhichOneof("eventType") for e in turn.workflowRequest.newEvents] == [
            "workflowStarted",
            "executionStarted",
        ]
        await engine.complete_orchestration(response(turn, schedule(0, "a", '"old"')))
        again = await take(engine, worker)
        assert again.activityRequest.workflowInstance.instanceId == "copy"
        assert again.activityRequest.input.value == '"new"'
        await engine.stop()

    run(body())


def test_a_rerun_from_a_child_workflow_uses_the_new_child_id_only_when_given() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "src")
        first = await take(engine, worker)
        await engine.complete_orchestration(response(first, child(0, "kid", "src-kid")))
        kid = await take(engine, worker)
        await engine.complete_orchestration(response(kid, complete(0, '"k"')))
        back = await take(engine, worker)
        await engine.complete_orchestration(response(back, complete(1, '"end"')))
        # Without a new child ID the child runs again under its old one (its finished run makes way).
        for copy, new_child, expected in (("c1", "kid-2", "kid-2"), ("c2", None, "src-kid")):
            await engine.rerun_from_event("src", 0, copy, None, False, new_child)
            turn = await take(engine, worker)
            await engine.complete_orchestration(response(turn, child(0, "kid", "src-kid")))
            created = await engine.get_instance(expected)
            assert created is not None and created.parent_instance_id == copy
            await engine.terminate(copy)
        await engine.stop()

    run(body())


def test_only_a_finished_top_level_instance_reruns() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "src")
        first = await take(engine, worker)
        await engine.complete_orchestration(response(first, child(0, "kid", "src-kid")))
        for source in ("src", "src-kid"):  # running; a child
            with pytest.raises(WorkflowError) as refused:
                await engine.rerun_from_event(source, 0, None, None, False)
            assert refused.value.code == ErrorCode.INVALID_ARGUMENT
        await engine.stop()

    run(body())
