"""The SDK extension's plans (dapr_workflows_ext/_management.py), driven step by step: which route
each call takes and what it sends, with daprd's answers scripted (no daprd, no network)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from dapr.clients.grpc._response import BindingResponse
from dapr.proto.runtime.v1 import workflow_pb2
from dapr_workflows_ext._management import (
    BindingCall,
    BuiltinCall,
    ListComponents,
    Plan,
    Sleep,
    Step,
    WorkflowPlans,
)
from dapr_workflows_ext.errors import (
    DaprWorkflowError,
    InvalidWorkflowRequestError,
    NotAWorkflowComponentError,
    WorkflowAlreadyExistsError,
    WorkflowNotFoundError,
)
from dapr_workflows_ext.responses import StartWorkflowResponse, WorkflowRuntimeStatus
from google.protobuf.timestamp_pb2 import Timestamp


@dataclass
class Registered:
    name: str
    type: str


COMPONENTS = [
    Registered("workflows", "bindings.dapr-workflows"),
    Registered("statestore", "state.redis"),
]

STATE_JSON = json.dumps(
    {
        "instanceID": "i1",
        "workflowName": "wf",
        "createdAt": "2026-01-02T03:04:05Z",
        "lastUpdatedAt": "2026-01-02T03:04:06.5+00:00",
        "runtimeStatus": "RUNNING",
        "properties": {"dapr.workflow.input": '"x"'},
    }
).encode()


class RpcFailure(grpc.RpcError):
    """A failed gRPC call as the SDK's stubs raise it."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def builtin_state(status: str) -> tuple[workflow_pb2.GetWorkflowResponse, tuple[()]]:
    stamp = Timestamp(seconds=1_767_000_000)
    resp = workflow_pb2.GetWorkflowResponse(
        instance_id="i1", workflow_name="wf", runtime_status=status, created_at=stamp, last_updated_at=stamp
    )
    return resp, ()


def drive(plan: Plan[Any], answer: Callable[[Step], Any]) -> tuple[Any, list[Step]]:
    """Runs `plan` to its end; `answer` plays daprd (an RpcError it raises is thrown in)."""
    steps: list[Step] = []
    reply: Any = None
    failure: BaseException | None = None
    while True:
        try:
            step = plan.throw(failure) if failure is not None else plan.send(reply)
        except StopIteration as done:
            return done.value, steps
        steps.append(step)
        reply, failure = None, None
        try:
            reply = answer(step)
        except grpc.RpcError as err:
            failure = err


def binding_daprd(data: bytes = b"", headers: tuple[tuple[str, str], ...] = ()) -> Callable[[Step], Any]:
    def answer(step: Step) -> Any:
        if isinstance(step, ListComponents):
            return COMPONENTS
        if isinstance(step, BindingCall):
            return BindingResponse(data, {}, headers)
        raise AssertionError(f"unexpected step {step}")

    return answer


def test_start_on_a_workflow_component_goes_through_the_binding_with_its_metadata() -> None:
    plans = WorkflowPlans(10, ["bindings.dapr-workflows"])
    plan = plans.start_workflow("workflows", "wf", {"n": 1}, "i1", {"startTimeoutSeconds": "5"}, False)
    result, steps = drive(plan, binding_daprd(b'{"instanceID": "i1"}'))
    assert result == StartWorkflowResponse(instance_id="i1")
    assert steps == [
        ListComponents(),
        BindingCall(
            "workflows",
            "start",
            b'{"n": 1}',
            {"startTimeoutSeconds": "5", "workflowName": "wf", "instanceID": "i1"},
        ),
    ]


def test_the_component_list_is_asked_once_per_client() -> None:
    plans = WorkflowPlans(10, ["bindings.dapr-workflows"])
    drive(plans.pause_workflow("i1", "workflows"), binding_daprd())
    _, steps = drive(plans.resume_workflow("i1", "workflows"), binding_daprd())
    assert steps == [BindingCall("workflows", "resume", b"", {"instanceID": "i1"})]


@pytest.mark.parametrize(
    ("method", "operation"),
    [
        ("terminate_workflow", "terminate"),
        ("pause_workflow", "pause"),
        ("resume_workflow", "resume"),
        ("purge_workflow", "purge"),
    ],
)
def test_each_management_call_is_its_binding_operation_and_returns_its_headers(
    method: str, operation: str
) -> None:
    plans = WorkflowPlans(10, ["bindings.dapr-workflows"])
    headers = (("x-trace", "t1"),)
    result, steps = drive(getattr(plans, method)("i1", "workflows"), binding_daprd(headers=headers))
    assert steps[-1] == BindingCall("workflows", operation, b"", {"instanceID": "i1"})
    assert dict(result) == {"x-trace": "t1"}


def test_raise_event_sends_the_event_name_and_its_data_as_json_or_raw_bytes() -> None:
    plans = WorkflowPlans(10, ["bindings.dapr-workflows"])
    _, steps = drive(plans.raise_workflow_event("i1", "workflows", "go", [1, "a"], False), binding_daprd())
    assert steps[-1] == BindingCall(
        "workflows", "raiseEvent", b'[1, "a"]', {"instanceID": "i1", "eventName": "go"}
    )
    _, steps = drive(plans.raise_workflow_event("i1", "workflows", "go", b"\x00raw", True), binding_daprd())
    assert steps[-1].data == b"\x00raw"  # type: ignore[union-attr]
    _, steps = drive(plans.raise_workflow_event("i1", "workflows", "go", None, False), binding_daprd())
    assert steps[-1].data == b""  # type: ignore[union-attr]


def test_get_through_the_binding_reads_the_components_json() -> None:
    plans = WorkflowPlans(10, ["bindings.dapr-workflows"])
    state, steps = drive(plans.get_workflow("i1", "workflows"), binding_daprd(STATE_JSON))
    assert steps[-1] == BindingCall("workflows", "get", b"", {"instanceID": "i1"})
    assert state.instance_id == "i1" and state.workflow_name == "wf"
    assert state.runtime_status == WorkflowRuntimeStatus.RUNNING
    assert state.created_at.isoformat() == "2026-01-02T03:04:05+00:00"
    assert state.last_updated_at.microsecond == 500_000
    assert state.properties == {"dapr.workflow.input": '"x"'}
    with pytest.raises(DaprWorkflowError, match="is it a dapr-workflows component") as info:
        drive(plans.get_workflow("i1", "workflows"), binding_daprd(b'{"instanceID": "i1"}'))
    assert info.value.grpc_status == "INTERNAL"


def test_dapr_is_the_built_in_engine_and_start_waits_until_it_left_pending() -> None:
    plans = WorkflowPlans(10, ["bindings.dapr-workflows"])
    states = iter(["PENDING", "PENDING", "RUNNING"])

    def daprd(step: Step) -> Any:
        if isinstance(step, BuiltinCall) and step.method == "StartWorkflowBeta1":
            return workflow_pb2.StartWorkflowResponse(instance_id="i1"), ()
        if isinstance(step, BuiltinCall) and step.method == "GetWorkflowBeta1":
            return builtin_state(next(states))
        if isinstance(step, Sleep):
            return None
        raise AssertionError(f"unexpected step {step}")

    result, steps = drive(plans.start_workflow("dapr", "wf", "in", "i1", {"k": "v"}, False), daprd)
    assert result.instance_id == "i1"
    assert not any(isinstance(s, ListComponents | BindingCall) for s in steps)
    start = steps[0]
    assert isinstance(start, BuiltinCall)
    assert (start.request.workflow_component, start.request.workflow_name, start.request.input) == (
        "dapr",
        "wf",
        b'"in"',
    )
    assert dict(start.request.options) == {"k": "v"}
    # Polled with growing pauses until the status changed.
    kinds = [s.method if isinstance(s, BuiltinCall) else type(s).__name__ for s in steps]
    assert kinds == [
        "StartWorkflowBeta1",
        "GetWorkflowBeta1",
        "Sleep",
        "GetWorkflowBeta1",
        "Sleep",
        "GetWorkflowBeta1",
    ]
    sleeps = [s.seconds for s in steps if isinstance(s, Sleep)]
    assert sleeps[0] < sleeps[1]


def test_without_waiting_a_built_in_call_returns_at_once() -> None:
    plans = WorkflowPlans(0, [])
    _, steps = drive(plans.pause_workflow("i1", "dapr"), lambda step: (None, (("h", "v"),)))
    assert [s.method for s in steps if isinstance(s, BuiltinCall)] == ["PauseWorkflowBeta1"]
    with pytest.raises(ValueError, match="must not be negative"):
        WorkflowPlans(-1, [])


def test_the_built_in_engines_empty_answer_is_not_found() -> None:
    plans = WorkflowPlans(10, [])
    with pytest.raises(WorkflowNotFoundError, match="no workflow instance with ID 'i1'") as info:
        drive(plans.get_workflow("i1", "dapr"), lambda step: builtin_state(""))
    assert (info.value.operation, info.value.workflow_component, info.value.instance_id) == (
        "get",
        "dapr",
        "i1",
    )


def test_a_component_that_is_not_a_workflow_component_is_named_with_the_ones_that_are() -> None:
    plans = WorkflowPlans(10, ["bindings.dapr-workflows"])
    with pytest.raises(NotAWorkflowComponentError) as info:
        drive(plans.get_workflow("i1", "statestore"), binding_daprd())
    assert str(info.value) == (
        "statestore is a state.redis component, not a workflow component; "
        "the workflow components are 'dapr' (daprd's built-in engine), 'workflows'"
    )
    with pytest.raises(NotAWorkflowComponentError, match="daprd has no component named 'nope'"):
        drive(plans.get_workflow("i1", "nope"), binding_daprd())
    assert isinstance(info.value, ValueError)  # as the Dapr SDK's own argument errors


def test_blank_arguments_and_unserializable_input_are_refused_before_any_call() -> None:
    plans = WorkflowPlans(10, ["bindings.dapr-workflows"])
    for plan in (
        plans.start_workflow("workflows", " ", None, None, None, False),
        plans.get_workflow("", "workflows"),
        plans.raise_workflow_event("i1", "workflows", "", None, False),
        plans.start_workflow("workflows", "wf", object(), "i1", None, False),
    ):
        with pytest.raises(InvalidWorkflowRequestError) as info:
            drive(plan, lambda step: pytest.fail(f"no call expected, got {step}"))
        assert info.value.grpc_status == "INVALID_ARGUMENT"


def test_a_start_without_an_id_sends_a_new_uuid() -> None:
    plans = WorkflowPlans(10, ["bindings.dapr-workflows"])
    # The component's answer is not JSON: the ID sent is the one returned.
    result, steps = drive(
        plans.start_workflow("workflows", "wf", None, None, None, False), binding_daprd(b"?")
    )
    sent = steps[-1].metadata["instanceID"]  # type: ignore[union-attr]
    assert len(sent) == 36 and sent.count("-") == 4
    assert result.instance_id == sent


def test_a_failed_call_is_thrown_into_the_plan_and_comes_out_typed() -> None:
    plans = WorkflowPlans(10, ["bindings.dapr-workflows"])

    def daprd(step: Step) -> Any:
        if isinstance(step, ListComponents):
            return COMPONENTS
        raise RpcFailure(
            grpc.StatusCode.INTERNAL,
            "error invoking output binding workflows: rpc error: code = AlreadyExists "
            "desc = an instance with ID 'i1' already exists",
        )

    with pytest.raises(WorkflowAlreadyExistsError) as info:
        drive(plans.start_workflow("workflows", "wf", None, "i1", None, False), daprd)
    err = info.value
    assert str(err) == "an instance with ID 'i1' already exists"
    assert (err.grpc_status, err.operation, err.workflow_component, err.instance_id) == (
        "ALREADY_EXISTS",
        "start",
        "workflows",
        "i1",
    )
