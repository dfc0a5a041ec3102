"""The test workflows, written with Microsoft's durabletask SDK (see `dapr_workflows.py`)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from durabletask import client as dt_client
from durabletask import task
from durabletask import worker as dt_worker

COUNTERS: Counter[str] = Counter()
_lock = threading.Lock()


def count(key: str) -> int:
    with _lock:
        COUNTERS[key] += 1
        return COUNTERS[key]


def register(worker: dt_worker.TaskHubGrpcWorker, client: dt_client.TaskHubGrpcClient) -> None:
    def add_one(ctx: task.ActivityContext, x: int) -> int:
        return x + 1

    def chain(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        x = args.get("start", 0)
        for _ in range(args["n"]):
            x = yield ctx.call_activity(add_one, input=x)
        return x

    worker.add_activity(add_one)
    worker.add_orchestrator(chain)
