"""The patches a cached history records, kept with it (history_cache.py, patches.py): always those
a read of the whole history gives, across turns that add patches, a stall, continue-as-new and a
rerun; and a turn's patch check reads no history event once they are known."""

from __future__ import annotations

import pytest
from dapr_workflows_component.engine import Engine, turns
from dapr_workflows_component.engine.history_cache import HistoryCache
from dapr_workflows_component.engine.patches import patches_after, recorded_patches
from dapr_workflows_component.engine.wire import history_event, now_us
from dapr_workflows_component.protos import dapr_dialect_pb2 as pb
from dapr_workflows_component.workflows import RuntimeStatus

from tests.unit.engine_parts import (
    activity_done,
    complete,
    engine_on,
    response,
    run,
    schedule,
    start,
    take,
)


def _started(*patches: str) -> bytes:
    started = pb.WorkflowStartedEvent(version=pb.WorkflowVersion(patches=list(patches)))
    return history_event(now_us(), workflowStarted=started).SerializeToString()


def version(*patches: str) -> pb.WorkflowVersion:
    return pb.WorkflowVersion(patches=list(patches))


async def assert_kept_patches_are_the_histories(engine: Engine, instance_id: str) -> list[str] | None:
    """The cached history is the store's, and its kept patches (if any) those a read of it gives."""
    cache = engine.dispatch.history
    cached = cache.get(instance_id)
    if cached is None:
        return None
    assert cached == await engine.history(instance_id)
    kept = cache.patches(instance_id)
    if kept is not None:
        assert kept == recorded_patches(cached)
    return kept


@pytest.mark.parametrize(
    ("history", "added"),
    [
        ([], []),
        ([], [["a"]]),
        ([["a"]], [["a", "b"]]),
        ([["a", "b"]], [["b", "c", "a"], ["d"]]),
        ([["a"]], [[]]),
        ([["b", "b"]], [["a", "a", "b"]]),
    ],
)
def test_patches_after_new_events_equal_a_read_of_the_whole_history(
    history: list[list[str]], added: list[list[str]]
) -> None:
    before = [_started(*p) for p in history]
    new = [_started(*p) for p in added] + [
        history_event(now_us(), taskCompleted=pb.TaskCompletedEvent()).SerializeToString()
    ]
    assert patches_after(recorded_patches(before), new) == recorded_patches(before + new)


def test_the_cache_keeps_patches_only_with_the_history_they_were_read_from() -> None:
    cache = HistoryCache(10, 1 << 20, True)
    events = [_started("a")]
    cache.remember("i", events, ["a"])
    assert cache.patches("i") == ["a"]
    cache.remember("i", [*events, _started("b")])  # a history stored without them: not known
    assert cache.patches("i") is None
    cache.remember("i", events, ["a"])
    cache.forget("i")
    assert cache.patches("i") is None and cache.get("i") is None


def test_kept_patches_follow_turns_a_stall_continue_as_new_and_a_rerun(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[int] = []
    real = turns.recorded_patches

    def counted(history: list[bytes]) -> list[str]:
        reads.append(len(history))
        return real(history)

    monkeypatch.setattr(turns, "recorded_patches", counted)

    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        first = await take(engine, worker)
        await engine.complete_orchestration(response(first, schedule(0), version=version("p1")))
        assert await assert_kept_patches_are_the_histories(engine, "a") == ["p1"]
        await engine.complete_activity(activity_done(await take(engine, worker), '"r"'))
        second = await take(engine, worker)
        await engine.complete_orchestration(response(second, schedule(1), version=version("p1", "p2")))
        assert await assert_kept_patches_are_the_histories(engine, "a") == ["p1", "p2"]
        assert reads == [0]  # the new instance's empty history, once: then carried from turn to turn

        await engine.complete_activity(activity_done(await take(engine, worker), '"r"'))
        dropped = await take(engine, worker)
        await engine.complete_orchestration(response(dropped, complete(2, '"x"'), version=version("p1")))
        inst = await engine.get_instance("a")
        assert inst is not None and inst.status == RuntimeStatus.STALLED
        assert await assert_kept_patches_are_the_histories(engine, "a") == ["p1", "p2"]

        other = engine.connect_worker("dapr")  # a worker whose code may match: offered again
        matching = await take(engine, other)
        again = response(matching, complete(2, '"more"', status=pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW))
        again.version.CopyFrom(version("p1", "p2"))
        await engine.complete_orchestration(again)
        assert await engine.history("a") == []  # a new execution
        fresh = await take(engine, other)
        await engine.complete_orchestration(response(fresh, schedule(0), version=version("p3")))
        await engine.complete_activity(activity_done(await take(engine, other), '"r"'))
        last = await take(engine, other)
        await engine.complete_orchestration(response(last, complete(1, '"end"'), version=version("p3")))
        inst = await engine.get_instance("a")
        assert inst is not None and inst.status == RuntimeStatus.COMPLETED
        assert reads == [0, 0]  # the new execution's empty history

        await engine.rerun_from_event("a", 0, "copy", None, False)
        rerun = await take(engine, other)
        kept = await assert_kept_patches_are_the_histories(engine, "copy")
        await engine.complete_orchestration(response(rerun, schedule(0), version=version("p3", "p4")))
        kept = await assert_kept_patches_are_the_histories(engine, "copy")
        assert kept is not None and kept == recorded_patches(await engine.history("copy"))
        assert "p4" in kept
        await engine.stop()

    run(body())
