"""Fan-in (engine/fan_in.py): the turn of an instance still waiting for some of its activities is
held while other work waits, until the last of them is done or the hold runs out; idle, nothing is
held. First the rule on its own, then in an in-process engine on SQLite driven by raw work items."""

from __future__ import annotations

import asyncio

from dapr_workflows_component.engine import Engine
from dapr_workflows_component.engine.dispatch import InstanceWork, WorkState
from dapr_workflows_component.engine.fan_in import FanIn
from dapr_workflows_component.protos import dapr_dialect_pb2 as pb

from tests.unit.engine_parts import activity_done, engine_on, next_item, response, run, schedule, start, take


class Rig:
    """A FanIn with a count of work in flight the test sets, recording what it offers."""

    def __init__(self, hold_seconds: float = 5.0, enabled: bool = True) -> None:
        self.in_flight = 0
        self.offered: list[tuple[str, str]] = []
        self.fan_in = FanIn(
            lambda i, d: self.offered.append((i, d)),
            lambda: self.in_flight,
            enabled,
            hold_seconds,
        )


def hold_a_with_two_outstanding(rig: Rig) -> None:
    """Instance "a" waits for activities 1 and 2 while the workers hold other work: it is held."""
    rig.fan_in.scheduled(1, "a")
    rig.fan_in.scheduled(2, "a")
    rig.in_flight = 10  # the workers hold other work
    assert rig.fan_in.holds("a", "dapr")


def test_a_turn_is_held_while_workers_hold_other_work_until_the_last_activity_is_done() -> None:
    async def body() -> None:
        rig = Rig()
        for activity_id in (1, 2, 3):
            rig.fan_in.scheduled(activity_id, "a")
        rig.in_flight = 10  # the workers hold other work
        rig.fan_in.done(1)
        assert rig.fan_in.holds("a", "dapr")
        assert rig.fan_in.holds("a", "dapr")  # asked again while held: still held, one time limit
        rig.fan_in.done(2)
        assert rig.offered == []
        rig.fan_in.done(3)
        assert rig.offered == [("a", "dapr")]
        assert not rig.fan_in.is_held("a") and len(rig.fan_in) == 0
        assert not rig.fan_in.holds("a", "dapr")  # nothing outstanding any more

    run(body())


def test_other_work_in_flight_also_counts_but_the_instances_own_activities_do_not() -> None:
    async def body() -> None:
        rig = Rig()
        for activity_id in (1, 2, 3):
            rig.fan_in.scheduled(activity_id, "a")
        rig.fan_in.done(1)
        rig.in_flight = 2  # its other two activities, held by the worker: idle otherwise
        assert not rig.fan_in.holds("a", "dapr")
        rig.in_flight = 3  # and one more work item of some other instance
        assert rig.fan_in.holds("a", "dapr")

    run(body())


def test_a_hold_runs_out_and_the_instance_is_not_held_again_until_it_schedules_more() -> None:
    async def body() -> None:
        rig = Rig(hold_seconds=0.05)
        hold_a_with_two_outstanding(rig)
        await asyncio.sleep(0.15)
        assert rig.offered == [("a", "dapr")]
        assert not rig.fan_in.holds("a", "dapr")
        rig.fan_in.done(1)
        assert rig.offered == [("a", "dapr")]  # it held nothing: no second offer
        rig.fan_in.scheduled(3, "a")
        assert rig.fan_in.holds("a", "dapr")

    run(body())


def test_a_forgotten_instance_is_never_offered_and_keeps_nothing() -> None:
    async def body() -> None:
        rig = Rig(hold_seconds=0.05)
        hold_a_with_two_outstanding(rig)
        rig.fan_in.forget("a")
        rig.fan_in.done(1)
        await asyncio.sleep(0.15)
        assert rig.offered == [] and len(rig.fan_in) == 0
        assert not rig.fan_in.holds("a", "dapr")

    run(body())


def test_tracking_is_bounded_the_oldest_instance_gives_way_unless_it_is_held() -> None:
    """On a shared store an instance may end on another engine unheard of here: it stays tracked
    only until newer instances need its room."""

    async def body() -> None:
        rig = Rig()
        rig.fan_in.max_tracked = 3
        for n, instance_id in enumerate(["a", "b", "c"]):
            rig.fan_in.scheduled(2 * n, instance_id)
            rig.fan_in.scheduled(2 * n + 1, instance_id)
        rig.in_flight = 10
        assert rig.fan_in.holds("a", "dapr")  # "a" is held: "b" is the oldest that may go
        rig.fan_in.scheduled(6, "d")
        assert not rig.fan_in.holds("b", "dapr")  # no longer tracked: never held
        assert rig.fan_in.holds("c", "dapr") and rig.fan_in.is_held("a")
        rig.fan_in.done(3)  # an activity of "b", forgotten: nothing happens
        assert rig.offered == []
        rig.fan_in.done(0)
        rig.fan_in.done(1)
        assert rig.offered == [("a", "dapr")]  # the held one still comes out with its last result

    run(body())


def test_off_nothing_is_held() -> None:
    async def body() -> None:
        rig = Rig(enabled=False)
        rig.fan_in.scheduled(1, "a")
        rig.fan_in.scheduled(2, "a")
        rig.in_flight = 10  # the workers hold other work
        assert not rig.fan_in.holds("a", "dapr")

    run(body())


def test_without_a_running_loop_nothing_is_held() -> None:
    rig = Rig()
    rig.fan_in.scheduled(1, "a")
    rig.in_flight = 10  # the workers hold other work
    assert not rig.fan_in.holds("a", "dapr")


# ---------------------------------------------------------------- in the engine


def completed_ids(item: pb.WorkItem) -> list[int]:
    return [
        e.taskCompleted.taskScheduledId for e in item.workflowRequest.newEvents if e.HasField("taskCompleted")
    ]


async def fan_out_taken(engine: Engine, activities: int) -> tuple[int, list[pb.WorkItem]]:
    """A worker, and instance "a" started with `activities` activities scheduled at once, all of
    them taken by the worker."""
    worker = engine.connect_worker("dapr")
    await start(engine, "a")
    first = await take(engine, worker)
    await engine.complete_orchestration(response(first, *(schedule(k) for k in range(1, activities + 1))))
    return worker, [await take(engine, worker) for _ in range(activities)]


def test_under_load_a_fan_out_gets_one_turn_with_all_its_results() -> None:
    async def body() -> None:
        engine = await engine_on(fan_in_hold_seconds=30)  # no time limit within the test
        worker, acts = await fan_out_taken(engine, 3)
        await start(engine, "b")
        other = await take(engine, worker)  # the worker holds other work: it is busy
        await engine.complete_activity(activity_done(acts[0], '"1"'))
        await engine.complete_activity(activity_done(acts[1], '"2"'))
        assert engine.dispatch.state(InstanceWork("a")) is None  # held, not queued
        assert engine.dispatch.items.fan_in.is_held("a")
        await engine.complete_activity(activity_done(acts[2], '"3"'))
        assert engine.dispatch.state(InstanceWork("a")) == WorkState.QUEUED
        assert completed_ids(await take(engine, worker)) == [1, 2, 3]
        assert await next_item(engine, worker) is None  # nothing else: no turn with a part of them
        assert other.workflowRequest.instanceId == "b"
        await engine.stop()

    run(body())


def test_idle_the_first_result_is_offered_at_once() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker, acts = await fan_out_taken(engine, 2)
        await engine.complete_activity(activity_done(acts[0], '"1"'))
        assert engine.dispatch.state(InstanceWork("a")) == WorkState.QUEUED
        assert completed_ids(await take(engine, worker)) == [1]
        await engine.stop()

    run(body())


def test_a_held_turn_is_offered_when_the_hold_runs_out() -> None:
    async def body() -> None:
        engine = await engine_on()
        engine.dispatch.items.fan_in.hold_seconds = 0.05
        worker, acts = await fan_out_taken(engine, 2)
        await start(engine, "b")
        await take(engine, worker)  # the worker holds other work: it is busy
        await engine.complete_activity(activity_done(acts[0], '"1"'))
        assert engine.dispatch.items.fan_in.is_held("a")
        await asyncio.sleep(0.15)
        assert engine.dispatch.state(InstanceWork("a")) == WorkState.QUEUED
        assert completed_ids(await take(engine, worker)) == [1]
        await engine.stop()

    run(body())


def test_a_hold_of_zero_seconds_holds_nothing_under_load() -> None:
    async def body() -> None:
        engine = await engine_on(fan_in_hold_seconds=0)
        worker, acts = await fan_out_taken(engine, 2)
        await start(engine, "b")
        await take(engine, worker)  # the worker holds other work, which would hold the turn
        await engine.complete_activity(activity_done(acts[0], '"1"'))
        assert not engine.dispatch.items.fan_in.is_held("a")
        assert engine.dispatch.state(InstanceWork("a")) == WorkState.QUEUED
        await engine.stop()

    run(body())


def test_queued_work_no_worker_takes_does_not_hold_a_turn() -> None:
    """Work that waits queued (here: the worker has not asked for it; in a deployment: another app's,
    or outside every worker's filters) is no sign of load: the worker holds only a's activities."""

    async def body() -> None:
        engine = await engine_on(fan_in_hold_seconds=30)
        _, acts = await fan_out_taken(engine, 3)
        await start(engine, "b")  # queued, not taken
        await engine.complete_activity(activity_done(acts[0], '"1"'))
        assert not engine.dispatch.items.fan_in.is_held("a")
        assert engine.dispatch.state(InstanceWork("a")) == WorkState.QUEUED
        await engine.stop()

    run(body())
