"""The test workflows, written with Microsoft's durabletask SDK (see `dapr_workflows.py`).

durabletask registers orchestrators and activities by their function's `__name__`, so each function
is named like its counterpart in the Dapr catalog.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta
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


def _retry(attempts: int) -> task.RetryPolicy:
    return task.RetryPolicy(first_retry_interval=timedelta(milliseconds=200), max_number_of_attempts=attempts)


def register(worker: dt_worker.TaskHubGrpcWorker, client: dt_client.TaskHubGrpcClient) -> None:
    # ------------------------------------------------------------------ activities

    def add_one(ctx: task.ActivityContext, x: int) -> int:
        return x + 1

    def fail_activity(ctx: task.ActivityContext, args: dict[str, Any]) -> None:
        raise ValueError(args["message"])

    def flaky(ctx: task.ActivityContext, args: dict[str, Any]) -> int:
        n = count(args["key"])
        if n <= args["fail_times"]:
            raise RuntimeError(f"flaky run {n} of {args['key']} fails on purpose")
        return n

    def slow(ctx: task.ActivityContext, args: dict[str, Any]) -> str:
        count(f"{args['key']}-started")
        time.sleep(args["seconds"])
        count(args["key"])
        return "slow-done"

    # ------------------------------------------------------------------ orchestrators

    def chain(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        x = args.get("start", 0)
        for _ in range(args["n"]):
            x = yield ctx.call_activity(add_one, input=x)
        return x

    def fan_out(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        tasks: list[task.Task[Any]] = [ctx.call_activity(add_one, input=v) for v in args["values"]]
        results = yield task.when_all(tasks)
        return {"results": results, "sum": sum(results)}

    def fail_uncaught(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        yield ctx.call_activity(fail_activity, input=args)
        return "unreachable"

    def fail_caught(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        try:
            yield ctx.call_activity(fail_activity, input=args)
        except task.TaskFailedError as err:
            after = yield ctx.call_activity(add_one, input=1)
            return {"error_type": err.details.error_type, "message": err.details.message, "after": after}
        return "unreachable"

    def retry_activity(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        runs = yield ctx.call_activity(flaky, input=args, retry_policy=_retry(args["attempts"]))
        return runs

    def child_flaky(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        runs = yield ctx.call_activity(flaky, input=args)
        return {"runs": runs, "instance_id": ctx.instance_id}

    def retry_child(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        result = yield ctx.call_sub_orchestrator(
            child_flaky,
            input={"key": args["key"], "fail_times": args["fail_times"]},
            instance_id=args["child_id"],
            retry_policy=_retry(args["attempts"]),
        )
        return result

    def timer_then_add(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        t0 = ctx.current_utc_datetime
        yield ctx.create_timer(timedelta(seconds=args["seconds"]))
        elapsed = (ctx.current_utc_datetime - t0).total_seconds()
        value = yield ctx.call_activity(add_one, input=args["value"])
        return {"value": value, "elapsed": elapsed}

    def two_timers(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        t0 = ctx.current_utc_datetime
        yield task.when_all(
            [
                ctx.create_timer(timedelta(seconds=args["short"])),
                ctx.create_timer(timedelta(seconds=args["long"])),
            ]
        )
        elapsed = (ctx.current_utc_datetime - t0).total_seconds()
        value = yield ctx.call_activity(add_one, input=args["value"])
        return {"value": value, "elapsed": elapsed}

    def parent_by_function(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        result = yield ctx.call_sub_orchestrator(
            chain, input={"n": args["n"]}, instance_id=args.get("child_id")
        )
        return {"child": result}

    def parent_by_name(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        result = yield ctx.call_sub_orchestrator(
            "chain", input={"n": args["n"]}, instance_id=args.get("child_id")
        )
        return {"child": result}

    def parent_child_fails(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        child = ctx.call_sub_orchestrator(
            fail_uncaught, input={"message": args["message"]}, instance_id=args.get("child_id")
        )
        if not args["catch"]:
            yield child
            return "unreachable"
        try:
            yield child
        except task.TaskFailedError as err:
            return {"caught": True, "message": err.details.message}
        return "unreachable"

    def wait_events(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        if args.get("delay"):
            yield ctx.create_timer(timedelta(seconds=args["delay"]))
        values = []
        for name in args["names"]:
            value = yield ctx.wait_for_external_event(name)
            values.append(value)
        return values

    def event_or_timeout(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        event = ctx.wait_for_external_event(args["name"])
        timeout = ctx.create_timer(timedelta(seconds=args["timeout"]))
        winner = yield task.when_any([event, timeout])
        if winner == event:
            return {"event": event.get_result()}
        return {"timed_out": True}

    def parent_waiting_child(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        result = yield ctx.call_sub_orchestrator(
            wait_events, input={"names": ["never"]}, instance_id=args["child_id"]
        )
        return result

    def slow_activity_wf(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        result = yield ctx.call_activity(slow, input=args)
        return result

    def collect_as_new(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        if args.get("delay"):
            yield ctx.create_timer(timedelta(seconds=args["delay"]))
        item = yield ctx.wait_for_external_event("item")
        seen = [*args["seen"], item]
        if len(seen) >= args["target"]:
            return {"seen": seen, "generations": len(seen)}
        ctx.continue_as_new({"seen": seen, "target": args["target"]}, save_events=True)
        return None

    def custom_status_wf(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        ctx.set_custom_status("waiting")
        value = yield ctx.wait_for_external_event("next")
        ctx.set_custom_status(f"done-{value}")
        return value

    def send_event_wf(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        ctx.send_event(args["target"], args["name"], data=args.get("data"))
        return "sent"

    def race_timer(ctx: task.OrchestrationContext, args: dict[str, Any]) -> Any:
        activity = ctx.call_activity(add_one, input=args["value"])
        timer = ctx.create_timer(timedelta(seconds=60))
        winner = yield task.when_any([activity, timer])
        if winner == activity:
            return {"winner": "activity", "value": activity.get_result()}
        return {"winner": "timer"}

    # durabletask 1.12 has no patching API (`is_patched`), so there is no `patched` workflow here.

    for activity in (add_one, fail_activity, flaky, slow):
        worker.add_activity(activity)
    for orchestrator in (
        chain,
        fan_out,
        fail_uncaught,
        fail_caught,
        retry_activity,
        child_flaky,
        retry_child,
        timer_then_add,
        two_timers,
        parent_by_function,
        parent_by_name,
        parent_child_fails,
        wait_events,
        event_or_timeout,
        parent_waiting_child,
        slow_activity_wf,
        collect_as_new,
        custom_status_wf,
        send_event_wf,
        race_timer,
    ):
        worker.add_orchestrator(orchestrator)
