"""Concurrency limits end to end: Dapr's SDK (`dapr.ext.workflow`, in this process) on real engines.

Each activity (and the workflow of the workflow cap) records when its code ran; the test reads how
many ran at once from those intervals. An interval lies inside its lease (the engine leases an item
before the worker starts it and ends the lease after its result came), so more than the cap
overlapping would mean the engine gave out more than the cap. The caps come from the flags, and
from a `--concurrency-limits` file shaped like Dapr's Configuration; on PostgreSQL two engines keep
one global cap between them, a busy engine does not keep the slots from another one, and a killed
engine's slots come back when its leases expire.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf
import pytest
from dapr_workflows_ext import workflow_client, workflow_runtime

from tests.conftest import POSTGRES_ENGINE_ARGS
from tests.harness.engine_process import EngineProcess, free_port
from tests.harness.shared import wait_until


class Runs:
    """When each activity (or workflow turn) ran: (what, where, start, end), from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.intervals: list[tuple[str, str, float, float]] = []
        self.started: list[tuple[str, str, float]] = []

    def hold(self, what: str, where: str, seconds: float, release: threading.Event | None = None) -> None:
        begin = time.monotonic()
        with self._lock:
            self.started.append((what, where, begin))
        if release is not None:
            release.wait(seconds)
        else:
            time.sleep(seconds)
        with self._lock:
            self.intervals.append((what, where, begin, time.monotonic()))

    def most_at_once(self, what: str | None = None, where: str | None = None) -> int:
        with self._lock:
            chosen = [(b, e) for w, at, b, e in self.intervals if what in (None, w) and where in (None, at)]
        # Ends sort before starts at the same moment: one that ended is not running.
        edges = sorted([(b, 1) for b, _ in chosen] + [(e, -1) for _, e in chosen])
        most = running = 0
        for _, step in edges:
            running += step
            most = max(most, running)
        return most

    def count(self, what: str | None = None, where: str | None = None) -> int:
        with self._lock:
            return sum(1 for w, at, _, _ in self.intervals if what in (None, w) and where in (None, at))


def register(
    runtime: wf.WorkflowRuntime,
    runs: Runs,
    where: str = "a",
    seconds: float = 0.3,
    release: threading.Event | None = None,
) -> None:
    @runtime.activity(name="slow")
    def slow(ctx: wf.WorkflowActivityContext, i: int) -> int:
        runs.hold("slow", where, seconds)
        return i

    @runtime.activity(name="fast")
    def fast(ctx: wf.WorkflowActivityContext, i: int) -> int:
        runs.hold("fast", where, seconds)
        return i

    @runtime.activity(name="long")
    def long(ctx: wf.WorkflowActivityContext, i: int) -> int:
        # Long on the first engine's worker (until the test releases it), short anywhere else.
        runs.hold("long", where, 30 if release is not None else 0.05, release)
        return i

    @runtime.workflow(name="fan_out")
    def fan_out(ctx: wf.DaprWorkflowContext, counts: dict[str, int]) -> Any:
        tasks = [ctx.call_activity(name, input=i) for name, n in counts.items() for i in range(n)]
        results = yield wf.when_all(tasks)
        return sum(results)

    @runtime.workflow(name="hold_wf")
    def hold_wf(ctx: wf.DaprWorkflowContext, _: Any) -> str:
        if not ctx.is_replaying:
            runs.hold("hold_wf", where, seconds)  # the turn is in flight meanwhile
        return "held"


def runtime_on(engine: EngineProcess, runs: Runs, app_id: str | None = None, **kw: Any) -> wf.WorkflowRuntime:
    # Threads enough for every activity at once: the worker is never what holds them back.
    runtime = workflow_runtime(engine.dapr_address, app_id=app_id, maximum_thread_pool_workers=24)
    register(runtime, runs, **kw)
    runtime.start()
    return runtime


def limits_file(tmp_path: Path, workflow: dict[str, Any]) -> str:
    path = tmp_path / "limits.yaml"
    doc = {"apiVersion": "dapr.io/v1alpha1", "kind": "Configuration", "metadata": {"name": "limits"}}
    doc["spec"] = {"workflow": workflow}
    path.write_text(json.dumps(doc))
    return str(path)


def wait_all(client: wf.DaprWorkflowClient, ids: list[str], timeout: float = 60) -> list[Any]:
    states = [client.wait_for_workflow_completion(i, timeout_in_seconds=timeout) for i in ids]
    assert all(s is not None and s.runtime_status.name == "COMPLETED" for s in states), states
    return [json.loads(s.serialized_output) for s in states if s is not None]


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[Callable[..., EngineProcess]]:
    started: list[EngineProcess] = []

    def start(*args: str, store_url: str | None = None) -> EngineProcess:
        name = f"engine-{len(started) + 1}.log"
        engine = EngineProcess(tmp_path, *args, store_url=store_url, log_name=name).start()
        started.append(engine)
        return engine

    yield start
    for engine in started:
        engine.kill()


@pytest.fixture
def runtimes() -> Iterator[list[wf.WorkflowRuntime]]:
    started: list[wf.WorkflowRuntime] = []
    yield started
    for runtime in started:
        runtime.shutdown()


def test_a_global_activity_cap_of_2_runs_10_parallel_activities_two_at_a_time(
    engines: Callable[..., EngineProcess], runtimes: list[wf.WorkflowRuntime]
) -> None:
    engine = engines("--max-concurrent-activities", "2")
    runs = Runs()
    runtimes.append(runtime_on(engine, runs))
    client = workflow_client(engine.dapr_address)
    instance_id = client.schedule_new_workflow("fan_out", input={"slow": 10})
    assert wait_all(client, [instance_id]) == [sum(range(10))]
    assert runs.count("slow") == 10
    assert runs.most_at_once() == 2
    # What waited says so in the log, once per item (8 waited), not each time it was looked at.
    text = engine.log_text()
    assert "concurrency limits: --max-concurrent-activities=2" in text
    waits = [line for line in text.splitlines() if "waits, queued: --max-concurrent-activities=2" in line]
    assert len(waits) == 8, waits


def test_a_cap_on_one_activity_name_leaves_the_other_names_unthrottled(
    engines: Callable[..., EngineProcess], runtimes: list[wf.WorkflowRuntime], tmp_path: Path
) -> None:
    path = limits_file(tmp_path, {"activityConcurrencyLimits": [{"name": "slow", "maxConcurrent": 1}]})
    engine = engines("--concurrency-limits", path)
    runs = Runs()
    runtimes.append(runtime_on(engine, runs, seconds=0.4))
    client = workflow_client(engine.dapr_address)
    instance_id = client.schedule_new_workflow("fan_out", input={"slow": 4, "fast": 4})
    assert wait_all(client, [instance_id]) == [2 * sum(range(4))]
    assert runs.most_at_once("slow") == 1
    assert runs.most_at_once("fast") == 4
    assert "activity 'slow'" in engine.log_text() and "activityConcurrencyLimits slow=1" in engine.log_text()


def test_a_workflow_cap_holds_the_turns_in_flight_to_it(
    engines: Callable[..., EngineProcess], runtimes: list[wf.WorkflowRuntime]
) -> None:
    engine = engines("--max-concurrent-workflows", "2")
    runs = Runs()
    runtimes.append(runtime_on(engine, runs))
    client = workflow_client(engine.dapr_address)
    ids = [client.schedule_new_workflow("hold_wf", input=None) for _ in range(6)]
    assert wait_all(client, ids) == ["held"] * 6
    assert runs.count("hold_wf") == 6
    assert runs.most_at_once("hold_wf") == 2


def test_two_engines_on_postgresql_keep_one_global_cap(
    engines: Callable[..., EngineProcess],
    runtimes: list[wf.WorkflowRuntime],
    tmp_path: Path,
    postgres_url: str,
) -> None:
    # Dapr's own name for the global cap, from the file both engines are given.
    path = limits_file(tmp_path, {"globalMaxConcurrentActivityInvocations": 2})
    a = engines(*POSTGRES_ENGINE_ARGS, "--concurrency-limits", path, store_url=postgres_url)
    b = engines(*POSTGRES_ENGINE_ARGS, "--concurrency-limits", path, store_url=postgres_url)
    runs = Runs()
    runtimes.append(runtime_on(a, runs, where="a"))
    runtimes.append(runtime_on(b, runs, where="b"))
    client_a, client_b = workflow_client(a.dapr_address), workflow_client(b.dapr_address)
    ids_a = [client_a.schedule_new_workflow("fan_out", input={"slow": 4}) for _ in range(2)]
    ids_b = [client_b.schedule_new_workflow("fan_out", input={"slow": 4}) for _ in range(2)]
    assert wait_all(client_a, ids_a + ids_b) == [sum(range(4))] * 4
    assert runs.count() == 16
    assert runs.most_at_once() == 2
    # Both engines gave out activities: the cap held between them, not within one.
    assert runs.count(where="a") > 0 and runs.count(where="b") > 0, runs.intervals


def test_a_busy_engine_does_not_keep_the_slots_from_another(
    engines: Callable[..., EngineProcess],
    runtimes: list[wf.WorkflowRuntime],
    postgres_url: str,
) -> None:
    """One engine per app (as one engine per pod): app b's activities, which only engine B's worker
    may take, get slots while engine A still has a queue of its own that keeps freeing them. Each
    engine hears of the other's work; it reads what that work is before claiming it (labels.py), so
    it claims none of it: a claim would count under the cap and use up its turn for a slot."""
    a = engines(*POSTGRES_ENGINE_ARGS, "--max-concurrent-activities", "2", store_url=postgres_url)
    b = engines(*POSTGRES_ENGINE_ARGS, "--max-concurrent-activities", "2", store_url=postgres_url)
    runs = Runs()
    runtimes.append(runtime_on(a, runs, app_id="app-a", where="a"))
    runtimes.append(runtime_on(b, runs, app_id="app-b", where="b"))
    client_a, client_b = workflow_client(a.dapr_address), workflow_client(b.dapr_address)
    busy = client_a.schedule_new_workflow("fan_out", input={"slow": 24}, app_id="app-a")
    wait_until(lambda: runs.count(where="a"), lambda n: n >= 2)
    other = client_b.schedule_new_workflow("fan_out", input={"fast": 2}, app_id="app-b")
    assert wait_all(client_b, [other, busy]) == [1, sum(range(24))]
    last_on_b = max(begin for _, where, begin in runs.started if where == "b")
    # B's activities went out while A's queue still had work: some of A's started after both.
    assert sum(1 for _, where, begin in runs.started if where == "a" and begin > last_on_b) >= 4, runs.started
    assert runs.most_at_once() == 2
    # Neither engine claimed the other's activities to learn what they are (nor waited for a slot
    # for them): each one's waits name only its own app's activities.
    for engine, others in ((a, "fast"), (b, "slow")):
        waits = [line for line in engine.log_text().splitlines() if "waits, queued" in line]
        assert not [line for line in waits if f"activity '{others}'" in line], waits


def test_a_killed_engines_slots_come_back_when_its_leases_expire(
    engines: Callable[..., EngineProcess],
    runtimes: list[wf.WorkflowRuntime],
    tmp_path: Path,
    postgres_url: str,
) -> None:
    a = engines(*POSTGRES_ENGINE_ARGS, "--max-concurrent-activities", "2", store_url=postgres_url)
    b = engines(*POSTGRES_ENGINE_ARGS, "--max-concurrent-activities", "2", store_url=postgres_url)
    runs = Runs()
    release = threading.Event()
    try:
        runtimes.append(runtime_on(a, runs, where="a", release=release))
        # Engine A's worker holds both slots.
        held = workflow_client(a.dapr_address).schedule_new_workflow("fan_out", input={"long": 2})
        wait_until(lambda: len(runs.started), lambda n: n == 2)
        runtimes.append(runtime_on(b, runs, where="b"))
        client_b = workflow_client(b.dapr_address)
        waiting = client_b.schedule_new_workflow("fan_out", input={"fast": 2})
        wait_until(b.log_text, lambda text: "waits, queued: --max-concurrent-activities=2" in text)
        time.sleep(0.5)
        assert [s for s in runs.started if s[1] == "b"] == []  # B gives out nothing while A's slots live
        killed = time.monotonic()
        a.kill()
        # After A's leases expire (--store-lease-seconds 2), B takes the slots: its own activities
        # and A's, which run again on B's worker.
        assert wait_all(client_b, [waiting, held], timeout=30) == [1, 1]
        # A renewed its leases every third of 2 s: they lapsed 1.3 to 2 s after the kill.
        first_on_b = min(begin for _, where, begin in runs.started if where == "b")
        assert first_on_b - killed >= 1.2, first_on_b - killed
        assert runs.most_at_once(where="b") <= 2
        assert runs.count("long", "b") == 2 and runs.count("fast", "b") == 2
    finally:
        release.set()


# ---------------------------------------------------------------- bad settings: one line at startup


def serve(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "dapr_workflows_component.cli", "serve"]
    for flag in ("--engine-address", "--durabletask-address", "--http-address"):
        command += [flag, f"127.0.0.1:{free_port()}"]
    command += ["--socket-folder", tempfile.mkdtemp(prefix="dw-sock-"), *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAPR_WORKFLOWS_")}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (
            None,
            (),
            "dapr-workflows: --concurrency-limits: cannot read 'missing.yaml': No such file or directory",
        ),
        (
            "spec: {workflow: [",
            (),
            "dapr-workflows: --concurrency-limits: 'limits.yaml' is not valid YAML or JSON",
        ),
        (
            "spec: {workflow: {activityConcurrencyLimits: [{name: a, maxConcurrent: -2}]}}",
            (),
            "dapr-workflows: --concurrency-limits: activityConcurrencyLimits[0].maxConcurrent must be from "
            "0 (no limit) to 2147483647, not -2",
        ),
        (
            "spec: {workflow: {maxConcurrentWorkflowInvocatons: 3}}",
            (),
            "dapr-workflows: --concurrency-limits: spec.workflow.maxConcurrentWorkflowInvocatons is not a "
            "concurrency setting",
        ),
        (
            "spec: {workflow: {globalMaxConcurrentActivityInvocations: 5}}",
            ("--max-concurrent-activities", "3"),
            "dapr-workflows: --concurrency-limits: --max-concurrent-activities 3 and the file's "
            "globalMaxConcurrentActivityInvocations 5 disagree: set one of them",
        ),
        (
            None,
            ("--max-concurrent-workflows", "-1"),
            "dapr-workflows: --max-concurrent-workflows must be a whole",
        ),
        (
            None,
            ("--max-concurrent-activities", "\u00b2"),  # a digit to str.isdigit(), not to int()
            "dapr-workflows: --max-concurrent-activities must be a whole",
        ),
    ],
)
def test_bad_limits_stop_the_start_with_one_clear_line(
    tmp_path: Path, content: str | None, args: tuple[str, ...], message: str
) -> None:
    workdir = tmp_path / "engine"
    workdir.mkdir()
    file_args: tuple[str, ...] = ()
    if content is not None:
        (workdir / "limits.yaml").write_text(content)
        file_args = ("--concurrency-limits", "limits.yaml")
    elif not args:
        file_args = ("--concurrency-limits", "missing.yaml")
    done = serve(workdir, *file_args, *args)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), done.stderr
    assert "Traceback" not in done.stderr
    # Refused before anything was created: no store file.
    assert sorted(p.name for p in workdir.iterdir()) == (["limits.yaml"] if content is not None else [])
