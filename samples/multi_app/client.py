"""Starts `order_workflow` on the `orchestrator` app, waits for it, prints its status and result.

Exits 0 when the workflow completed. The engine is at $DAPR_WORKFLOWS_ENGINE_ADDRESS (default
127.0.0.1:4100, where `dapr-workflows serve` listens).
"""

from __future__ import annotations

import json
import sys

from dapr_workflows_ext import workflow_client

ORDER = {"item": "paperclips", "quantity": 200}


def main() -> int:
    client = workflow_client()
    instance_id = client.schedule_new_workflow("order_workflow", input=ORDER, app_id="orchestrator")
    print(f"started order_workflow {instance_id}", flush=True)
    state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=120)
    if state is None:
        print("status: NOT FOUND", flush=True)
        return 1
    status = state.runtime_status.name
    print(f"status: {status}", flush=True)
    print(f"result: {json.dumps(json.loads(state.serialized_output or 'null'))}", flush=True)
    return 0 if status == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
