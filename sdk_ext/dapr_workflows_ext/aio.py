"""`DaprClient` for asyncio: the Dapr SDK's `dapr.aio.clients.DaprClient` with its workflow methods
back, the same methods as `dapr_workflows_ext.DaprClient`, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, TypeVar

import grpc
from dapr.aio.clients import DaprClient as _SdkDaprClient
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
    """`dapr.aio.clients.DaprClient` plus the seven workflow methods of
    `dapr_workflows_ext.DaprClient` (see there), as coroutines."""

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

    async def _run_plan(self, plan: Plan[T]) -> T:
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
                answer = await self._perform(step)
            except grpc.RpcError as err:
                error = err

    async def _perform(self, step: Step) -> Any:
        if isinstance(step, BuiltinCall):
            call = getattr(self._stub, step.method)(step.request)
            response = await call
            return response, await call.initial_metadata()
        if isinstance(step, BindingCall):
            return await self.invoke_binding(step.name, step.operation, step.data, step.metadata)
        if isinstance(step, ListComponents):
            return (await self.get_metadata()).registered_components
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            return None
        raise TypeError(f"unknown step {step!r}")

    # -- the workflow methods

    async def start_workflow(
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
        return await self._run_plan(
            self._workflow_plans.start_workflow(
                workflow_component, workflow_name, input, instance_id, workflow_options, send_raw_bytes
            )
        )

    async def get_workflow(self, instance_id: str, workflow_component: str) -> GetWorkflowResponse:
        """The state of the instance; `WorkflowNotFoundError` when there is none."""
        return await self._run_plan(self._workflow_plans.get_workflow(instance_id, workflow_component))

    async def terminate_workflow(self, instance_id: str, workflow_component: str) -> DaprResponse:
        """Terminates the instance and its child workflows."""
        plan = self._workflow_plans.terminate_workflow(instance_id, workflow_component)
        return DaprResponse(headers=await self._run_plan(plan))

    async def raise_workflow_event(
        self,
        instance_id: str,
        workflow_component: str,
        event_name: str,
        event_data: Any = None,
        send_raw_bytes: bool = False,
    ) -> DaprResponse:
        """Sends the event `event_name` with `event_data` (JSON-encoded unless bytes with
        `send_raw_bytes`) to the instance."""
        plan = self._workflow_plans.raise_workflow_event(
            instance_id, workflow_component, event_name, event_data, send_raw_bytes
        )
        return DaprResponse(headers=await self._run_plan(plan))

    async def pause_workflow(self, instance_id: str, workflow_component: str) -> DaprResponse:
        """Suspends the instance until `resume_workflow`."""
        plan = self._workflow_plans.pause_workflow(instance_id, workflow_component)
        return DaprResponse(headers=await self._run_plan(plan))

    async def resume_workflow(self, instance_id: str, workflow_component: str) -> DaprResponse:
        """Resumes a suspended instance."""
        plan = self._workflow_plans.resume_workflow(instance_id, workflow_component)
        return DaprResponse(headers=await self._run_plan(plan))

    async def purge_workflow(self, instance_id: str, workflow_component: str) -> DaprResponse:
        """Deletes a finished instance and its history (and those of its child workflows)."""
        plan = self._workflow_plans.purge_workflow(instance_id, workflow_component)
        return DaprResponse(headers=await self._run_plan(plan))


__all__ = ["DaprClient"]
