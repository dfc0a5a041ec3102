"""What the engine tells its observers: a few named hooks, called where things happen.

The engine holds no metrics or tracing code: it calls these methods (one line at each site), and
`Telemetry` (telemetry/__init__.py) turns them into Prometheus metrics and OpenTelemetry spans.
`EngineObserver` itself does nothing, so an engine without telemetry pays one method call per hook.

Hooks are called after the store transaction that made the change has committed, except the
`trace_*` ones, which only put trace context into messages being written (they must give the same
kind of answer if a shared store runs the transaction again).
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Awaitable, Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from ..protos import dapr_dialect_pb2 as pb

T = TypeVar("T")

# The W3C `traceparent` of the caller of a management call, set by the adapter that received it (the
# HTTP header, the SDK's `parentTraceContext` on a gRPC start), read by the tracing observer.
CALLER_TRACE_PARENT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "caller_trace_parent", default=None
)

# A work item as the engine's queues hold it (an instance's next turn, or one activity).
WorkKey = Hashable


class EngineObserver:
    """The hooks, all doing nothing. Subclasses override what they need."""

    # -- queues and leases
    def work_queued(self, kind: str, key: WorkKey, dialect: str) -> None:
        """A turn (`kind` orchestration) or an activity waits in the queue for a worker of `dialect`."""

    def work_taken(self, key: WorkKey) -> None:
        """A worker's stream took the item out of the queue."""

    def turn_started(
        self, instance_id: str, name: str, token: str, history: list[bytes], new_events: list[bytes]
    ) -> None:
        """A workflow turn was leased to a worker under `token`."""

    def turn_completed(self, token: str) -> None:
        """The worker's answer to the turn was recorded."""

    def activity_dispatched(self, token: str, key: WorkKey, request: bytes) -> None:
        """An activity (a serialized ActivityRequest) was leased to a worker under `token`."""

    def activity_completed(self, token: str, failed: bool) -> None:
        """The worker sent the activity's result (or its failure)."""

    def lease_returned(self, token: str) -> None:
        """A leased item goes back to the queue unfinished: expired, disconnected, abandoned, or
        its result could not be recorded."""

    def lease_expired(self, kind: str) -> None:
        """A lease ran out before the worker answered (`kind`: orchestration or activity)."""

    def lease_ended(self, token: str) -> None:
        """The engine forgot the lease, for whatever reason (always called last)."""

    def completion_ignored(self, kind: str, reason: str) -> None:
        """A result came under a token that holds no lease (`reason`: stale or forged)."""

    # -- workers
    def worker_connected(self, dialect: str) -> None: ...

    def worker_disconnected(self, dialect: str) -> None: ...

    # -- instances
    def workflow_finished(self, instance_id: str, name: str, status: str, created_at_us: int) -> None:
        """The instance reached a terminal status (a RuntimeStatus name)."""

    # -- management calls
    @contextmanager
    def operation(self, name: str) -> Iterator[None]:
        """Wraps one management call (create_workflow, terminate_workflow, ...)."""
        yield

    # -- store, outbox, retention, cache
    def store_transaction(self, seconds: float, error: bool) -> None: ...

    def outbox_backlog(self, count: int) -> None:
        """Lifecycle events recorded and not yet taken by an input binding."""

    def retention_purged(self, count: int, status: str) -> None:
        """The retention policy purged `count` finished instances of `status`."""

    def history_cached(self, instance_id: str, events: list[bytes] | None) -> None:
        """The engine now caches this history for the instance (None: nothing any more)."""

    # -- trace context written into messages (inside store transactions)
    def trace_execution_started(self, event: bytes, parent_instance_id: str | None) -> bytes:
        """The serialized executionStarted event of a new instance, with trace context added."""
        return event

    def trace_activity(
        self, instance_id: str, request: pb.ActivityRequest, scheduled: pb.TaskScheduledEvent
    ) -> None:
        """Adds the activity's trace context to its request and its taskScheduled event."""


class _Observed(Protocol):
    observer: EngineObserver


S = TypeVar("S", bound=_Observed)
P = ParamSpec("P")


def observed(
    operation: str,
) -> Callable[[Callable[Concatenate[S, P], Awaitable[T]]], Callable[Concatenate[S, P], Awaitable[T]]]:
    """Decorates an async engine method as the management operation `operation`: its duration and
    outcome reach `self.observer`."""

    def wrap(fn: Callable[Concatenate[S, P], Awaitable[T]]) -> Callable[Concatenate[S, P], Awaitable[T]]:
        @functools.wraps(fn)
        async def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
            with self.observer.operation(operation):
                return await fn(self, *args, **kwargs)

        return run

    return wrap


__all__ = ["CALLER_TRACE_PARENT", "EngineObserver", "WorkKey", "observed"]
