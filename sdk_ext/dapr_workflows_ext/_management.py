"""The workflow methods written once, for the sync and the async client.

Each method is a plan: a generator that yields the I/O it needs (`BuiltinCall`, `BindingCall`,
`ListComponents`, `Sleep`) and gets the answers back. `client.DaprClient` runs plans with blocking
calls and `aio.DaprClient` with awaits; a failed gRPC call is thrown into the plan as it was
raised, and the plan turns it into a typed error (`errors.error_from_rpc`).

Routing: `workflow_component="dapr"` is daprd's built-in engine, through daprd's workflow gRPC
API (`StartWorkflowBeta1`, ...). Any other name must be a workflow component daprd has loaded (its
metadata API tells, asked once per client); calls go to it through daprd's binding API.

daprd's built-in engine applies start, pause, resume and terminate after it has answered; for
the same behaviour on both routes the plan then waits (`wait_seconds` at most) until `get` shows
the effect, as the dapr-workflows component does before it answers.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

import grpc
from dapr.proto.runtime.v1 import workflow_pb2

from .errors import (
    DaprWorkflowError,
    InvalidWorkflowRequestError,
    NotAWorkflowComponentError,
    WorkflowNotFoundError,
    error_from_rpc,
)
from .responses import GetWorkflowResponse, StartWorkflowResponse, WorkflowRuntimeStatus

T = TypeVar("T")

BUILTIN_COMPONENT = "dapr"
# Component types served by dapr-workflows: `bindings.<socket name>` (`--socket-name`).
DEFAULT_BINDING_TYPES = ("bindings.dapr-workflows",)
DEFAULT_WAIT_SECONDS = 10.0


# ---------------------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class BuiltinCall:
    """A call on daprd's workflow gRPC API; answered with (response, headers)."""

    method: str  # the stub method: StartWorkflowBeta1, GetWorkflowBeta1, ...
    request: Any


@dataclass(frozen=True)
class BindingCall:
    """`invoke_binding(name, operation, data, metadata)`; answered with the `BindingResponse`."""

    name: str
    operation: str
    data: bytes
    metadata: dict[str, str]


@dataclass(frozen=True)
class ListComponents:
    """daprd's metadata API; answered with its `registered_components` (each has name and type)."""


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = BuiltinCall | BindingCall | ListComponents | Sleep
Plan = Generator[Step, Any, T]
Headers = tuple[tuple[str, Any], ...]


@dataclass
class Context:
    """What a call was about, for its errors."""

    operation: str
    workflow_component: str
    instance_id: str | None = None

    def error(self, cls: type[DaprWorkflowError], message: str, status: str) -> DaprWorkflowError:
        return cls(
            message,
            grpc_status=status,
            operation=self.operation,
            workflow_component=self.workflow_component,
            instance_id=self.instance_id,
        )


def run_step(step: Step, ctx: Context) -> Plan[Any]:
    """Yields `step`; a gRPC error it raised comes back as a typed error."""
    try:
        return (yield step)
    except grpc.RpcError as err:
        raise error_from_rpc(
            err,
            operation=ctx.operation,
            workflow_component=ctx.workflow_component,
            instance_id=ctx.instance_id,
        ) from None


# -------------------------------------------------------------------------------------- helpers


def require(ctx: Context, **values: str | None) -> None:
    """The Dapr SDK's check: names and IDs must not be blank."""
    for name, value in values.items():
        if not value or not value.strip():
            raise ctx.error(
                InvalidWorkflowRequestError, f"{name} must not be empty or blank", "INVALID_ARGUMENT"
            )


def docs_start_order(first: str, third: Any, fourth: bytes) -> tuple[str, bytes, str, bool]:
    """(component, input, instance ID, raw) of a start called in the order of the Dapr docs' "Manage
    workflows" example: `start_workflow(instance_id, workflow_name, workflow_component, input_bytes,
    options)`.

    The SDK's order puts the instance ID fourth, and an instance ID is never bytes, so bytes there
    can only be the docs' input. That input is the workflow's input as it is when it is JSON, and
    the text it carries otherwise (the docs pass `"paperclips".encode()`).
    """
    try:
        json.loads(fourth)
        data = fourth
    except ValueError:
        data = json.dumps(fourth.decode("utf-8", "replace")).encode()
    return str(third), data, first, True


def encode_payload(ctx: Context, what: str, value: Any, send_raw_bytes: bool) -> bytes:
    """As the Dapr SDK did: JSON, or the bytes as they are with `send_raw_bytes`; None is empty."""
    if isinstance(value, bytes) and send_raw_bytes:
        return value
    if value is None:
        return b""
    try:
        return json.dumps(value).encode()
    except (TypeError, ValueError) as err:
        raise ctx.error(
            InvalidWorkflowRequestError, f"the {what} cannot be serialized to JSON: {err}", "INVALID_ARGUMENT"
        ) from None


def _rfc3339(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _state_from_builtin(ctx: Context, resp: Any) -> GetWorkflowResponse:
    # The built-in engine answers an unknown instance with an empty state, not an error.
    if not resp.runtime_status:
        raise ctx.error(
            WorkflowNotFoundError, f"no workflow instance with ID {ctx.instance_id!r}", "NOT_FOUND"
        )
    return GetWorkflowResponse(
        instance_id=resp.instance_id or str(ctx.instance_id),
        workflow_name=resp.workflow_name,
        created_at=resp.created_at.ToDatetime(tzinfo=timezone.utc),
        last_updated_at=resp.last_updated_at.ToDatetime(tzinfo=timezone.utc),
        runtime_status=WorkflowRuntimeStatus.parse(resp.runtime_status),
        properties=dict(resp.properties),
    )


def _state_from_binding(ctx: Context, data: bytes) -> GetWorkflowResponse:
    try:
        doc = json.loads(data)
        return GetWorkflowResponse(
            instance_id=doc["instanceID"],
            workflow_name=doc.get("workflowName", ""),
            created_at=_rfc3339(doc["createdAt"]),
            last_updated_at=_rfc3339(doc["lastUpdatedAt"]),
            runtime_status=WorkflowRuntimeStatus.parse(doc["runtimeStatus"]),
            properties={str(k): str(v) for k, v in (doc.get("properties") or {}).items()},
        )
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ctx.error(
            DaprWorkflowError,
            f"workflow component {ctx.workflow_component!r} answered get with something that is not "
            f"a workflow state ({err!r}): is it a dapr-workflows component?",
            "INTERNAL",
        ) from None


# ----------------------------------------------------------------------------------------- plans


class WorkflowPlans:
    """The seven workflow methods as plans, with the routing table one client keeps."""

    def __init__(self, wait_seconds: float, binding_types: Iterable[str]) -> None:
        if wait_seconds < 0:
            raise ValueError("workflow_wait_seconds must not be negative")
        self.wait_seconds = wait_seconds
        self.binding_types = frozenset(binding_types)
        self._components: dict[str, str] | None = None  # name -> type, from daprd's metadata

    # -- routing

    def _is_builtin(self, ctx: Context) -> Plan[bool]:
        name = ctx.workflow_component
        if name == BUILTIN_COMPONENT:
            return True
        if self._components is None:
            listed = yield from run_step(ListComponents(), ctx)
            self._components = {c.name: c.type for c in listed}
        kind = self._components.get(name)
        if kind in self.binding_types:
            return False
        known = [f"{BUILTIN_COMPONENT!r} (daprd's built-in engine)"] + [
            repr(n) for n, t in sorted(self._components.items()) if t in self.binding_types
        ]
        what = (
            f"{name} is a {kind} component, not a workflow component"
            if kind
            else f"daprd has no component named {name!r}"
        )
        raise ctx.error(
            NotAWorkflowComponentError,
            f"{what}; the workflow components are {', '.join(known)}",
            "INVALID_ARGUMENT",
        )

    def _binding(
        self, ctx: Context, operation: str, metadata: Mapping[str, str], data: bytes = b""
    ) -> Plan[Any]:
        answer = yield from run_step(
            BindingCall(ctx.workflow_component, operation, data, dict(metadata)), ctx
        )
        return answer

    def _builtin_get(self, ctx: Context) -> Plan[GetWorkflowResponse]:
        request = workflow_pb2.GetWorkflowRequest(
            instance_id=ctx.instance_id or "", workflow_component=ctx.workflow_component
        )
        resp, _ = yield from run_step(BuiltinCall("GetWorkflowBeta1", request), ctx)
        return _state_from_builtin(ctx, resp)

    def _settle(self, ctx: Context, done: Callable[[GetWorkflowResponse], bool]) -> Plan[None]:
        """Until `get` shows the effect of the call the built-in engine accepted (or time is up)."""
        if self.wait_seconds <= 0:
            return
        deadline = time.monotonic() + self.wait_seconds
        delay = 0.02
        get = Context("get", ctx.workflow_component, ctx.instance_id)
        while True:
            try:
                state = yield from self._builtin_get(get)
            except WorkflowNotFoundError:
                return
            remaining = deadline - time.monotonic()
            if done(state) or remaining <= 0:
                return
            yield Sleep(min(delay, remaining))
            delay = min(delay * 2, 0.25)

    def _builtin_change(
        self, ctx: Context, method: str, request: Any, done: Callable[[GetWorkflowResponse], bool] | None
    ) -> Plan[Headers]:
        _, headers = yield from run_step(BuiltinCall(method, request), ctx)
        if done is not None:
            yield from self._settle(ctx, done)
        return tuple(headers or ())

    # -- the methods

    def start_workflow(
        self,
        workflow_component: str,
        workflow_name: str,
        input: Any,
        instance_id: str | None,
        workflow_options: Mapping[str, str] | None,
        send_raw_bytes: bool,
    ) -> Plan[StartWorkflowResponse]:
        if isinstance(instance_id, bytes):
            workflow_component, input, instance_id, send_raw_bytes = docs_start_order(
                workflow_component, input, instance_id
            )
        ctx = Context("start", workflow_component, instance_id)
        require(ctx, workflow_component=workflow_component, workflow_name=workflow_name)
        if instance_id is None:
            instance_id = ctx.instance_id = str(uuid.uuid4())
        data = encode_payload(ctx, "input", input, send_raw_bytes)
        if (yield from self._is_builtin(ctx)):
            request = workflow_pb2.StartWorkflowRequest(
                instance_id=instance_id,
                workflow_component=workflow_component,
                workflow_name=workflow_name,
                options=dict(workflow_options or {}),
                input=data,
            )
            resp, _ = yield from run_step(BuiltinCall("StartWorkflowBeta1", request), ctx)
            ctx.instance_id = resp.instance_id or instance_id
            yield from self._settle(ctx, lambda s: s.runtime_status != WorkflowRuntimeStatus.PENDING)
            return StartWorkflowResponse(instance_id=ctx.instance_id)
        # Options go along as binding metadata (the component ignores keys it does not know).
        metadata = {**(workflow_options or {}), "workflowName": workflow_name, "instanceID": instance_id}
        answer = yield from self._binding(ctx, "start", metadata, data)
        try:
            started = json.loads(answer.data)["instanceID"]
        except (ValueError, KeyError, TypeError):
            started = instance_id
        return StartWorkflowResponse(instance_id=str(started))

    def get_workflow(self, instance_id: str, workflow_component: str) -> Plan[GetWorkflowResponse]:
        ctx = Context("get", workflow_component, instance_id)
        require(ctx, instance_id=instance_id, workflow_component=workflow_component)
        if (yield from self._is_builtin(ctx)):
            return (yield from self._builtin_get(ctx))
        answer = yield from self._binding(ctx, "get", {"instanceID": instance_id})
        return _state_from_binding(ctx, answer.data)

    def terminate_workflow(self, instance_id: str, workflow_component: str) -> Plan[Headers]:
        ctx = Context("terminate", workflow_component, instance_id)
        require(ctx, instance_id=instance_id, workflow_component=workflow_component)
        if (yield from self._is_builtin(ctx)):
            request = workflow_pb2.TerminateWorkflowRequest(
                instance_id=instance_id, workflow_component=workflow_component
            )
            return (
                yield from self._builtin_change(
                    ctx, "TerminateWorkflowBeta1", request, lambda s: s.runtime_status.is_terminal
                )
            )
        answer = yield from self._binding(ctx, "terminate", {"instanceID": instance_id})
        return tuple(answer.get_headers())

    def raise_workflow_event(
        self,
        instance_id: str,
        workflow_component: str,
        event_name: str,
        event_data: Any,
        send_raw_bytes: bool,
    ) -> Plan[Headers]:
        ctx = Context("raiseEvent", workflow_component, instance_id)
        require(ctx, instance_id=instance_id, workflow_component=workflow_component, event_name=event_name)
        data = encode_payload(ctx, "event data", event_data, send_raw_bytes)
        if (yield from self._is_builtin(ctx)):
            request = workflow_pb2.RaiseEventWorkflowRequest(
                instance_id=instance_id,
                workflow_component=workflow_component,
                event_name=event_name,
                event_data=data,
            )
            return (yield from self._builtin_change(ctx, "RaiseEventWorkflowBeta1", request, None))
        answer = yield from self._binding(
            ctx, "raiseEvent", {"instanceID": instance_id, "eventName": event_name}, data
        )
        return tuple(answer.get_headers())

    def pause_workflow(self, instance_id: str, workflow_component: str) -> Plan[Headers]:
        ctx = Context("pause", workflow_component, instance_id)
        require(ctx, instance_id=instance_id, workflow_component=workflow_component)
        if (yield from self._is_builtin(ctx)):
            request = workflow_pb2.PauseWorkflowRequest(
                instance_id=instance_id, workflow_component=workflow_component
            )
            return (
                yield from self._builtin_change(
                    ctx,
                    "PauseWorkflowBeta1",
                    request,
                    lambda s: (
                        s.runtime_status == WorkflowRuntimeStatus.SUSPENDED or s.runtime_status.is_terminal
                    ),
                )
            )
        answer = yield from self._binding(ctx, "pause", {"instanceID": instance_id})
        return tuple(answer.get_headers())

    def resume_workflow(self, instance_id: str, workflow_component: str) -> Plan[Headers]:
        ctx = Context("resume", workflow_component, instance_id)
        require(ctx, instance_id=instance_id, workflow_component=workflow_component)
        if (yield from self._is_builtin(ctx)):
            request = workflow_pb2.ResumeWorkflowRequest(
                instance_id=instance_id, workflow_component=workflow_component
            )
            return (
                yield from self._builtin_change(
                    ctx,
                    "ResumeWorkflowBeta1",
                    request,
                    lambda s: s.runtime_status != WorkflowRuntimeStatus.SUSPENDED,
                )
            )
        answer = yield from self._binding(ctx, "resume", {"instanceID": instance_id})
        return tuple(answer.get_headers())

    def purge_workflow(self, instance_id: str, workflow_component: str) -> Plan[Headers]:
        ctx = Context("purge", workflow_component, instance_id)
        require(ctx, instance_id=instance_id, workflow_component=workflow_component)
        if (yield from self._is_builtin(ctx)):
            request = workflow_pb2.PurgeWorkflowRequest(
                instance_id=instance_id, workflow_component=workflow_component
            )
            return (yield from self._builtin_change(ctx, "PurgeWorkflowBeta1", request, None))
        answer = yield from self._binding(ctx, "purge", {"instanceID": instance_id})
        return tuple(answer.get_headers())


__all__ = [
    "BUILTIN_COMPONENT",
    "DEFAULT_BINDING_TYPES",
    "DEFAULT_WAIT_SECONDS",
    "BindingCall",
    "BuiltinCall",
    "ListComponents",
    "Plan",
    "Sleep",
    "Step",
    "WorkflowPlans",
]
