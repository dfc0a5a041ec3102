"""OpenTelemetry traces: one trace per workflow instance, exported over OTLP when configured.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; then the
standard OTLP variables configure the exporter (gRPC), and `OTEL_SERVICE_NAME` names the service
(default `dapr-workflows`). When off, every method returns at once.

An instance lives longer than any one call, and its turns may run on other engines sharing the
store, so its trace context is persisted where Dapr's own engine keeps it: the `executionStarted`
event carries the parent's context (`parentTraceContext`) and the ID of the workflow's own span
(`workflowSpanID`). A root instance (no caller context) refers to itself as its parent. The workflow
span is exported when the instance finishes, with that ID and its creation time as its start; each
activity's span ID is chosen when it is scheduled and handed to the worker on the `ActivityRequest`
(and the `taskScheduled` event), so the SDK's own activity span is its child.
"""

from __future__ import annotations

import contextvars
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..protos import dapr_dialect_pb2 as pb
from .observer import CALLER_TRACE_PARENT

log = logging.getLogger("dapr_workflows.telemetry")

DEFAULT_SERVICE_NAME = "dapr-workflows"
# Instances whose trace context is kept in memory (the rest is read again from their history).
_CACHE_SIZE = 10_000

_PRESET_TRACE_ID: contextvars.ContextVar[int] = contextvars.ContextVar("preset_trace_id", default=0)
_PRESET_SPAN_ID: contextvars.ContextVar[int] = contextvars.ContextVar("preset_span_id", default=0)
_PROPAGATOR = TraceContextTextMapPropagator()


class _PresetIds(RandomIdGenerator):
    """Random IDs, except for a span whose ID was chosen (and persisted) before it is exported."""

    def generate_span_id(self) -> int:
        return _PRESET_SPAN_ID.get() or super().generate_span_id()

    def generate_trace_id(self) -> int:
        return _PRESET_TRACE_ID.get() or super().generate_trace_id()


def trace_parent(ctx: SpanContext) -> str:
    """The W3C `traceparent` header of a span context."""
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def parse_trace_parent(value: str | None) -> SpanContext | None:
    if not value:
        return None
    ctx = trace.get_current_span(_PROPAGATOR.extract({"traceparent": value})).get_span_context()
    return ctx if ctx.is_valid else None


@dataclass
class _WorkflowTrace:
    span: SpanContext  # the workflow span's own context (its ID is persisted)
    parent: SpanContext | None  # None: the workflow span is the root of its trace
    link: SpanContext | None = None  # a child workflow's parent workflow


@dataclass
class _ActivityTrace:
    name: str
    instance_id: str
    task_id: int
    span: SpanContext
    dispatched_ns: int


def _random_id(bits: int) -> int:
    ids = RandomIdGenerator()
    return ids.generate_trace_id() if bits == 128 else ids.generate_span_id()


class Tracing:
    """The engine's spans. `provider` None: tracing is off."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.provider = provider
        self.enabled = provider is not None
        self.tracer = (provider or trace.NoOpTracerProvider()).get_tracer("dapr_workflows")
        self._instances: OrderedDict[str, _WorkflowTrace] = OrderedDict()
        self._turns: dict[str, trace.Span] = {}
        self._activities: dict[str, _ActivityTrace] = {}
        # When each activity span (by ID) was scheduled: its start, if it completes here.
        self._scheduled_ns: OrderedDict[int, int] = OrderedDict()

    def close(self) -> None:
        """Exports what is buffered."""
        if self.provider is not None:
            self.provider.shutdown()

    # -- spans with IDs chosen in advance

    def _span(
        self,
        name: str,
        span_id: int,
        trace_id: int,
        parent: SpanContext | None,
        start_ns: int,
        end_ns: int,
        error: str | None = None,
        links: list[Link] | None = None,
        attributes: dict[str, str | int] | None = None,
    ) -> None:
        context = trace.set_span_in_context(NonRecordingSpan(parent)) if parent else Context()
        preset = (_PRESET_SPAN_ID.set(span_id), _PRESET_TRACE_ID.set(trace_id))
        try:
            span = self.tracer.start_span(
                name, context=context, links=links, attributes=attributes, start_time=start_ns
            )
        finally:
            _PRESET_SPAN_ID.reset(preset[0])
            _PRESET_TRACE_ID.reset(preset[1])
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=max(end_ns, start_ns))

    # -- management calls

    @contextmanager
    def operation(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        current = trace.get_current_span().get_span_context()
        caller = CALLER_TRACE_PARENT.get()
        context = None if current.is_valid or not caller else _PROPAGATOR.extract({"traceparent": caller})
        with self.tracer.start_as_current_span(name, context=context, kind=SpanKind.SERVER):
            yield

    # -- instances

    def trace_execution_started(self, event: bytes, parent_instance_id: str | None) -> bytes:
        """Adds the new instance's trace context to its executionStarted event."""
        if not self.enabled:
            return event
        parsed = pb.HistoryEvent.FromString(event)
        parent_trace = self._instances.get(parent_instance_id) if parent_instance_id else None
        current = trace.get_current_span().get_span_context()
        parent: SpanContext | None = None
        if parent_trace is not None:
            parent = parent_trace.span
        elif current.is_valid:
            parent = current
        trace_id = parent.trace_id if parent else _random_id(128)
        span = SpanContext(trace_id, _random_id(64), False, TraceFlags(TraceFlags.SAMPLED))
        started = parsed.executionStarted
        started.parentTraceContext.traceParent = trace_parent(parent or span)
        started.workflowSpanID.value = f"{span.span_id:016x}"
        instance_id = started.workflowInstance.instanceId
        link = parent_trace.span if parent_trace else None
        self._remember(instance_id, _WorkflowTrace(span, parent, link))
        return parsed.SerializeToString()

    def _remember(self, instance_id: str, entry: _WorkflowTrace) -> None:
        self._instances[instance_id] = entry
        self._instances.move_to_end(instance_id)
        if len(self._instances) > _CACHE_SIZE:
            self._instances.popitem(last=False)

    def _workflow_trace(
        self, instance_id: str, history: list[bytes], new_events: list[bytes]
    ) -> _WorkflowTrace | None:
        known = self._instances.get(instance_id)
        if known is not None:
            return known
        for raw in history[:1] or new_events:
            event = pb.HistoryEvent.FromString(raw)
            if not event.HasField("executionStarted"):
                continue
            started = event.executionStarted
            parent = parse_trace_parent(started.parentTraceContext.traceParent)
            if parent is None or not started.HasField("workflowSpanID"):
                return None
            span = SpanContext(
                parent.trace_id, int(started.workflowSpanID.value, 16), False, parent.trace_flags
            )
            entry = _WorkflowTrace(span, None if parent.span_id == span.span_id else parent)
            self._remember(instance_id, entry)
            return entry
        return None

    def workflow_finished(
        self, instance_id: str, name: str, status: str, created_at_us: int, error: bool
    ) -> None:
        if not self.enabled:
            return
        entry = self._instances.pop(instance_id, None)
        if entry is None:
            return  # started before this engine knew it, and no turn ran here since
        self._span(
            f"workflow {name}",
            entry.span.span_id,
            entry.span.trace_id,
            entry.parent,
            created_at_us * 1000,
            time.time_ns(),
            error=f"the workflow is {status}" if error else None,
            links=[Link(entry.link)] if entry.link else None,
            attributes={
                "workflow.instance_id": instance_id,
                "workflow.name": name,
                "workflow.status": status,
            },
        )

    # -- turns and timers

    def turn_started(
        self, instance_id: str, name: str, token: str, history: list[bytes], new_events: list[bytes]
    ) -> None:
        if not self.enabled:
            return
        entry = self._workflow_trace(instance_id, history, new_events)
        if entry is None:
            return
        context = trace.set_span_in_context(NonRecordingSpan(entry.span))
        attributes = {"workflow.instance_id": instance_id, "workflow.name": name}
        self._turns[token] = self.tracer.start_span(f"turn {name}", context=context, attributes=attributes)
        for raw in new_events:
            event = pb.HistoryEvent.FromString(raw)
            if event.HasField("timerFired"):
                # A timerFired event is written when its timer is created, and fires at fireAt.
                fired = event.timerFired
                start_ns = event.timestamp.ToNanoseconds()
                self._span(
                    "timer",
                    _random_id(64),
                    entry.span.trace_id,
                    entry.span,
                    start_ns,
                    min(fired.fireAt.ToNanoseconds(), time.time_ns()),
                    attributes={"workflow.instance_id": instance_id, "timer.id": fired.timerId},
                )

    def turn_ended(self, token: str, error: str | None) -> None:
        span = self._turns.pop(token, None)
        if span is None:
            return
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    # -- activities

    def trace_activity(
        self, instance_id: str, request: pb.ActivityRequest, scheduled: pb.TaskScheduledEvent
    ) -> None:
        if not self.enabled:
            return
        entry = self._instances.get(instance_id)
        if entry is None:
            return
        span_id = _random_id(64)
        context = SpanContext(entry.span.trace_id, span_id, False, entry.span.trace_flags)
        request.parentTraceContext.traceParent = trace_parent(context)
        scheduled.parentTraceContext.traceParent = trace_parent(context)
        self._scheduled_ns[span_id] = time.time_ns()
        if len(self._scheduled_ns) > _CACHE_SIZE:
            self._scheduled_ns.popitem(last=False)

    def activity_dispatched(self, token: str, request: pb.ActivityRequest) -> None:
        if not self.enabled:
            return
        span = parse_trace_parent(request.parentTraceContext.traceParent)
        if span is not None:
            self._activities[token] = _ActivityTrace(
                request.name, request.workflowInstance.instanceId, request.taskId, span, time.time_ns()
            )

    def activity_completed(self, token: str, failed: bool) -> None:
        info = self._activities.pop(token, None)
        if info is None:
            return
        entry = self._instances.get(info.instance_id)
        self._span(
            f"activity {info.name}",
            info.span.span_id,
            info.span.trace_id,
            entry.span if entry else None,
            self._scheduled_ns.pop(info.span.span_id, info.dispatched_ns),
            time.time_ns(),
            error="the activity failed" if failed else None,
            attributes={
                "workflow.instance_id": info.instance_id,
                "activity.name": info.name,
                "activity.task_id": info.task_id,
            },
        )

    def lease_ended(self, token: str) -> None:
        """A lease gone without a result: the turn's span ends as returned; an activity's span
        waits for the run that completes it."""
        self.turn_ended(token, "the turn went back to the queue")
        self._activities.pop(token, None)


def tracing_from_environment() -> Tracing:
    """Tracing as the standard OTEL_* variables configure it; off without an OTLP endpoint."""
    env = os.environ
    if not (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return Tracing()
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    )
    if protocol != "grpc":
        log.warning(
            "OTEL_EXPORTER_OTLP_PROTOCOL=%s: only grpc is supported; traces go over OTLP/gRPC", protocol
        )
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    service = env.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
    provider = TracerProvider(resource=Resource.create({"service.name": service}), id_generator=_PresetIds())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    log.info("tracing: spans of service %r go to %s over OTLP/gRPC", service, endpoint)
    return Tracing(provider)


__all__ = [
    "DEFAULT_SERVICE_NAME",
    "Tracing",
    "parse_trace_parent",
    "trace_parent",
    "tracing_from_environment",
]
