"""Patch-mismatch stalls (engine/turns.py): daprd's rule on the patches a turn reports, and what a
stalled turn leaves in the store."""

from __future__ import annotations

import pytest
from dapr_workflows_component.engine.patches import patch_mismatch
from dapr_workflows_component.engine.wire import history_event, now_us
from dapr_workflows_component.protos import dapr_dialect_pb2 as pb
from dapr_workflows_component.workflows import RuntimeStatus

from tests.unit.engine_parts import Machine, complete, events_of, kinds, schedule


def _started(*patches: str) -> bytes:
    started = pb.WorkflowStartedEvent(version=pb.WorkflowVersion(patches=list(patches)))
    return history_event(now_us(), workflowStarted=started).SerializeToString()


@pytest.mark.parametrize(
    ("recorded", "reported", "stalls"),
    [
        ([], [], False),
        ([], ["a"], False),
        ([["a"]], ["a"], False),
        ([["a"]], ["a", "b"], False),  # a new patch after the recorded ones
        ([["a"], ["a", "b"]], ["a", "b"], False),
        ([["a"]], [], True),  # the is_patched check was removed
        ([["a"], ["b"]], ["a"], True),
        ([["b", "a"]], ["a", "b"], True),  # same patches, other order
        ([["a"]], ["b", "a"], True),
    ],
)
def test_recorded_patches_must_begin_the_reported_ones(
    recorded: list[list[str]], reported: list[str], stalls: bool
) -> None:
    history = [_started(*turn) for turn in recorded]
    assert (patch_mismatch(history, reported) is not None) == stalls


def test_description_is_daprds() -> None:
    history = [_started("patch2", "patch1")]
    assert patch_mismatch(history, ["patch1", "patch2"]) == (
        "Patch mismatch. History patches: [patch2, patch1], current patches: [patch1, patch2]. "
    )


def test_a_turn_that_drops_a_patch_stalls_and_a_matching_one_resumes() -> None:
    m = Machine()
    m.start("a")
    m.turn("a", schedule(0, "step"), version=pb.WorkflowVersion(patches=["extra"]))
    done = pb.TaskCompletedEvent(taskScheduledId=0)
    m.tx(
        lambda t: t.add_inbox("a", history_event(now_us(), taskCompleted=done).SerializeToString(), now_us())
    )
    before = m.history("a")

    for _ in range(2):  # the same stall twice is recorded once
        fx = m.turn("a", complete(1, '"wrong"'))
        assert m.instance("a").status == RuntimeStatus.STALLED
        assert fx.stalled == {"a": "dapr"} and "a" not in fx.ready
    history = m.history("a")
    assert history[: len(before)] == before and kinds(history[len(before) :]) == ["executionStalled"]
    [stalled] = events_of(history[len(before) :])
    assert stalled.executionStalled.reason == pb.PATCH_MISMATCH
    assert "History patches: [extra], current patches: []" in stalled.executionStalled.description
    assert kinds(m.inbox("a")) == ["taskCompleted"]  # kept for a worker whose code matches

    m.turn("a", complete(1, '"right"'), version=pb.WorkflowVersion(patches=["extra"]))
    assert m.instance("a").status == RuntimeStatus.COMPLETED
    assert m.instance("a").output == '"right"'
