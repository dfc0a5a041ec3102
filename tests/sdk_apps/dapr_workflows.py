"""The test workflows, written with Dapr's workflow SDK.

`durabletask_workflows.py` has the same catalog, by the same names and with the same results,
written with Microsoft's durabletask SDK, so one test exercises both dialects.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import dapr.ext.workflow as wf

# How often each activity ran in this process, by key: lets a test see a redelivery.
COUNTERS: Counter[str] = Counter()
_lock = threading.Lock()


def count(key: str) -> int:
    with _lock:
        COUNTERS[key] += 1
        return COUNTERS[key]


def register(runtime: wf.WorkflowRuntime, client: wf.DaprWorkflowClient) -> None:
    @runtime.activity(name="add_one")
    def add_one(ctx: wf.WorkflowActivityContext, x: int) -> int:
        return x + 1

    @runtime.workflow(name="chain")
    def chain(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        x = args.get("start", 0)
        for _ in range(args["n"]):
            x = yield ctx.call_activity(add_one, input=x)
        return x
