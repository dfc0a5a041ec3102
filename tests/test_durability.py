"""Durability: a killed engine, killed and hanging workers, expired leases and duplicate results.

An activity may run more than once (at-least-once), but each scheduled activity gets exactly one
result in its workflow's history. The SDKs ignore a second result for a task they no longer wait
for, so a result applied twice would not always show in a workflow's output: every test here also
reads the history over raw gRPC and counts the results per task.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import wrappers_pb2

from tests.conftest import STORE_KINDS, engine_on
from tests.harness import activity_log
from tests.harness.durability import (
    RetryingCalls,
    assert_each_result_applied_once,
    boot_log,
    call_after_restart,
    event_kinds,
    wait_until,
    wait_worker_connected,
)
from tests.harness.engine_process import EngineProcess
from tests.harness.raw_grpc import RawClient, status_name
from tests.harness.sdk_host import SdkHost

SEED = 20260611
N_WORKFLOWS = 200
CHAIN, FAN = 3, 4  # activities per durable_sum workflow: a chain of 3, then a fan-out of 4


def event_value(i: int) -> int:
    # Never 0: Dapr's client drops falsy event data (`data if data else None`).
    return i + 1


def sum_input(i: int, log: Path) -> dict[str, Any]:
    return {"base": i, "chain": CHAIN, "fan": FAN, "timer": 0.2 + (i % 4) * 0.2, "log": str(log)}


# Every test runs on each store: a killed engine loses nothing on PostgreSQL either.
STORES = STORE_KINDS


@pytest.fixture
def engines(
    tmp_path: Path, store_kind: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., EngineProcess]]:
    """Starts engines with extra flags; kills them at the end."""
    started: list[EngineProcess] = []

    def start(*args: str) -> EngineProcess:
        engine = engine_on(store_kind, request, tmp_path, *args).start()
        started.append(engine)
        return engine

    yield start
    for engine in started:
        engine.kill()


def runs_of(log: Path, key: str) -> list[dict[str, Any]]:
    return [e for e in activity_log.read(log) if e["key"] == key]


def slow_input(log: Path, key: str, first_sleep: float) -> dict[str, Any]:
    return {"log": str(log), "key": key, "value": 41, "first_sleep": first_sleep, "sleep": 0}


def assert_history_ok(client: RawClient, instance_id: str, activities: int) -> Counter[str]:
    events = client.history(instance_id)
    assert_each_result_applied_once(instance_id, events)
    kinds = event_kinds(events)
    assert kinds["taskScheduled"] == activities, f"{instance_id}: {dict(kinds)}"
    assert kinds["executionStarted"] == 1 and kinds["executionCompleted"] == 1, (
        f"{instance_id}: {dict(kinds)}"
    )
    return kinds


# ---------------------------------------------------------------------------------------- engine kills


@pytest.mark.slow
def test_engine_killed_at_random_moments_loses_nothing(
    dialect: str, engine: EngineProcess, sdk: SdkHost, tmp_path: Path
) -> None:
    """200 workflows (activity chain, fan-out, timer, external event) survive 3-5 kill -9 of the engine."""
    began = time.monotonic()
    rng = random.Random(SEED)
    log = tmp_path / "activities.log"
    ids = [f"sum-{i:03d}" for i in range(N_WORKFLOWS)]
    kills = rng.randint(3, 5)
    # Events are raised in portions, one per phase between kills, in a seeded random order.
    order = list(range(N_WORKFLOWS))
    rng.shuffle(order)
    portions = [order[k :: kills + 1] for k in range(kills + 1)]

    calls = RetryingCalls(sdk)

    def start(i: int) -> None:
        calls.submit("start", workflow="durable_sum", input=sum_input(i, log), instance_id=ids[i])

    def raise_go(i: int) -> None:
        calls.submit("raise_event", instance_id=ids[i], name="go", data=event_value(i))

    for i in range(N_WORKFLOWS // 2):
        start(i)
    assert calls.settle() == [], "starts failed before any kill"

    retry: list[tuple[str, dict[str, Any]]] = []
    reconnects: list[float] = []
    gaps: list[float] = []
    for k in range(kills):
        # Each kill lands while the worker is connected and busy, a random moment after it reconnected.
        reconnects.append(wait_worker_connected(engine, dialect))
        calls.resend(sorted(retry, key=lambda c: c[0] != "start"))
        half = len(portions[k]) // 2
        for i in portions[k][:half]:
            raise_go(i)
        gaps.append(rng.uniform(0.3, 1.5))
        time.sleep(gaps[-1])
        # Calls in flight when the engine dies: some were committed, some not; all are sent again.
        if k == 0:
            for i in range(N_WORKFLOWS // 2, N_WORKFLOWS):
                start(i)
        for i in portions[k][half:]:
            raise_go(i)
        engine.kill()
        engine.start()
        retry = calls.settle()

    reconnects.append(wait_worker_connected(engine, dialect))
    calls.until_all_succeed(sorted(retry, key=lambda c: c[0] != "start"))
    for i in portions[kills]:
        raise_go(i)
    calls.until_all_succeed(calls.settle())

    # Every workflow completes with the sum of each activity result counted once.
    states: dict[str, dict[str, Any]] = {}

    def all_done() -> bool:
        pending = [iid for iid in ids if iid not in states]
        futures: list[tuple[str, Future[Any]]] = [
            (iid, sdk.submit("get", instance_id=iid)) for iid in pending
        ]
        for iid, fut in futures:
            state = fut.result(timeout=30)
            if state is not None and state["status"] not in ("RUNNING", "PENDING"):
                states[iid] = state
        return len(states) == len(ids)

    wait_until(all_done, 45, "all workflows to finish", interval=0.5)
    wrong = {
        iid: (s["status"], s["output"], s["failure"])
        for i, iid in enumerate(ids)
        for s in [states[iid]]
        if s["status"] != "COMPLETED"
        or json.loads(s["output"]) != activity_log.expected_sum(i, CHAIN, FAN, event_value(i))
    }
    assert not wrong, f"{len(wrong)} workflows ended wrong, e.g. {list(wrong.items())[:3]}"

    with RawClient(engine.address(dialect), dialect) as client:
        for iid in ids:
            kinds = assert_history_ok(client, iid, CHAIN + FAN)
            assert kinds["timerFired"] == 1 and kinds["taskCompleted"] == CHAIN + FAN, f"{iid}: {dict(kinds)}"
            assert kinds["eventRaised"] >= 1, f"{iid}: {dict(kinds)}"

    executions = Counter((e["instance"], e["task"]) for e in activity_log.read(log))
    assert len(executions) == N_WORKFLOWS * (CHAIN + FAN), "an activity never ran"
    reran = sum(1 for n in executions.values() if n > 1)
    boots = engine.log_text().count("===== start")
    assert boots == kills + 1
    print(
        f"\n[{dialect}] {kills} kills after {[round(g, 2) for g in gaps]}s of work; worker reconnected "
        f"{[round(r, 2) for r in reconnects]}s after each (re)start; {reran} activities ran more than "
        f"once; {calls.resent} client calls sent again ({dict(calls.failures)}); "
        f"{time.monotonic() - began:.1f}s in all"
    )


def test_engine_killed_during_an_activity_runs_it_again(
    dialect: str, engine: EngineProcess, sdk: SdkHost, tmp_path: Path
) -> None:
    """The activity a worker was running when the engine died is offered again after the restart;
    the result the first run sends afterwards (its lease died with the engine) is not applied."""
    log = tmp_path / "activities.log"
    iid = sdk.call("start", workflow="slow_flow", input=slow_input(log, "k", first_sleep=3))
    wait_until(lambda: runs_of(log, "k"), 15, "the activity to start")
    engine.kill()
    engine.start()
    state = call_after_restart(sdk, "wait_done", instance_id=iid, timeout=30)
    assert state["status"] == "COMPLETED" and state["output"] == "42", state
    assert len(runs_of(log, "k")) == 2  # the restarted engine offered the activity again
    time.sleep(3.5)  # the first run's result is sent (or not) by now; it must change nothing
    assert sdk.call("get", instance_id=iid)["output"] == "42"
    with RawClient(engine.address(dialect), dialect) as client:
        assert_history_ok(client, iid, 1)
    stale = "ignored a stale activity result" in boot_log(engine)
    print(f"\n[{dialect}] the first run's late result reached the restarted engine: {stale}")


# ---------------------------------------------------------------------------------------- workers


def test_killed_worker_activity_runs_again_on_a_new_host(
    dialect: str, engine: EngineProcess, hosts: Callable[[str, str], SdkHost], tmp_path: Path
) -> None:
    log = tmp_path / "activities.log"
    first = hosts(dialect, engine.address(dialect))
    iid = first.call("start", workflow="slow_flow", input=slow_input(log, "k", first_sleep=60))
    wait_until(lambda: runs_of(log, "k"), 15, "the activity to start")
    first.kill()  # SIGKILL in the middle of the activity
    second = hosts(dialect, engine.address(dialect))
    state = second.call("wait_done", instance_id=iid, timeout=30)
    assert state["status"] == "COMPLETED" and state["output"] == "42", state
    runs = runs_of(log, "k")
    assert [r["pid"] for r in runs] == [first.proc.pid, second.proc.pid], runs
    with RawClient(engine.address(dialect), dialect) as client:
        assert_history_ok(client, iid, 1)


def test_disconnected_worker_returns_its_items_at_once(
    dialect: str, engines: Callable[..., EngineProcess], hosts: Callable[[str, str], SdkHost], tmp_path: Path
) -> None:
    """With a 300 s activity lease, a killed worker's activity goes to another worker at once."""
    engine = engines("--activity-lease-seconds", "300")
    log = tmp_path / "activities.log"
    a, b = hosts(dialect, engine.address(dialect)), hosts(dialect, engine.address(dialect))
    wait_worker_connected(engine, dialect, count=2)
    iid = a.call("start", workflow="slow_flow", input=slow_input(log, "k", first_sleep=60))
    runs = wait_until(lambda: runs_of(log, "k"), 15, "the activity to start")
    holder, other = (a, b) if runs[0]["pid"] == a.proc.pid else (b, a)
    holder.kill()
    killed_at = time.monotonic()
    state = other.call("wait_done", instance_id=iid, timeout=30)
    elapsed = time.monotonic() - killed_at
    assert state["status"] == "COMPLETED" and state["output"] == "42", state
    assert elapsed < 5, f"the workflow took {elapsed:.1f}s after the worker died"
    assert [r["pid"] for r in runs_of(log, "k")] == [holder.proc.pid, other.proc.pid]
    assert "1 leased work items returned to the queue" in engine.log_text()
    with RawClient(engine.address(dialect), dialect) as client:
        assert_history_ok(client, iid, 1)
    print(f"\n[{dialect}] completed {elapsed:.2f}s after the worker holding the activity was killed")


def test_expired_activity_lease_goes_to_another_worker(
    dialect: str, engines: Callable[..., EngineProcess], hosts: Callable[[str, str], SdkHost], tmp_path: Path
) -> None:
    """A worker that hangs in an activity loses it when the lease runs out; its late result is ignored."""
    engine = engines("--activity-lease-seconds", "2")
    log = tmp_path / "activities.log"
    a, _ = hosts(dialect, engine.address(dialect)), hosts(dialect, engine.address(dialect))
    wait_worker_connected(engine, dialect, count=2)
    began = time.monotonic()
    iid = a.call("start", workflow="slow_flow", input=slow_input(log, "k", first_sleep=6))
    state = a.call("wait_done", instance_id=iid, timeout=30)
    took = time.monotonic() - began
    assert state["status"] == "COMPLETED" and state["output"] == "42", state
    assert 2 <= took < 5, f"the workflow took {took:.1f}s with a 2 s lease and a 6 s hang"
    runs = runs_of(log, "k")
    assert len(runs) == 2 and runs[0]["pid"] != runs[1]["pid"], f"not redelivered to the other worker: {runs}"
    assert "expired after 2s; offering it again" in engine.log_text()
    # The hung worker wakes up after 6 s and sends its result for the expired lease.
    wait_until(
        lambda: f"ignored a stale activity result for {iid!r} task {runs[0]['task']}" in engine.log_text(),
        10,
        "the engine to ignore the hung worker's late result",
    )
    assert a.call("get", instance_id=iid)["output"] == "42"
    with RawClient(engine.address(dialect), dialect) as client:
        assert_history_ok(client, iid, 1)


# ---------------------------------------------------------------------------------------- raw gRPC


def test_duplicate_activity_completion_is_applied_once(dialect: str, engine: EngineProcess) -> None:
    """Acting as the worker over raw gRPC: one completion token sent five times, one result applied."""
    iid = f"dup-{dialect}"
    with RawClient(engine.address(dialect), dialect) as client:
        pb = client.pb
        request_field = "workflowRequest" if dialect == "dapr" else "orchestratorRequest"
        response_cls = pb.WorkflowResponse if dialect == "dapr" else pb.OrchestratorResponse
        action_cls = pb.WorkflowAction if dialect == "dapr" else pb.OrchestratorAction
        stream = client.work_items()
        try:
            wait_worker_connected(engine, dialect)
            client.start("raw_add", iid, input="41")

            turn = stream.next()
            assert getattr(turn, request_field).instanceId == iid
            schedule = action_cls(id=0, scheduleTask=pb.ScheduleTaskAction(name="add_one"))
            schedule.scheduleTask.input.value = "41"
            client.unary(
                "CompleteOrchestratorTask",
                response_cls(instanceId=iid, completionToken=turn.completionToken, actions=[schedule]),
            )

            item = stream.next()
            assert item.WhichOneof("request") == "activityRequest" and item.activityRequest.taskId == 0
            done = pb.ActivityResponse(
                instanceId=iid,
                taskId=0,
                result=wrappers_pb2.StringValue(value="42"),
                completionToken=item.completionToken,
            )
            call = client.channel.unary_unary(
                "/TaskHubSidecarService/CompleteActivityTask",
                request_serializer=None,
                response_deserializer=None,
            )
            # Three at once, then two more: each is answered OK, only the first counts.
            concurrent = [call.future(done.SerializeToString(), timeout=10) for _ in range(3)]
            for fut in concurrent:
                fut.result()
            client.unary("CompleteActivityTask", done)
            client.unary("CompleteActivityTask", done)

            turn = stream.next()
            request = getattr(turn, request_field)
            new_results = [e for e in request.newEvents if e.WhichOneof("eventType") == "taskCompleted"]
            assert len(new_results) == 1 and new_results[0].taskCompleted.result.value == "42"
            if dialect == "dapr":
                complete = action_cls(
                    id=1,
                    completeWorkflow=pb.CompleteWorkflowAction(
                        workflowStatus=pb.ORCHESTRATION_STATUS_COMPLETED
                    ),
                )
                complete.completeWorkflow.result.value = "42"
            else:
                complete = action_cls(
                    id=1,
                    completeOrchestration=pb.CompleteOrchestrationAction(
                        orchestrationStatus=pb.ORCHESTRATION_STATUS_COMPLETED
                    ),
                )
                complete.completeOrchestration.result.value = "42"
            client.unary(
                "CompleteOrchestratorTask",
                response_cls(instanceId=iid, completionToken=turn.completionToken, actions=[complete]),
            )
            # The duplicates caused no further turn.
            assert stream.pending(wait=1.0) == []
        finally:
            stream.cancel()

        state = client.get(iid)
        assert status_name(pb, state) == "COMPLETED" and state.output.value == "42"
        assert_history_ok(client, iid, 1)
    assert engine.log_text().count(f"ignored a stale activity result for {iid!r} task 0") == 4


def test_a_worker_holds_no_more_than_its_share(dialect: str, engines: Callable[..., EngineProcess]) -> None:
    """With --worker-max-in-flight 2, a worker that never answers holds two turns; the other two go to a
    second worker, and the held ones go to a third as soon as the first disconnects."""
    engine = engines("--worker-max-in-flight", "2")
    ids = [f"share-{dialect}-{n}" for n in range(4)]
    field = "workflowRequest" if dialect == "dapr" else "orchestratorRequest"

    def instance_ids(stream: Any, wait: float) -> list[str]:
        return sorted(getattr(item, field).instanceId for item in stream.pending(wait=wait))

    address = engine.address(dialect)
    with (
        RawClient(address, dialect) as one,
        RawClient(address, dialect) as two,
        RawClient(address, dialect) as three,
    ):
        first = one.work_items()
        wait_worker_connected(engine, dialect)
        for iid in ids:
            one.start("raw_add", iid, input="1")
        held = instance_ids(first, wait=1.0)
        assert len(held) == 2, held

        second = two.work_items()
        assert instance_ids(second, wait=1.0) == sorted(set(ids) - set(held))

        first.cancel()  # its two turns are returned at once
        third = three.work_items()
        assert instance_ids(third, wait=2.0) == held
        second.cancel()
        third.cancel()
