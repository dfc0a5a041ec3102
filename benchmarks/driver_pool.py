"""K driver processes for one backend, like K replicas of one app (`--drivers K`).

Each driver (`benchmarks.dapr_driver`) has its own `WorkflowRuntime` worker and async client on
the same address (the same app, for daprd: the app id is its sidecar's). A batch of N is split
across them: each starts and waits for its share, under instance IDs of its own (`d<k>-` before
them). The figures are those of the whole batch:

- throughput: N over the time from the first start call of any driver to the last completion;
- latency percentiles over every workflow; burst: completion minus that first start call;
- drivers' CPU: every driver process's /proc utime + stime, read before the batch is sent and
  after the last driver answered (a worker may run others' workflows after its own share is done);
- per driver: the workflows it started and the turns and activities its worker ran (counted in
  the worker), which shows how the backend spread the work over the workers.

An idle batch (one workflow at a time) goes to the first driver alone; any worker may run it.
The idle figures are measured with one driver (`resize(1)`, then back): with several, each step may
hop to another process, which on a loaded machine waits to be woken (benchmarks/README.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .backends import DriverProcess, process_cpu_seconds


def shares(n: int, k: int) -> list[int]:
    """N split over k drivers as evenly as it goes, the first ones taking the remainder."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def aggregate(replies: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one batch from its drivers' replies (those that had a share)."""
    first = min(r["started_at"] for r in replies)
    completed = [c for r in replies for c in r["completed_at"]]
    return {
        "makespan_seconds": max(completed) - first,
        "wall_seconds": max(r["done_at"] for r in replies) - first,
        "start_seconds": max(r["started_at"] + r["start_seconds"] for r in replies) - first,
        "latencies_ms": [x for r in replies for x in r["latencies_ms"]],
        "burst_ms": [(c - first) * 1000 for c in completed],
        "round_trip_ms": [x for r in replies for x in r["round_trip_ms"]],
        "ids": [i for r in replies for i in r["ids"]],
    }


class DriverPool:
    """`count` driver processes of `module` on one backend; the interface of one `DriverProcess`."""

    def __init__(self, count: int, log_stem: Path, module: str = "benchmarks.dapr_driver") -> None:
        if count < 1:
            raise ValueError(f"--drivers must be at least 1, not {count}")
        self.log_stem = log_stem
        self.module = module
        self.args: list[str] = []
        self.started = 0  # drivers ever started: each one's instance IDs begin with d<its number>-
        self.drivers = [self._new() for _ in range(count)]

    def _new(self) -> DriverProcess:
        serial = self.started
        self.started += 1
        return DriverProcess(
            [f"--id-prefix=d{serial}-"],
            self.log_stem.with_name(f"{self.log_stem.name}-{serial}.log"),
            self.module,
        )

    def start(self) -> None:
        for driver in self.drivers:
            driver.args = [*self.args, *driver.args]
            driver.start()

    def resize(self, count: int) -> None:
        """Stops the drivers after the first `count`, or starts new ones up to `count`."""
        while len(self.drivers) > max(count, 1):
            self.drivers.pop().stop()
        while len(self.drivers) < count:
            driver = self._new()
            driver.args = [*self.args, *driver.args]
            driver.start()
            self.drivers.append(driver)

    def stop(self) -> None:
        errors: list[BaseException] = []
        for driver in self.drivers:
            try:
                driver.stop()
            except Exception as e:  # stop the others all the same
                errors.append(e)
        if errors:
            raise errors[0]

    def _cpu_seconds(self) -> list[float]:
        return [process_cpu_seconds(d.proc.pid) for d in self.drivers if d.proc is not None]

    def _work(self) -> list[dict[str, int]]:
        for d in self.drivers:
            d.send({"work": True})
        return [d.receive() for d in self.drivers]

    def batch(self, shape: str, n: int, idle: bool = False) -> dict[str, Any]:
        """Like `DriverProcess.batch`, for the whole pool; plus `cpu_seconds` of all drivers and
        `drivers`: per driver, workflows started, turns and activities run, cpu_seconds."""
        counts = [n, *[0] * (len(self.drivers) - 1)] if idle else shares(n, len(self.drivers))
        work0, cpu0 = self._work(), self._cpu_seconds()
        busy = [(d, share) for d, share in zip(self.drivers, counts, strict=True) if share]
        for d, share in busy:
            d.send({"shape": shape, "n": share, "idle": idle})
        replies = [d.receive() for d, _ in busy]
        cpu1, work1 = self._cpu_seconds(), self._work()
        out = aggregate(replies)
        out["cpu_seconds"] = sum(cpu1) - sum(cpu0)
        out["drivers"] = [
            {
                "workflows": share,
                "turns": w1["turns"] - w0["turns"],
                "activities": w1["activities"] - w0["activities"],
                "cpu_seconds": c1 - c0,
            }
            for share, w0, w1, c0, c1 in zip(counts, work0, work1, cpu0, cpu1, strict=True)
        ]
        return out
