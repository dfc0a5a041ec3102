"""`python -m benchmarks.run`: workflows/s and latency of our engine and of durabletask's in-memory backend.

Every backend gets a driver process (`benchmarks.driver`) with one durabletask `TaskHubGrpcWorker`
(default concurrency options) and one `AsyncTaskHubGrpcClient`; only the address differs. Our engine
and, with `--reference own-process`, the in-memory backend run in their own server processes; the
in-process reference runs the in-memory backend inside its driver process, with the worker and client.

Per shape, every backend first runs a warm-up batch; then each round measures one batch of N on every
backend, taking the backends in a rotating order, and the median over the rounds is reported. A batch
starts all N workflows, then waits for all of them. Throughput is N over the makespan: from the first
start call to the last completion as the backend records it (the same host clock), so the client's
final sweep of waits does not count; latency is each workflow's completion time minus its creation
time, as the backend records them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import median
from typing import Any

from . import versus_daprd
from .backends import DriverProcess, EngineProcess, ReferenceProcess, ServerProcess
from .shapes import SHAPES, Shape

OURS = "dapr-workflows"
REFERENCES = ("in-process", "own-process", "both", "none", "daprd")


@dataclass
class Batch:
    """One measured batch of N workflows of one shape on one backend."""

    makespan_seconds: float  # first start call to the last completion the backend recorded
    wall_seconds: float  # first start call to the last completion the client saw
    start_seconds: float  # time to start all N
    workflows_per_second: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    driver_cpu_seconds: float  # the driver process: worker + client (+ the in-process reference backend)
    server_cpu_seconds: float | None  # the backend's own process, when it has one


@dataclass
class Result:
    """A shape on a backend: the median of its rounds, and every round."""

    backend: str
    shape: str
    n: int
    workflows_per_second: float
    workflows_per_second_min: float
    workflows_per_second_max: float
    latency_p50_ms: float
    latency_p99_ms: float
    makespan_seconds: float
    start_seconds: float
    driver_cpu_ms_per_workflow: float
    server_cpu_ms_per_workflow: float | None
    rounds: list[Batch]

    @classmethod
    def of(cls, backend: str, shape: str, n: int, rounds: list[Batch]) -> Result:
        server_cpu = [b.server_cpu_seconds for b in rounds if b.server_cpu_seconds is not None]
        return cls(
            backend=backend,
            shape=shape,
            n=n,
            workflows_per_second=median(b.workflows_per_second for b in rounds),
            workflows_per_second_min=min(b.workflows_per_second for b in rounds),
            workflows_per_second_max=max(b.workflows_per_second for b in rounds),
            latency_p50_ms=median(b.latency_p50_ms for b in rounds),
            latency_p99_ms=median(b.latency_p99_ms for b in rounds),
            makespan_seconds=median(b.makespan_seconds for b in rounds),
            start_seconds=median(b.start_seconds for b in rounds),
            driver_cpu_ms_per_workflow=median(b.driver_cpu_seconds for b in rounds) * 1000 / n,
            server_cpu_ms_per_workflow=median(server_cpu) * 1000 / n if server_cpu else None,
            rounds=rounds,
        )


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class Backend:
    """A backend under test: maybe a server process, and the driver process that runs batches on it."""

    def __init__(
        self, name: str, description: str, server: ServerProcess | None, driver_args: list[str], workdir: Path
    ) -> None:
        self.name = name
        self.description = description
        self.server = server
        self.driver_args = driver_args
        self.driver = DriverProcess([], workdir / f"driver-{name.replace(' ', '_')}.log")

    def start(self, args: argparse.Namespace) -> None:
        if self.server is not None:
            self.server.start()
            self.driver.args = ["--address", self.server.address]
        else:
            self.driver.args = list(self.driver_args)
        self.driver.args += [
            f"--start-concurrency={args.start_concurrency}",
            f"--wait-concurrency={args.wait_concurrency}",
            f"--timeout={args.timeout}",
        ]
        address = self.driver.start()
        print(f"{self.name}: {self.description}, at {address}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        try:
            self.driver.stop()
        finally:
            if self.server is not None:
                self.server.stop()

    def measure(self, shape: Shape, n: int) -> Batch:
        server_cpu0 = self.server.cpu_seconds() if self.server else None
        reply = self.driver.batch(shape.name, n)
        server_cpu1 = self.server.cpu_seconds() if self.server else None
        latencies = sorted(reply["latencies_ms"])
        batch = Batch(
            makespan_seconds=reply["makespan_seconds"],
            wall_seconds=reply["wall_seconds"],
            start_seconds=reply["start_seconds"],
            workflows_per_second=n / reply["makespan_seconds"],
            latency_p50_ms=percentile(latencies, 50),
            latency_p99_ms=percentile(latencies, 99),
            latency_max_ms=latencies[-1],
            driver_cpu_seconds=reply["cpu_seconds"],
            server_cpu_seconds=(
                server_cpu1 - server_cpu0 if server_cpu0 is not None and server_cpu1 is not None else None
            ),
        )
        print(
            f"  {shape.name:<8} {self.name:<24} {batch.workflows_per_second:>7.1f} wf/s  "
            f"p50 {batch.latency_p50_ms:>6.0f} ms  p99 {batch.latency_p99_ms:>6.0f} ms  "
            f"{batch.makespan_seconds:>6.2f} s",
            file=sys.stderr,
            flush=True,
        )
        return batch


def measure_all(backends: list[Backend], shapes: list[Shape], args: argparse.Namespace) -> list[Result]:
    """Per shape: a warm-up batch on every backend, then rounds that take the backends in turn.

    Every round measures each backend once and the order rotates from round to round, so drift on a
    shared machine (another process taking a core for a while) is spread over the backends alike.
    """
    results: list[Result] = []
    for shape in shapes:
        if args.warmup:
            for backend in backends:
                backend.driver.batch(shape.name, args.warmup)
        rounds: dict[str, list[Batch]] = {b.name: [] for b in backends}
        for r in range(args.rounds):
            for k in range(len(backends)):
                backend = backends[(r + k) % len(backends)]
                rounds[backend.name].append(backend.measure(shape, args.n))
        results.extend(Result.of(name, shape.name, args.n, batches) for name, batches in rounds.items())
    return results


# ---------------------------------------------------------------------------------------------- report

_HEADER = (
    f"{'shape':<8} {'backend':<24} {'wf/s':>7} {'(min-max)':>13} {'p50 ms':>7} {'p99 ms':>7} "
    f"{'makespan s':>10} {'start s':>7} {'cpu ms/wf driver':>16} {'server':>7}"
)


def _row(r: Result) -> str:
    spread = f"({r.workflows_per_second_min:.0f}-{r.workflows_per_second_max:.0f})"
    server_cpu = f"{r.server_cpu_ms_per_workflow:.2f}" if r.server_cpu_ms_per_workflow is not None else "-"
    return (
        f"{r.shape:<8} {r.backend:<24} {r.workflows_per_second:>7.1f} {spread:>13} "
        f"{r.latency_p50_ms:>7.0f} {r.latency_p99_ms:>7.0f} "
        f"{r.makespan_seconds:>10.2f} {r.start_seconds:>7.2f} "
        f"{r.driver_cpu_ms_per_workflow:>16.2f} {server_cpu:>7}"
    )


def ratios(results: list[Result]) -> list[dict[str, Any]]:
    """ours / reference per shape and reference: throughput (higher is better) and latency (lower is)."""
    out = []
    by_key = {(r.backend, r.shape): r for r in results}
    for r in results:
        if r.backend == OURS:
            continue
        ours = by_key.get((OURS, r.shape))
        if ours is None:
            continue
        out.append(
            {
                "shape": r.shape,
                "reference": r.backend,
                "throughput": ours.workflows_per_second / r.workflows_per_second,
                "latency_p50": ours.latency_p50_ms / r.latency_p50_ms,
                "latency_p99": ours.latency_p99_ms / r.latency_p99_ms,
            }
        )
    return out


def print_report(results: list[Result], args: argparse.Namespace, load: tuple[float, float]) -> None:
    print()
    print(
        f"N={args.n} workflows per batch, median of {args.rounds} rounds (warm-up {args.warmup}); "
        f"{os.cpu_count()} CPUs, load average {load[0]:.1f} before / {load[1]:.1f} after; "
        f"Python {sys.version.split()[0]}"
    )
    print(
        "wf/s: N / makespan (first start call .. last completion recorded by the backend); latency: "
        "completed - created as the "
        "backend records them;\ncpu ms/wf: CPU time per workflow of the driver process (worker + client, "
        "+ the in-process reference backend) and of the backend's own server process"
    )
    print(_HEADER)
    for shape in args.shapes:
        for r in results:
            if r.shape == shape:
                print(_row(r))
    rows = ratios(results)
    if rows:
        print()
        print("ours / reference (throughput: higher is better; latency: lower is better)")
        print(f"{'shape':<8} {'reference':<24} {'wf/s':>8} {'p50':>9} {'p99':>9}")
        for x in rows:
            print(
                f"{x['shape']:<8} {x['reference']:<24} {x['throughput']:>7.2f}x {x['latency_p50']:>8.2f}x "
                f"{x['latency_p99']:>8.2f}x"
            )


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Workflows/s and start-to-completion latency of dapr-workflows and of durabletask's "
        "in-memory backend, with the same durabletask worker and client, in one run.",
    )
    parser.add_argument("--n", type=int, default=500, help="workflows per shape and backend (default 500)")
    parser.add_argument(
        "--shapes",
        default=",".join(SHAPES),
        help=f"comma-separated shapes among {', '.join(SHAPES)} (default: all)",
    )
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured workflows per shape first (20)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="measured batches of N per shape and backend, backends taken in turn; the median is "
        "reported (default 3)",
    )
    parser.add_argument(
        "--reference",
        choices=REFERENCES,
        default="in-process",
        help="where durabletask's in-memory backend runs: in this process with worker and client (the "
        "quoted reference figure), in its own process (like our engine), both, or none "
        "(default: in-process); daprd: our engine against daprd's built-in engine instead, both driven "
        "by Dapr's workflow SDK (benchmarks/versus_daprd.py)",
    )
    parser.add_argument(
        "--engine-address",
        default="",
        help="benchmark an engine already listening there (e.g. one under a profiler) instead of "
        "starting one",
    )
    parser.add_argument("--no-engine", action="store_true", help="measure only the reference")
    parser.add_argument(
        "--engine-log-level", default="info", help="--log-level of the engine process (default: info)"
    )
    parser.add_argument(
        "--sync-full", action="store_true", help="run the engine's store with ?sync=full (default: normal)"
    )
    parser.add_argument("--start-concurrency", type=int, default=32, help="start calls in flight (32)")
    parser.add_argument(
        "--wait-concurrency",
        type=int,
        default=1,
        help="wait calls in flight (1); a wait holds one of the in-memory backend's 10 server threads, "
        "so more than a few starve it",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for one workflow")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the engine's SQLite file and log")
    versus_daprd.add_arguments(parser)
    args = parser.parse_args(argv)
    args.shapes = list(dict.fromkeys(s.strip() for s in args.shapes.split(",") if s.strip()))
    unknown = [s for s in args.shapes if s not in SHAPES]
    if unknown or not args.shapes:
        parser.error(f"--shapes: unknown {', '.join(unknown) or 'empty'}; choose among {', '.join(SHAPES)}")
    if args.reference == "daprd" and (args.engine_address or args.no_engine):
        parser.error("--reference daprd starts its own engine: no --engine-address or --no-engine")
    if min(args.n, args.rounds, args.start_concurrency, args.wait_concurrency) < 1 or args.warmup < 0:
        parser.error("--n, --rounds and the concurrencies must be positive, --warmup not negative")
    return args


def build_backends(args: argparse.Namespace, workdir: Path) -> list[Backend]:
    backends: list[Backend] = []
    if args.engine_address:
        backends.append(
            Backend(
                OURS,
                "engine started outside the benchmark",
                None,
                ["--address", args.engine_address],
                workdir,
            )
        )
    elif not args.no_engine:
        engine = EngineProcess(workdir, args.engine_log_level, "sync=full" if args.sync_full else "")
        backends.append(
            Backend(OURS, engine.description + "; worker + client in a driver process", engine, [], workdir)
        )
    if args.reference in ("in-process", "both"):
        backends.append(
            Backend(
                "in-memory",
                "durabletask.testing in-memory backend, worker + client + backend in one process",
                None,
                ["--in-memory"],
                workdir,
            )
        )
    if args.reference in ("own-process", "both"):
        ref = ReferenceProcess(workdir)
        backends.append(
            Backend(ref.name, ref.description + "; worker + client in a driver process", ref, [], workdir)
        )
    return backends


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the engine and the drivers are stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    if args.reference == "daprd":
        versus_daprd.main(args)
        return
    shapes = [SHAPES[s] for s in args.shapes]
    workdir = Path(tempfile.mkdtemp(prefix="dapr-workflows-bench-"))
    backends = build_backends(args, workdir)
    if not backends:
        raise SystemExit("nothing to measure: --no-engine with --reference none")
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    try:
        started: list[Backend] = []
        try:
            for backend in backends:
                started.append(backend)
                backend.start(args)
            results = measure_all(backends, shapes, args)
        finally:
            for backend in reversed(started):
                backend.stop()
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.perf_counter() - began
    load = (load_before, os.getloadavg()[0])
    print_report(results, args, load)
    print(f"\nwhole run: {elapsed:.0f}s")
    if args.json:
        figures = {
            "n": args.n,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "shapes": {s.name: s.description for s in shapes},
            "backends": {b.name: b.description for b in backends},
            "cpus": os.cpu_count(),
            "load_average": {"before": load[0], "after": load[1]},
            "python": sys.version.split()[0],
            "start_concurrency": args.start_concurrency,
            "wait_concurrency": args.wait_concurrency,
            "seconds": elapsed,
            "results": [asdict(r) for r in results],
            "ratios": ratios(results),
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
