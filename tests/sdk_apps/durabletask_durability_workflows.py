"""Workflows of the durability tests, written with Microsoft's durabletask SDK.

The same workflows as `dapr_durability_workflows.py`, by the same names, with the same results:

- `durable_sum` {base, chain, fan, timer, log?}: a chain of `chain` `add_to` activities (acc += base + i),
  then a fan-out of `fan` `square` activities ((base + j) ** 2), a `timer`-second timer, and the
  external event "go" (an int). Returns {chain, fan, event, total}; `tests.harness.activity_log.expected_sum`
  computes it.
- `slow_flow` {log, key, value, first_sleep, sleep?}: one `slow_step` activity that sleeps
  `first_sleep` seconds the first time it runs for `key` (counted in the file `log`, shared by hosts),
  `sleep` seconds (default 0) after that; returns value + 1.
- `big_result_flow` {size}: one `big_result` activity returning `size` x's; returns the length.
- `sleepy` {seconds, result?, repeat?}: a timer, then returns `result` repeated `repeat` times.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from durabletask import client as dt_client
from durabletask import task
from durabletask import worker as dt_worker

from tests.harness import activity_log as common
from tests.sdk_apps.durabletask_workflows import count  # noqa: F401 - shared activity counters


def register(worker: dt_worker.TaskHubGrpcWorker, client: dt_client.TaskHubGrpcClient) -> None:
    def add_to(ctx: task.ActivityContext, args: dict[str, Any]) -> int:
        common.record(args, ctx.orchestration_id, ctx.task_id)
        return int(args["acc"]) + int(args["add"])

    def square(ctx: task.ActivityContext, args: dict[str, Any]) -> int:
        common.record(args, ctx.orchestration_id, ctx.task_id)
        return int(args["x"]) ** 2

    def slow_step(ctx: task.ActivityContext, args: dict[str, Any]) -> int:
        return common.slow_step(args, ctx.orchestration_id, ctx.task_id)

    def big_result(ctx: task.ActivityContext, args: dict[str, Any]) -> str:
        common.record(args, ctx.orchestration_id, ctx.task_id)
        return "x" * int(args["size"])

    def durable_sum(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        log = args.get("log")
        acc = 0
        for i in range(args["chain"]):
            acc = yield ctx.call_activity(add_to, input={"acc": acc, "add": args["base"] + i, "log": log})
        squares = yield task.when_all(
            [ctx.call_activity(square, input={"x": args["base"] + j, "log": log}) for j in range(args["fan"])]
        )
        yield ctx.create_timer(timedelta(seconds=args["timer"]))
        bonus = yield ctx.wait_for_external_event("go")
        return {"chain": acc, "fan": sum(squares), "event": bonus, "total": acc + sum(squares) + bonus}

    def slow_flow(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        value = yield ctx.call_activity(slow_step, input=args)
        return value + 1

    def big_result_flow(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        text = yield ctx.call_activity(big_result, input=args)
        return len(text)

    def sleepy(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        yield ctx.create_timer(timedelta(seconds=args["seconds"]))
        return args.get("result", "slept") * args.get("repeat", 1)

    for activity in (add_to, square, slow_step, big_result):
        worker.add_activity(activity)
    for orchestrator in (durable_sum, slow_flow, big_result_flow, sleepy):
        worker.add_orchestrator(orchestrator)


def extra_ops(client: dt_client.TaskHubGrpcClient) -> dict[str, Callable[..., Any]]:
    """Host operations the durability tests need beyond the common ones."""

    def signal_entity(name: str, key: str, operation: str) -> None:
        from durabletask.entities import EntityInstanceId

        client.signal_entity(EntityInstanceId(name, key), operation)

    return {"pid": os.getpid, "signal_entity": signal_entity}
