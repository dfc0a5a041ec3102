"""`python -m benchmarks.stores`: the engine on SQLite vs PostgreSQL, and one engine vs two sharing
one PostgreSQL database, in one run.

Setups, each with the same durabletask worker and client (one driver process per engine):
- `sqlite x1`: one engine on a SQLite file (WAL, sync=normal: the default);
- `postgresql x1`: one engine on a PostgreSQL database;
- `postgresql x2`: two engines on one PostgreSQL database, each with its own driver; a batch of N
  is split in two halves started at once, one through each engine. Throughput is N over the later
  of the two makespans; latencies are pooled.

The PostgreSQL server is Debian's, started for the run on a loopback port in a temporary folder with
`synchronous_commit=off` (fsync stays on): like SQLite's sync=normal, a killed process loses no
commit and a power cut may lose the last few. Rounds take the setups in a rotating order; the median
round is reported, with ratios against `sqlite x1` and `postgresql x1`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.harness.postgres import PostgresServer

from .backends import DriverProcess, EngineProcess
from .run import _HEADER, Batch, Result, _interrupt, _row, percentile
from .shapes import SHAPES, Shape


class Setup:
    """Engines on one store, each with its own driver process; a batch is split between them."""

    def __init__(self, name: str, engines: list[EngineProcess], workdir: Path) -> None:
        self.name = name
        self.engines = engines
        self.drivers = [
            DriverProcess([], workdir / f"driver-{name.replace(' ', '_')}-{k}.log")
            for k in range(len(engines))
        ]

    def start(self, args: argparse.Namespace) -> None:
        for engine, driver in zip(self.engines, self.drivers, strict=True):
            engine.start()
            driver.args = [
                "--address",
                engine.address,
                f"--start-concurrency={args.start_concurrency}",
                "--wait-concurrency=1",
                f"--timeout={args.timeout}",
                f"--id-prefix=e{len(self.drivers)}{self.drivers.index(driver)}-",
            ]
            driver.start()
        print(f"{self.name}: {self.engines[0].description}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        for driver in self.drivers:
            driver.stop()
        for engine in self.engines:
            engine.stop()

    def batch(self, shape: Shape, n: int) -> list[dict[str, Any]]:
        shares = [
            n // len(self.drivers) + (1 if k < n % len(self.drivers) else 0) for k in range(len(self.drivers))
        ]
        with ThreadPoolExecutor(len(self.drivers)) as pool:
            return list(
                pool.map(lambda dn: dn[0].batch(shape.name, dn[1]), zip(self.drivers, shares, strict=True))
            )

    def measure(self, shape: Shape, n: int) -> Batch:
        cpu0 = sum(e.cpu_seconds() for e in self.engines)
        replies = self.batch(shape, n)
        cpu1 = sum(e.cpu_seconds() for e in self.engines)
        makespan = max(r["makespan_seconds"] for r in replies)
        latencies = sorted(x for r in replies for x in r["latencies_ms"])
        batch = Batch(
            makespan_seconds=makespan,
            wall_seconds=max(r["wall_seconds"] for r in replies),
            start_seconds=max(r["start_seconds"] for r in replies),
            workflows_per_second=n / makespan,
            latency_p50_ms=percentile(latencies, 50),
            latency_p99_ms=percentile(latencies, 99),
            latency_max_ms=latencies[-1],
            driver_cpu_seconds=sum(r["cpu_seconds"] for r in replies),
            server_cpu_seconds=cpu1 - cpu0,
        )
        print(
            f"  {shape.name:<8} {self.name:<24} {batch.workflows_per_second:>7.1f} wf/s  "
            f"p50 {batch.latency_p50_ms:>6.0f} ms  p99 {batch.latency_p99_ms:>6.0f} ms",
            file=sys.stderr,
            flush=True,
        )
        return batch


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stores",
        description="Workflows/s of the engine on SQLite and on PostgreSQL, and of one vs two engines "
        "sharing one PostgreSQL database, in one run.",
    )
    parser.add_argument("--n", type=int, default=500, help="workflows per shape and setup (default 500)")
    parser.add_argument(
        "--shapes", default="single,fanout", help="comma-separated shapes (default single,fanout)"
    )
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured workflows per shape first (20)")
    parser.add_argument("--rounds", type=int, default=3, help="measured batches per shape and setup (3)")
    parser.add_argument("--start-concurrency", type=int, default=32, help="start calls in flight per driver")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for one workflow")
    args = parser.parse_args(argv)
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in args.shapes if s not in SHAPES]
    if unknown or not args.shapes:
        parser.error(f"--shapes: unknown {', '.join(unknown) or 'empty'}; choose among {', '.join(SHAPES)}")
    return args


def ratio_lines(results: list[Result], shapes: list[str]) -> list[str]:
    by_key = {(r.backend, r.shape): r for r in results}
    lines = []
    for shape in shapes:
        for a, b in (("postgresql x1", "sqlite x1"), ("postgresql x2", "postgresql x1")):
            x, y = by_key[(a, shape)], by_key[(b, shape)]
            throughput = x.workflows_per_second / y.workflows_per_second
            lines.append(
                f"{shape:<8} {a + ' / ' + b:<32} {throughput:>6.2f}x wf/s  "
                f"{x.latency_p50_ms / y.latency_p50_ms:>6.2f}x p50"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="dapr-workflows-stores-"))
    server = PostgresServer(durable=True).start()
    setups: list[Setup] = []
    try:
        one = workdir / "pg1"
        two = [workdir / "pg2a", workdir / "pg2b"]
        for folder in (workdir / "sqlite", one, *two):
            folder.mkdir()
        pg1, pg2 = server.create_database(), server.create_database()
        setups = [
            Setup("sqlite x1", [EngineProcess(workdir / "sqlite")], workdir),
            Setup("postgresql x1", [EngineProcess(one, store_url=pg1)], workdir),
            Setup("postgresql x2", [EngineProcess(f, store_url=pg2) for f in two], workdir),
        ]
        load_before = os.getloadavg()[0]
        began = time.perf_counter()
        started: list[Setup] = []
        try:
            for setup in setups:
                started.append(setup)
                setup.start(args)
            results: list[Result] = []
            for name in args.shapes:
                shape = SHAPES[name]
                for setup in setups:
                    if args.warmup:
                        setup.batch(shape, args.warmup)
                rounds: dict[str, list[Batch]] = {s.name: [] for s in setups}
                for r in range(args.rounds):
                    for k in range(len(setups)):
                        setup = setups[(r + k) % len(setups)]
                        rounds[setup.name].append(setup.measure(shape, args.n))
                results.extend(Result.of(n, name, args.n, b) for n, b in rounds.items())
        finally:
            for setup in reversed(started):
                setup.stop()
        elapsed = time.perf_counter() - began
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(
        f"N={args.n} workflows per batch, median of {args.rounds} rounds; {os.cpu_count()} CPUs, load "
        f"average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after; server = engine processes"
    )
    print(_HEADER)
    for name in args.shapes:
        for result in results:
            if result.shape == name:
                print(_row(result))
    print()
    print("\n".join(ratio_lines(results, args.shapes)))
    print(f"\nwhole run: {elapsed:.0f}s")


if __name__ == "__main__":
    main()
