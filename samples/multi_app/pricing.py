"""The activity app (app ID `pricing`): prices an order for the orchestrator's workflow."""

from __future__ import annotations

import os
from typing import Any

import dapr.ext.workflow as wf
from dapr_workflows_ext import workflow_runtime
from host import serve

PRICES = {"paperclips": 0.05, "staples": 0.02}

runtime = workflow_runtime()


@runtime.activity(name="quote")
def quote(ctx: wf.WorkflowActivityContext, order: dict[str, Any]) -> dict[str, Any]:
    total = round(PRICES.get(order["item"], 1.0) * int(order["quantity"]), 2)
    return {"total": total, "priced_by": os.environ.get("APP_ID", "")}


if __name__ == "__main__":
    serve(runtime, "pricing")
