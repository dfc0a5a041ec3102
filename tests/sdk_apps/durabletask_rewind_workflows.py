"""Workflows of the rewind tests, written with Microsoft's durabletask SDK.

- `rewind_flow` {key, fail_times}: a `steady` activity (counted under `key`-steady), then a `flaky_step`
  (counted under `key`; fails while its count is at most `fail_times`). Returns [steady, flaky].
- `rewind_parent` {key, fail_times, child_id}: a `steady` activity, then `rewind_flow` as a child
  under `child_id`. Returns [steady, child's result].
Each activity counts its runs in the host, so a test sees which ones a rewind ran again.
"""

from __future__ import annotations

import time
from typing import Any

from durabletask import client as dt_client
from durabletask import task
from durabletask import worker as dt_worker

from tests.sdk_apps.durabletask_workflows import count


def register(worker: dt_worker.TaskHubGrpcWorker, client: dt_client.TaskHubGrpcClient) -> None:
    def steady(ctx: task.ActivityContext, args: dict[str, Any]) -> int:
        return count(f"{args['key']}-steady")

    def flaky_step(ctx: task.ActivityContext, args: dict[str, Any]) -> int:
        n = count(args["key"])
        if n == args.get("sleep_on"):
            time.sleep(args["sleep"])
        if n <= args["fail_times"]:
            raise RuntimeError(f"run {n} of {args['key']} fails on purpose")
        return n

    def rewind_flow(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        first = yield ctx.call_activity(steady, input=args)
        second = yield ctx.call_activity(flaky_step, input=args)
        return [first, second]

    def rewind_parent(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        first = yield ctx.call_activity(steady, input={"key": f"{args['key']}-parent"})
        child = yield ctx.call_sub_orchestrator(rewind_flow, input=args, instance_id=args["child_id"])
        return [first, child]

    for activity in (steady, flaky_step):
        worker.add_activity(activity)
    for orchestrator in (rewind_flow, rewind_parent):
        worker.add_orchestrator(orchestrator)


def extra_ops(client: dt_client.TaskHubGrpcClient) -> dict[str, Any]:
    """`rewind` {instance_id, reason?}: the client's rewind, with no reason unless one is given."""

    def rewind(instance_id: str, reason: str | None = None) -> None:
        client.rewind_orchestration(instance_id, reason=reason)

    return {"rewind": rewind}
