"""Rewind (durabletask's RewindInstance) with real durabletask workers, compared with the SDK's own
reference backend (`durabletask.testing`) running the same scenarios; on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.harness.durability import call_after_restart, wait_until, wait_worker_connected
from tests.harness.engine_process import EngineProcess
from tests.harness.sdk_host import SdkError, SdkHost

STORES = ("sqlite", "postgresql")


def _outcome(state: dict[str, Any] | None) -> tuple[str, Any]:
    assert state is not None
    return state["status"], state["output"]


def _rewound(host: SdkHost, instance_id: str) -> int:
    return sum(e["kind"] == "EXECUTION_REWOUND" for e in host.call("history", instance_id=instance_id))


def activity_twice(host: SdkHost) -> dict[str, Any]:
    """A failed activity runs again on each rewind (the first without a reason); the activity that
    succeeded keeps its result and does not run again."""
    key, iid = uuid.uuid4().hex, uuid.uuid4().hex
    host.call("start", workflow="rewind_flow", input={"key": key, "fail_times": 2}, instance_id=iid)
    seen = [_outcome(host.call("wait_done", instance_id=iid))]
    host.call("rewind", instance_id=iid)
    seen.append(_outcome(host.call("wait_done", instance_id=iid)))
    host.call("rewind", instance_id=iid, reason="fixed for real")
    seen.append(_outcome(host.call("wait_done", instance_id=iid)))
    return {
        "statuses": [s for s, _ in seen],
        "output": seen[-1][1],
        "steady runs": host.call("counter", key=f"{key}-steady"),
        "flaky runs": host.call("counter", key=key),
        "rewound events": _rewound(host, iid),
    }


def failed_child(host: SdkHost, purge_child: bool = False) -> dict[str, Any]:
    """Rewinding a parent rewinds its failed child (or, if the child was purged, runs it anew)."""
    key, iid = uuid.uuid4().hex, uuid.uuid4().hex
    child = f"{iid}-child"
    args = {"key": key, "fail_times": 1, "child_id": child}
    host.call("start", workflow="rewind_parent", input=args, instance_id=iid)
    first = _outcome(host.call("wait_done", instance_id=iid))
    if purge_child:
        assert host.call("purge", instance_id=child) == 1
    host.call("rewind", instance_id=iid, reason="child fixed")
    return {
        "first": first[0],
        "after": _outcome(host.call("wait_done", instance_id=iid)),
        "child": _outcome(host.call("wait_done", instance_id=child)),
        "parent steady runs": host.call("counter", key=f"{key}-parent-steady"),
        "child steady runs": host.call("counter", key=f"{key}-steady"),
        "flaky runs": host.call("counter", key=key),
    }


def not_failed(host: SdkHost) -> dict[str, Any]:
    """Only a failed instance rewinds: a completed one and an unknown one are refused."""
    iid = uuid.uuid4().hex
    host.call("start", workflow="rewind_flow", input={"key": iid, "fail_times": 0}, instance_id=iid)
    host.call("wait_done", instance_id=iid)
    refused = {}
    for name, target in (("completed", iid), ("unknown", uuid.uuid4().hex)):
        with pytest.raises(SdkError) as err:
            host.call("rewind", instance_id=target)
        refused[name] = "FAILED_PRECONDITION" in str(err.value) or "NOT_FOUND" in str(err.value)
    return {"refused": refused, "still": _outcome(host.call("get", instance_id=iid))[0]}


@pytest.mark.parametrize(
    "scenario",
    [activity_twice, failed_child, lambda h: failed_child(h, purge_child=True), not_failed],
    ids=["activity-twice", "failed-child", "purged-child", "not-failed"],
)
def test_rewind_as_the_reference_backend(
    scenario: Callable[[SdkHost], dict[str, Any]], ours: SdkHost, reference: SdkHost
) -> None:
    expected = scenario(reference)
    assert scenario(ours) == expected


def test_rewind_results(ours: SdkHost) -> None:
    """The figures themselves (the comparison above holds them against the reference)."""
    assert activity_twice(ours) == {
        "statuses": ["FAILED", "FAILED", "COMPLETED"],
        "output": "[1, 3]",
        "steady runs": 1,
        "flaky runs": 3,
        "rewound events": 2,
    }
    assert failed_child(ours, purge_child=True)["after"] == ("COMPLETED", "[1, [2, 2]]")


def test_kill_during_rewind(engine: EngineProcess, ours: SdkHost) -> None:
    """The engine dies (SIGKILL) while the rewound activity runs: after the restart the rewind goes
    on from the store, the successful activity still does not run again, the rewind is recorded once."""
    key, iid = uuid.uuid4().hex, uuid.uuid4().hex
    args = {"key": key, "fail_times": 1, "sleep_on": 2, "sleep": 3}
    ours.call("start", workflow="rewind_flow", input=args, instance_id=iid)
    assert _outcome(ours.call("wait_done", instance_id=iid))[0] == "FAILED"
    ours.call("rewind", instance_id=iid, reason="in flight")
    wait_until(lambda: ours.call("counter", key=key) >= 2, 20, "the rewound activity to start")
    engine.kill()
    engine.start()
    wait_worker_connected(engine, "durabletask")
    state = call_after_restart(ours, "wait_done", instance_id=iid, timeout=30)
    assert _outcome(state) == ("COMPLETED", "[1, 3]")
    assert ours.call("counter", key=f"{key}-steady") == 1
    kinds = Counter(e["kind"] for e in ours.call("history", instance_id=iid))
    assert kinds["EXECUTION_REWOUND"] == 1
    assert kinds["TASK_FAILED"] == 0 and kinds["EXECUTION_COMPLETED"] == 1
