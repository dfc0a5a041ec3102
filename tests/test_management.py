"""Management semantics end to end, with real clients and workers of each dialect.

Starting, instance IDs, suspend/resume, terminate, purge, and the dialects' extra calls: Dapr's
history, instance listing and rerun-from-event; durabletask's history stream, restart and ID reuse
policy. One engine and one SDK host per dialect serve the whole module; tests use unique IDs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import DIALECTS, STORE_KINDS, engine_on
from tests.harness.sdk_host import SdkError, SdkHost
from tests.harness.shared import (
    assert_grpc_error,
    output,
    shared_sdk_host,
    start,
    unique,
    wait_done,
    wait_status,
    wait_until,
)


@pytest.fixture(scope="module", params=[(d, s) for s in STORE_KINDS for d in DIALECTS], ids="-".join)
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SdkHost]:
    """One engine per dialect and store kind, with a worker and client of that dialect."""
    dialect, store_kind = request.param
    workdir = tmp_path_factory.mktemp(f"shared-{dialect}-{store_kind}")
    yield from shared_sdk_host(dialect, workdir, lambda w: engine_on(store_kind, request, w))


def only(sdk: SdkHost, dialect: str, why: str) -> None:
    if sdk.dialect != dialect:
        pytest.skip(why)


def waiting(sdk: SdkHost, names: tuple[str, ...] = ("go",)) -> str:
    """A running instance of `wait_events` that waits for events named `names`."""
    instance_id = start(sdk, "wait_events", {"names": list(names)})
    assert sdk.call("wait_start", instance_id=instance_id)["status"] == "RUNNING"
    return instance_id


def completed(sdk: SdkHost, workflow: str = "chain", input: Any = None) -> dict[str, Any]:
    instance_id = start(sdk, workflow, input if input is not None else {"n": 2})
    state = wait_done(sdk, instance_id)
    assert state["status"] == "COMPLETED", state
    return state


def sdk_error(call: Any) -> SdkError:
    with pytest.raises(SdkError) as info:
        call()
    return info.value


def kinds(sdk: SdkHost, instance_id: str) -> list[str]:
    return [e["kind"] for e in sdk.call("history", instance_id=instance_id)]


# ---------------------------------------------------------------------- start and instance IDs


def test_start_returns_once_the_instance_is_recorded(shared: SdkHost) -> None:
    """`get` right after `start` finds the instance, every time."""
    ids = []
    for n in range(10):
        instance_id = unique("recorded")
        assert shared.call(
            "start", workflow="wait_events", input={"names": [f"e{n}"]}, instance_id=instance_id
        ) == (instance_id)
        state = shared.call("get", instance_id=instance_id)
        assert state is not None, f"start returned before instance {instance_id!r} was recorded"
        assert state["instance_id"] == instance_id
        assert state["name"] == "wait_events"
        assert state["status"] in ("PENDING", "RUNNING")
        assert json.loads(state["input"]) == {"names": [f"e{n}"]}
        ids.append(instance_id)
    for instance_id in ids:
        shared.call("terminate", instance_id=instance_id)


def test_start_without_an_id_gets_a_fresh_one(shared: SdkHost) -> None:
    first = shared.call("start", workflow="chain", input={"n": 1})
    second = shared.call("start", workflow="chain", input={"n": 1})
    assert first and second and first != second
    assert wait_done(shared, first)["status"] == "COMPLETED"
    assert wait_done(shared, second)["status"] == "COMPLETED"


@pytest.mark.parametrize(
    "bad_id",
    ["bad id!", "a/b", "a:b", "a.b", "caf\u00e9", "x" * 257],
    ids=["space-and-bang", "slash", "colon", "dot", "non-ascii", "too-long"],
)
def test_malformed_instance_id_is_rejected(shared: SdkHost, bad_id: str) -> None:
    err = sdk_error(lambda: shared.call("start", workflow="chain", input={"n": 1}, instance_id=bad_id))
    assert_grpc_error(err, "INVALID_ARGUMENT", "instance ID")
    assert shared.call("get", instance_id=bad_id) is None


def test_instance_id_of_letters_digits_underscores_and_dashes_is_accepted(shared: SdkHost) -> None:
    instance_id = f"Ok_id-{unique('Z9')}_"
    assert shared.call("start", workflow="chain", input={"n": 1}, instance_id=instance_id) == instance_id
    assert wait_done(shared, instance_id)["status"] == "COMPLETED"


def test_an_id_in_use_is_taken_whatever_its_state(shared: SdkHost) -> None:
    running = waiting(shared)
    done = completed(shared)["instance_id"]
    failed = wait_done(shared, start(shared, "fail_uncaught", {"message": "x"}))["instance_id"]
    terminated = waiting(shared)
    shared.call("terminate", instance_id=terminated)
    for instance_id, status in [
        (running, "RUNNING"),
        (done, "COMPLETED"),
        (failed, "FAILED"),
        (terminated, "TERMINATED"),
    ]:
        before = shared.call("get", instance_id=instance_id)
        err = sdk_error(
            lambda i=instance_id: shared.call("start", workflow="chain", input={"n": 9}, instance_id=i)
        )
        assert_grpc_error(err, "ALREADY_EXISTS", instance_id, status)
        after = shared.call("get", instance_id=instance_id)
        assert (after["status"], after["input"], after["name"]) == (
            before["status"],
            before["input"],
            before["name"],
        )
    shared.call("terminate", instance_id=running)


def test_a_purged_id_can_be_used_again(shared: SdkHost) -> None:
    instance_id = completed(shared, "chain", {"n": 2})["instance_id"]
    shared.call("purge", instance_id=instance_id)
    assert shared.call("start", workflow="chain", input={"n": 7}, instance_id=instance_id) == instance_id
    state = wait_done(shared, instance_id)
    assert state["status"] == "COMPLETED"
    assert output(state) == 7


def test_reuse_policy_replaces_a_finished_instance_only(shared: SdkHost) -> None:
    """durabletask's OrchestrationIdReusePolicy: the caller names the statuses it may replace."""
    only(
        shared,
        "durabletask",
        "Dapr's SDK has no ID reuse policy (its reuse_id_policy is deprecated and ignored)",
    )
    instance_id = completed(shared, "chain", {"n": 2})["instance_id"]
    replaced = shared.call(
        "start",
        workflow="chain",
        input={"n": 5},
        instance_id=instance_id,
        replaceable=["COMPLETED", "FAILED"],
    )
    assert replaced == instance_id
    state = wait_done(shared, instance_id)
    assert state["status"] == "COMPLETED"
    assert output(state) == 5
    assert json.loads(state["input"]) == {"n": 5}

    running = waiting(shared)
    err = sdk_error(
        lambda: shared.call(
            "start",
            workflow="chain",
            input={"n": 1},
            instance_id=running,
            replaceable=["COMPLETED", "FAILED"],
        )
    )
    assert_grpc_error(err, "ALREADY_EXISTS", "RUNNING")
    assert shared.call("get", instance_id=running)["name"] == "wait_events"
    shared.call("terminate", instance_id=running)


@pytest.mark.parametrize(
    ("op", "args"),
    [("raise_event", {"name": "e", "data": 1}), ("suspend", {}), ("resume", {}), ("terminate", {})],
)
def test_operation_on_an_unknown_instance_is_not_found(
    shared: SdkHost, op: str, args: dict[str, Any]
) -> None:
    instance_id = unique("unknown")
    err = sdk_error(lambda: shared.call(op, instance_id=instance_id, **args))
    assert_grpc_error(err, "NOT_FOUND", instance_id)
    assert shared.call("get", instance_id=instance_id) is None


def test_get_of_an_unknown_instance_is_none(shared: SdkHost) -> None:
    assert shared.call("get", instance_id=unique("unknown")) is None


# ---------------------------------------------------------------------- suspend and resume


def test_suspend_and_resume_take_effect_before_they_return(shared: SdkHost) -> None:
    instance_id = waiting(shared)
    shared.call("suspend", instance_id=instance_id)
    assert shared.call("get", instance_id=instance_id)["status"] == "SUSPENDED"
    shared.call("resume", instance_id=instance_id)
    assert shared.call("get", instance_id=instance_id)["status"] == "RUNNING"
    shared.call("raise_event", instance_id=instance_id, name="go", data="after")
    state = wait_done(shared, instance_id)
    assert state["status"] == "COMPLETED"
    assert output(state) == ["after"]


def test_events_raised_while_suspended_arrive_after_resume(shared: SdkHost) -> None:
    instance_id = waiting(shared, ("go", "more"))
    shared.call("suspend", instance_id=instance_id)
    shared.call("raise_event", instance_id=instance_id, name="go", data=1)
    shared.call("raise_event", instance_id=instance_id, name="more", data=2)
    time.sleep(0.5)  # time enough for a worker to (wrongly) run the workflow on
    state = shared.call("get", instance_id=instance_id)
    assert state["status"] == "SUSPENDED"
    assert state["output"] is None
    shared.call("resume", instance_id=instance_id)
    state = wait_done(shared, instance_id)
    assert state["status"] == "COMPLETED"
    assert output(state) == [1, 2]


def test_activity_result_does_not_complete_a_suspended_workflow(shared: SdkHost) -> None:
    key = unique("slow")
    instance_id = start(shared, "slow_activity_wf", {"key": key, "seconds": 0.5})
    wait_until(lambda: shared.call("counter", key=f"{key}-started"), lambda n: n >= 1)
    shared.call("suspend", instance_id=instance_id)
    wait_until(lambda: shared.call("counter", key=key), lambda n: n >= 1)  # the activity finished
    time.sleep(0.5)
    assert shared.call("get", instance_id=instance_id)["status"] == "SUSPENDED"
    shared.call("resume", instance_id=instance_id)
    state = wait_done(shared, instance_id)
    assert state["status"] == "COMPLETED"
    assert output(state) == "slow-done"


def test_timer_does_not_complete_a_suspended_workflow(shared: SdkHost) -> None:
    instance_id = start(shared, "timer_then_add", {"seconds": 0.3, "value": 1})
    shared.call("wait_start", instance_id=instance_id)
    shared.call("suspend", instance_id=instance_id)
    time.sleep(1.0)  # the timer fires meanwhile
    assert shared.call("get", instance_id=instance_id)["status"] == "SUSPENDED"
    shared.call("resume", instance_id=instance_id)
    state = wait_done(shared, instance_id)
    assert state["status"] == "COMPLETED"
    assert output(state)["value"] == 2


def test_resume_of_a_running_instance_and_a_second_suspend_are_no_ops(shared: SdkHost) -> None:
    instance_id = waiting(shared)
    shared.call("resume", instance_id=instance_id)  # no error
    assert shared.call("get", instance_id=instance_id)["status"] == "RUNNING"
    shared.call("suspend", instance_id=instance_id)
    shared.call("suspend", instance_id=instance_id)  # no error
    assert shared.call("get", instance_id=instance_id)["status"] == "SUSPENDED"
    shared.call("resume", instance_id=instance_id)  # one resume undoes both
    assert shared.call("get", instance_id=instance_id)["status"] == "RUNNING"
    shared.call("raise_event", instance_id=instance_id, name="go", data="x")
    assert output(wait_done(shared, instance_id)) == ["x"]


# ---------------------------------------------------------------------- terminate


def test_terminate_is_immediate_recursive_and_keeps_its_output(shared: SdkHost) -> None:
    parent = unique("parent")
    child = f"{parent}-child"
    start(shared, "parent_waiting_child", {"child_id": child}, instance_id=parent)
    wait_status(shared, child, "RUNNING")
    shared.call("terminate", instance_id=parent, output={"reason": "stop"})
    state = shared.call("get", instance_id=parent)
    assert state["status"] == "TERMINATED"
    assert output(state) == {"reason": "stop"}
    assert shared.call("get", instance_id=child)["status"] == "TERMINATED"
    assert wait_done(shared, parent)["status"] == "TERMINATED"
    assert wait_done(shared, child)["status"] == "TERMINATED"


def test_terminate_of_a_suspended_instance_ends_it_and_its_children(shared: SdkHost) -> None:
    parent = unique("parent")
    child = f"{parent}-child"
    start(shared, "parent_waiting_child", {"child_id": child}, instance_id=parent)
    wait_status(shared, child, "RUNNING")
    shared.call("suspend", instance_id=parent)
    shared.call("terminate", instance_id=parent, output="ended")
    state = shared.call("get", instance_id=parent)
    assert (state["status"], output(state)) == ("TERMINATED", "ended")
    assert shared.call("get", instance_id=child)["status"] == "TERMINATED"


def test_non_recursive_terminate_leaves_children_running(shared: SdkHost) -> None:
    parent = unique("parent")
    child = f"{parent}-child"
    start(shared, "parent_waiting_child", {"child_id": child}, instance_id=parent)
    wait_status(shared, child, "RUNNING")
    shared.call("terminate", instance_id=parent, recursive=False)
    assert shared.call("get", instance_id=parent)["status"] == "TERMINATED"
    assert shared.call("get", instance_id=child)["status"] == "RUNNING"
    shared.call("raise_event", instance_id=child, name="never", data="late")
    assert output(wait_done(shared, child)) == ["late"]
    time.sleep(0.2)
    assert (
        shared.call("get", instance_id=parent)["status"] == "TERMINATED"
    )  # the child's result changes nothing


def test_terminate_discards_a_late_activity_result(shared: SdkHost) -> None:
    key = unique("slow")
    instance_id = start(shared, "slow_activity_wf", {"key": key, "seconds": 1.0})
    wait_until(lambda: shared.call("counter", key=f"{key}-started"), lambda n: n >= 1)
    shared.call("terminate", instance_id=instance_id, output="stopped")
    assert shared.call("get", instance_id=instance_id)["status"] == "TERMINATED"
    wait_until(lambda: shared.call("counter", key=key), lambda n: n >= 1)  # the activity finished
    time.sleep(0.5)  # and its worker has sent the result
    state = shared.call("get", instance_id=instance_id)
    assert state["status"] == "TERMINATED"
    assert output(state) == "stopped"
    assert "TASK_COMPLETED" not in kinds(shared, instance_id)


# ---------------------------------------------------------------------- purge


def test_purge_of_a_running_instance_is_refused(shared: SdkHost) -> None:
    instance_id = waiting(shared)
    err = sdk_error(lambda: shared.call("purge", instance_id=instance_id))
    assert_grpc_error(err, "FAILED_PRECONDITION", instance_id, "RUNNING", "terminate it first")
    assert shared.call("get", instance_id=instance_id)["status"] == "RUNNING"
    shared.call("terminate", instance_id=instance_id)


def test_purge_removes_a_finished_instance(shared: SdkHost) -> None:
    instance_id = completed(shared)["instance_id"]
    deleted = shared.call("purge", instance_id=instance_id)
    if shared.dialect == "durabletask":
        assert deleted == 1  # Dapr's SDK returns nothing
    assert shared.call("get", instance_id=instance_id) is None
    assert_grpc_error(sdk_error(lambda: shared.call("history", instance_id=instance_id)), "NOT_FOUND")


def test_recursive_purge_removes_children(shared: SdkHost) -> None:
    child = unique("child")
    parent = completed(shared, "parent_by_name", {"n": 1, "child_id": child})["instance_id"]
    assert shared.call("get", instance_id=child)["status"] == "COMPLETED"
    deleted = shared.call("purge", instance_id=parent)
    if shared.dialect == "durabletask":
        assert deleted == 2
    assert shared.call("get", instance_id=parent) is None
    assert shared.call("get", instance_id=child) is None


def test_non_recursive_purge_keeps_children(shared: SdkHost) -> None:
    child = unique("child")
    parent = completed(shared, "parent_by_name", {"n": 1, "child_id": child})["instance_id"]
    shared.call("purge", instance_id=parent, recursive=False)
    assert shared.call("get", instance_id=parent) is None
    assert shared.call("get", instance_id=child)["status"] == "COMPLETED"


# ---------------------------------------------------------------------- history and listing


def test_history_returns_the_instances_events(shared: SdkHost) -> None:
    """Dapr: GetInstanceHistory; durabletask: StreamInstanceHistory. Kinds are spelled alike."""
    instance_id = completed(shared, "chain", {"n": 2, "start": 1})["instance_id"]
    events = [e for e in shared.call("history", instance_id=instance_id) if e["kind"] != "WORKFLOW_STARTED"]
    assert [e["kind"] for e in events] == [
        "EXECUTION_STARTED",
        "TASK_SCHEDULED",
        "TASK_COMPLETED",
        "TASK_SCHEDULED",
        "TASK_COMPLETED",
        "EXECUTION_COMPLETED",
    ]
    assert events[0]["name"] == "chain"
    scheduled = [e for e in events if e["kind"] == "TASK_SCHEDULED"]
    assert [e["name"] for e in scheduled] == ["add_one", "add_one"]
    assert len({e["event_id"] for e in scheduled}) == 2
    assert all(e["event_id"] >= 0 for e in scheduled)
    unknown = unique("unknown")
    assert_grpc_error(sdk_error(lambda: shared.call("history", instance_id=unknown)), "NOT_FOUND")


def test_list_instance_ids_includes_every_instance(shared: SdkHost) -> None:
    ids = {completed(shared)["instance_id"] for _ in range(3)}
    listed = shared.call("list_ids", page_size=1000)
    assert ids <= set(listed)
    assert len(listed) == len(set(listed))


def test_list_instance_ids_pages_with_continuation_tokens(shared: SdkHost) -> None:
    only(shared, "dapr", "paging by continuation token is exercised through Dapr's ListInstanceIDs")
    for _ in range(5):
        completed(shared)
    everything = shared.call("list_ids", page_size=1000)
    assert len(everything) >= 5
    paged: list[str] = []
    token = None
    for _ in range(len(everything)):
        page = shared.call("list_page", page_size=2, continuation_token=token)
        assert 1 <= len(page["ids"]) <= 2
        paged.extend(page["ids"])
        token = page["token"]
        if not token:
            break
    assert paged == everything  # every ID once, in the same order


# ------------------------------------------------------------- rerun (Dapr) and restart (durabletask)


def scheduled_event_ids(sdk: SdkHost, instance_id: str) -> list[int]:
    return [
        e["event_id"] for e in sdk.call("history", instance_id=instance_id) if e["kind"] == "TASK_SCHEDULED"
    ]


def test_rerun_from_an_activity_runs_it_and_the_rest_again(shared: SdkHost) -> None:
    only(shared, "dapr", "rerun_workflow_from_event is Dapr's RPC; durabletask has none")
    source = completed(shared, "chain", {"n": 3, "start": 5})
    assert output(source) == 8
    second = scheduled_event_ids(shared, source["instance_id"])[1]

    same_input = unique("rerun")
    assert (
        shared.call("rerun", instance_id=source["instance_id"], event_id=second, new_instance_id=same_input)
        == same_input
    )
    state = wait_done(shared, same_input)
    assert state["status"] == "COMPLETED"
    assert output(state) == 8
    assert state["name"] == "chain"

    new_input = unique("rerun")
    shared.call(
        "rerun", instance_id=source["instance_id"], event_id=second, new_instance_id=new_input, input=100
    )
    state = wait_done(shared, new_input)
    assert state["status"] == "COMPLETED"
    assert output(state) == 102  # the second activity got 100 instead of 6: 101, then 102

    generated = shared.call("rerun", instance_id=source["instance_id"], event_id=second)
    assert generated and generated not in (source["instance_id"], same_input, new_input)
    assert output(wait_done(shared, generated)) == 8

    taken = sdk_error(
        lambda: shared.call(
            "rerun", instance_id=source["instance_id"], event_id=second, new_instance_id=same_input
        )
    )
    assert_grpc_error(taken, "ALREADY_EXISTS", same_input)

    untouched = shared.call("get", instance_id=source["instance_id"])
    assert (untouched["status"], output(untouched)) == ("COMPLETED", 8)


def test_rerun_of_a_running_instance_is_refused(shared: SdkHost) -> None:
    only(shared, "dapr", "rerun_workflow_from_event is Dapr's RPC; durabletask has none")
    instance_id = start(shared, "slow_activity_wf", {"key": unique("slow"), "seconds": 0.5})
    event_id = wait_until(lambda: scheduled_event_ids(shared, instance_id), bool)[0]
    err = sdk_error(lambda: shared.call("rerun", instance_id=instance_id, event_id=event_id))
    assert_grpc_error(err, "INVALID_ARGUMENT", "RUNNING")
    assert instance_id in err.message
    wait_done(shared, instance_id)


def test_rerun_error_codes_are_those_of_dapr_sdk(shared: SdkHost) -> None:
    """Dapr's SDK documents NOT_FOUND for an event that cannot be rerun from, INVALID_ARGUMENT for input
    given to a timer; a child workflow instance cannot be rerun either."""
    only(shared, "dapr", "rerun_workflow_from_event is Dapr's RPC; durabletask has none")
    source = completed(shared, "chain", {"n": 2, "start": 0})
    missing = sdk_error(lambda: shared.call("rerun", instance_id=source["instance_id"], event_id=999))
    assert_grpc_error(missing, "NOT_FOUND", "999")
    timer = completed(shared, "timer_then_add", {"seconds": 0.1, "value": 1})
    timer_id = next(
        e["event_id"]
        for e in shared.call("history", instance_id=timer["instance_id"])
        if e["kind"] == "TIMER_CREATED"
    )
    with_input = sdk_error(
        lambda: shared.call("rerun", instance_id=timer["instance_id"], event_id=timer_id, input=5)
    )
    assert_grpc_error(with_input, "INVALID_ARGUMENT", "no new input")
    rerun = shared.call("rerun", instance_id=timer["instance_id"], event_id=timer_id)
    assert wait_done(shared, rerun)["status"] == "COMPLETED"


def test_restart_runs_a_finished_instance_again(shared: SdkHost) -> None:
    """durabletask's RestartInstance, under the same ID and under a new one."""
    only(shared, "durabletask", "RestartInstance is durabletask's RPC; Dapr's SDK has no restart")
    key = unique("runs")
    args = {"key": key, "fail_times": 0, "attempts": 1}  # outputs how often the activity ran
    first = completed(shared, "retry_activity", args)
    instance_id = first["instance_id"]
    assert output(first) == 1

    assert shared.call("restart", instance_id=instance_id) == instance_id
    again = wait_done(shared, instance_id)
    assert again["status"] == "COMPLETED"
    assert output(again) == 2  # it ran again
    assert json.loads(again["input"]) == args
    assert again["created_at"] > first["created_at"]

    new_id = shared.call("restart", instance_id=instance_id, new_instance_id=True)
    assert new_id and new_id != instance_id
    third = wait_done(shared, new_id)
    assert (third["status"], output(third), third["name"]) == ("COMPLETED", 3, "retry_activity")
    assert json.loads(third["input"]) == args


def test_restart_of_a_running_instance_is_refused(shared: SdkHost) -> None:
    only(shared, "durabletask", "RestartInstance is durabletask's RPC; Dapr's SDK has no restart")
    instance_id = waiting(shared)
    err = sdk_error(lambda: shared.call("restart", instance_id=instance_id))
    assert_grpc_error(err, "FAILED_PRECONDITION", instance_id, "RUNNING")
    assert shared.call("get", instance_id=instance_id)["status"] == "RUNNING"
    shared.call("terminate", instance_id=instance_id)
