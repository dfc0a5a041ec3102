"""How many new starts' first turns one worker holds (engine/new_starts.py, `--worker-max-new-starts`):
the rule alone, the queue's side of it, and in an in-process engine on SQLite."""

from __future__ import annotations

import asyncio

from dapr_workflows_component.engine.new_starts import NewStarts
from dapr_workflows_component.engine.work_queue import WorkQueue
from dapr_workflows_component.protos import dapr_dialect_pb2 as pb

from tests.unit.engine_parts import (
    activity_done,
    engine_on,
    next_item,
    response,
    run,
    schedule,
    start,
    take,
)


def test_a_worker_holds_at_most_the_limit_of_first_turns_and_is_woken_when_one_ends() -> None:
    starts = NewStarts(2)
    starts.hold("a", worker_id=1)
    assert starts.has_room(1)
    starts.hold("b", worker_id=1)
    assert not starts.has_room(1)
    assert starts.has_room(2)  # per worker
    starts.hold("b", worker_id=1)  # counted once
    assert starts.held(1) == 2
    assert starts.end("a") is True  # it was full: wake it
    assert starts.has_room(1)
    assert starts.end("b") is False
    assert starts.end("never held") is False
    assert starts.held(1) == 0


def test_no_limit_of_their_own_with_0() -> None:
    starts = NewStarts(0)
    for key in range(1000):
        starts.hold(key, worker_id=1)
    assert starts.has_room(1)


def test_a_take_without_room_for_new_starts_takes_only_continuing_work() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.put("new", None, age=0, fresh=True)
    everything = lambda label: True  # noqa: E731
    assert queue.take(everything, new_starts=False) is None
    queue.put("later turn", None, age=5)
    assert queue.take(everything, new_starts=False) == "later turn"
    assert queue.take(everything, new_starts=True) == "new"


def instance_of(item: pb.WorkItem) -> str:
    if item.HasField("activityRequest"):
        return f"{item.activityRequest.workflowInstance.instanceId}:act"
    return item.workflowRequest.instanceId


def test_a_worker_full_of_first_turns_gets_the_older_work_first_and_new_starts_as_they_end() -> None:
    async def body() -> None:
        engine = await engine_on(worker_max_new_starts=2, health_ping_seconds=30)
        worker = engine.connect_worker("dapr")
        for name in ("a", "b", "c", "d"):
            await start(engine, name)
        a, b = await take(engine, worker), await take(engine, worker)
        assert [instance_of(a), instance_of(b)] == ["a", "b"]
        # It holds 2 first turns: c and d wait, though its window (100) has room...
        waiting = asyncio.ensure_future(next_item(engine, worker))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        # ...and another worker takes them meanwhile (the limit is per worker).
        other = engine.connect_worker("dapr")
        assert instance_of(await take(engine, other)) == "c"
        # a's first turn ends: the waiting take wakes, to a's activity (older) rather than d.
        await engine.complete_orchestration(response(a, schedule(1)))
        act = await asyncio.wait_for(waiting, 2)
        assert act is not None and instance_of(act) == "a:act"
        # The worker holds one first turn (b) now: there is room for d.
        assert instance_of(await take(engine, worker)) == "d"
        await engine.complete_activity(activity_done(act, '"r"'))
        assert instance_of(await take(engine, worker)) == "a"
        await engine.stop()

    run(body())


def test_a_first_turn_given_back_frees_its_place() -> None:
    async def body() -> None:
        engine = await engine_on(worker_max_new_starts=1)
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        await start(engine, "b")
        first = await take(engine, worker)
        assert await next_item(engine, worker) is None  # full: a health ping instead
        engine.abandon(first.completionToken)  # back to the queue, behind b
        assert instance_of(await take(engine, worker)) == "b"
        await engine.stop()

    run(body())
