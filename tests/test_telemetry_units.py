"""Telemetry pieces without an engine process: the exposition of Dapr's names, the recorder's
bookkeeping, JSON log lines, and tracing when it is off."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dapr_workflows_component.engine.wire import activity_name
from dapr_workflows_component.protos import dapr_dialect_pb2 as pb
from dapr_workflows_component.store import Store
from dapr_workflows_component.telemetry.http import METRICS_PATH
from dapr_workflows_component.telemetry.logs import JsonFormatter, configure_logging
from dapr_workflows_component.telemetry.metrics import DAPR_LATENCY_BUCKETS_MS, Metrics
from dapr_workflows_component.telemetry.recorder import Telemetry, execution_status
from dapr_workflows_component.telemetry.store import ObservedStore
from dapr_workflows_component.telemetry.tracing import Tracing


def test_dapr_counts_are_exposed_under_daprs_names() -> None:
    metrics = Metrics()
    metrics.execution_count.labels("chain", "success").inc(3)
    metrics.leases_expired.labels("activity").inc()
    text = metrics.render().decode()
    assert "# TYPE dapr_runtime_workflow_execution_count counter" in text
    assert 'dapr_runtime_workflow_execution_count{status="success",workflow_name="chain"} 3.0' in text
    assert "dapr_runtime_workflow_execution_count_total" not in text
    assert "_created" not in text
    # The engine's own counters keep Prometheus' suffix.
    assert 'dapr_workflows_leases_expired_total{kind="activity"} 1.0' in text


def test_latencies_use_daprs_millisecond_buckets() -> None:
    metrics = Metrics()
    metrics.activity_execution_latency.labels("add_one", "success").observe(7)
    text = metrics.render().decode()
    for bound in DAPR_LATENCY_BUCKETS_MS:
        assert f'le="{float(bound)}"' in text
    bucket = "dapr_runtime_workflow_activity_execution_latency_bucket"
    bucket += '{activity_name="add_one",le="%s",status="success"}'
    assert bucket % "8.0" + " 1.0" in text and bucket % "6.0" + " 0.0" in text


def test_status_labels_follow_daprd() -> None:
    assert [execution_status(s) for s in ("COMPLETED", "TERMINATED", "FAILED", "CANCELED")] == [
        "success",
        "terminated",
        "failed",
        "failed",
    ]


def sample(telemetry: Telemetry, name: str, **labels: str) -> float:
    value = telemetry.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_a_returned_activity_counts_as_recoverable_and_its_lease_is_released() -> None:
    telemetry = Telemetry()
    request = pb.ActivityRequest(name="add_one", taskId=1).SerializeToString()
    telemetry.work_queued("activity", ("a", 7), "dapr")
    assert sample(telemetry, "dapr_workflows_queue_depth", kind="activity", dialect="dapr") == 1
    telemetry.work_taken(("a", 7))
    telemetry.activity_dispatched("t1", ("a", 7), request)
    assert sample(telemetry, "dapr_workflows_queue_depth", kind="activity", dialect="dapr") == 0
    assert sample(telemetry, "dapr_workflows_leases_held", kind="activity") == 1
    telemetry.lease_returned("t1")
    telemetry.lease_ended("t1")
    assert sample(telemetry, "dapr_workflows_leases_held", kind="activity") == 0
    count = "dapr_runtime_workflow_activity_execution_count"
    assert sample(telemetry, count, activity_name="add_one", status="recoverable") == 1
    # Its next run completes it.
    telemetry.activity_dispatched("t2", ("a", 7), request)
    telemetry.activity_completed("t2", failed=True)
    telemetry.lease_ended("t2")
    assert sample(telemetry, count, activity_name="add_one", status="failed") == 1
    assert sample(telemetry, count, activity_name="add_one", status="success") == 0


def test_history_cache_bytes_follow_what_is_cached() -> None:
    telemetry = Telemetry()
    telemetry.history_cached("a", [b"x" * 10, b"y" * 5])
    telemetry.history_cached("b", [b"z" * 7])
    telemetry.history_cached("a", [b"x" * 10, b"y" * 5, b"w" * 3])
    assert sample(telemetry, "dapr_workflows_history_cache_bytes") == 25
    telemetry.history_cached("a", None)
    telemetry.history_cached("missing", None)
    assert sample(telemetry, "dapr_workflows_history_cache_bytes") == 7


def test_a_failed_operation_is_counted_as_failed() -> None:
    telemetry = Telemetry()
    try:
        with telemetry.operation("terminate_workflow"):
            raise ValueError("refused")
    except ValueError:
        pass
    with telemetry.operation("terminate_workflow"):
        pass
    count = "dapr_runtime_workflow_operation_count"
    assert sample(telemetry, count, operation="terminate_workflow", status="failed") == 1
    assert sample(telemetry, count, operation="terminate_workflow", status="success") == 1


def test_tracing_off_leaves_messages_as_they_are() -> None:
    tracing = Tracing()
    started = pb.HistoryEvent(executionStarted=pb.ExecutionStartedEvent(name="chain")).SerializeToString()
    assert tracing.trace_execution_started(started, None) is started
    request, scheduled = pb.ActivityRequest(name="add_one"), pb.TaskScheduledEvent(name="add_one")
    tracing.trace_activity("i", request, scheduled)
    assert not request.HasField("parentTraceContext") and not scheduled.HasField("parentTraceContext")


def test_json_log_lines() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        log = logging.getLogger("dapr_workflows.test")
        log.info("started workflow %r", "i-1", extra={"instanceID": "i-1"})
        log.debug("not shown")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed")
    finally:
        configure_logging("info", "text", io.StringIO())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    assert lines[0]["message"] == "started workflow 'i-1'" and lines[0]["instanceID"] == "i-1"
    assert lines[0]["level"] == "info" and lines[0]["logger"] == "dapr_workflows.test"
    assert lines[0]["time"].endswith("+00:00")
    assert "instanceID" not in lines[1] and "RuntimeError: boom" in lines[1]["exception"]
    assert isinstance(JsonFormatter().format(logging.makeLogRecord({"msg": "x"})), str)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--log-format", "xml"], "--log-format must be text or json, not 'xml'"),
        (["--metrics", "maybe"], "--metrics must be true or false, not 'maybe'"),
    ],
)
def test_bad_telemetry_flags_are_refused_with_a_clear_message(
    flags: list[str], message: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dapr_workflows_component.cli", "serve", "--store", "sqlite:///x.db", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.db").exists()  # refused before anything was opened


REPO = Path(__file__).resolve().parents[1]


def exported_names() -> set[str]:
    """Every metric family the engine exports, and the sample names Prometheus sees."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        kind_suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
        for suffix in kind_suffixes.get(family.type, ()):
            names.add(family.name + suffix)
    return names


def test_the_dashboard_asks_only_for_exported_metrics() -> None:
    dashboard = json.loads((REPO / "deploy/grafana/dapr-workflows.json").read_text())
    exported = exported_names()
    asked: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            asked |= set(re.findall(r"\bdapr_[a-z_]+", target["expr"]))
    assert asked and asked <= exported, asked - exported
    # Every family has a panel.
    families = [f.name for f in Metrics().registry.collect() if f.name.startswith("dapr_")]
    assert [f for f in families if not any(a.startswith(f) for a in asked)] == []


def test_the_scrape_config_asks_the_metrics_path() -> None:
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    assert {job["metrics_path"] for job in config["scrape_configs"]} == {METRICS_PATH}


def test_the_readme_lists_every_metric() -> None:
    text = (REPO / "README.md").read_text()
    section = text.split("## Observability", 1)[1].split("\n## ", 1)[0]
    for family in Metrics().registry.collect():
        shown = family.name + (
            "_total" if family.type == "counter" and family.name.startswith("dapr_workflows") else ""
        )
        assert f"`{shown}`" in section, shown


def test_the_observed_store_passes_on_every_method_of_a_store() -> None:
    # A Store method it did not pass on would run the base class's default instead of the store's.
    public = {name for name in vars(Store) if not name.startswith("_") and callable(getattr(Store, name))}
    assert public and public <= set(vars(ObservedStore)), public - set(vars(ObservedStore))


@pytest.mark.parametrize("name", ["charge", "x" * 300, "é名", ""])
def test_the_activity_name_is_read_from_the_request_bytes(name: str) -> None:
    request = pb.ActivityRequest(name=name, taskId=3)
    request.input.value = "z" * 1000
    assert activity_name(request.SerializeToString()) == name
    # Another field first (not how the engine writes it): the whole request is parsed.
    assert (
        activity_name(pb.ActivityRequest(taskId=3).SerializeToString() + request.SerializeToString()) == name
    )
