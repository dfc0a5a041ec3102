"""Rules of workflows.py the engine applies once: the current-execution check, paging, restart and
event preconditions, and a purge by filter that leaves its caller's query alone."""

from __future__ import annotations

import dataclasses

import pytest
from dapr_workflows_component.workflows import (
    ErrorCode,
    Instance,
    InstanceQuery,
    RuntimeStatus,
    WorkflowError,
    page_of,
    page_query,
    runs_execution,
)

from tests.unit.engine_parts import complete, engine_on, response, run, start, take


def instance(status: RuntimeStatus, execution_id: str = "e1", instance_id: str = "a") -> Instance:
    return Instance(instance_id, "wf", "dapr", status, execution_id, 0, 0)


def test_work_applies_only_to_the_running_execution_it_was_made_for() -> None:
    assert runs_execution(instance(RuntimeStatus.RUNNING), "e1")
    assert runs_execution(instance(RuntimeStatus.SUSPENDED), None)  # no execution named: any
    assert not runs_execution(None, "e1")  # gone
    assert not runs_execution(instance(RuntimeStatus.COMPLETED), "e1")  # finished
    assert not runs_execution(instance(RuntimeStatus.RUNNING, "e2"), "e1")  # another execution


def test_a_page_query_asks_for_one_more_and_keeps_the_filter() -> None:
    where = InstanceQuery(statuses=frozenset({RuntimeStatus.FAILED}), id_prefix="order-")
    query = page_query(2, "order-07", where)
    assert (query.limit, query.after_id, query.id_prefix) == (3, "order-07", "order-")
    assert query.statuses == where.statuses
    assert (where.limit, where.after_id) == (100, None)  # the filter itself is unchanged
    found = [instance(RuntimeStatus.FAILED, instance_id=f"order-{n}") for n in (8, 9, 10)]
    page, token = page_of(found, 2)
    assert [i.instance_id for i in page] == ["order-8", "order-9"] and token == "order-9"
    assert page_of(found[:2], 2) == (found[:2], None)  # the last page
    assert page_query(5, "").after_id is None


def test_purge_by_filter_purges_finished_instances_and_leaves_the_query_as_it_was() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        for instance_id in ("done-1", "done-2", "running"):
            await start(engine, instance_id)
        for _ in range(3):
            item = await take(engine, worker)
            finish = item.workflowRequest.instanceId != "running"
            await engine.complete_orchestration(response(item, *([complete(1)] if finish else [])))
        query = InstanceQuery(statuses=frozenset({RuntimeStatus.COMPLETED, RuntimeStatus.RUNNING}), limit=1)
        before = dataclasses.replace(query)
        assert await engine.purge_where(query) == 2
        assert query == before
        assert [i.instance_id for i in await engine.query(InstanceQuery())] == ["running"]
        await engine.stop()

    run(body())


def test_only_a_finished_instance_restarts_and_an_event_needs_a_name() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "a", input='"in"')
        with pytest.raises(WorkflowError) as running:
            await engine.restart("a", False)
        assert running.value.code == ErrorCode.FAILED_PRECONDITION
        with pytest.raises(WorkflowError) as nameless:
            await engine.raise_event("a", "", None)
        assert nameless.value.code == ErrorCode.INVALID_ARGUMENT
        await engine.complete_orchestration(response(await take(engine, worker), complete(1)))
        new_id = await engine.restart("a", True)
        assert new_id != "a" and await engine.get_instance(new_id) is not None
        assert await engine.restart("a", False) == "a"
        again = await engine.get_instance("a")
        assert again is not None and (again.status, again.input) == (RuntimeStatus.PENDING, '"in"')
        await engine.stop()

    run(body())
