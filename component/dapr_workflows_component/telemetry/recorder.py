"""`Telemetry`: the engine's observer that turns its hooks into metrics and spans."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..engine.wire import activity_name
from ..protos import dapr_dialect_pb2 as pb
from .metrics import FAILED, KINDS, RECOVERABLE, SUCCESS, TERMINATED, Metrics
from .observer import EngineObserver, WorkKey
from .tracing import Tracing, tracing_from_environment

# The wire dialects, as the `dialect` label.
DIALECT_NAMES = ("dapr", "durabletask")
# Queue waits of taken activities kept for their dispatch (one that finds nothing leaves its own).
_MAX_WAITED = 10_000


def execution_status(runtime_status: str) -> str:
    """daprd's status label of a finished workflow: success, terminated, or failed for the rest."""
    if runtime_status == "COMPLETED":
        return SUCCESS
    if runtime_status == "TERMINATED":
        return TERMINATED
    return FAILED


@dataclass
class _Lease:
    kind: str
    name: str
    started: float  # time.monotonic()


class Telemetry(EngineObserver):
    """Metrics always; spans when `tracing` is enabled."""

    def __init__(self, tracing: Tracing | None = None, serve_metrics: bool = True) -> None:
        self.metrics = Metrics()
        self.tracing = tracing or Tracing()
        # Whether /metrics is served (--metrics); the metrics are collected either way.
        self.serve_metrics = serve_metrics
        # Set once every listener of the process is up (/readyz).
        self.listening = False
        m = self.metrics
        # Waiting work items by (kind, dialect), oldest first, with when each was queued.
        self._waiting: dict[tuple[str, str], dict[WorkKey, float]] = {
            (k, d): {} for k in KINDS for d in DIALECT_NAMES
        }
        self._queued_as: dict[WorkKey, tuple[str, str]] = {}  # (kind, dialect)
        self._waited: dict[WorkKey, float] = {}
        self._leases: dict[str, _Lease] = {}
        self._history_bytes: dict[str, int] = {}
        self._history_total = 0
        for (kind, dialect), waiting in self._waiting.items():
            m.queue_depth.labels(kind, dialect).set_function(functools.partial(len, waiting))
            m.queue_oldest_age.labels(kind, dialect).set_function(functools.partial(self._oldest, waiting))
        for kind in KINDS:
            m.leases_held.labels(kind).set_function(functools.partial(self._held, kind))
        for dialect in DIALECT_NAMES:
            m.workers_connected.labels(dialect)
        m.history_cache_bytes.set_function(lambda: self._history_total)

    @classmethod
    def from_environment(cls, serve_metrics: bool = True) -> Telemetry:
        return cls(tracing_from_environment(), serve_metrics)

    def close(self) -> None:
        self.tracing.close()

    @staticmethod
    def _oldest(waiting: dict[WorkKey, float]) -> float:
        first = next(iter(waiting.values()), None)
        return 0.0 if first is None else time.monotonic() - first

    def _held(self, kind: str) -> int:
        return sum(1 for lease in self._leases.values() if lease.kind == kind)

    # -- queues and leases

    def work_queued(self, kind: str, key: WorkKey, dialect: str) -> None:
        waiting = self._waiting.get((kind, dialect))
        if waiting is not None:
            waiting[key] = time.monotonic()
            self._queued_as[key] = (kind, dialect)

    def work_taken(self, key: WorkKey) -> None:
        queued_as = self._queued_as.pop(key, None)
        if queued_as is None:
            return
        queued = self._waiting[queued_as].pop(key, None)
        if queued is not None and queued_as[0] == "activity":
            if len(self._waited) > _MAX_WAITED:  # taken activities that were gone from the store
                self._waited.clear()
            self._waited[key] = time.monotonic() - queued  # for activity_dispatched

    def turn_started(
        self, instance_id: str, name: str, token: str, history: list[bytes], new_events: list[bytes]
    ) -> None:
        self._leases[token] = _Lease("orchestration", name, time.monotonic())
        self.tracing.turn_started(instance_id, name, token, history, new_events)

    def turn_completed(self, token: str) -> None:
        lease = self._leases.pop(token, None)
        if lease is not None:
            self.metrics.turn_duration.observe(time.monotonic() - lease.started)
        self.tracing.turn_ended(token, None)

    def activity_dispatched(self, token: str, key: WorkKey, request: bytes) -> None:
        # The whole request (its input too) is parsed only for a span.
        parsed = pb.ActivityRequest.FromString(request) if self.tracing.enabled else None
        name = parsed.name if parsed is not None else activity_name(request)
        waited = self._waited.pop(key, 0.0)
        m = self.metrics
        m.activity_operation_count.labels(name, SUCCESS).inc()
        m.activity_operation_latency.labels(name, SUCCESS).observe(waited * 1000)
        self._leases[token] = _Lease("activity", name, time.monotonic())
        if parsed is not None:
            self.tracing.activity_dispatched(token, parsed)

    def activity_completed(self, token: str, failed: bool) -> None:
        lease = self._leases.pop(token, None)
        if lease is not None:
            status = FAILED if failed else SUCCESS
            elapsed_ms = (time.monotonic() - lease.started) * 1000
            self.metrics.activity_execution_count.labels(lease.name, status).inc()
            self.metrics.activity_execution_latency.labels(lease.name, status).observe(elapsed_ms)
        self.tracing.activity_completed(token, failed)

    def lease_returned(self, token: str) -> None:
        lease = self._leases.pop(token, None)
        if lease is None:
            return
        # daprd's "recoverable": the work is not lost, it runs again.
        if lease.kind == "activity":
            self.metrics.activity_execution_count.labels(lease.name, RECOVERABLE).inc()
        else:
            self.metrics.execution_count.labels(lease.name, RECOVERABLE).inc()

    def lease_expired(self, kind: str) -> None:
        self.metrics.leases_expired.labels(kind).inc()

    def lease_ended(self, token: str) -> None:
        self._leases.pop(token, None)
        self.tracing.lease_ended(token)

    def completion_ignored(self, kind: str, reason: str) -> None:
        self.metrics.completions_ignored.labels(kind, reason).inc()

    # -- workers

    def worker_connected(self, dialect: str) -> None:
        self.metrics.workers_connected.labels(dialect).inc()

    def worker_disconnected(self, dialect: str) -> None:
        self.metrics.workers_connected.labels(dialect).dec()

    # -- instances

    def workflow_finished(self, instance_id: str, name: str, status: str, created_at_us: int) -> None:
        label = execution_status(status)
        elapsed_ms = max(time.time_ns() // 1000 - created_at_us, 0) / 1000
        self.metrics.execution_count.labels(name, label).inc()
        self.metrics.execution_latency.labels(name, label).observe(elapsed_ms)
        self.tracing.workflow_finished(instance_id, name, status, created_at_us, error=label == FAILED)

    # -- management calls

    @contextmanager
    def operation(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        status = FAILED
        try:
            with self.tracing.operation(name):
                yield
            status = SUCCESS
        finally:
            elapsed_ms = (time.perf_counter() - start) * 1000
            self.metrics.operation_count.labels(name, status).inc()
            self.metrics.operation_latency.labels(name, status).observe(elapsed_ms)

    # -- store, outbox, retention, cache

    def store_transaction(self, seconds: float, error: bool) -> None:
        self.metrics.store_transaction_duration.observe(seconds)
        if error:
            self.metrics.store_errors.inc()

    def outbox_backlog(self, count: int) -> None:
        self.metrics.outbox_backlog.set(count)

    def retention_purged(self, count: int, status: str) -> None:
        self.metrics.retention_purged.labels(status).inc(count)

    def history_cached(self, instance_id: str, events: list[bytes] | None) -> None:
        size = sum(len(e) for e in events) if events else 0
        self._history_total += size - self._history_bytes.pop(instance_id, 0)
        if events is not None:
            self._history_bytes[instance_id] = size

    # -- trace context

    def trace_execution_started(self, event: bytes, parent_instance_id: str | None) -> bytes:
        return self.tracing.trace_execution_started(event, parent_instance_id)

    def trace_activity(
        self, instance_id: str, request: pb.ActivityRequest, scheduled: pb.TaskScheduledEvent
    ) -> None:
        self.tracing.trace_activity(instance_id, request, scheduled)


__all__ = ["Telemetry", "activity_name", "execution_status"]
