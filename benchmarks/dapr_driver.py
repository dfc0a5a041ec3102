"""A driver process for Dapr's dialect: one `dapr.ext.workflow` worker and client, batches on request.

`python -m benchmarks.dapr_driver --address HOST:PORT` drives a Durable Task server of Dapr's dialect:
our engine's `--engine-address`, or daprd's gRPC port (its built-in engine). The worker is a
`WorkflowRuntime` with the SDK's default options, the client the SDK's async `DaprWorkflowClient`;
only the address differs between backends.

Protocol, one JSON object per line, as `benchmarks.driver`: {"ready": ADDRESS} once the worker is
started, then requests {"shape": NAME, "n": N, "idle": BOOL} answered with the batch's figures
(`run_batch`), and {"work": true} answered with what this process's worker has run so far
({"turns": T, "activities": A}); it exits at end of input. Nothing else goes to stdout.

Several drivers may serve one backend (`benchmarks.driver_pool`), like replicas of one app: each
worker runs whatever work items the backend hands it, whichever driver's client started the
workflow, so the work each worker did is counted in the worker itself (`WorkCount`).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from dapr.ext.workflow import WorkflowRuntime, WorkflowStatus
from dapr.ext.workflow.aio import DaprWorkflowClient
from dapr.ext.workflow.logger import LoggerOptions

from .dapr_shapes import DAPR_SHAPES, DaprShape, register


class WorkCount:
    """Workflow turns (calls of a workflow function: one per orchestration work item) and activities
    this process's worker ran; activities run on the SDK's thread pool, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.turns = 0
        self.activities = 0

    def _add(self, turns: int, activities: int) -> None:
        with self._lock:
            self.turns += turns
            self.activities += activities

    def workflow(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)  # the SDK reads the signature: whether the workflow takes an input
        def counted(ctx: Any, value: Any) -> Any:
            self._add(1, 0)
            return fn(ctx, value)

        return counted

    def activity(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def counted(ctx: Any, value: Any) -> Any:
            self._add(0, 1)
            return fn(ctx, value)

        return counted

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"turns": self.turns, "activities": self.activities}


def _epoch(utc: datetime) -> float:
    """The SDK's timestamps are naive datetimes in UTC."""
    return (utc if utc.tzinfo else utc.replace(tzinfo=timezone.utc)).timestamp()


def _quiet(level: int) -> LoggerOptions:
    """The SDK logs every start, wait and work item at INFO to stderr by default."""
    return LoggerOptions(log_level=logging.getLevelName(level), log_handler=logging.StreamHandler(sys.stderr))


class DaprDriver:
    def __init__(self, address: str, start_concurrency: int, timeout: float, id_prefix: str = "") -> None:
        self.host, self.port = address.rsplit(":", 1)
        self.start_concurrency = start_concurrency
        self.timeout = timeout
        self.id_prefix = id_prefix
        self.client: DaprWorkflowClient | None = None
        self.batches = 0

    async def run_batch(self, shape: DaprShape, n: int, idle: bool = False) -> dict[str, Any]:
        """Starts n workflows of `shape` (up to start_concurrency start calls in flight), then waits for
        them in start order; with `idle`, one at a time instead (each started after the previous one
        completed). Checks every result.

        Returns, in seconds: makespan (first start call to the last completion the backend recorded),
        wall, start (to start all n), cpu_seconds (this process); in ms per workflow: latencies_ms
        (completion minus creation as the backend records them), burst_ms (completion minus the
        batch's first start call), round_trip_ms (start call to the wait's answer, idle only); as
        epoch seconds (this host's clock, for a pool of drivers to aggregate): started_at (the first
        start call), completed_at (each completion the backend recorded), done_at (the last wait's
        answer); ids (the instance IDs, in start order).
        """
        if self.client is None:
            self.client = DaprWorkflowClient(
                host=self.host, port=self.port, logger_options=_quiet(logging.WARNING)
            )
        client = self.client
        self.batches += 1
        ids = [f"{self.id_prefix}{shape.name}-{self.batches}-{i:05d}" for i in range(n)]
        latencies: list[float] = []
        completions: list[float] = []
        round_trips: list[float] = []

        async def wait(i: int) -> None:
            state = await client.wait_for_workflow_completion(ids[i], timeout_in_seconds=int(self.timeout))
            if state is None or state.runtime_status != WorkflowStatus.COMPLETED:
                status = state.runtime_status if state else "missing"
                raise RuntimeError(
                    f"workflow {ids[i]} is {status}: {state.failure_details if state else None}"
                )
            output = json.loads(state.serialized_output or "null")
            if output != shape.expected(i):
                raise RuntimeError(f"workflow {ids[i]} returned {output!r}")
            latencies.append((state.last_updated_at - state.created_at).total_seconds() * 1000)
            completions.append(_epoch(state.last_updated_at))

        starting = asyncio.Semaphore(self.start_concurrency)

        async def start(i: int) -> None:
            async with starting:
                await client.schedule_new_workflow(shape.name, input=i, instance_id=ids[i])

        cpu0 = time.process_time()
        t0 = time.time()
        if idle:
            for i in range(n):
                began = time.perf_counter()
                await start(i)
                await wait(i)
                round_trips.append((time.perf_counter() - began) * 1000)
            t_started = t0
        else:
            await asyncio.gather(*(start(i) for i in range(n)))
            t_started = time.time()
            for i in range(n):
                await wait(i)
        t_done = time.time()
        return {
            "makespan_seconds": max(completions) - t0,
            "wall_seconds": t_done - t0,
            "start_seconds": t_started - t0,
            "cpu_seconds": time.process_time() - cpu0,
            "latencies_ms": latencies,
            "burst_ms": [(c - t0) * 1000 for c in completions],
            "round_trip_ms": round_trips,
            "started_at": t0,
            "completed_at": completions,
            "done_at": t_done,
            "ids": ids,
        }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dapr_driver")
    parser.add_argument(
        "--address", required=True, help="the backend's Durable Task address (Dapr's dialect)"
    )
    parser.add_argument("--start-concurrency", type=int, default=32)
    parser.add_argument("--wait-concurrency", type=int, default=1, help="accepted for symmetry; always 1")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--id-prefix", default="", help="before every instance ID")
    args = parser.parse_args()

    host, port = args.address.rsplit(":", 1)
    runtime = WorkflowRuntime(host=host, port=port, logger_options=_quiet(logging.ERROR))
    work = WorkCount()
    register(runtime, work.workflow, work.activity)
    runtime.start()  # type: ignore[no-untyped-call]  # the SDK's methods carry no annotations
    driver = DaprDriver(args.address, args.start_concurrency, args.timeout, args.id_prefix)
    loop = asyncio.new_event_loop()
    try:
        print(json.dumps({"ready": args.address}), flush=True)
        for line in sys.stdin:
            if not line.strip():
                continue
            request = json.loads(line)
            if request.get("work"):
                print(json.dumps(work.snapshot()), flush=True)
                continue
            shape = DAPR_SHAPES[request["shape"]]
            result = loop.run_until_complete(
                driver.run_batch(shape, int(request["n"]), bool(request.get("idle")))
            )
            print(json.dumps(result), flush=True)
    finally:
        loop.close()  # the SDK's async client has no close(); its channel goes with the process
        runtime.shutdown()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
