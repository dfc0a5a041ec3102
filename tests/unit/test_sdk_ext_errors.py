"""`errors.error_from_status`: how daprd's answers become typed errors, on both routes."""

from __future__ import annotations

import grpc
import pytest
from dapr.clients.exceptions import DaprInternalError
from dapr_workflows_ext.errors import (
    DaprWorkflowError,
    InvalidWorkflowRequestError,
    WorkflowAlreadyExistsError,
    WorkflowNotFoundError,
    WorkflowStateError,
    WorkflowUnavailableError,
    error_from_rpc,
    error_from_status,
)


@pytest.mark.parametrize(
    ("status", "details", "cls", "classified", "message"),
    [
        # The binding route: the component's own status, quoted by daprd under INTERNAL.
        (
            "INTERNAL",
            "error invoking output binding workflows: rpc error: code = NotFound desc = no workflow "
            "instance with ID 'x'",
            WorkflowNotFoundError,
            "NOT_FOUND",
            "no workflow instance with ID 'x'",
        ),
        (
            "INTERNAL",
            "error invoking output binding workflows: rpc error: code = FailedPrecondition desc = "
            "only a finished instance can be purged",
            WorkflowStateError,
            "FAILED_PRECONDITION",
            "only a finished instance can be purged",
        ),
        (
            "INTERNAL",
            "error invoking output binding workflows: rpc error: code = Unavailable desc = the store "
            "is unavailable",
            WorkflowUnavailableError,
            "UNAVAILABLE",
            "the store is unavailable",
        ),
        (
            "INTERNAL",
            "rpc error: code = ResourceExhausted desc = the input is 5000000 bytes",
            InvalidWorkflowRequestError,
            "RESOURCE_EXHAUSTED",
            "the input is 5000000 bytes",
        ),
        # The built-in engine: Go's wrapped status, or a bare INTERNAL with its known wording.
        (
            "INTERNAL",
            "error starting workflow 'w': rpc error: code = AlreadyExists desc = an active workflow "
            "with ID 'x' already exists",
            WorkflowAlreadyExistsError,
            "ALREADY_EXISTS",
            "an active workflow with ID 'x' already exists",
        ),
        (
            "INTERNAL",
            "error purging workflow x: failed: orchestration has not yet completed",
            WorkflowStateError,
            "FAILED_PRECONDITION",
            "error purging workflow x: failed: orchestration has not yet completed",
        ),
        (
            "INTERNAL",
            "error terminating workflow x: no such instance exists",
            WorkflowNotFoundError,
            "NOT_FOUND",
            "error terminating workflow x: no such instance exists",
        ),
        # A status of its own, as Python names it.
        ("UNAVAILABLE", "connection refused", WorkflowUnavailableError, "UNAVAILABLE", "connection refused"),
        ("INVALID_ARGUMENT", "bad id", InvalidWorkflowRequestError, "INVALID_ARGUMENT", "bad id"),
        # Nothing to classify by: the base class, with daprd's text.
        ("INTERNAL", "something broke", DaprWorkflowError, "INTERNAL", "something broke"),
    ],
)
def test_a_status_and_its_text_become_one_typed_error(
    status: str, details: str, cls: type[DaprWorkflowError], classified: str, message: str
) -> None:
    err = error_from_status(status, details, operation="start", workflow_component="w", instance_id="x")
    assert type(err) is cls
    assert err.grpc_status == classified
    assert str(err) == message
    assert err.details == details
    assert (err.operation, err.workflow_component, err.instance_id) == ("start", "w", "x")
    # Code written against the Dapr SDK catches DaprInternalError; it still does.
    assert isinstance(err, DaprInternalError)


def test_go_status_names_are_read_in_either_spelling() -> None:
    for spelling in ("FailedPrecondition", "FAILED_PRECONDITION", "failed_precondition"):
        assert type(error_from_status(spelling, "no")) is WorkflowStateError


def test_daprs_formatting_slip_is_left_out_of_the_message() -> None:
    details = "error getting workflow x: not found%!(EXTRA *errors.errorString=no such instance exists)"
    err = error_from_status("INTERNAL", details)
    assert type(err) is WorkflowNotFoundError
    assert str(err) == "error getting workflow x: not found"
    assert err.details == details


def test_the_outermost_quoted_status_decides() -> None:
    err = error_from_status(
        "INTERNAL", "rpc error: code = Unavailable desc = rpc error: code = NotFound desc = gone"
    )
    assert type(err) is WorkflowUnavailableError
    assert str(err) == "rpc error: code = NotFound desc = gone"


def test_an_empty_answer_still_says_what_happened() -> None:
    err = error_from_status("INTERNAL", "   ")
    assert str(err) == "daprd answered INTERNAL without a message"
    assert type(err) is DaprWorkflowError


def test_an_invalid_request_is_also_a_value_error() -> None:
    assert isinstance(error_from_status("INVALID_ARGUMENT", "bad"), ValueError)


def test_error_from_rpc_reads_a_grpc_errors_code_and_details() -> None:
    class Failure(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.NOT_FOUND

        def details(self) -> str:
            return "no instance"

    err = error_from_rpc(Failure(), operation="get", workflow_component="w", instance_id="i")
    assert type(err) is WorkflowNotFoundError
    assert (err.grpc_status, str(err), err.operation) == ("NOT_FOUND", "no instance", "get")

    class Opaque(Exception):
        pass

    err = error_from_rpc(Opaque("the channel closed"))
    assert (err.grpc_status, str(err)) == ("UNKNOWN", "the channel closed")
