"""Dispatch (engine/dispatch.py) in an in-process engine on SQLite: what is offered to workers,
leases, their expiry, stale and duplicate completions, suspended delivery. Driven by raw protobuf
work items and responses, as a worker's stream carries them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from dapr_workflows_component.engine import Engine, dispatch
from dapr_workflows_component.engine.dispatch import ActivityWork, InstanceWork, WorkState
from dapr_workflows_component.engine.eligibility import (
    ACTIVITY,
    ENTITY,
    ORCHESTRATION,
    WorkFilters,
    WorkLabel,
)
from dapr_workflows_component.engine.timers import Timers
from dapr_workflows_component.engine.work_queue import NEW_START_EVERY, WorkQueue
from dapr_workflows_component.protos import dapr_dialect_pb2 as pb
from dapr_workflows_component.protos import durabletask_dialect_pb2 as mpb
from dapr_workflows_component.store import SQLiteStore, StoreTx, StoreUnavailable
from dapr_workflows_component.workflows import ErrorCode, RuntimeStatus, StartRequest, WorkflowError

from tests.unit.engine_parts import (
    activity_done,
    child,
    complete,
    engine_on,
    eventually,
    next_item,
    response,
    run,
    schedule,
    start,
    take,
    timer,
)

T = TypeVar("T")


def new_event_kinds(item: pb.WorkItem) -> list[str]:
    return [str(e.WhichOneof("eventType")) for e in item.workflowRequest.newEvents]


def test_a_started_instance_is_offered_with_its_execution_started_event() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "a", input='"x"')
        assert engine.dispatch.state(InstanceWork("a")) == WorkState.QUEUED
        item = await take(engine, worker)
        assert item.workflowRequest.instanceId == "a"
        assert new_event_kinds(item) == ["workflowStarted", "executionStarted"]
        assert item.workflowRequest.newEvents[1].executionStarted.input.value == '"x"'
        assert engine.dispatch.state(InstanceWork("a")) == WorkState.LEASED
        await engine.complete_orchestration(response(item))
        assert engine.dispatch.state(InstanceWork("a")) is None
        assert engine.dispatch.queued() == []
        await engine.stop()

    run(body())


def test_a_worker_of_the_other_dialect_is_offered_nothing() -> None:
    async def body() -> None:
        engine = await engine_on()
        other = engine.connect_worker("durabletask")
        await start(engine, "a")
        assert await next_item(engine, other, "durabletask") is None  # a health ping instead
        assert engine.dispatch.queued() == [InstanceWork("a")]
        await engine.stop()

    run(body())


def test_an_activity_result_is_recorded_once_and_offered_in_the_next_turn() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        await engine.complete_orchestration(response(await take(engine, worker), schedule(1, "act", '"in"')))
        act = await take(engine, worker)
        assert act.activityRequest.name == "act" and act.activityRequest.input.value == '"in"'
        done = activity_done(act, '"out"')
        await engine.complete_activity(done)
        await engine.complete_activity(done)  # a duplicate: its lease is gone
        turn = await take(engine, worker)
        assert new_event_kinds(turn) == ["workflowStarted", "taskCompleted"]
        assert turn.workflowRequest.newEvents[1].taskCompleted.result.value == '"out"'
        await engine.stop()

    run(body())


def test_a_worker_is_offered_no_more_than_its_capacity() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr", capacity=1)
        await start(engine, "a")
        await start(engine, "b")
        first = await take(engine, worker)
        assert await next_item(engine, worker) is None  # full: a ping, not the second instance
        assert len(engine.dispatch.queued()) == 1
        other = engine.connect_worker("dapr")
        second = await take(engine, other)
        assert {first.workflowRequest.instanceId, second.workflowRequest.instanceId} == {"a", "b"}
        await engine.complete_orchestration(response(first))
        assert engine.workers[worker].held == 0
        await engine.stop()

    run(body())


def test_an_expired_orchestration_lease_is_offered_again_and_the_late_result_is_ignored() -> None:
    async def body() -> None:
        engine = await engine_on(orchestration_lease_seconds=0.1)
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        first = await take(engine, worker)
        again = await take(engine, worker)  # offered again once the lease expired
        assert again.workflowRequest.instanceId == "a"
        assert again.completionToken != first.completionToken
        await engine.complete_orchestration(response(first, complete(1, '"stale"')))
        inst = await engine.get_instance("a")
        assert inst is not None and inst.status == RuntimeStatus.PENDING  # nothing recorded
        await engine.complete_orchestration(response(again, complete(1, '"fresh"')))
        inst = await engine.get_instance("a")
        assert inst is not None and (inst.status, inst.output) == (RuntimeStatus.COMPLETED, '"fresh"')
        await engine.stop()

    run(body())


def test_an_expired_activity_lease_is_offered_again_and_only_the_current_token_counts() -> None:
    async def body() -> None:
        engine = await engine_on(activity_lease_seconds=0.1)
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        await engine.complete_orchestration(response(await take(engine, worker), schedule(1)))
        first = await take(engine, worker)
        again = await take(engine, worker)
        assert again.HasField("activityRequest") and again.completionToken != first.completionToken
        await engine.complete_activity(activity_done(first, '"stale"'))
        assert engine.dispatch.queued() == []  # the stale result made nothing ready
        await engine.complete_activity(activity_done(again, '"fresh"'))
        turn = await take(engine, worker)
        results = [e.taskCompleted.result.value for e in turn.workflowRequest.newEvents[1:]]
        assert results == ['"fresh"']
        await engine.stop()

    run(body())


def test_an_abandoned_work_item_is_offered_again() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        first = await take(engine, worker)
        engine.abandon("not-a-token")
        assert engine.dispatch.state(InstanceWork("a")) == WorkState.LEASED
        engine.abandon(first.completionToken)
        assert engine.dispatch.state(InstanceWork("a")) == WorkState.QUEUED
        again = await take(engine, worker)
        assert new_event_kinds(again) == ["workflowStarted", "executionStarted"]
        await engine.stop()

    run(body())


def test_a_disconnected_worker_gives_back_everything_it_held() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        await engine.complete_orchestration(response(await take(engine, worker), schedule(1), schedule(2)))
        held = [await take(engine, worker), await take(engine, worker)]
        assert all(item.HasField("activityRequest") for item in held)
        engine.disconnect_worker(worker)
        assert sorted(engine.dispatch.queued(), key=str) == sorted(
            [ActivityWork(1), ActivityWork(2)], key=str
        )
        assert engine.dispatch.held_tokens() == []
        await engine.stop()

    run(body())


def test_events_arriving_during_a_turn_are_not_offered_to_another_worker_until_it_ends() -> None:
    async def body() -> None:
        engine = await engine_on()
        busy, idle = engine.connect_worker("dapr"), engine.connect_worker("dapr")
        await start(engine, "a")
        turn = await take(engine, busy)
        await engine.raise_event("a", "go", '"1"')
        assert engine.dispatch.arrived_while_busy("a")
        assert engine.dispatch.queued() == []
        assert await next_item(engine, idle) is None  # a turn of "a" is in flight
        await engine.complete_orchestration(response(turn))
        assert engine.dispatch.queued() == [InstanceWork("a")]
        follow = await take(engine, idle)
        assert new_event_kinds(follow) == ["workflowStarted", "eventRaised"]
        await engine.stop()

    run(body())


def test_a_suspended_instance_is_offered_its_suspension_but_not_the_events_raised_meanwhile() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        await engine.complete_orchestration(response(await take(engine, worker)))
        await engine.suspend("a")
        await engine.raise_event("a", "go", '"1"')
        turn = await take(engine, worker)
        assert new_event_kinds(turn) == ["workflowStarted", "executionSuspended"]
        await engine.complete_orchestration(response(turn))
        await engine.raise_event("a", "more", '"2"')
        assert await next_item(engine, worker) is None  # ready, but nothing it may see
        assert engine.dispatch.queued() == []
        await engine.resume("a")
        turn = await take(engine, worker)
        assert new_event_kinds(turn) == ["workflowStarted", "eventRaised", "eventRaised", "executionResumed"]
        await engine.stop()

    run(body())


def test_a_terminated_instance_voids_the_turn_in_flight() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        turn = await take(engine, worker)
        await engine.terminate("a", '"stop"')
        assert engine.dispatch.state(InstanceWork("a")) is None  # the lease is gone
        assert engine.workers[worker].held == 0
        await engine.complete_orchestration(response(turn, complete(1, '"late"')))
        inst = await engine.get_instance("a")
        assert inst is not None and (inst.status, inst.output) == (RuntimeStatus.TERMINATED, '"stop"')
        await engine.stop()

    run(body())


def test_a_restarted_engine_offers_again_what_was_leased_when_it_stopped(tmp_path: Path) -> None:
    path = str(tmp_path / "engine.db")

    async def body() -> None:
        engine = await engine_on(SQLiteStore(path))
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        await engine.complete_orchestration(response(await take(engine, worker), schedule(1)))
        await take(engine, worker)  # the activity, never answered
        await engine.stop()
        await engine.store.close()
        engine = await engine_on(SQLiteStore(path))
        worker = engine.connect_worker("dapr")
        assert engine.dispatch.queued() == [ActivityWork(1)]
        item = await take(engine, worker)
        assert item.activityRequest.workflowInstance.instanceId == "a"
        await engine.stop()
        await engine.store.close()

    run(body())


def test_a_cancelled_wait_for_work_returns_the_item_to_the_queue() -> None:
    async def body() -> None:
        engine = await engine_on(health_ping_seconds=5.0)
        worker = engine.connect_worker("dapr")
        waiting = asyncio.ensure_future(engine.next_work_item("dapr", worker))
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        await start(engine, "a")
        assert engine.dispatch.queued() == [InstanceWork("a")]
        await engine.stop()

    run(body())


def test_a_due_timer_makes_its_instance_ready() -> None:
    fired: list[tuple[str, str]] = []
    timers = Timers(lambda instance_id, dialect: fired.append((instance_id, dialect)))
    timers.add([(300, "late", "dapr"), (100, "early", "durabletask")])
    assert timers.fire_due(50) == (100 - 50) / 1e6
    assert fired == []
    timers.fire_due(200)
    assert fired == [("early", "durabletask")]
    timers.fire_due(300)
    assert fired[-1] == ("late", "dapr")


def test_a_waiter_hears_of_the_change_it_waits_for() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        waiting = asyncio.ensure_future(engine.wait_for("a", lambda i: i.status == RuntimeStatus.RUNNING))
        await asyncio.sleep(0)
        assert not waiting.done()
        await engine.complete_orchestration(response(await take(engine, worker)))
        await eventually(lambda: asyncio.sleep(0, waiting.done()))
        inst = waiting.result()
        assert inst is not None and inst.status == RuntimeStatus.RUNNING
        await engine.stop()

    run(body())


def fail_next_read(engine: Engine) -> None:
    """The store's next read fails as a store that is down does; the ones after it work."""
    real_read = engine.store.read

    async def failing_read(fn: Callable[[StoreTx], T]) -> T:
        engine.store.read = real_read  # type: ignore[method-assign]
        raise StoreUnavailable("the store is down")

    engine.store.read = failing_read  # type: ignore[method-assign]


def test_a_store_failure_while_reading_a_turn_leaves_the_instance_offerable_again() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        fail_next_read(engine)
        with pytest.raises(StoreUnavailable):
            await engine.next_work_item("dapr", worker)
        assert engine.dispatch.state(InstanceWork("a")) is None  # not stuck "claiming"
        await engine.raise_event("a", "go", None)  # made ready again (or found by a sweep)
        item = await take(engine, worker)
        assert new_event_kinds(item) == ["workflowStarted", "executionStarted", "eventRaised"]
        await engine.stop()

    run(body())


def test_work_whose_claim_the_store_failed_is_offered_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """On SQLite no sweep would find it: without the engine offering it again, it waits for a
    restart."""
    monkeypatch.setattr(dispatch, "REOFFER_AFTER_STORE_ERROR_SECONDS", 0.05)

    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        first = await take(engine, worker)
        await engine.complete_orchestration(response(first, schedule(1)))
        fail_next_read(engine)
        with pytest.raises(StoreUnavailable):
            await engine.next_work_item("dapr", worker)  # the activity's read fails
        assert engine.dispatch.queued() == []  # for now, neither queued nor stuck "claiming"
        act = await take(engine, worker)  # offered again: nothing else made it ready
        assert act.activityRequest.name == "act"
        await engine.stop()

    run(body())


def test_a_store_failure_while_refusing_a_turn_offers_the_turn_again() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        item = await take(engine, worker)
        real_run = engine.store.run

        async def failing_run(fn: Callable[[StoreTx], T]) -> T:
            engine.store.run = real_run  # type: ignore[method-assign]
            raise StoreUnavailable("the store is down")

        engine.store.run = failing_run  # type: ignore[method-assign]
        refused = WorkflowError(ErrorCode.UNIMPLEMENTED, "an action this engine lacks")
        with pytest.raises(StoreUnavailable):
            await engine.refuse_turn("a", item.completionToken, refused)
        again = await take(engine, worker)  # not lost until a restart
        assert again.workflowRequest.instanceId == "a"
        assert again.completionToken != item.completionToken
        await engine.stop()

    run(body())


def test_a_late_activity_result_of_a_terminated_instance_is_dropped() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        await engine.complete_orchestration(response(await take(engine, worker), schedule(1)))
        act = await take(engine, worker)
        await engine.terminate("a", '"stopped"')
        await engine.complete_activity(activity_done(act, '"late"'))
        assert engine.dispatch.queued() == []  # nothing to offer
        history = [pb.HistoryEvent.FromString(e).WhichOneof("eventType") for e in await engine.history("a")]
        assert "taskCompleted" not in history and history[-1] == "executionCompleted"
        await engine.stop()

    run(body())


def test_results_and_due_timers_of_a_suspended_instance_wait_for_its_resume() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        await engine.complete_orchestration(response(await take(engine, worker), schedule(1), timer(2, 0)))
        act = await take(engine, worker)  # the timer fired at once: its turn is ready too
        turn = await take(engine, worker)
        assert new_event_kinds(turn) == ["workflowStarted", "timerFired"]
        await engine.complete_orchestration(response(turn))
        await engine.suspend("a")
        await engine.complete_orchestration(response(await take(engine, worker)))  # the suspension
        await engine.complete_activity(activity_done(act, '"r"'))
        assert await next_item(engine, worker) is None  # offered nothing while suspended
        await engine.resume("a")
        turn = await take(engine, worker)
        assert new_event_kinds(turn) == ["workflowStarted", "taskCompleted", "executionResumed"]
        await engine.stop()

    run(body())


# ---------------------------------------------------------------- oldest work first (work_queue.py)


def instance_of(item: pb.WorkItem) -> str:
    if item.HasField("activityRequest"):
        return f"{item.activityRequest.workflowInstance.instanceId}:act"
    return item.workflowRequest.instanceId


def test_work_of_instances_that_started_earlier_goes_before_new_starts() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        for name in ("a", "b", "c"):
            await start(engine, name)
        first = await take(engine, worker)
        assert instance_of(first) == "a"
        await engine.complete_orchestration(response(first, schedule(1)))
        # b and c were queued before a's activity: a's goes first all the same, then its next turn.
        act = await take(engine, worker)
        assert instance_of(act) == "a:act"
        await engine.complete_activity(activity_done(act, '"r"'))
        turn = await take(engine, worker)
        assert instance_of(turn) == "a"
        await engine.complete_orchestration(response(turn, complete(1)))
        assert [instance_of(await take(engine, worker)) for _ in range(2)] == ["b", "c"]
        await engine.stop()

    run(body())


def test_continuing_work_goes_oldest_instance_first_whatever_order_it_was_queued_in() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "old")
        await start(engine, "young")
        old, young = await take(engine, worker), await take(engine, worker)
        assert [instance_of(old), instance_of(young)] == ["old", "young"]
        await engine.complete_orchestration(response(young, schedule(1)))  # queued first
        await engine.complete_orchestration(response(old, schedule(1)))
        assert [instance_of(await take(engine, worker)) for _ in range(2)] == ["old:act", "young:act"]
        await engine.stop()

    run(body())


def test_children_and_activities_count_as_work_of_the_instance_that_started_them() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "parent")
        await start(engine, "later")
        turn = await take(engine, worker)
        await engine.complete_orchestration(response(turn, child(1, instance_id="kid")))
        assert instance_of(await take(engine, worker)) == "kid"  # before the later start
        await engine.stop()

    run(body())


def test_new_starts_are_not_starved_by_continuing_work() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "busy")
        fan_out = [schedule(i) for i in range(1, 3 * NEW_START_EVERY)]
        await engine.complete_orchestration(response(await take(engine, worker), *fan_out))
        await start(engine, "new")
        taken = [instance_of(await take(engine, worker)) for _ in range(NEW_START_EVERY)]
        assert taken == ["busy:act"] * (NEW_START_EVERY - 1) + ["new"]
        await engine.stop()

    run(body())


def test_the_queue_order_and_its_bound() -> None:
    queue: WorkQueue[str] = WorkQueue(new_start_every=3)
    for key in ("n1", "n2", "n3"):
        queue.put(key, None, age=0, fresh=True)
    for age, key in ((5, "c5"), (1, "c1"), (3, "c3"), (1, "c1b"), (7, "c7"), (2, "c2")):
        queue.put(key, None, age=age)
    everything = lambda label: True  # noqa: E731
    order = [queue.take(everything) for _ in range(len(queue))]
    # Oldest continuing first (ties in the order queued); a new start after every 2 of them.
    assert order == ["c1", "c1b", "n1", "c2", "c3", "n2", "c5", "c7", "n3"]
    assert queue.take(everything) is None


def test_a_take_asks_the_rule_once_per_kind_of_work_not_per_item() -> None:
    queue: WorkQueue[int] = WorkQueue()
    blocked, wanted = WorkLabel(ORCHESTRATION, "not-mine"), WorkLabel(ORCHESTRATION, "mine")
    for i in range(10_000):
        queue.put(i, blocked, age=i)
    queue.put(10_000, wanted, age=10_000)
    asked: list[WorkLabel | None] = []

    def rule(label: WorkLabel | None) -> bool:
        asked.append(label)
        return label == wanted

    assert queue.take(rule) == 10_000  # 10,000 items it may not take do not hold it up
    assert len(asked) == 2
    assert queue.take(rule) is None and len(queue) == 10_000


# ---------------------------------------------------------------- filters and versions (eligibility.py)


def test_work_goes_only_to_workers_whose_filters_name_it_and_waits_otherwise() -> None:
    async def body() -> None:
        engine = await engine_on(worker_max_new_starts=0)  # it holds five first turns at once
        orders, refunds = engine.connect_worker("dapr"), engine.connect_worker("dapr")
        engine.filter_work(orders, WorkFilters.of([("order", [])], [("pay", [])]))
        engine.filter_work(refunds, WorkFilters.of([("refund", [])]))
        for i in range(5):
            await start(engine, f"o{i}", name="order")
        await start(engine, "r", name="refund")
        await start(engine, "x", name="unknown")
        item = await take(engine, refunds)  # behind five orders it may not take
        assert instance_of(item) == "r"
        await engine.complete_orchestration(response(item, schedule(1, "pay")))
        assert await next_item(engine, refunds) is None  # its activity is the orders worker's
        assert instance_of(await take(engine, orders)) == "r:act"
        taken = {instance_of(await take(engine, orders)) for _ in range(5)}
        assert taken == {f"o{i}" for i in range(5)}
        assert await next_item(engine, orders) is None
        assert engine.dispatch.state(InstanceWork("x")) == WorkState.QUEUED  # waits
        anyone = engine.connect_worker("dapr")
        assert instance_of(await take(engine, anyone)) == "x"
        await engine.stop()

    run(body())


def test_strict_versions_wait_pending_for_a_worker_of_their_version() -> None:
    async def body() -> None:
        engine = await engine_on()
        v1 = engine.connect_worker("dapr")
        engine.filter_work(v1, WorkFilters.of([("order", ["1.0"])], [("pay", ["1.0"])]))
        await engine.start_workflow(StartRequest(name="order", instance_id="new", version="2.0"))
        assert await next_item(engine, v1) is None
        inst = await engine.get_instance("new")
        assert inst is not None and inst.status == RuntimeStatus.PENDING
        v2 = engine.connect_worker("dapr")
        engine.filter_work(v2, WorkFilters.of([("order", ["2.0"])], [("pay", ["2.0"])]))
        turn = await take(engine, v2)
        assert instance_of(turn) == "new"
        # The activity has no version of its own: it is matched by its orchestration's.
        await engine.complete_orchestration(response(turn, schedule(1, "pay")))
        assert engine.dispatch.label_of(ActivityWork(1)) == WorkLabel(ACTIVITY, "pay", "2.0")
        assert await next_item(engine, v1) is None
        assert instance_of(await take(engine, v2)) == "new:act"
        await engine.stop()

    run(body())


def test_a_work_item_abandoned_by_one_worker_goes_to_another_first() -> None:
    async def body() -> None:
        engine = await engine_on()
        rejecting, other = engine.connect_worker("dapr", peer="a"), engine.connect_worker("dapr", peer="b")
        await start(engine, "a")
        item = await take(engine, rejecting)
        engine.abandon(item.completionToken)
        assert await next_item(engine, rejecting) is None
        assert instance_of(await take(engine, other)) == "a"
        await engine.stop()

    run(body())


# ---------------------------------------------------------------- entity filters


async def entity_item(engine: Engine, worker_id: int) -> str | None:
    """The entity a durabletask worker is offered next; None when a health ping was due instead."""
    raw = await engine.next_work_item("durabletask", worker_id)
    if raw is None:
        return None
    item = mpb.WorkItem.FromString(raw)
    assert item.WhichOneof("request") == "entityRequestV2", item
    return item.entityRequestV2.instanceId


async def signal(engine: Engine, entity_id: str) -> None:
    await engine.entities.signal(entity_id, "add", "1", "r-" + entity_id, None)


def test_entity_work_goes_only_to_workers_whose_filters_name_the_entity() -> None:
    async def body() -> None:
        engine = await engine_on()
        counters, accounts = engine.connect_worker("durabletask"), engine.connect_worker("durabletask")
        no_entities = engine.connect_worker("durabletask")
        engine.filter_work(counters, WorkFilters.of(entities=["counter"]))
        engine.filter_work(accounts, WorkFilters.of(entities=["account"]))
        engine.filter_work(no_entities, WorkFilters.of([("order", [])]))
        for entity_id in ("@other@k", "@account@k", "@counter@k"):
            await signal(engine, entity_id)
        assert await entity_item(engine, no_entities) is None  # its filters list no entities
        assert await entity_item(engine, counters) == "@counter@k"  # behind two it may not take
        assert await entity_item(engine, accounts) == "@account@k"
        assert await entity_item(engine, counters) is None
        assert engine.dispatch.state(InstanceWork("@other@k")) == WorkState.QUEUED  # waits
        assert engine.dispatch.label_of(InstanceWork("@other@k")) == WorkLabel(ENTITY, "other")
        anyone = engine.connect_worker("durabletask")  # no filters: everything
        assert await entity_item(engine, anyone) == "@other@k"
        await engine.stop()

    run(body())


def test_entity_work_read_back_after_a_restart_is_filtered_too(tmp_path: Path) -> None:
    path = str(tmp_path / "engine.db")

    async def body() -> None:
        engine = await engine_on(SQLiteStore(path))
        await signal(engine, "@counter@k")
        await engine.stop()
        await engine.store.close()
        engine = await engine_on(SQLiteStore(path))
        assert engine.dispatch.queued() == [InstanceWork("@counter@k")]
        accounts = engine.connect_worker("durabletask")
        engine.filter_work(accounts, WorkFilters.of(entities=["account"]))
        assert await entity_item(engine, accounts) is None
        counters = engine.connect_worker("durabletask")
        engine.filter_work(counters, WorkFilters.of(entities=["counter"]))
        assert await entity_item(engine, counters) == "@counter@k"
        await engine.stop()
        await engine.store.close()

    run(body())
