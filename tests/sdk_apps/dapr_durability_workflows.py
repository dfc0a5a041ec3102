"""Workflows of the durability tests, written with Dapr's workflow SDK.

`durabletask_durability_workflows.py` has the same workflows, by the same names and with the same
results, written with Microsoft's durabletask SDK. What each computes is described there.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import dapr.ext.workflow as wf

from tests.harness import activity_log as common
from tests.sdk_apps.dapr_workflows import count  # noqa: F401 - shared activity counters


def register(runtime: wf.WorkflowRuntime, client: wf.DaprWorkflowClient) -> None:
    @runtime.activity(name="add_to")
    def add_to(ctx: wf.WorkflowActivityContext, args: dict[str, Any]) -> int:
        common.record(args, ctx.workflow_id, ctx.task_id)
        return int(args["acc"]) + int(args["add"])

    @runtime.activity(name="square")
    def square(ctx: wf.WorkflowActivityContext, args: dict[str, Any]) -> int:
        common.record(args, ctx.workflow_id, ctx.task_id)
        return int(args["x"]) ** 2

    @runtime.activity(name="slow_step")
    def slow_step(ctx: wf.WorkflowActivityContext, args: dict[str, Any]) -> int:
        return common.slow_step(args, ctx.workflow_id, ctx.task_id)

    @runtime.activity(name="big_result")
    def big_result(ctx: wf.WorkflowActivityContext, args: dict[str, Any]) -> str:
        common.record(args, ctx.workflow_id, ctx.task_id)
        return "x" * int(args["size"])

    @runtime.workflow(name="durable_sum")
    def durable_sum(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        log = args.get("log")
        acc = 0
        for i in range(args["chain"]):
            acc = yield ctx.call_activity(add_to, input={"acc": acc, "add": args["base"] + i, "log": log})
        squares = yield wf.when_all(
            [ctx.call_activity(square, input={"x": args["base"] + j, "log": log}) for j in range(args["fan"])]
        )
        yield ctx.create_timer(timedelta(seconds=args["timer"]))
        bonus = yield ctx.wait_for_external_event("go")
        return {"chain": acc, "fan": sum(squares), "event": bonus, "total": acc + sum(squares) + bonus}

    @runtime.workflow(name="slow_flow")
    def slow_flow(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        value = yield ctx.call_activity(slow_step, input=args)
        return value + 1

    @runtime.workflow(name="big_result_flow")
    def big_result_flow(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        text = yield ctx.call_activity(big_result, input=args)
        return len(text)

    @runtime.workflow(name="sleepy")
    def sleepy(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        yield ctx.create_timer(timedelta(seconds=args["seconds"]))
        return args.get("result", "slept") * args.get("repeat", 1)


def extra_ops(client: Any) -> dict[str, Callable[..., Any]]:
    """Host operations the durability tests need beyond the common ones."""
    return {"pid": os.getpid}
