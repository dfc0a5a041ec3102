"""Every metric the engine exports, defined once (Prometheus, with prometheus-client).

Two families:

- Dapr's workflow metrics, by the names, labels, label values and unit (milliseconds, Dapr's default
  latency buckets) of daprd's `pkg/diagnostics/workflow_monitoring.go`, so that dashboards and
  alerts written for daprd's built-in engine work here unchanged. daprd exposes its counts as
  counters without the `_total` suffix (`dapr_runtime_workflow_execution_count`); so do we.
- The engine's own, prefixed `dapr_workflows_`, in Prometheus' usual units (seconds, `_total`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# daprd's default latency distribution, in milliseconds (MetricSpec.GetLatencyDistribution).
DAPR_LATENCY_BUCKETS_MS = (
    1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200, 250, 300, 400,
    500, 650, 800, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
)  # fmt: skip

# Status label values, as daprd records them.
SUCCESS = "success"
FAILED = "failed"
TERMINATED = "terminated"
RECOVERABLE = "recoverable"

# The `operation` label of dapr_runtime_workflow_operation_*: daprd's four names where the meaning
# matches, ours for the calls daprd does not count.
OPERATIONS = (
    "create_workflow",
    "get_workflow",
    "add_event",
    "purge_workflow",
    "terminate_workflow",
    "suspend_workflow",
    "resume_workflow",
    "rerun_workflow",
    "list_workflows",
    "get_workflow_history",
)

# Work kinds, as the `kind` label of the engine's own metrics.
KINDS = ("orchestration", "activity")

M = TypeVar("M", Counter, Histogram)


def cached_labels(metric: M) -> Callable[..., M]:
    """`metric.labels`, remembering each child by its label values: the hot paths count per work
    item, and prometheus-client checks and converts the values on every call."""
    children: dict[tuple[str, ...], M] = {}
    child_of = metric.labels  # bound before the metric's own `labels` may be replaced by this

    def labels(*values: str) -> M:
        child = children.get(values)
        if child is None:
            child = children[values] = child_of(*values)
        return child

    return labels


class DaprCounter(Collector):
    """A counter exposed as daprd exposes its counts: the samples carry the metric's name itself."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.counter = Counter(name, documentation, labelnames, registry=None)
        self.labels = cached_labels(self.counter)

    def collect(self) -> Iterator[Metric]:
        for family in self.counter.collect():
            out = Metric(self.name, family.documentation, "counter")
            for sample in family.samples:
                if sample.name == self.name + "_total":
                    out.add_sample(self.name, sample.labels, sample.value)
            yield out


class Metrics:
    """The metrics of one engine, in their own registry."""

    def __init__(self) -> None:
        # daprd's series have no `_created` companions; neither do ours.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        reg = self.registry
        self.dapr_counters: list[DaprCounter] = []
        self._define_dapr_metrics()
        self._define_engine_metrics(reg)

    def _define_dapr_metrics(self) -> None:
        """Dapr's names, labels and units."""
        self.operation_count = self._dapr_counter(
            "dapr_runtime_workflow_operation_count",
            "The number of successful/failed workflow operation requests.",
            ("operation", "status"),
        )
        self.operation_latency = self._dapr_histogram(
            "dapr_runtime_workflow_operation_latency",
            "The latencies of responses for workflow operation requests (ms).",
            ("operation", "status"),
        )
        self.execution_count = self._dapr_counter(
            "dapr_runtime_workflow_execution_count",
            "The number of successful/failed/terminated/recoverable workflow executions.",
            ("workflow_name", "status"),
        )
        self.execution_latency = self._dapr_histogram(
            "dapr_runtime_workflow_execution_latency",
            "The total time taken to run a workflow to completion (ms).",
            ("workflow_name", "status"),
        )
        self.activity_operation_count = self._dapr_counter(
            "dapr_runtime_workflow_activity_operation_count",
            "The number of successful/failed/recoverable activity operation requests.",
            ("activity_name", "status"),
        )
        self.activity_operation_latency = self._dapr_histogram(
            "dapr_runtime_workflow_activity_operation_latency",
            "The time an activity waited for a worker before it was handed to one (ms).",
            ("activity_name", "status"),
        )
        self.activity_execution_count = self._dapr_counter(
            "dapr_runtime_workflow_activity_execution_count",
            "The number of successful/failed/recoverable activity executions.",
            ("activity_name", "status"),
        )
        self.activity_execution_latency = self._dapr_histogram(
            "dapr_runtime_workflow_activity_execution_latency",
            "The total time taken to run an activity to completion (ms).",
            ("activity_name", "status"),
        )

    def _define_engine_metrics(self, reg: CollectorRegistry) -> None:
        """The engine's own, prefixed `dapr_workflows_`."""
        self.queue_depth = Gauge(
            "dapr_workflows_queue_depth",
            "Work items waiting in the engine's queues for a worker.",
            ("kind", "dialect"),
            registry=reg,
        )
        self.queue_oldest_age = Gauge(
            "dapr_workflows_queue_oldest_age_seconds",
            "How long the oldest waiting work item has waited for a worker.",
            ("kind", "dialect"),
            registry=reg,
        )
        self.leases_held = Gauge(
            "dapr_workflows_leases_held",
            "Work items leased to connected workers right now.",
            ("kind",),
            registry=reg,
        )
        self.leases_expired = Counter(
            "dapr_workflows_leases_expired",
            "Leases that ran out before the worker answered; the item was offered again.",
            ("kind",),
            registry=reg,
        )
        self.completions_ignored = Counter(
            "dapr_workflows_completions_ignored",
            "Results ignored because their completion token holds no lease (stale or forged).",
            ("kind", "reason"),
            registry=reg,
        )
        self.turn_duration = Histogram(
            "dapr_workflows_turn_duration_seconds",
            "From leasing a workflow turn to a worker until its result is recorded.",
            registry=reg,
        )
        self.store_transaction_duration = Histogram(
            "dapr_workflows_store_transaction_duration_seconds",
            "Duration of store transactions (reads included).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=reg,
        )
        self.store_errors = Counter(
            "dapr_workflows_store_errors",
            "Store transactions that failed in the store (unavailable, broken connection, ...).",
            registry=reg,
        )
        self.workers_connected = Gauge(
            "dapr_workflows_workers_connected",
            "Workers with an open work-item stream, by wire dialect.",
            ("dialect",),
            registry=reg,
        )
        self.outbox_backlog = Gauge(
            "dapr_workflows_outbox_backlog",
            "Lifecycle events recorded for the input binding and not yet taken by it.",
            registry=reg,
        )
        self.retention_purged = Counter(
            "dapr_workflows_retention_purged",
            "Finished instances purged by the retention policy, by their status.",
            ("status",),
            registry=reg,
        )
        self.history_cache_bytes = Gauge(
            "dapr_workflows_history_cache_bytes",
            "Bytes of workflow history the engine keeps in memory between turns.",
            registry=reg,
        )

    def _dapr_counter(self, name: str, documentation: str, labelnames: Iterable[str]) -> DaprCounter:
        counter = DaprCounter(name, documentation, tuple(labelnames))
        self.registry.register(counter)
        self.dapr_counters.append(counter)
        return counter

    def _dapr_histogram(self, name: str, documentation: str, labelnames: Iterable[str]) -> Histogram:
        histogram = Histogram(
            name, documentation, tuple(labelnames), buckets=DAPR_LATENCY_BUCKETS_MS, registry=self.registry
        )
        # Only the children are observed: each is looked up once per label values.
        histogram.labels = cached_labels(histogram)  # type: ignore[method-assign]
        return histogram

    def render(self) -> bytes:
        """The Prometheus text format of every metric."""
        text = generate_latest(self.registry).decode()
        # prometheus-client names a counter's HELP and TYPE lines NAME_total; for daprd's counts the
        # samples carry NAME itself, so the lines must too.
        for counter in self.dapr_counters:
            text = re.sub(
                rf"^# (HELP|TYPE) {counter.name}_total ", rf"# \1 {counter.name} ", text, flags=re.MULTILINE
            )
        return text.encode()


__all__ = [
    "CONTENT_TYPE",
    "DAPR_LATENCY_BUCKETS_MS",
    "FAILED",
    "KINDS",
    "OPERATIONS",
    "RECOVERABLE",
    "SUCCESS",
    "TERMINATED",
    "Metrics",
]
