"""Review fixes of durable entities: entity IDs kept from workflows, purges that free locks,
timestamps out of range, truncated batch results, the query's page size."""

from __future__ import annotations

import pytest
from dapr_workflows_component.engine import wire
from dapr_workflows_component.engine.concurrency import WORKFLOW
from dapr_workflows_component.engine.effects import Effects
from dapr_workflows_component.engine.entity_rpc import entity_handlers
from dapr_workflows_component.engine.wire import now_us
from dapr_workflows_component.protos import dapr_dialect_pb2 as pb
from dapr_workflows_component.protos import durabletask_dialect_pb2 as mpb
from dapr_workflows_component.workflows import MAX_PAGE_SIZE, ErrorCode, WorkflowError
from google.protobuf.timestamp_pb2 import Timestamp

from tests.unit.engine_parts import child, detached, engine_on, run
from tests.unit.test_concurrency import Turn, limiter, take_now
from tests.unit.test_entities import E1, E2, EntityMachine, _lock


@pytest.fixture
def m() -> EntityMachine:
    return EntityMachine()


@pytest.mark.parametrize("action", [child(1, instance_id=E1), detached(1, E1)])
def test_a_workflow_cannot_start_another_under_an_entity_id(m: EntityMachine, action: object) -> None:
    m.orchestration("o")
    with pytest.raises(WorkflowError) as refused:
        m.turn("o", action)  # type: ignore[arg-type]
    assert refused.value.code == ErrorCode.INVALID_ARGUMENT
    assert "entity ID" in refused.value.message
    assert m.tx(lambda t: t.get_instance(E1)) is None


def test_a_signal_does_not_adopt_a_workflow_that_has_an_entity_id(m: EntityMachine) -> None:
    m.tx(lambda t: m.turns.create_instance(t, E1, "wf", "durabletask", None, None, now_us(), Effects()))
    with pytest.raises(WorkflowError) as refused:
        m.tx(lambda t: m.entities.signal(t, E1, "add", "1", "r", None, now_us(), Effects()))
    assert refused.value.code == ErrorCode.FAILED_PRECONDITION
    assert m.tx(lambda t: t.get_entity(E1)) is None
    assert m.instance(E1).name == "wf"


def test_purging_a_locked_entity_grants_the_lock_requests_that_waited_for_it(m: EntityMachine) -> None:
    m.orchestration("holder")
    m.orchestration("waiter")
    m.send("holder", _lock("cs", E1))
    m.send("waiter", _lock("cs-2", E1))
    assert m.owner_inbox("waiter") == []
    entity = m.instance(E1)
    m.tx(lambda t: m.turns.delete(t, entity, Effects()))
    assert m.owner_inbox("waiter") == ["entityLockGranted"]
    assert m.lock(E1) == ("cs-2", "waiter")


FAR = Timestamp(seconds=2**62)  # a valid int64, far past the year 9999


def test_a_signal_scheduled_past_the_year_9999_is_refused(m: EntityMachine) -> None:
    with pytest.raises(WorkflowError) as refused:
        request = mpb.SignalEntityRequest(instanceId=E1, name="add", scheduledTime=FAR)
        at = wire.micros_or_none(request, "scheduledTime")
        m.tx(lambda t: m.entities.signal(t, E1, "add", None, "r", at, now_us(), Effects()))
    assert refused.value.code == ErrorCode.INVALID_ARGUMENT
    with pytest.raises(WorkflowError):
        far = wire.micros(FAR)
        m.tx(lambda t: m.entities.signal(t, E1, "add", None, "r", far, now_us(), Effects()))
    assert m.tx(lambda t: t.get_instance(E1)) is None


def test_an_orchestrations_signal_or_timer_past_the_year_9999_refuses_its_turn(m: EntityMachine) -> None:
    m.orchestration("o")
    signaled = mpb.EntityOperationSignaledEvent(requestId="s1", operation="add", scheduledTime=FAR)
    signaled.targetInstanceId.value = E1
    with pytest.raises(WorkflowError) as refused:
        m.send("o", mpb.SendEntityMessageAction(entityOperationSignaled=signaled))
    assert refused.value.code == ErrorCode.INVALID_ARGUMENT
    timer = pb.WorkflowAction(id=1, createTimer=pb.CreateTimerAction(fireAt=FAR))
    with pytest.raises(WorkflowError) as refused:
        m.turn("o", timer)
    assert refused.value.code == ErrorCode.INVALID_ARGUMENT
    assert "9999" in refused.value.message


def test_an_entitys_signal_past_the_year_9999_is_refused_and_the_rest_goes(m: EntityMachine) -> None:
    m.tx(lambda t: m.entities.signal(t, E1, "add", "1", "r", None, now_us(), Effects()))
    batch = m.tx(lambda t: m.entities.next_batch(t, E1, t.inbox(E1, now_us())))
    far = mpb.SendSignalAction(instanceId=E2, name="far", scheduledTime=FAR)
    near = mpb.SendSignalAction(instanceId=E2, name="near")
    result = mpb.EntityBatchResult(
        actions=[mpb.OperationAction(id=0, sendSignal=far), mpb.OperationAction(id=1, sendSignal=near)]
    )
    m.tx(lambda t: m.entities.complete(t, E1, batch.inbox_ids, 1, result, now_us(), Effects()))
    assert len(m.inbox(E2, 2**63 - 1)) == 1  # only the near one was sent
    assert [op.entityOperationSignaled.operation for op in m.batch_ops(E2)] == ["near"]


def test_operations_a_truncated_result_leaves_out_stay_and_run_next(m: EntityMachine) -> None:
    m.tx(lambda t: m.entities.signal(t, E1, "first", None, "r1", None, now_us(), Effects()))
    stray = mpb.HistoryEvent(eventRaised=mpb.EventRaisedEvent(name="x")).SerializeToString()
    m.tx(lambda t: t.add_inbox(E1, stray, now_us()))
    for op in ("second", "third"):
        m.tx(lambda t, op=op: m.entities.signal(t, E1, op, None, op, None, now_us(), Effects()))
    batch = m.tx(lambda t: m.entities.next_batch(t, E1, t.inbox(E1, now_us())))
    assert len(batch.operations) == 3
    done = mpb.OperationResult(success=mpb.OperationResultSuccess())
    result = mpb.EntityBatchResult(results=[done])
    result.entityState.value = "1"
    fx = Effects()
    m.tx(lambda t: m.entities.complete(t, E1, batch.inbox_ids, 3, result, now_us(), fx))
    assert fx.ready == {E1: "durabletask"}
    assert [op.entityOperationSignaled.operation for op in m.batch_ops(E1)] == ["second", "third"]
    assert len(m.inbox(E1)) == 2  # the stray event and the first operation are consumed
    assert m.tx(lambda t: t.get_entity(E1)).state == "1"  # type: ignore[union-attr]


def test_query_entities_holds_the_page_size_to_the_listings_limit() -> None:
    async def go() -> None:
        engine = await engine_on()
        try:
            query = entity_handlers(engine)["QueryEntities"]
            request = mpb.QueryEntitiesRequest()
            request.query.pageSize.value = MAX_PAGE_SIZE + 1
            with pytest.raises(WorkflowError) as refused:
                await query(request.SerializeToString(), None)  # type: ignore[arg-type]
            assert refused.value.code == ErrorCode.INVALID_ARGUMENT
            request.query.pageSize.value = MAX_PAGE_SIZE
            answer = mpb.QueryEntitiesResponse.FromString(await query(request.SerializeToString(), None))  # type: ignore[arg-type]
            assert list(answer.entities) == []
        finally:
            await engine.stop()

    run(go())


def test_entity_batches_are_under_no_workflow_limit() -> None:
    lim, _, _ = limiter(workflows=1)
    assert take_now(lim, Turn(E1)) and take_now(lim, Turn(E2))
    assert lim.running(WORKFLOW) == 0
    assert take_now(lim, Turn("w")) and not take_now(lim, Turn("w2"))
    shared, _, _ = limiter(shared=True, workflows=1)
    # A shared store is not asked about an entity (a transaction without count_leased would fail).
    shared.check_store(None, Turn(E1), "counter")  # type: ignore[arg-type]
