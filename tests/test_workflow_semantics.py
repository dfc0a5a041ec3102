"""Workflow semantics end to end, with real workers of each dialect.

Most tests share one engine and one SDK host per dialect (`shared`); they use unique instance IDs
and counter keys. Tests that restart the engine get their own (`engine`, `sdk` from conftest).
The workflows are in `tests/sdk_apps/*_workflows.py`, by the same names in both dialects.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DIALECTS, STORE_KINDS, engine_on
from tests.harness.engine_process import EngineProcess
from tests.harness.sdk_host import SdkError, SdkHost
from tests.harness.shared import output, shared_sdk_host, start, unique, wait_done, wait_until

# The engine tests run on each store.
STORES = STORE_KINDS


@pytest.fixture(scope="module", params=[(d, s) for s in STORE_KINDS for d in DIALECTS], ids="-".join)
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SdkHost]:
    """One engine per dialect and store kind, with a worker and client of that dialect."""
    dialect, store_kind = request.param
    workdir = tmp_path_factory.mktemp(f"shared-{dialect}-{store_kind}")
    yield from shared_sdk_host(dialect, workdir, lambda w: engine_on(store_kind, request, w))


def run(sdk: SdkHost, workflow: str, input: Any, timeout: float = 30) -> dict[str, Any]:
    """Starts `workflow` under a unique ID and waits until it has finished."""
    return wait_done(sdk, start(sdk, workflow, input), timeout)


def custom_status(state: dict[str, Any]) -> Any:
    """Dapr's SDK stores a string custom status as it is, durabletask's as JSON: decode either."""
    raw = state["custom_status"]
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw


def call_after_restart(sdk: SdkHost, op: str, **args: Any) -> Any:
    """A client call right after an engine restart: retried while the client's channel reconnects."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return sdk.submit(op, **args).result(timeout=float(args.get("timeout", 30)) + 15)
        except SdkError as err:
            if "UNAVAILABLE" not in err.message or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# ---------------------------------------------------------------------- activities


def test_activity_chain_passes_each_result_to_the_next(shared: SdkHost) -> None:
    state = run(shared, "chain", {"n": 5, "start": 10})
    assert state["status"] == "COMPLETED"
    assert output(state) == 15
    assert json.loads(state["input"]) == {"n": 5, "start": 10}
    assert state["failure"] is None


def test_fan_out_fan_in_collects_every_result_in_order(shared: SdkHost) -> None:
    values = list(range(20))
    state = run(shared, "fan_out", {"values": values})
    assert state["status"] == "COMPLETED"
    assert output(state) == {"results": [v + 1 for v in values], "sum": sum(values) + len(values)}


def test_uncaught_activity_failure_fails_the_workflow_with_details(shared: SdkHost) -> None:
    message = unique("boom")
    state = run(shared, "fail_uncaught", {"message": message})
    assert state["status"] == "FAILED"
    assert state["output"] is None
    failure = state["failure"]
    assert failure is not None
    assert failure["type"].endswith("TaskFailedError")  # the SDKs' type for a failed task
    assert message in failure["message"]


def test_caught_activity_failure_lets_the_workflow_go_on(shared: SdkHost) -> None:
    message = unique("caught")
    state = run(shared, "fail_caught", {"message": message})
    assert state["status"] == "COMPLETED"
    assert state["failure"] is None
    result = output(state)
    # The activity's own error type (`ValueError`; durabletask qualifies it as `builtins.ValueError`).
    assert result["error_type"].rsplit(".", 1)[-1] == "ValueError"
    assert result["message"] == message
    assert result["after"] == 2  # an activity after the caught failure ran


# ---------------------------------------------------------------------- retries


def test_activity_retry_policy_runs_a_flaky_activity_until_it_succeeds(shared: SdkHost) -> None:
    key = unique("flaky")
    state = run(shared, "retry_activity", {"key": key, "fail_times": 2, "attempts": 4})
    assert state["status"] == "COMPLETED"
    assert output(state) == 3  # the activity's own count of its runs
    assert shared.call("counter", key=key) == 3  # failed twice, then succeeded: k+1 runs


def test_activity_retry_policy_gives_up_after_its_last_attempt(shared: SdkHost) -> None:
    key = unique("hopeless")
    state = run(shared, "retry_activity", {"key": key, "fail_times": 10, "attempts": 3})
    assert state["status"] == "FAILED"
    assert f"flaky run 3 of {key}" in state["failure"]["message"]
    assert shared.call("counter", key=key) == 3


def test_child_workflow_retry_reuses_its_instance_id(shared: SdkHost) -> None:
    """Each attempt of a retried child uses the same instance ID: the failed attempt must make way."""
    key = unique("flaky-child")
    child_id = unique("child")
    state = run(shared, "retry_child", {"key": key, "fail_times": 2, "attempts": 4, "child_id": child_id})
    assert state["status"] == "COMPLETED", state["failure"]
    assert output(state) == {"runs": 3, "instance_id": child_id}
    assert shared.call("counter", key=key) == 3
    child = shared.call("get", instance_id=child_id)
    assert child["status"] == "COMPLETED"
    assert output(child) == {"runs": 3, "instance_id": child_id}


# ---------------------------------------------------------------------- timers


def test_durable_timer_delays_the_workflow(shared: SdkHost) -> None:
    started = time.monotonic()
    state = run(shared, "timer_then_add", {"seconds": 1.0, "value": 41})
    took = time.monotonic() - started
    assert state["status"] == "COMPLETED"
    result = output(state)
    assert result["value"] == 42
    assert result["elapsed"] >= 1.0  # workflow time between the timer's creation and its firing
    assert took >= 1.0


def test_long_timer_survives_an_engine_restart(engine: EngineProcess, sdk: SdkHost) -> None:
    """A 4 s timer; the engine is killed (-9) and restarted 1 s in; the worker reconnects by itself."""
    started = time.monotonic()
    instance_id = sdk.call("start", workflow="timer_then_add", input={"seconds": 4, "value": 1})
    assert sdk.call("wait_start", instance_id=instance_id)["status"] == "RUNNING"
    time.sleep(1.0)
    engine.restart()
    assert call_after_restart(sdk, "get", instance_id=instance_id)["status"] == "RUNNING"
    state = call_after_restart(sdk, "wait_done", instance_id=instance_id, timeout=60)
    took = time.monotonic() - started
    assert state["status"] == "COMPLETED"
    result = output(state)
    assert result["value"] == 2
    assert result["elapsed"] >= 4.0
    assert took >= 4.0
    assert engine.starts == 2


def test_every_pending_timer_survives_an_engine_restart(
    engine: EngineProcess, sdk: SdkHost, dialect: str, tmp_path: Path
) -> None:
    """Two timers pending at once (2.5 s and 4 s) when the engine restarts: both must fire."""
    instance_id = sdk.call("start", workflow="two_timers", input={"short": 2.5, "long": 4, "value": 1})
    assert sdk.call("wait_start", instance_id=instance_id)["status"] == "RUNNING"
    time.sleep(0.3)
    engine.restart()
    # A fresh worker connects at once (the first host's worker reconnects only after its backoff),
    # so the short timer's turn runs before the long timer is due, whatever that backoff is.
    fresh = SdkHost(dialect, engine.address(dialect), tmp_path / "fresh-host.log")
    try:
        state = call_after_restart(fresh, "wait_done", instance_id=instance_id, timeout=7)
    finally:
        fresh.close()
    assert state is not None and state["status"] == "COMPLETED"
    result = output(state)
    assert result["value"] == 2
    assert result["elapsed"] >= 4.0


# ---------------------------------------------------------------------- child workflows


@pytest.mark.parametrize("parent", ["parent_by_function", "parent_by_name"])
def test_child_workflow_result_reaches_the_parent(shared: SdkHost, parent: str) -> None:
    child_id = unique("child")
    state = run(shared, parent, {"n": 4, "child_id": child_id})
    assert state["status"] == "COMPLETED"
    assert output(state) == {"child": 4}
    child = shared.call("get", instance_id=child_id)
    assert child["status"] == "COMPLETED"
    assert child["name"] == "chain"
    assert output(child) == 4


def test_child_workflow_failure_is_caught_by_the_parent(shared: SdkHost) -> None:
    message = unique("child-boom")
    state = run(shared, "parent_child_fails", {"message": message, "catch": True})
    assert state["status"] == "COMPLETED"
    result = output(state)
    assert result["caught"] is True
    assert message in result["message"]


def test_uncaught_child_workflow_failure_fails_the_parent(shared: SdkHost) -> None:
    message = unique("child-boom")
    child_id = unique("child")
    state = run(shared, "parent_child_fails", {"message": message, "catch": False, "child_id": child_id})
    assert state["status"] == "FAILED"
    assert message in state["failure"]["message"]
    child = shared.call("get", instance_id=child_id)
    assert child["status"] == "FAILED"
    assert message in child["failure"]["message"]


# ---------------------------------------------------------------------- external events


def test_events_raised_before_the_wait_are_kept_for_it(shared: SdkHost) -> None:
    """The workflow sleeps 1.5 s first; the events arrive meanwhile and are handed out in order."""
    instance_id = start(shared, "wait_events", {"names": ["x", "y", "x"], "delay": 1.5})
    raised_at = time.monotonic()
    shared.call("raise_event", instance_id=instance_id, name="x", data=1)
    shared.call("raise_event", instance_id=instance_id, name="y", data={"two": 2})
    shared.call("raise_event", instance_id=instance_id, name="x", data=3)
    assert time.monotonic() - raised_at < 1.0, "the events must be raised while the workflow sleeps"
    assert shared.call("get", instance_id=instance_id)["status"] in ("PENDING", "RUNNING")
    state = wait_done(shared, instance_id)
    assert state["status"] == "COMPLETED"
    assert output(state) == [1, {"two": 2}, 3]


def test_event_raised_after_the_wait_resumes_the_workflow(shared: SdkHost) -> None:
    instance_id = start(shared, "wait_events", {"names": ["approve"]})
    shared.call("wait_start", instance_id=instance_id)
    time.sleep(0.3)  # the workflow is now waiting
    assert shared.call("get", instance_id=instance_id)["status"] == "RUNNING"
    shared.call("raise_event", instance_id=instance_id, name="approve", data={"by": "me"})
    state = wait_done(shared, instance_id)
    assert state["status"] == "COMPLETED"
    assert output(state) == [{"by": "me"}]


def test_several_events_of_one_name_arrive_in_order(shared: SdkHost) -> None:
    instance_id = start(shared, "wait_events", {"names": ["n"] * 5})
    shared.call("wait_start", instance_id=instance_id)
    for value in range(1, 6):
        shared.call("raise_event", instance_id=instance_id, name="n", data=value * 10)
    state = wait_done(shared, instance_id)
    assert output(state) == [10, 20, 30, 40, 50]


def test_wait_with_timeout_gets_an_event_raised_in_time(shared: SdkHost) -> None:
    instance_id = start(shared, "event_or_timeout", {"name": "reply", "timeout": 30})
    shared.call("wait_start", instance_id=instance_id)
    started = time.monotonic()
    shared.call("raise_event", instance_id=instance_id, name="reply", data="in time")
    state = wait_done(shared, instance_id)
    assert output(state) == {"event": "in time"}
    assert time.monotonic() - started < 10  # not after the 30 s timeout


def test_wait_with_timeout_times_out_without_an_event(shared: SdkHost) -> None:
    started = time.monotonic()
    state = run(shared, "event_or_timeout", {"name": "reply", "timeout": 1})
    assert state["status"] == "COMPLETED"
    assert output(state) == {"timed_out": True}
    assert time.monotonic() - started >= 1.0


def test_event_sent_by_one_instance_reaches_another(shared: SdkHost) -> None:
    """durabletask: `ctx.send_event`; Dapr: an activity raises the event with a DaprWorkflowClient."""
    receiver = start(shared, "wait_events", {"names": ["ping"]})
    shared.call("wait_start", instance_id=receiver)
    sender = run(shared, "send_event_wf", {"target": receiver, "name": "ping", "data": {"from": "sender"}})
    assert sender["status"] == "COMPLETED"
    state = wait_done(shared, receiver)
    assert state["status"] == "COMPLETED"
    assert output(state) == [{"from": "sender"}]


# ---------------------------------------------------------------------- continue-as-new, status


def test_continue_as_new_carries_unprocessed_events_over(shared: SdkHost) -> None:
    """Three events arrive while the first execution sleeps; each execution takes one, the rest
    carry over (save_events=True) into the next execution."""
    instance_id = start(
        shared,
        "collect_as_new",
        {"seen": [], "target": 3, "delay": 1.0},
        instance_id=unique("can"),
    )
    for item in ("a", "b", "c"):
        shared.call("raise_event", instance_id=instance_id, name="item", data=item)
    state = wait_done(shared, instance_id, 30)
    assert state["status"] == "COMPLETED", state
    assert output(state) == {"seen": ["a", "b", "c"], "generations": 3}
    # The last execution started from the input the one before it continued with.
    assert json.loads(state["input"]) == {"seen": ["a", "b"], "target": 3}


def test_custom_status_is_visible_while_running_and_at_completion(shared: SdkHost) -> None:
    instance_id = shared.call("start", workflow="custom_status_wf", input={})
    running = wait_until(
        lambda: shared.call("get", instance_id=instance_id),
        lambda s: s["custom_status"] is not None,
    )
    assert running["status"] == "RUNNING"
    assert custom_status(running) == "waiting"
    shared.call("raise_event", instance_id=instance_id, name="next", data=7)
    done = wait_done(shared, instance_id)
    assert done["status"] == "COMPLETED"
    assert custom_status(done) == "done-7"
    assert output(done) == 7


# ---------------------------------------------------------------------- when_any / when_all


def test_activity_that_beats_a_long_timer_completes_the_workflow_at_once(shared: SdkHost) -> None:
    """An activity raced against a 60 s timer: the workflow completes without waiting for the timer."""
    started = time.monotonic()
    state = run(shared, "race_timer", {"value": 9}, timeout=20)
    assert time.monotonic() - started < 10
    assert state["status"] == "COMPLETED"
    assert output(state) == {"winner": "activity", "value": 10}
    kinds = [e["kind"] for e in shared.call("history", instance_id=state["instance_id"])]
    assert "TIMER_CREATED" in kinds and "TIMER_FIRED" not in kinds
    time.sleep(0.2)
    assert shared.call("get", instance_id=state["instance_id"])["status"] == "COMPLETED"


# ---------------------------------------------------------------------- versioning


def test_patches_keep_old_instances_on_the_old_path_and_new_ones_on_the_new(shared: SdkHost) -> None:
    """Dapr's `ctx.is_patched`: version 2 of `patched` inserts a step behind the patch "extra_step".

    An instance that ran its first turns under version 1 must replay them unpatched (is_patched is
    False while replaying a history without the patch) and complete without a non-determinism
    error; an instance started under version 2 must keep the patched path on every replay, which
    needs the engine to record the patch names the worker reports with each turn.
    """
    if shared.dialect != "dapr":
        pytest.skip("durabletask 1.12 has no workflow patching API (no is_patched); Dapr's SDK has")
    key = unique("patch")
    old = start(shared, "patched", {"key": key})
    # Under version 1 the instance runs `add_one(1)` and waits for "go".
    wait_until(
        lambda: [e["kind"] for e in shared.call("history", instance_id=old)],
        lambda kinds: "TASK_COMPLETED" in kinds,
    )
    shared.call("set_code_version", key=key, version=2)  # "deploy" version 2
    shared.call("raise_event", instance_id=old, name="go", data="old")
    old_state = wait_done(shared, old)
    assert old_state["status"] == "COMPLETED", old_state["failure"]
    assert output(old_state) == {"extra": 0, "first": 2, "go": "old"}

    new = start(shared, "patched", {"key": key})
    wait_until(
        lambda: [e["kind"] for e in shared.call("history", instance_id=new)],
        lambda kinds: kinds.count("TASK_COMPLETED") == 2,
    )
    shared.call("raise_event", instance_id=new, name="go", data="new")
    new_state = wait_done(shared, new)
    assert new_state["status"] == "COMPLETED", new_state["failure"]
    assert output(new_state) == {"extra": 101, "first": 2, "go": "new"}
