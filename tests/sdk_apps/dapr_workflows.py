"""The test workflows, written with Dapr's workflow SDK.

`durabletask_workflows.py` has the same catalog, by the same names and with the same results,
written with Microsoft's durabletask SDK, so one test exercises both dialects.

Inputs are dicts; a `key` in an input names the activity counter (`COUNTERS`) the test reads back
through the host's `counter` op, so each test picks a unique key.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import dapr.ext.workflow as wf

# How often each activity ran in this process, by key: lets a test see a redelivery.
COUNTERS: Counter[str] = Counter()
_lock = threading.Lock()

# The "deployed code version" of the `patched` workflow, per test key: a test bumps it between
# turns of a running instance to simulate deploying new workflow code (see `set_code_version`).
CODE_VERSIONS: dict[str, int] = {}
# The version a host runs for keys it was not told about: a test starts hosts with different code.
# Version 3 drops the `is_patched` check (keeping the step), as Dapr's versioning example does;
# version 4 is the fix, which has it again.
DEFAULT_CODE_VERSION = int(os.environ.get("PATCHED_CODE_VERSION", "1"))


def count(key: str) -> int:
    with _lock:
        COUNTERS[key] += 1
        return COUNTERS[key]


def _retry(attempts: int) -> wf.RetryPolicy:
    return wf.RetryPolicy(first_retry_interval=timedelta(milliseconds=200), max_number_of_attempts=attempts)


def register(runtime: wf.WorkflowRuntime, client: wf.DaprWorkflowClient) -> None:
    # ------------------------------------------------------------------ activities

    @runtime.activity(name="add_one")
    def add_one(ctx: wf.WorkflowActivityContext, x: int) -> int:
        return x + 1

    @runtime.activity(name="fail_activity")
    def fail_activity(ctx: wf.WorkflowActivityContext, args: dict[str, Any]) -> None:
        raise ValueError(args["message"])

    @runtime.activity(name="flaky")
    def flaky(ctx: wf.WorkflowActivityContext, args: dict[str, Any]) -> int:
        """Fails its first `fail_times` runs (per key), then returns how many runs it took."""
        n = count(args["key"])
        if n <= args["fail_times"]:
            raise RuntimeError(f"flaky run {n} of {args['key']} fails on purpose")
        return n

    @runtime.activity(name="slow")
    def slow(ctx: wf.WorkflowActivityContext, args: dict[str, Any]) -> str:
        count(f"{args['key']}-started")
        time.sleep(args["seconds"])
        count(args["key"])  # counted when it finishes: the test sees the late result was sent
        return "slow-done"

    @runtime.activity(name="raise_event_activity")
    def raise_event_activity(ctx: wf.WorkflowActivityContext, args: dict[str, Any]) -> str:
        # Dapr's workflow context has no send_event: an activity raises the event with a client.
        client.raise_workflow_event(args["target"], args["name"], data=args.get("data"))
        return "sent"

    # ------------------------------------------------------------------ workflows

    @runtime.workflow(name="chain")
    def chain(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        x = args.get("start", 0)
        for _ in range(args["n"]):
            x = yield ctx.call_activity(add_one, input=x)
        return x

    @runtime.workflow(name="fan_out")
    def fan_out(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        tasks = [ctx.call_activity(add_one, input=v) for v in args["values"]]
        results = yield wf.when_all(tasks)
        return {"results": results, "sum": sum(results)}

    @runtime.workflow(name="fail_uncaught")
    def fail_uncaught(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        yield ctx.call_activity(fail_activity, input=args)
        return "unreachable"

    @runtime.workflow(name="fail_caught")
    def fail_caught(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        try:
            yield ctx.call_activity(fail_activity, input=args)
        except wf.TaskFailedError as err:
            after = yield ctx.call_activity(add_one, input=1)
            return {"error_type": err.details.error_type, "message": err.details.message, "after": after}
        return "unreachable"

    @runtime.workflow(name="retry_activity")
    def retry_activity(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        runs = yield ctx.call_activity(flaky, input=args, retry_policy=_retry(args["attempts"]))
        return runs

    @runtime.workflow(name="child_flaky")
    def child_flaky(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        runs = yield ctx.call_activity(flaky, input=args)
        return {"runs": runs, "instance_id": ctx.instance_id}

    @runtime.workflow(name="retry_child")
    def retry_child(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        result = yield ctx.call_child_workflow(
            child_flaky,
            input={"key": args["key"], "fail_times": args["fail_times"]},
            instance_id=args["child_id"],
            retry_policy=_retry(args["attempts"]),
        )
        return result

    @runtime.workflow(name="timer_then_add")
    def timer_then_add(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        t0 = ctx.current_utc_datetime
        yield ctx.create_timer(timedelta(seconds=args["seconds"]))
        elapsed = (ctx.current_utc_datetime - t0).total_seconds()
        value = yield ctx.call_activity(add_one, input=args["value"])
        return {"value": value, "elapsed": elapsed}

    @runtime.workflow(name="two_timers")
    def two_timers(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        """Two timers pending at once (`short` and `long` seconds); returns when both fired."""
        t0 = ctx.current_utc_datetime
        yield wf.when_all(
            [
                ctx.create_timer(timedelta(seconds=args["short"])),
                ctx.create_timer(timedelta(seconds=args["long"])),
            ]
        )
        elapsed = (ctx.current_utc_datetime - t0).total_seconds()
        value = yield ctx.call_activity(add_one, input=args["value"])
        return {"value": value, "elapsed": elapsed}

    @runtime.workflow(name="parent_by_function")
    def parent_by_function(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        result = yield ctx.call_child_workflow(
            chain, input={"n": args["n"]}, instance_id=args.get("child_id")
        )
        return {"child": result}

    @runtime.workflow(name="parent_by_name")
    def parent_by_name(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        result = yield ctx.call_child_workflow(
            "chain", input={"n": args["n"]}, instance_id=args.get("child_id")
        )
        return {"child": result}

    @runtime.workflow(name="parent_child_fails")
    def parent_child_fails(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        child: Any = ctx.call_child_workflow(
            fail_uncaught, input={"message": args["message"]}, instance_id=args.get("child_id")
        )
        if not args["catch"]:
            yield child
            return "unreachable"
        try:
            yield child
        except wf.TaskFailedError as err:
            return {"caught": True, "message": err.details.message}
        return "unreachable"

    @runtime.workflow(name="wait_events")
    def wait_events(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        """Optionally sleeps (so events can arrive before the wait), then waits for each event in turn."""
        if args.get("delay"):
            yield ctx.create_timer(timedelta(seconds=args["delay"]))
        values = []
        for name in args["names"]:
            value = yield ctx.wait_for_external_event(name)
            values.append(value)
        return values

    @runtime.workflow(name="event_or_timeout")
    def event_or_timeout(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        event = ctx.wait_for_external_event(args["name"])
        timeout = ctx.create_timer(timedelta(seconds=args["timeout"]))
        winner = yield wf.when_any([event, timeout])
        if winner == event:
            return {"event": event.get_result()}
        return {"timed_out": True}

    @runtime.workflow(name="parent_waiting_child")
    def parent_waiting_child(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        result = yield ctx.call_child_workflow(
            wait_events, input={"names": ["never"]}, instance_id=args["child_id"]
        )
        return result

    @runtime.workflow(name="slow_activity_wf")
    def slow_activity_wf(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        result = yield ctx.call_activity(slow, input=args)
        return result

    @runtime.workflow(name="collect_as_new")
    def collect_as_new(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        """Collects `target` "item" events, one per execution, carrying unprocessed ones over."""
        if args.get("delay"):
            # Only the first execution sleeps, so all events are raised (and buffered) meanwhile.
            yield ctx.create_timer(timedelta(seconds=args["delay"]))
        item = yield ctx.wait_for_external_event("item")
        seen = [*args["seen"], item]
        if len(seen) >= args["target"]:
            return {"seen": seen, "generations": len(seen)}
        ctx.continue_as_new({"seen": seen, "target": args["target"]}, save_events=True)
        return None

    @runtime.workflow(name="custom_status_wf")
    def custom_status_wf(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        ctx.set_custom_status("waiting")
        value = yield ctx.wait_for_external_event("next")
        ctx.set_custom_status(f"done-{value}")
        return value

    @runtime.workflow(name="send_event_wf")
    def send_event_wf(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        yield ctx.call_activity(raise_event_activity, input=args)
        return "sent"

    @runtime.workflow(name="race_timer")
    def race_timer(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        activity = ctx.call_activity(add_one, input=args["value"])
        timer = ctx.create_timer(timedelta(seconds=60))
        winner = yield wf.when_any([activity, timer])
        if winner == activity:
            return {"winner": "activity", "value": activity.get_result()}
        return {"winner": "timer"}

    @runtime.workflow(name="patched")
    def patched(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
        # Version 2 of this workflow's code inserts a step in front of the old first step, behind
        # the patch "extra_step"; instances that started under version 1 must keep the old path.
        extra = 0
        version = CODE_VERSIONS.get(args["key"], DEFAULT_CODE_VERSION)
        if version == 3 or (version >= 2 and ctx.is_patched("extra_step")):
            extra = yield ctx.call_activity(add_one, input=100)
        first = yield ctx.call_activity(add_one, input=1)
        go = yield ctx.wait_for_external_event("go")
        return {"extra": extra, "first": first, "go": go}

    @runtime.workflow(name="echo_input")
    def echo_input(ctx: wf.DaprWorkflowContext, args: Any) -> Any:
        """Returns its input after one activity: the instances that triggers start."""
        step = yield ctx.call_activity(add_one, input=0)
        return {"input": args, "step": step}
