"""The durable-entity state machine (engine/entities.py) on a store transaction: no engine, no worker."""

from __future__ import annotations

import pytest
from dapr_workflows_component.engine.effects import Effects
from dapr_workflows_component.engine.entities import MAX_BATCH, Entities
from dapr_workflows_component.engine.wire import now_us, timestamp
from dapr_workflows_component.protos import dapr_dialect_pb2 as pb
from dapr_workflows_component.protos import durabletask_dialect_pb2 as mpb
from dapr_workflows_component.workflows import ErrorCode, Instance, RuntimeStatus, WorkflowError

from tests.unit.engine_parts import LIMIT, Machine

E1, E2 = "@counter@one", "@counter@two"


class EntityMachine(Machine):
    def __init__(self) -> None:
        super().__init__()
        self.entities = Entities(self.turns, LIMIT)
        self.turns.instance_gone = self.entities.gone

    def orchestration(self, instance_id: str) -> Instance:
        fx = Effects()
        self.tx(
            lambda t: self.turns.create_instance(
                t, instance_id, "wf", "durabletask", None, None, now_us(), fx
            )
        )
        inst = self.instance(instance_id)
        inst.status = RuntimeStatus.RUNNING
        self.tx(lambda t: (t.put_instance(inst), t.clear_inbox(instance_id)))  # as after its first turn
        return inst

    def send(self, owner: str, *messages: mpb.SendEntityMessageAction) -> tuple[list[bytes], Effects]:
        fx = Effects()
        inst = self.instance(owner)
        raw = [(n, m.SerializeToString()) for n, m in enumerate(messages)]
        return self.tx(lambda t: self.entities.send(t, inst, raw, now_us(), fx)), fx

    def batch_ops(self, entity_id: str) -> list[mpb.HistoryEvent]:
        batch = self.tx(lambda t: self.entities.next_batch(t, entity_id, t.inbox(entity_id, now_us())))
        return [mpb.HistoryEvent.FromString(op) for op in batch.operations]

    def lock(self, entity_id: str) -> tuple[str | None, str | None]:
        row = self.tx(lambda t: t.get_entity(entity_id))
        assert row is not None
        return row.locked_by, row.lock_owner

    def owner_inbox(self, instance_id: str) -> list[str | None]:
        return [mpb.HistoryEvent.FromString(e).WhichOneof("eventType") for e in self.inbox(instance_id)]


def _call(target: str, op: str, request_id: str = "r1") -> mpb.SendEntityMessageAction:
    called = mpb.EntityOperationCalledEvent(requestId=request_id, operation=op)
    called.targetInstanceId.value = target
    return mpb.SendEntityMessageAction(entityOperationCalled=called)


def _signal(target: str, op: str, at: int | None = None) -> mpb.SendEntityMessageAction:
    signaled = mpb.EntityOperationSignaledEvent(requestId="s1", operation=op)
    signaled.targetInstanceId.value = target
    if at is not None:
        signaled.scheduledTime.CopyFrom(timestamp(at))
    return mpb.SendEntityMessageAction(entityOperationSignaled=signaled)


def _lock(section: str, *entities: str) -> mpb.SendEntityMessageAction:
    return mpb.SendEntityMessageAction(
        entityLockRequested=mpb.EntityLockRequestedEvent(criticalSectionId=section, lockSet=list(entities))
    )


def _unlock(section: str, target: str) -> mpb.SendEntityMessageAction:
    unlock = mpb.EntityUnlockSentEvent(criticalSectionId=section)
    unlock.targetInstanceId.value = target
    return mpb.SendEntityMessageAction(entityUnlockSent=unlock)


@pytest.fixture
def m() -> EntityMachine:
    return EntityMachine()


def test_a_call_creates_the_entity_and_waits_in_its_inbox_answered_to_this_execution(
    m: EntityMachine,
) -> None:
    orch = m.orchestration("o")
    confirmed, fx = m.send("o", _call(E1, "add"))
    [event] = [mpb.HistoryEvent.FromString(c) for c in confirmed]
    assert event.eventId == 0 and event.entityOperationCalled.operation == "add"
    assert fx.ready == {E1: "durabletask"}
    entity = m.instance(E1)
    assert (entity.name, entity.status, entity.dialect) == ("counter", RuntimeStatus.RUNNING, "durabletask")
    [op] = m.batch_ops(E1)
    assert op.entityOperationCalled.parentInstanceId.value == "o"
    assert op.entityOperationCalled.parentExecutionId.value == orch.execution_id


def test_a_delayed_signal_is_a_timer_of_the_entity(m: EntityMachine) -> None:
    m.orchestration("o")
    later = now_us() + 60_000_000
    _, fx = m.send("o", _signal(E1, "add", later))
    assert fx.timers == [(later, E1, "durabletask")] and fx.ready == {}
    assert m.batch_ops(E1) == []
    assert len(m.inbox(E1, later)) == 1


def test_a_result_stores_the_state_answers_the_caller_and_sends_what_the_entity_sent(
    m: EntityMachine,
) -> None:
    m.orchestration("o")
    m.send("o", _call(E1, "add", "req-1"))
    batch = m.tx(lambda t: m.entities.next_batch(t, E1, t.inbox(E1, now_us())))
    result = mpb.EntityBatchResult(
        results=[mpb.OperationResult(success=mpb.OperationResultSuccess())],
        operationInfos=[
            mpb.OperationInfo(
                requestId="req-1", responseDestination=mpb.OrchestrationInstance(instanceId="o")
            )
        ],
        actions=[
            mpb.OperationAction(id=0, sendSignal=mpb.SendSignalAction(instanceId=E2, name="add")),
            mpb.OperationAction(
                id=1, startNewOrchestration=mpb.StartNewOrchestrationAction(instanceId="n", name="wf")
            ),
        ],
    )
    result.results[0].success.result.value = "5"
    result.entityState.value = "5"
    fx = Effects()
    m.tx(lambda t: m.entities.complete(t, E1, batch.inbox_ids, len(batch.operations), result, now_us(), fx))
    assert m.tx(lambda t: t.get_entity(E1)).state == "5"  # type: ignore[union-attr]
    assert m.inbox(E1) == []
    [answer] = [mpb.HistoryEvent.FromString(e) for e in m.inbox("o")]
    assert answer.entityOperationCompleted.requestId == "req-1"
    assert answer.entityOperationCompleted.output.value == "5"
    assert [op.entityOperationSignaled.operation for op in m.batch_ops(E2)] == ["add"]
    assert m.instance("n").status == RuntimeStatus.PENDING


def test_a_lock_is_granted_when_free_and_gates_others_until_unlocked(m: EntityMachine) -> None:
    m.orchestration("holder")
    m.orchestration("other")
    _, fx = m.send("holder", _lock("cs", E1, E2))
    assert m.lock(E1) == ("cs", "holder") and m.lock(E2) == ("cs", "holder")
    assert m.owner_inbox("holder") == ["entityLockGranted"] and fx.ready["holder"] == "durabletask"
    m.send("other", _lock("cs-2", E2))
    assert m.owner_inbox("other") == []  # waits
    m.send("other", _call(E1, "get", "from-other"))
    m.send("holder", _call(E1, "get", "from-holder"))
    assert [op.entityOperationCalled.requestId for op in m.batch_ops(E1)] == ["from-holder"]
    m.send("holder", _unlock("cs", E1), _unlock("cs", E2))
    assert m.lock(E1) == (None, None) and m.lock(E2) == ("cs-2", "other")
    assert m.owner_inbox("other") == ["entityLockGranted"]
    assert {op.entityOperationCalled.requestId for op in m.batch_ops(E1)} == {"from-other", "from-holder"}


def test_waiting_requests_are_granted_in_order(m: EntityMachine) -> None:
    for name in ("a", "b", "c"):
        m.orchestration(name)
    m.send("a", _lock("cs-a", E1))
    m.send("b", _lock("cs-b", E1, E2))
    m.send("c", _lock("cs-c", E2))  # E2 is free, but b asked for it first
    assert m.owner_inbox("c") == []
    m.send("a", _unlock("cs-a", E1))
    assert m.lock(E1) == ("cs-b", "b") and m.owner_inbox("c") == []


def test_an_orchestration_that_finishes_or_is_deleted_releases_its_locks_and_requests(
    m: EntityMachine,
) -> None:
    for name in ("a", "b", "c"):
        m.orchestration(name)
    m.send("a", _lock("cs-a", E1))
    m.send("b", _lock("cs-b", E1))
    m.send("c", _lock("cs-c", E1))
    a, b, c = m.instance("a"), m.instance("b"), m.instance("c")
    m.tx(lambda t: m.turns.terminate(t, a, None, False, now_us(), Effects()))
    assert m.lock(E1) == ("cs-b", "b")
    m.tx(lambda t: m.turns.delete(t, b, Effects()))
    assert m.lock(E1) == ("cs-c", "c")
    m.tx(lambda t: m.turns.finish(t, c, RuntimeStatus.FAILED, None, None, now_us(), Effects()))
    assert m.lock(E1) == (None, None)
    assert m.tx(lambda t: t.lock_requests()) == []


def test_a_purged_entity_loses_its_state(m: EntityMachine) -> None:
    m.tx(lambda t: m.entities.signal(t, E1, "add", "1", "r", None, now_us(), Effects()))
    entity = m.instance(E1)
    m.tx(lambda t: m.turns.delete(t, entity, Effects()))
    assert m.tx(lambda t: (t.get_entity(E1), t.get_instance(E1))) == (None, None)


def test_a_long_backlog_goes_in_batches_and_other_events_are_dropped(m: EntityMachine) -> None:
    m.tx(lambda t: m.entities.signal(t, E1, "add", "0", "r", None, now_us(), Effects()))
    stray = mpb.HistoryEvent(eventRaised=mpb.EventRaisedEvent(name="x")).SerializeToString()
    m.tx(lambda t: t.add_inbox(E1, stray, now_us()))
    (stray_id,) = [r.id for r in m.tx(lambda t: t.inbox(E1, now_us())) if r.event == stray]
    for n in range(1, MAX_BATCH + 5):
        m.tx(lambda t, n=n: m.entities.signal(t, E1, "add", str(n), f"r{n}", None, now_us(), Effects()))
    batch = m.tx(lambda t: m.entities.next_batch(t, E1, t.inbox(E1, now_us())))
    assert len(batch.operations) == MAX_BATCH
    assert stray_id in batch.inbox_ids and stray not in batch.operations  # consumed, not run
    fx = Effects()
    m.tx(
        lambda t: m.entities.complete(
            t, E1, batch.inbox_ids, len(batch.operations), mpb.EntityBatchResult(), now_us(), fx
        )
    )
    assert fx.ready == {E1: "durabletask"}  # the rest goes next
    rest = m.tx(lambda t: m.entities.next_batch(t, E1, t.inbox(E1, now_us())))
    assert len(rest.operations) == 5
    fx = Effects()
    m.tx(
        lambda t: m.entities.complete(
            t, E1, rest.inbox_ids, len(rest.operations), mpb.EntityBatchResult(), now_us(), fx
        )
    )
    assert fx.ready == {}


def test_bad_messages_are_refused(m: EntityMachine) -> None:
    m.orchestration("o")
    with pytest.raises(WorkflowError) as err:
        m.send("o", _call("not-an-entity", "add"))
    assert err.value.code == ErrorCode.INVALID_ARGUMENT
    with pytest.raises(WorkflowError):
        m.send("o", _call(E1, ""))


def test_a_refused_action_of_an_entity_leaves_the_rest_of_its_result(m: EntityMachine) -> None:
    m.tx(lambda t: m.entities.signal(t, E1, "add", "1", "r", None, now_us(), Effects()))
    batch = m.tx(lambda t: m.entities.next_batch(t, E1, t.inbox(E1, now_us())))
    result = mpb.EntityBatchResult(
        actions=[
            mpb.OperationAction(
                id=0, sendSignal=mpb.SendSignalAction(instanceId="not-an-entity", name="add")
            ),
            mpb.OperationAction(
                id=1, startNewOrchestration=mpb.StartNewOrchestrationAction(instanceId="@bad@id", name="wf")
            ),
            mpb.OperationAction(id=2, sendSignal=mpb.SendSignalAction(instanceId=E2, name="add")),
        ],
    )
    result.entityState.value = "1"
    m.tx(
        lambda t: m.entities.complete(
            t, E1, batch.inbox_ids, len(batch.operations), result, now_us(), Effects()
        )
    )
    assert m.tx(lambda t: t.get_entity(E1)).state == "1"  # type: ignore[union-attr]
    assert [op.entityOperationSignaled.operation for op in m.batch_ops(E2)] == ["add"]
    assert m.tx(lambda t: t.get_instance("@bad@id")) is None


def test_a_refused_batch_fails_its_calls_and_keeps_the_state(m: EntityMachine) -> None:
    m.orchestration("o")
    m.send("o", _call(E1, "grow", "req-1"))
    batch = m.tx(lambda t: m.entities.next_batch(t, E1, t.inbox(E1, now_us())))
    m.tx(lambda t: m.entities.refuse(t, batch.inbox_ids, batch.operations, "too big", now_us(), Effects()))
    [answer] = [mpb.HistoryEvent.FromString(e) for e in m.inbox("o")]
    assert answer.entityOperationFailed.requestId == "req-1"
    assert answer.entityOperationFailed.failureDetails.errorMessage == "too big"
    assert m.inbox(E1) == [] and m.tx(lambda t: t.get_entity(E1)).state is None  # type: ignore[union-attr]


def test_continue_as_new_ends_the_critical_section_and_drops_its_answers(m: EntityMachine) -> None:
    m.orchestration("o")
    m.orchestration("next")
    m.send("o", _lock("cs", E1))
    m.send("next", _lock("cs-next", E1))
    assert m.owner_inbox("o") == ["entityLockGranted"]
    inst = m.instance("o")
    again = pb.CompleteWorkflowAction(workflowStatus=pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW)
    m.tx(lambda t: m.turns.continue_as_new(t, inst, again, now_us(), Effects()))
    assert m.lock(E1) == ("cs-next", "next")
    assert m.owner_inbox("o") == ["executionStarted"]
