"""Typed errors of the workflow methods, the same on both routes.

Every error is a `DaprInternalError`, the class the Dapr SDK's workflow methods raised, so code
written against the SDK (`except DaprInternalError`) keeps working; the subclasses say why.

daprd wraps what went wrong in text: the built-in engine's errors read
`error starting workflow 'w': ...: rpc error: code = AlreadyExists desc = ...` or
`error purging workflow x: ...: orchestration has not yet completed`, and the binding's read
`error invoking output binding workflows: rpc error: code = NotFound desc = ...`, all under gRPC
`INTERNAL`. `error_from_status` reads both; it is the only place that does.
"""

from __future__ import annotations

import re
from typing import Any

from dapr.clients.exceptions import DaprInternalError


class DaprWorkflowError(DaprInternalError):
    """A workflow call that failed. `message` says why in one sentence.

    `grpc_status` is the gRPC status name that classified the error (`NOT_FOUND`, ...; the
    component's own status when daprd quotes it), `details` the text daprd answered with, and
    `operation`, `workflow_component`, `instance_id` the call that failed.
    """

    def __init__(
        self,
        message: str,
        *,
        grpc_status: str = "UNKNOWN",
        details: str | None = None,
        operation: str | None = None,
        workflow_component: str | None = None,
        instance_id: str | None = None,
    ) -> None:
        super().__init__(message, error_code=grpc_status)
        Exception.__init__(self, message)
        self.grpc_status = grpc_status
        self.details = message if details is None else details
        self.operation = operation
        self.workflow_component = workflow_component
        self.instance_id = instance_id

    def __str__(self) -> str:
        return self._message or ""


class WorkflowAlreadyExistsError(DaprWorkflowError):
    """The instance ID is in use."""


class WorkflowNotFoundError(DaprWorkflowError):
    """No workflow instance has this ID (never started, or purged)."""


class InvalidWorkflowRequestError(DaprWorkflowError, ValueError):
    """The call is malformed: a blank or malformed argument, a payload that is not JSON or too large.

    Also a `ValueError`, which the Dapr SDK raised for blank arguments.
    """


class NotAWorkflowComponentError(InvalidWorkflowRequestError):
    """`workflow_component` names no workflow component of this daprd."""


class WorkflowStateError(DaprWorkflowError):
    """The instance is not in a state that allows the call (e.g. a purge of a running instance)."""


class WorkflowUnavailableError(DaprWorkflowError):
    """daprd, its built-in engine or the workflow component cannot be reached now; try again later."""


# gRPC status (as grpc names it, or as Go's `rpc error: code = X` spells it) -> error class.
_BY_STATUS: dict[str, type[DaprWorkflowError]] = {
    "ALREADY_EXISTS": WorkflowAlreadyExistsError,
    "NOT_FOUND": WorkflowNotFoundError,
    "INVALID_ARGUMENT": InvalidWorkflowRequestError,
    "OUT_OF_RANGE": InvalidWorkflowRequestError,
    "RESOURCE_EXHAUSTED": InvalidWorkflowRequestError,  # a payload over the component's limit
    "FAILED_PRECONDITION": WorkflowStateError,
    "UNAVAILABLE": WorkflowUnavailableError,
}

# What daprd's built-in engine says under a bare INTERNAL, with the status it means.
_BUILTIN_REASONS = (
    ("no such instance exists", "NOT_FOUND"),
    ("orchestration has not yet completed", "FAILED_PRECONDITION"),
    ("is not in a terminal state", "FAILED_PRECONDITION"),
    ("already exists", "ALREADY_EXISTS"),
)

# `rpc error: code = AlreadyExists desc = <reason>`: a component's (or an engine's) gRPC status
# quoted inside daprd's message. The first one is the outermost cause daprd reports.
_QUOTED_STATUS = re.compile(r"rpc error: code = (\w+) desc = (.*)", re.S)
# A formatting slip in daprd 1.18's not-found messages appends the cause as `%!(EXTRA <type>=...)`.
_GO_EXTRA = re.compile(r"%!\(EXTRA [^=]*=(.*)\)\s*$", re.S)


def _status_name(code: str) -> str:
    """`AlreadyExists` (Go) or `ALREADY_EXISTS` (Python) -> `ALREADY_EXISTS`."""
    if code.isupper() or "_" in code:
        return code.upper()
    return re.sub(r"(?<!^)(?=[A-Z])", "_", code).upper()


def error_from_status(
    status: str,
    details: str,
    *,
    operation: str | None = None,
    workflow_component: str | None = None,
    instance_id: str | None = None,
) -> DaprWorkflowError:
    """The typed error for a call daprd answered with gRPC `status` (e.g. `INTERNAL`) and `details`."""
    status = _status_name(status)
    text = details.strip()
    extra = _GO_EXTRA.search(text)
    if extra:
        text = text[: extra.start()].rstrip()
    message = text
    classified = status
    quoted = _QUOTED_STATUS.search(details)
    if quoted:
        classified = _status_name(quoted.group(1))
        message = quoted.group(2).strip()
    if classified not in _BY_STATUS:
        lowered = details.lower()
        for fragment, meaning in _BUILTIN_REASONS:
            if fragment in lowered:
                classified = meaning
                break
    cls = _BY_STATUS.get(classified, DaprWorkflowError)
    return cls(
        message or f"daprd answered {status} without a message",
        grpc_status=classified,
        details=details,
        operation=operation,
        workflow_component=workflow_component,
        instance_id=instance_id,
    )


def error_from_rpc(err: Any, **context: str | None) -> DaprWorkflowError:
    """The typed error for a failed gRPC call (`grpc.RpcError`, `AioRpcError`, `DaprGrpcError`)."""
    code = err.code() if callable(getattr(err, "code", None)) else None
    details = err.details() if callable(getattr(err, "details", None)) else None
    status = getattr(code, "name", None) or "UNKNOWN"
    return error_from_status(status, str(details or err), **context)


__all__ = [
    "DaprWorkflowError",
    "InvalidWorkflowRequestError",
    "NotAWorkflowComponentError",
    "WorkflowAlreadyExistsError",
    "WorkflowNotFoundError",
    "WorkflowStateError",
    "WorkflowUnavailableError",
    "error_from_rpc",
    "error_from_status",
]
