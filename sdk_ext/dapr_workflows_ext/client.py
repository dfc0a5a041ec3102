"""`DaprClient`: the Dapr SDK's client with its workflow methods back, for daprd's built-in engine and
for dapr-workflows (any workflow component daprd has loaded)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, TypeVar

import grpc
from dapr.clients import DaprClient as _SdkDaprClient
from dapr.clients.grpc._response import DaprResponse

from ._management import (
    DEFAULT_BINDING_TYPES,
    DEFAULT_WAIT_SECONDS,
    BindingCall,
    BuiltinCall,
    ListComponents,
    Plan,
    Sleep,
    Step,
    WorkflowPlans,
)
from .responses import GetWorkflowResponse, StartWorkflowResponse

T = TypeVar("T")


class DaprClient(_SdkDaprClient):
    """`dapr.clients.DaprClient` plus `start_workflow`, `get_workflow`, `raise_workflow_event`,
    `pause_workflow`, `resume_workflow`, `purge_workflow` and `terminate_workflow`.

    The methods take the arguments of the Dapr SDK's methods of these names (its last release with
    them, 1.17) and of the Dapr docs' examples. `workflow_component="dapr"` is daprd's built-in
    engine; any other name is a workflow component of daprd (a dapr-workflows binding), reached
    through daprd's binding API. Errors are `errors.DaprWorkflowError` subclasses.

    Each call returns once its effect shows in `get_workflow` (start: no longer PENDING; pause:
    SUSPENDED; resume: not SUSPENDED; terminate: finished), waiting at most `workflow_wait_seconds`.
    `workflow_binding_types` are the component types that are workflow components
    (`bindings.<socket name>` of dapr-workflows). The other arguments are the SDK client's.
    """

    def __init__(
        self,
        *args: Any,
        workflow_wait_seconds: float = DEFAULT_WAIT_SECONDS,
        workflow_binding_types: Iterable[str] = DEFAULT_BINDING_TYPES,
        **kwargs: Any,
    ) -> None:
        self._workflow_plans = WorkflowPlans(workflow_wait_seconds, workflow_binding_types)
        super().__init__(*args, **kwargs)

    # -- running a plan

    def _run_plan(self, plan: Plan[T]) -> T:
        answer: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = plan.throw(error) if error is not None else plan.send(answer)
            except StopIteration as done:
                result: T = done.value
                return result
            answer, error = None, None
            try:
                answer = self._perform(step)
            except grpc.RpcError as err:
                error = err

    def _perform(self, step: Step) -> Any:
        if isinstance(step, BuiltinCall):
            method = getattr(self._stub, step.method)
            # The client's retry policy applies, as it did to the Dapr SDK's workflow methods.
            response, call = self.retry_policy.run_rpc(method.with_call, step.request)  # type: ignore[no-untyped-call]
            return response, call.initial_metadata()
        if isinstance(step, BindingCall):
            return self.invoke_binding(step.name, step.operation, step.data, step.metadata)
        if isinstance(step, ListComponents):
            return self.get_metadata().registered_components
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            return None
        raise TypeError(f"unknown step {step!r}")

    # -- the workflow methods

    def start_workflow(
        self,
        workflow_component: str,
        workflow_name: str,
        input: Any = None,
        instance_id: str | None = None,
        workflow_options: dict[str, str] | None = None,
        send_raw_bytes: bool = False,
    ) -> StartWorkflowResponse:
        """Starts `workflow_name` with `input` (JSON-encoded unless bytes with `send_raw_bytes`)
        under `instance_id` (default: a new UUID); answers with the instance ID."""
        return self._run_plan(
            self._workflow_plans.start_workflow(
                workflow_component, workflow_name, input, instance_id, workflow_options, send_raw_bytes
            )
        )

    def get_workflow(self, instance_id: str, workflow_component: str) -> GetWorkflowResponse:
        """The state of the instance; `WorkflowNotFoundError` when there is none."""
        return self._run_plan(self._workflow_plans.get_workflow(instance_id, workflow_component))

    def terminate_workflow(self, instance_id: str, workflow_component: str) -> DaprResponse:
        """Terminates the instance and its child workflows."""
        headers = self._run_plan(self._workflow_plans.terminate_workflow(instance_id, workflow_component))
        return DaprResponse(headers=headers)

    def raise_workflow_event(
        self,
        instance_id: str,
        workflow_component: str,
        event_name: str,
        event_data: Any = None,
        send_raw_bytes: bool = False,
    ) -> DaprResponse:
        """Sends the event `event_name` with `event_data` (JSON-encoded unless bytes with
        `send_raw_bytes`) to the instance."""
        headers = self._run_plan(
            self._workflow_plans.raise_workflow_event(
                instance_id, workflow_component, event_name, event_data, send_raw_bytes
            )
        )
        return DaprResponse(headers=headers)

    def pause_workflow(self, instance_id: str, workflow_component: str) -> DaprResponse:
        """Suspends the instance until `resume_workflow`."""
        headers = self._run_plan(self._workflow_plans.pause_workflow(instance_id, workflow_component))
        return DaprResponse(headers=headers)

    def resume_workflow(self, instance_id: str, workflow_component: str) -> DaprResponse:
        """Resumes a suspended instance."""
        headers = self._run_plan(self._workflow_plans.resume_workflow(instance_id, workflow_component))
        return DaprResponse(headers=headers)

    def purge_workflow(self, instance_id: str, workflow_component: str) -> DaprResponse:
        """Deletes a finished instance and its history (and those of its child workflows)."""
        headers = self._run_plan(self._workflow_plans.purge_workflow(instance_id, workflow_component))
        return DaprResponse(headers=headers)


__all__ = ["DaprClient"]
