"""A work item's label read back from the store (engine/labels.py), and when it is read before a claim."""

from __future__ import annotations

from collections.abc import Awaitable

from dapr_workflows_component.engine import labels
from dapr_workflows_component.engine.eligibility import (
    ACTIVITY,
    ORCHESTRATION,
    Eligibility,
    WorkFilters,
    WorkLabel,
)
from dapr_workflows_component.engine.wire import now_us
from dapr_workflows_component.workflows import StartRequest

from tests.unit.engine_parts import engine_on, response, run, schedule, start, take


class Worker:
    def __init__(self, app: str | None = None, filters: WorkFilters | None = None) -> None:
        self.eligibility = Eligibility(app, filters)


def test_a_label_is_read_before_a_claim_only_on_a_shared_store_for_a_worker_that_takes_some_work() -> None:
    assert labels.read_first(True, Worker(app="pricing"))
    assert labels.read_first(True, Worker(filters=WorkFilters.of([("wf", [])])))
    assert not labels.read_first(True, Worker())  # takes anything: its claim is never given back
    assert not labels.read_first(False, Worker(app="pricing"))  # one engine knows its own work
    assert not labels.read_first(True, None)


def test_an_activitys_label_is_read_from_its_request_and_its_instance() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "i", name="wf")
        await engine.complete_orchestration(response(await take(engine, worker), schedule(1, "quote")))
        lease = engine.dispatch.activity_lease((await take(engine, worker)).completionToken)
        assert lease is not None
        label = await labels.read_activity_label(engine.store, lease.activity_id)
        assert label == WorkLabel(ACTIVITY, "quote", None, "")
        assert await labels.read_activity_label(engine.store, lease.activity_id + 100) is None  # gone
        await engine.stop()

    run(body())


def test_a_turns_label_is_read_from_its_instance_and_its_execution_started_router() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await engine.start_workflow(StartRequest(name="wf", instance_id="i", version="2", app_id="pricing"))

        def label() -> Awaitable[WorkLabel | None]:
            return labels.read_turn_label(engine.store, "i", now_us())

        # A new start: its executionStarted (with the router) is still in the inbox.
        assert await label() == WorkLabel(ORCHESTRATION, "wf", "2", "pricing")
        await engine.complete_orchestration(response(await take(engine, worker), schedule(1, "quote")))
        assert await label() == WorkLabel(ORCHESTRATION, "wf", "2", "pricing")  # now in the history
        await engine.start_workflow(StartRequest(name="wf", instance_id="plain"))
        assert await labels.read_turn_label(engine.store, "plain", now_us()) == WorkLabel(
            ORCHESTRATION, "wf", None, ""
        )
        assert await labels.read_turn_label(engine.store, "gone", now_us()) is None
        await engine.stop()

    run(body())
