"""Telemetry of a real engine: Dapr's workflow metrics at /metrics, spans at a real OTLP receiver,
/healthz and /readyz (also while PostgreSQL is down), and JSON logs."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.engine_process import EngineProcess
from tests.harness.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.harness.postgres import PostgresServer, PostgresUnavailable
from tests.harness.sdk_host import SdkHost

CHAINS = 5
STEPS = 3


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the Prometheus text, by (name as written, labels).

    (prometheus-client's own parser renames a counter's samples to NAME_total; daprd's are NAME.)
    """
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = frozenset(_LABEL.findall(match.group(2) or ""))
            out[(match.group(1), labels)] = float(match.group(3))
    return out


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    rec = OtlpReceiver().start()
    yield rec
    rec.stop()


@pytest.fixture
def traced_engine(tmp_path: Path, receiver: OtlpReceiver) -> Iterator[EngineProcess]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": "engine-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    proc = EngineProcess(tmp_path, "--log-format", "json", env=env).start()
    yield proc
    proc.kill()


@pytest.fixture
def traced_sdk(
    traced_engine: EngineProcess, receiver: OtlpReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SdkHost]:
    monkeypatch.setenv("SDK_HOST_OTLP_ENDPOINT", receiver.endpoint)
    host = SdkHost("dapr", traced_engine.dapr_address, tmp_path / "dapr-host.log")
    yield host
    host.close()


def test_chains_show_in_metrics_and_traces(
    traced_engine: EngineProcess, traced_sdk: SdkHost, receiver: OtlpReceiver
) -> None:
    ids = [f"chain-{n}" for n in range(CHAINS)]
    for instance_id in ids:
        traced_sdk.call("start", workflow="chain", input={"n": STEPS}, instance_id=instance_id)
    for instance_id in ids:
        state = traced_sdk.call("wait_done", instance_id=instance_id)
        assert state["status"] == "COMPLETED" and json.loads(state["output"]) == STEPS

    status, text, headers = get(traced_engine.http_url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    found = samples(text)
    # daprd's names: counts without `_total`, latencies as histograms in milliseconds.
    assert 'dapr_runtime_workflow_execution_count{status="success",workflow_name="chain"} 5.0' in text
    assert "# TYPE dapr_runtime_workflow_execution_count counter" in text
    latency = "dapr_runtime_workflow_execution_latency"
    assert value(found, latency + "_count", workflow_name="chain", status="success") == CHAINS
    assert value(found, latency + "_bucket", workflow_name="chain", status="success", le="+Inf") == CHAINS
    assert value(found, latency + "_sum", workflow_name="chain", status="success") > 0
    activity = {"activity_name": "add_one", "status": "success"}
    total = CHAINS * STEPS
    assert value(found, "dapr_runtime_workflow_activity_execution_count", **activity) == total
    assert value(found, "dapr_runtime_workflow_activity_execution_latency_count", **activity) == total
    assert value(found, "dapr_runtime_workflow_activity_operation_count", **activity) == total
    create = {"operation": "create_workflow", "status": "success"}
    assert value(found, "dapr_runtime_workflow_operation_count", **create) == CHAINS
    assert value(found, "dapr_runtime_workflow_operation_latency_count", **create) == CHAINS
    # The engine's own.
    assert value(found, "dapr_workflows_workers_connected", dialect="dapr") == 1
    assert value(found, "dapr_workflows_queue_depth", kind="activity", dialect="dapr") == 0
    assert value(found, "dapr_workflows_leases_held", kind="orchestration") == 0
    assert value(found, "dapr_workflows_store_transaction_duration_seconds_count") > 0
    assert value(found, "dapr_workflows_turn_duration_seconds_count") >= CHAINS * (STEPS + 1)
    # No input binding takes the lifecycle events: each chain's started and completed wait.
    assert value(found, "dapr_workflows_outbox_backlog") == 2 * CHAINS
    for name in ("dapr_workflows_store_errors_total", "dapr_workflows_history_cache_bytes"):
        assert (name, frozenset()) in found

    def complete(spans: list[ReceivedSpan]) -> bool:
        ours = [s for s in spans if s.service == "engine-under-test"]
        sdk = [s for s in spans if s.service == "sdk-host" and s.name == "activity: add_one"]
        return (
            sum(s.name == "workflow chain" for s in ours) == CHAINS
            and sum(s.name == "activity add_one" for s in ours) == total
            and len(sdk) == total
        )

    spans = receiver.wait_for(complete)
    assert complete(spans), sorted({(s.service, s.name) for s in spans})
    engine_spans = [s for s in spans if s.service == "engine-under-test"]
    workflows = {s.attributes["workflow.instance_id"]: s for s in engine_spans if s.name == "workflow chain"}
    assert sorted(workflows) == ids
    # One trace per instance, rooted at its start (the create_workflow call).
    assert len({w.trace_id for w in workflows.values()}) == CHAINS
    for instance_id, workflow in workflows.items():
        in_trace = [s for s in spans if s.trace_id == workflow.trace_id]
        by_id = {s.span_id: s for s in in_trace}
        roots = [s for s in in_trace if not s.parent_span_id]
        assert [r.name for r in roots] == ["create_workflow"], instance_id
        assert by_id[workflow.parent_span_id].name == "create_workflow"
        activities = [s for s in in_trace if s.name == "activity add_one"]
        turns = [s for s in in_trace if s.name == "turn chain"]
        assert len(activities) == STEPS and len(turns) == STEPS + 1
        assert all(s.parent_span_id == workflow.span_id for s in activities + turns)
        assert all(s.attributes["workflow.instance_id"] == instance_id for s in activities + turns)
        # The span the engine handed to the worker is the parent of the SDK's own activity span.
        sdk_spans = [s for s in in_trace if s.service == "sdk-host"]
        assert len(sdk_spans) == STEPS
        assert {s.parent_span_id for s in sdk_spans} == {a.span_id for a in activities}
    # Every span of the engine belongs to one of these traces.
    assert {s.trace_id for s in engine_spans} == {w.trace_id for w in workflows.values()}


def test_the_callers_trace_context_is_continued(
    traced_engine: EngineProcess, traced_sdk: SdkHost, receiver: OtlpReceiver
) -> None:
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    caller_span = "00f067aa0ba902b7"
    request = urllib.request.Request(
        traced_engine.http_url + "/v1.0/workflows/dapr/chain/start?instanceID=traced-by-caller",
        data=json.dumps({"n": 1}).encode(),
        headers={"traceparent": f"00-{caller_trace}-{caller_span}-01", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202
    traced_sdk.call("wait_done", instance_id="traced-by-caller")

    def has_workflow(spans: list[ReceivedSpan]) -> bool:
        return any(s.name == "workflow chain" for s in spans)

    spans = receiver.wait_for(has_workflow)
    create = [s for s in spans if s.name == "create_workflow"]
    assert [(s.trace_id, s.parent_span_id) for s in create] == [(caller_trace, caller_span)]
    workflow = next(s for s in spans if s.name == "workflow chain")
    assert workflow.trace_id == caller_trace and workflow.parent_span_id == create[0].span_id


def test_health_endpoints_and_json_logs(traced_engine: EngineProcess, traced_sdk: SdkHost) -> None:
    assert get(traced_engine.http_url + "/healthz")[:2] == (200, "ok\n")
    assert get(traced_engine.http_url + "/readyz")[:2] == (200, "ready\n")
    traced_sdk.call("start", workflow="chain", input={"n": 1}, instance_id="logged")
    traced_sdk.call("wait_done", instance_id="logged")
    lines = [
        line
        for line in traced_engine.log_text().splitlines()
        if line.strip() and not line.startswith("=====")
    ]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    assert any(e["message"] == "dapr-workflows serve: ready" for e in entries)
    about = [e for e in entries if e.get("instanceID") == "logged"]
    assert any("started workflow" in e["message"] for e in about)
    assert any("COMPLETED" in e["message"] for e in about)


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    proc = EngineProcess(tmp_path, "--metrics", "false").start()
    try:
        assert get(proc.http_url + "/metrics")[0] == 404
        assert get(proc.http_url + "/healthz")[0] == 200
        assert get(proc.http_url + "/readyz")[0] == 200
    finally:
        proc.kill()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test alone: it is stopped and started again mid-test."""
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as err:
        pytest.fail(str(err), pytrace=False)
    yield server
    server.stop()


def wait_status(url: str, status: int, timeout: float = 30.0) -> tuple[int, str, dict[str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        answer = get(url)
        if answer[0] == status or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def test_readyz_is_503_while_postgresql_is_down(tmp_path: Path, own_postgres: PostgresServer) -> None:
    proc = EngineProcess(tmp_path, store_url=own_postgres.create_database()).start()
    try:
        ready = proc.http_url + "/readyz"
        assert get(ready)[:2] == (200, "ready\n")
        own_postgres.kill()
        status, body, _ = wait_status(ready, 503)
        assert status == 503
        assert body in ("The store is unavailable.\n", "The store does not answer within 2 seconds.\n")
        assert get(proc.http_url + "/healthz")[0] == 200  # alive all the same: no restart needed
        own_postgres.restart()
        assert wait_status(ready, 200)[:2] == (200, "ready\n")
    finally:
        proc.kill()


def test_timers_and_child_workflows_in_the_trace(
    traced_engine: EngineProcess, traced_sdk: SdkHost, receiver: OtlpReceiver
) -> None:
    traced_sdk.call("start", workflow="timer_then_add", input={"seconds": 0.5, "value": 1}, instance_id="t")
    traced_sdk.call("start", workflow="parent_by_name", input={"n": 1, "child_id": "c"}, instance_id="p")
    for instance_id in ("t", "p"):
        assert traced_sdk.call("wait_done", instance_id=instance_id)["status"] == "COMPLETED"

    def done(spans: list[ReceivedSpan]) -> bool:
        names = [s.name for s in spans]
        # The timer's workflow may end after the parent's: its span can come in a later export.
        return (
            "timer" in names
            and "workflow timer_then_add" in names
            and names.count("workflow chain") == 1
            and "workflow parent_by_name" in names
        )

    spans = receiver.wait_for(done)
    assert done(spans), sorted(s.name for s in spans)
    timer_wf = next(s for s in spans if s.name == "workflow timer_then_add")
    timer = next(s for s in spans if s.name == "timer")
    assert (timer.trace_id, timer.parent_span_id) == (timer_wf.trace_id, timer_wf.span_id)
    parent = next(s for s in spans if s.name == "workflow parent_by_name")
    child = next(s for s in spans if s.name == "workflow chain")
    assert child.attributes["workflow.instance_id"] == "c"
    # The child's spans are in its parent's trace, under the parent's span and linked to it.
    assert (child.trace_id, child.parent_span_id, child.links) == (
        parent.trace_id,
        parent.span_id,
        (parent.span_id,),
    )
    child_activity = next(s for s in spans if s.name == "activity add_one" and s.trace_id == parent.trace_id)
    assert child_activity.parent_span_id == child.span_id
