"""The orchestrator app (app ID `orchestrator`): the workflow that calls the other two apps.

`order_workflow` asks the `pricing` app for a quote (an activity there), then has the `shipping`
app ship the order (a child workflow there), and returns both results. The workflow code is
Dapr's multi-app workflow code as is: `app_id=` on `call_activity` and `call_child_workflow`.
The engine sends each piece of work only to a worker of the app it names.
"""

from __future__ import annotations

from typing import Any

import dapr.ext.workflow as wf
from dapr_workflows_ext import workflow_runtime
from host import serve

runtime = workflow_runtime()


@runtime.workflow(name="order_workflow")
def order_workflow(ctx: wf.DaprWorkflowContext, order: dict[str, Any]) -> Any:
    quote = yield ctx.call_activity("quote", input=order, app_id="pricing")
    shipment = yield ctx.call_child_workflow("ship_order", input={**order, **quote}, app_id="shipping")
    return {"order": order["item"], "quote": quote, "shipment": shipment}


if __name__ == "__main__":
    serve(runtime, "orchestrator")
