"""A driver process: one durabletask worker and one client on one backend, batches on request.

`python -m benchmarks.driver --address HOST:PORT` drives a backend in another process;
`python -m benchmarks.driver --in-memory` runs durabletask's in-memory backend in this process, with the
worker and the client (the configuration of the quoted reference figure). Every backend gets its own
driver process, so no backend shares a process (or a GIL) with another backend's idle worker.

Protocol, one JSON object per line: the driver writes {"ready": ADDRESS} once its worker is started,
then reads {"shape": NAME, "n": N} and answers each with the batch's figures (see `run_batch`); it
exits at end of input. Nothing else goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from datetime import datetime, timezone
from typing import Any

from durabletask.client import AsyncTaskHubGrpcClient, OrchestrationStatus
from durabletask.testing import InMemoryOrchestrationBackend
from durabletask.worker import TaskHubGrpcWorker

from .backends import free_port
from .shapes import SHAPES, Shape, register


def _epoch(utc: datetime) -> float:
    """The SDK's timestamps are naive datetimes in UTC."""
    return utc.replace(tzinfo=timezone.utc).timestamp()


def quiet_logger(name: str, level: int) -> logging.Logger:
    """The SDK logs every start, wait and work item at INFO to stderr by default; every driver gets this."""
    logger = logging.Logger(name, level=level)
    logger.addHandler(logging.StreamHandler(sys.stderr))
    return logger


class Driver:
    def __init__(
        self, address: str, start_concurrency: int, wait_concurrency: int, timeout: float, id_prefix: str = ""
    ) -> None:
        self.address = address
        self.id_prefix = id_prefix
        self.start_concurrency = start_concurrency
        self.wait_concurrency = wait_concurrency
        self.timeout = timeout
        self.client: AsyncTaskHubGrpcClient | None = None
        self.batches = 0

    async def run_batch(self, shape: Shape, n: int) -> dict[str, Any]:
        """Starts n workflows of `shape` (up to start_concurrency calls in flight), then waits for all of
        them in start order (wait_concurrency calls in flight) and checks every result.

        Returns, in seconds: makespan (first start call to the last completion as the backend records
        it), wall (first start call to the last completion seen by the waiters), start (to start all
        n); cpu_seconds (this process); latencies_ms: per workflow, completion minus creation as the
        backend records them (OrchestrationState.last_updated_at - created_at). The backend's clock
        and this process's are the same host's wall clock.
        """
        if self.client is None:
            self.client = AsyncTaskHubGrpcClient(
                host_address=self.address, logger=quiet_logger("benchmark-client", logging.WARNING)
            )
        client = self.client
        self.batches += 1
        ids = [f"{self.id_prefix}{shape.name}-{self.batches}-{i:05d}" for i in range(n)]
        starting = asyncio.Semaphore(self.start_concurrency)

        async def start(i: int) -> None:
            async with starting:
                await client.schedule_new_orchestration(shape.orchestrator, input=i, instance_id=ids[i])

        latencies: list[float] = []
        last_completion = 0.0
        pending = iter(range(n))

        async def waiter() -> None:
            for i in pending:
                state = await client.wait_for_orchestration_completion(ids[i], timeout=self.timeout)
                if state is None or state.runtime_status != OrchestrationStatus.COMPLETED:
                    status = state.runtime_status if state else "missing"
                    detail = state.failure_details if state else None
                    raise RuntimeError(f"workflow {ids[i]} is {status}: {detail}")
                if state.get_output() != shape.expected(i):
                    raise RuntimeError(f"workflow {ids[i]} returned {state.get_output()!r}")
                latencies.append((state.last_updated_at - state.created_at).total_seconds() * 1000)
                nonlocal last_completion
                last_completion = max(last_completion, _epoch(state.last_updated_at))

        cpu0 = time.process_time()
        t0 = time.time()
        await asyncio.gather(*(start(i) for i in range(n)))
        t_started = time.time()
        await asyncio.gather(*(waiter() for _ in range(self.wait_concurrency)))
        t_done = time.time()
        return {
            "makespan_seconds": last_completion - t0,
            "wall_seconds": t_done - t0,
            "start_seconds": t_started - t0,
            "cpu_seconds": time.process_time() - cpu0,
            "latencies_ms": latencies,
        }

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.driver")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--address", help="the backend's Durable Task address")
    where.add_argument("--in-memory", action="store_true", help="run the in-memory backend in this process")
    parser.add_argument("--start-concurrency", type=int, default=32)
    parser.add_argument("--wait-concurrency", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--id-prefix", default="", help="before every instance ID (drivers sharing a store)")
    args = parser.parse_args()

    backend: InMemoryOrchestrationBackend | None = None
    address: str = args.address
    if args.in_memory:
        port = free_port()
        backend = InMemoryOrchestrationBackend(port=port)
        backend.start()
        address = f"127.0.0.1:{port}"
    # ERROR: the worker warns about its own stream being cancelled when it stops.
    worker = TaskHubGrpcWorker(host_address=address, logger=quiet_logger("benchmark-worker", logging.ERROR))
    register(worker)
    worker.start()  # type: ignore[no-untyped-call]
    driver = Driver(address, args.start_concurrency, args.wait_concurrency, args.timeout, args.id_prefix)
    loop = asyncio.new_event_loop()
    try:
        print(json.dumps({"ready": address}), flush=True)
        for line in sys.stdin:
            if not line.strip():
                continue
            request = json.loads(line)
            result = loop.run_until_complete(driver.run_batch(SHAPES[request["shape"]], int(request["n"])))
            print(json.dumps(result), flush=True)
    finally:
        loop.run_until_complete(driver.close())
        loop.close()
        worker.stop()  # type: ignore[no-untyped-call]
        if backend is not None:
            backend.stop(grace=1)


if __name__ == "__main__":
    main()
