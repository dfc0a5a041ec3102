"""Places an order and sees it through, managing the workflow through Dapr.

Run as a Dapr app (`dapr run -f .` in this folder, or `dapr run --resources-path ../../components
-- python3 client.py`): `DaprClient()` finds its daprd through the variables `dapr run` sets, and
`workflow_component="workflows"` is the dapr-workflows binding of `components/workflows.yaml`.

It starts `OrderProcessingWorkflow`, waits until the workflow asks for approval, approves the
order with the `approval_event` external event, waits for the end and prints the result. The exit
code is 0 when the order was completed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Any

from dapr_workflows_ext import DaprClient, GetWorkflowResponse

WORKFLOW = "OrderProcessingWorkflow"


def custom_status(state: GetWorkflowResponse) -> Any:
    """The workflow's `set_custom_status` value (the engine reports it as JSON text)."""
    text = state.properties.get("dapr.workflow.custom_status", "")
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text


def output(state: GetWorkflowResponse) -> Any:
    text = state.properties.get("dapr.workflow.output", "")
    return json.loads(text) if text else None


def wait_for(
    client: DaprClient, instance_id: str, component: str, done: Any, timeout: float
) -> GetWorkflowResponse:
    """Polls the instance until `done(state)` or until it has finished; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        state = client.get_workflow(instance_id=instance_id, workflow_component=component)
        if done(state) or state.runtime_status.is_terminal:
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{instance_id} is still {state.runtime_status} ({custom_status(state)}) after {timeout:g}s; "
                "is the worker (app.py) running?"
            )
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description="Places an order and sees it through.")
    parser.add_argument("--name", default="Paperclips", help="what to order")
    parser.add_argument("--total-cost", type=float, default=99.95, help="the order's total")
    parser.add_argument("--quantity", type=int, default=1)
    parser.add_argument("--reject", action="store_true", help="answer the approval request with a no")
    parser.add_argument("--component", default="workflows", help="the workflow component (binding) to use")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each step")
    parser.add_argument(
        "--stop-sidecar",
        action="store_true",
        help="shut this app's daprd down at the end (dapr.yaml sets it: in a multi-app run, daprd "
        "would keep running after its app ends, until Ctrl+C)",
    )
    args = parser.parse_args()

    # Shaped as in the Dapr docs' examples.
    order = {"Name": args.name, "TotalCost": args.total_cost, "Quantity": args.quantity}
    instance_id = f"order-{uuid.uuid4().hex[:12]}"
    with DaprClient() as client:
        try:
            state = see_through(client, args, order, instance_id)
        finally:
            if args.stop_sidecar:
                client.shutdown()
    result = output(state)
    completed = state.runtime_status.name == "COMPLETED" and (result or {}).get("status") == "completed"
    return 0 if completed else 1


def see_through(
    client: DaprClient, args: argparse.Namespace, order: dict[str, Any], instance_id: str
) -> GetWorkflowResponse:
    """Starts the order's workflow, approves it when asked, and returns its final state."""
    client.start_workflow(
        workflow_component=args.component,
        workflow_name=WORKFLOW,
        instance_id=instance_id,
        input=order,
    )
    print(f"started {WORKFLOW} {instance_id}: {order}", flush=True)

    state = wait_for(
        client,
        instance_id,
        args.component,
        lambda s: custom_status(s) in ("waiting for approval", "paying", "done"),
        args.timeout,
    )
    if custom_status(state) == "waiting for approval":
        decision = {"approved": not args.reject, "approver": "the sample client"}
        client.raise_workflow_event(
            instance_id=instance_id,
            workflow_component=args.component,
            event_name="approval_event",
            event_data=decision,
        )
        print(f"{instance_id} asked for approval; sent approval_event {decision}", flush=True)

    state = wait_for(client, instance_id, args.component, lambda s: False, args.timeout)
    result = output(state)
    print(f"{instance_id} finished: {state.runtime_status.name}", flush=True)
    print(f"result: {json.dumps(result, sort_keys=True)}", flush=True)
    if state.runtime_status.name == "FAILED":
        failure = {k: v for k, v in state.properties.items() if k.startswith("dapr.workflow.failure")}
        print(f"failure: {failure}", flush=True)
    return state


if __name__ == "__main__":
    sys.exit(main())
