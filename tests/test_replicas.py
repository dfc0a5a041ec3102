"""Several engines (replicas) on one PostgreSQL store: they share the work, events cross between
them at once, and what a killed replica held completes on the other after its leases expire, with
no activity result applied twice.

Dapr-SDK workers (the dialect the binding, the HTTP API and triggers start instances in); each
replica has its own worker and client process, as each pod of a Deployment would.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from tests.harness import activity_log
from tests.harness.binding_app import RecordingApp
from tests.harness.daprd import Daprd
from tests.harness.durability import (
    RetryingCalls,
    assert_each_result_applied_once,
    event_kinds,
    wait_until,
    wait_worker_connected,
)
from tests.harness.engine_process import EngineProcess
from tests.harness.postgres import PostgresServer
from tests.harness.raw_grpc import RawClient
from tests.harness.sdk_host import SdkError, SdkHost

DIALECT = "dapr"
CHAIN, FAN = 2, 2


def sum_input(i: int, log: Path) -> dict[str, Any]:
    return {"base": i, "chain": CHAIN, "fan": FAN, "timer": 0.1 + (i % 3) * 0.1, "log": str(log)}


@pytest.fixture
def replicas(tmp_path: Path, postgres_url: str) -> Iterator[Callable[..., EngineProcess]]:
    """Starts engines on one PostgreSQL database, each with its own ports and log; kills them at the end."""
    started: list[EngineProcess] = []

    def start(*args: str) -> EngineProcess:
        name = "ab"[len(started)]
        engine = EngineProcess(tmp_path, *args, store_url=postgres_url, log_name=f"engine-{name}.log").start()
        started.append(engine)
        return engine

    yield start
    for engine in started:
        engine.kill()


def host_on(hosts: Callable[[str, str], SdkHost], engine: EngineProcess) -> SdkHost:
    """A worker and client of the Dapr SDK connected to `engine`."""
    return hosts(DIALECT, engine.address(DIALECT))


def wait_all_done(host: SdkHost, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = {}

    def all_done() -> bool:
        futures: list[tuple[str, Future[Any]]] = [
            (iid, host.submit("get", instance_id=iid)) for iid in ids if iid not in states
        ]
        for iid, fut in futures:
            state = fut.result(timeout=30)
            if state is not None and state["status"] not in ("RUNNING", "PENDING"):
                states[iid] = state
        return len(states) == len(ids)

    wait_until(all_done, timeout, f"{len(ids)} workflows to finish", interval=0.5)
    return states


def assert_sums(states: dict[str, dict[str, Any]], ids: list[str], value: Callable[[int], int]) -> None:
    wrong = {
        iid: (s["status"], s["output"], s["failure"])
        for i, iid in enumerate(ids)
        for s in [states[iid]]
        if s["status"] != "COMPLETED"
        or json.loads(s["output"]) != activity_log.expected_sum(i, CHAIN, FAN, value(i))
    }
    assert not wrong, f"{len(wrong)} workflows ended wrong, e.g. {list(wrong.items())[:3]}"


def assert_histories(engine: EngineProcess, ids: list[str]) -> None:
    with RawClient(engine.address(DIALECT), DIALECT) as client:
        for iid in ids:
            events = client.history(iid)
            assert_each_result_applied_once(iid, events)
            kinds = event_kinds(events)
            assert kinds["taskCompleted"] == CHAIN + FAN and kinds["timerFired"] == 1, f"{iid}: {dict(kinds)}"
            assert kinds["executionCompleted"] == 1, f"{iid}: {dict(kinds)}"


def test_two_replicas_share_500_workflows(
    replicas: Callable[..., EngineProcess], hosts: Callable[[str, str], SdkHost], tmp_path: Path
) -> None:
    """500 workflows started half through each replica, their events raised through the other one:
    all complete, both replicas' workers ran activities, and every result is in a history once."""
    a, b = replicas(), replicas()
    host_a, host_b = host_on(hosts, a), host_on(hosts, b)
    log = tmp_path / "activities.log"
    ids = [f"shared-{i:03d}" for i in range(500)]
    calls_a, calls_b = RetryingCalls(host_a), RetryingCalls(host_b)
    for i, iid in enumerate(ids):
        (calls_a if i % 2 == 0 else calls_b).submit(
            "start", workflow="durable_sum", input=sum_input(i, log), instance_id=iid
        )
    assert calls_a.settle() == [] and calls_b.settle() == []
    for i, iid in enumerate(ids):
        (calls_b if i % 2 == 0 else calls_a).submit("raise_event", instance_id=iid, name="go", data=i + 1)
    assert calls_a.settle() == [] and calls_b.settle() == []

    states = wait_all_done(host_a, ids, timeout=240)
    assert_sums(states, ids, lambda i: i + 1)
    assert_histories(b, ids)
    runs = activity_log.read(log)
    by_pid = Counter(r["pid"] for r in runs)
    assert set(by_pid) == {host_a.proc.pid, host_b.proc.pid}, f"activities ran in {dict(by_pid)}"
    executions = Counter((r["instance"], r["task"]) for r in runs)
    assert len(executions) == len(ids) * (CHAIN + FAN)
    print(
        f"\nactivities per replica's worker: {sorted(by_pid.values())}; ran twice: "
        f"{sum(1 for n in executions.values() if n > 1)}"
    )


def test_event_through_one_replica_reaches_a_worker_on_the_other_at_once(
    replicas: Callable[..., EngineProcess], hosts: Callable[[str, str], SdkHost]
) -> None:
    """The only worker listens on replica B; the start and the event go through replica A. With the
    sweep slowed to once a minute, only A's announcements can bring the work to B in time."""
    a = replicas("--poll-seconds", "60")
    b = replicas("--poll-seconds", "60")
    client_a = SdkHost(DIALECT, a.address(DIALECT), a.workdir / "client-a.log", worker=False)
    try:
        host_on(hosts, b)
        wait_worker_connected(b, DIALECT)
        began = time.monotonic()
        iid = client_a.call(
            "start", workflow="wait_events", input={"names": ["approve"]}, instance_id="cross-replica"
        )
        client_a.call("wait_start", instance_id=iid, timeout=10)
        client_a.call("raise_event", instance_id=iid, name="approve", data="yes")
        state = client_a.call("wait_done", instance_id=iid, timeout=10)
        took = time.monotonic() - began
    finally:
        client_a.close()
    assert state["status"] == "COMPLETED", state
    assert json.loads(state["output"]) == ["yes"], state
    assert took < 5, f"the event took {took:.1f}s to cross replicas"
    print(f"\nstart, event and completion across replicas in {took:.2f}s")


def test_killed_replica_work_completes_on_the_other(
    replicas: Callable[..., EngineProcess], hosts: Callable[[str, str], SdkHost], tmp_path: Path
) -> None:
    """kill -9 of replica A while its worker holds turns and activities: after A's leases expire, B's
    worker finishes everything, and no activity result is applied twice."""
    short = ("--orchestration-lease-seconds", "3", "--activity-lease-seconds", "3", "--poll-seconds", "0.3")
    a, b = replicas(*short), replicas(*short)
    host_a = host_on(hosts, a)
    log = tmp_path / "activities.log"
    ids = [f"kill-{i:03d}" for i in range(120)]
    calls = RetryingCalls(host_a)
    for i, iid in enumerate(ids):
        calls.submit("start", workflow="durable_sum", input=sum_input(i, log), instance_id=iid)
    assert calls.settle() == []
    for i, iid in enumerate(ids):
        calls.submit("raise_event", instance_id=iid, name="go", data=i + 1)
    assert calls.settle() == []
    # Kill A while its worker is in the middle of the work: some activities ran, not all.
    wait_until(lambda: len(activity_log.read(log)) >= 60, 60, "A's worker to run some activities")
    a.kill()
    ran_on_a = len(activity_log.read(log))
    assert ran_on_a < len(ids) * (CHAIN + FAN), "everything finished before the kill"

    host_b = host_on(hosts, b)
    states = wait_all_done(host_b, ids, timeout=120)
    assert_sums(states, ids, lambda i: i + 1)
    assert_histories(b, ids)
    pids = Counter(r["pid"] for r in activity_log.read(log))
    assert pids[host_b.proc.pid] > 0, "B's worker ran nothing: A had finished all the work"
    print(f"\nactivities before the kill: {ran_on_a}; after it, by pid: {dict(pids)}")


def test_a_database_restart_loses_nothing(tmp_path: Path, hosts: Callable[[str, str], SdkHost]) -> None:
    """The PostgreSQL server is killed in the middle of the work: calls answer UNAVAILABLE while it
    is down, and after it is back every workflow completes with each result applied once."""
    server = PostgresServer().start()  # its own server: the session's stays up for the other tests
    try:
        engine = EngineProcess(
            tmp_path,
            "--poll-seconds",
            "0.3",
            "--store-lease-seconds",
            "2",
            store_url=server.create_database(),
        ).start()
        try:
            host = host_on(hosts, engine)
            log = tmp_path / "activities.log"
            ids = [f"db-{i:03d}" for i in range(60)]
            calls = RetryingCalls(host)
            for i, iid in enumerate(ids):
                calls.submit("start", workflow="durable_sum", input=sum_input(i, log), instance_id=iid)
            assert calls.settle() == []
            wait_until(lambda: len(activity_log.read(log)) >= 20, 60, "some activities to run")
            server.kill()
            with pytest.raises(SdkError) as down:
                host.call("get", instance_id=ids[0])
            assert "UNAVAILABLE" in down.value.message and "is unavailable" in down.value.message, down.value
            server.restart()
            calls.until_all_succeed(
                [
                    ("raise_event", {"instance_id": iid, "name": "go", "data": i + 1})
                    for i, iid in enumerate(ids)
                ],
                timeout=60,
            )
            states = wait_all_done(host, ids, timeout=120)
            assert_sums(states, ids, lambda i: i + 1)
            assert_histories(engine, ids)
            # The outage is logged once when a transaction first fails, its end once after.
            logged = engine.log_text()
            assert "is unavailable" in logged and "is available again" in logged, logged[-2000:]
        finally:
            engine.kill()
    finally:
        server.stop()


def test_a_replica_that_shuts_down_gives_its_work_back_at_once(
    replicas: Callable[..., EngineProcess], hosts: Callable[[str, str], SdkHost], tmp_path: Path
) -> None:
    """SIGTERM to replica A while its worker runs a long activity: A gives the lease back as it stops,
    so B's worker runs the activity again long before the 30 s store lease would have expired."""
    a = replicas("--store-lease-seconds", "30", "--poll-seconds", "0.3")
    b = replicas("--store-lease-seconds", "30", "--poll-seconds", "0.3")
    host_a = host_on(hosts, a)
    log = tmp_path / "activities.log"
    slow = {"log": str(log), "key": "k", "value": 41, "first_sleep": 60, "sleep": 0}
    iid = host_a.call("start", workflow="slow_flow", input=slow, instance_id="handover")
    wait_until(lambda: activity_log.read(log), 15, "the activity to start on A's worker")
    host_b = host_on(hosts, b)
    wait_worker_connected(b, DIALECT)
    stopped = time.monotonic()
    assert a.stop() == 0
    state = host_b.call("wait_done", instance_id=iid, timeout=20)
    took = time.monotonic() - stopped
    assert state["status"] == "COMPLETED" and state["output"] == "42", state
    assert [r["pid"] for r in activity_log.read(log)] == [host_a.proc.pid, host_b.proc.pid]
    assert took < 15, f"B took the work {took:.1f}s after A stopped"
    with RawClient(b.address(DIALECT), DIALECT) as client:
        assert_each_result_applied_once(iid, client.history(iid))
    host_a.kill()  # its worker still sleeps in the first run of the activity


def test_lifecycle_events_of_work_on_another_replica_reach_the_app(
    dapr_bin: Path,
    replicas: Callable[..., EngineProcess],
    hosts: Callable[[str, str], SdkHost],
    tmp_path: Path,
) -> None:
    """daprd's input binding is on replica A; the instances start and complete on replica B (its
    worker and client): their lifecycle events reach the app through A, from the shared outbox."""
    a, b = replicas("--poll-seconds", "0.3"), replicas("--poll-seconds", "0.3")
    app = RecordingApp(("workflows",)).start()
    daprd = Daprd(dapr_bin, a, tmp_path, app_port=app.port)
    try:
        daprd.start()
        host_b = host_on(hosts, b)
        ids = [f"events-{i:02d}" for i in range(30)]
        for i, iid in enumerate(ids):
            host_b.call("start", workflow="chain", input={"n": 1, "start": i}, instance_id=iid)
        for i, iid in enumerate(ids):
            events = app.wait_events(iid, {"started", "completed"}, timeout=30)
            assert json.loads(events["completed"]["output"]) == i + 1, events
    finally:
        daprd.kill()
        app.stop()


def test_a_start_through_both_replicas_at_once_creates_one_instance(
    replicas: Callable[..., EngineProcess], hosts: Callable[[str, str], SdkHost]
) -> None:
    """The same instance ID started through A and B at the same moment: one start succeeds, the other
    answers ALREADY_EXISTS (what makes a redelivered trigger event idempotent across replicas)."""
    a, b = replicas(), replicas()
    client_a = SdkHost(DIALECT, a.address(DIALECT), a.workdir / "client-a.log", worker=False)
    client_b = SdkHost(DIALECT, b.address(DIALECT), b.workdir / "client-b.log", worker=False)
    try:
        ids = [f"twice-{i:02d}" for i in range(40)]
        pairs = [
            (
                client_a.submit("start", workflow="chain", input={"n": 1, "start": i}, instance_id=iid),
                client_b.submit("start", workflow="chain", input={"n": 1, "start": i}, instance_id=iid),
            )
            for i, iid in enumerate(ids)
        ]
        for iid, pair in zip(ids, pairs, strict=True):
            outcomes = []
            for fut in pair:
                try:
                    outcomes.append(("started", fut.result(timeout=30)))
                except SdkError as err:
                    outcomes.append(("refused", err.message))
            started = [o for o in outcomes if o[0] == "started"]
            assert len(started) == 1 and started[0][1] == iid, f"{iid}: {outcomes}"
            refused = [o[1] for o in outcomes if o[0] == "refused"]
            assert "ALREADY_EXISTS" in refused[0], f"{iid}: {outcomes}"
        with RawClient(a.address(DIALECT), DIALECT) as raw:
            for iid in ids:
                kinds = event_kinds(raw.history(iid))
                assert kinds["executionStarted"] <= 1, f"{iid}: {dict(kinds)}"
    finally:
        client_a.close()
        client_b.close()
