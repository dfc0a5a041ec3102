"""Review fixes of durable entities: entity IDs kept from workflows, purges that free locks,
timestamps out of range, truncated batch results, the query's page size."""

from __future__ import annotations

import pytest
from dapr_workflows_component.engine.effects import Effects
from dapr_workflows_component.engine.wire import now_us
from dapr_workflows_component.workflows import ErrorCode, WorkflowError

from tests.unit.engine_parts import child, detached
from tests.unit.test_entities import E1, EntityMachine, _lock


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
