"""The child-workflow app (app ID `shipping`): ships an order for the orchestrator's workflow.

`ship_order` runs here because the orchestrator named this app; its own activity `pack` names no
app, so it runs here too (an activity goes to the app of the workflow that calls it).
"""

from __future__ import annotations

import os
from typing import Any

import dapr.ext.workflow as wf
from dapr_workflows_ext import workflow_runtime
from host import serve

runtime = workflow_runtime()


@runtime.activity(name="pack")
def pack(ctx: wf.WorkflowActivityContext, order: dict[str, Any]) -> str:
    return f"{order['quantity']} x {order['item']} packed by {os.environ.get('APP_ID', '')}"


@runtime.workflow(name="ship_order")
def ship_order(ctx: wf.DaprWorkflowContext, order: dict[str, Any]) -> Any:
    parcel = yield ctx.call_activity(pack, input=order)
    return {"parcel": parcel}


if __name__ == "__main__":
    serve(runtime, "shipping")
