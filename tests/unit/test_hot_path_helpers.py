"""Helpers of the engine's hot paths: metric children looked up once, the turn marker recorded as
given unless the worker reported a version, log lines formatted as logging formats them."""

from __future__ import annotations

import logging

from dapr_workflows_component.engine.patches import started_marker
from dapr_workflows_component.engine.wire import history_event, now_us
from dapr_workflows_component.protos import dapr_dialect_pb2 as pb
from dapr_workflows_component.telemetry.logs import TEXT_FORMAT, TextFormatter
from dapr_workflows_component.telemetry.metrics import Metrics
from prometheus_client import Histogram


def test_a_metric_child_is_looked_up_once_and_still_counts() -> None:
    m = Metrics()
    first = m.execution_count.labels("wf", "success")
    assert m.execution_count.labels("wf", "success") is first
    assert m.execution_count.labels("wf", "failed") is not first
    first.inc()
    m.execution_latency.labels("wf", "success").observe(3)
    assert m.execution_latency.labels("wf", "success") is m.execution_latency.labels("wf", "success")
    text = m.render().decode()
    assert 'dapr_runtime_workflow_execution_count{status="success",workflow_name="wf"} 1.0' in text
    assert 'dapr_runtime_workflow_execution_latency_count{status="success",workflow_name="wf"} 1.0' in text
    assert isinstance(m.execution_latency.labels("wf", "success"), Histogram)


def test_the_turn_marker_is_kept_as_given_without_a_version() -> None:
    marker = history_event(now_us(), workflowStarted=pb.WorkflowStartedEvent()).SerializeToString()
    assert started_marker(marker, pb.WorkflowResponse(instanceId="a")) is marker
    versioned = pb.WorkflowResponse(instanceId="a", version=pb.WorkflowVersion(patches=["p1"]))
    recorded = pb.HistoryEvent.FromString(started_marker(marker, versioned))
    assert list(recorded.workflowStarted.version.patches) == ["p1"]
    assert recorded.timestamp == pb.HistoryEvent.FromString(marker).timestamp


def test_the_text_log_format_is_logging_s_own() -> None:
    ours, default = TextFormatter(), logging.Formatter(TEXT_FORMAT)
    for created in (1_700_000_000.0, 1_700_000_000.9996, 1_700_000_001.25, 1_700_000_001.5):
        record = logging.LogRecord("dapr_workflows.engine", logging.INFO, "", 0, "workflow %r", ("a",), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.format(record) == default.format(record)
