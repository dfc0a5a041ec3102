"""`python -m benchmarks.run --reference daprd`: our engine next to daprd's built-in workflow engine.

Backends, each driven by `--drivers K` `benchmarks.dapr_driver` processes (`benchmarks.driver_pool`:
like K replicas of one app, each the same `dapr.ext.workflow` 1.19 worker and async client, default
options, on the one server; only the address differs between backends):
- `dapr-workflows`: `dapr-workflows serve` on Dapr's dialect, SQLite file (WAL, sync=normal);
- `dapr-workflows (postgresql)` with `--postgresql`: the same on a PostgreSQL database of a server
  started for the run (fsync on, synchronous_commit=off);
- `daprd (redis)`: daprd + placement + scheduler, actor state store Redis with an append-only file
  (appendonly yes, appendfsync everysec); `daprd (in-memory)`: the same with the in-memory store.

Figures per shape (median of the rounds; the backends are taken in a rotating order each round):
throughput (N / makespan, across all drivers), p50/p99 of completion minus creation, burst p50
(completion minus the batch's first start call of any driver), server CPU per workflow (our
engine's process; daprd + scheduler + placement + Redis), PostgreSQL's own CPU per workflow when it
is the store, the drivers' CPU per workflow, read from /proc/PID/stat (utime + stime) before and
after each batch; and each worker's part of the activities run. Then idle latency (one workflow at a
time) and long histories (chains of 10, 100 and 500 activities: server CPU per activity).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from .backends import EngineProcess
from .dapr_shapes import LONG_CHAINS
from .daprd_backend import DaprdStack, DaprEngineProcess, tree_cpu_seconds
from .driver_pool import DriverPool

OURS = "dapr-workflows"
THROUGHPUT_SHAPES = ("single", "chain", "fanout")
# One Python driver process uses about one core and was the bottleneck on 2 cores (benchmarks/README.md).
DEFAULT_DRIVERS = 2


@dataclass
class Round:
    wf_per_s: float
    p50_ms: float
    p99_ms: float
    burst_p50_ms: float
    server_cpu_ms_per_wf: float
    store_cpu_ms_per_wf: float | None
    driver_cpu_ms_per_wf: float
    cpu_parts_ms_per_wf: dict[str, float] = field(default_factory=dict)
    drivers: list[dict[str, Any]] = field(default_factory=list)  # per driver: started, ran, CPU


def _pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


class Contender:
    """A backend (server process or daprd stack) and its Dapr-dialect driver processes."""

    def __init__(
        self, name: str, server: Any, workdir: Path, store_pid: int | None = None, drivers: int = 1
    ) -> None:
        self.name = name
        self.server = server
        self.store_pid = store_pid  # PostgreSQL's postmaster, when it is the store
        self.driver = DriverPool(drivers, workdir / f"driver-{name.replace(' ', '_')}")

    def start(self, args: argparse.Namespace) -> None:
        self.server.start()
        self.driver.args = [
            "--address",
            self.server.address,
            f"--start-concurrency={args.start_concurrency}",
            f"--timeout={args.timeout}",
        ]
        self.driver.start()
        print(
            f"{self.name}: {self.server.description}, at {self.server.address}", file=sys.stderr, flush=True
        )

    def stop(self) -> None:
        try:
            self.driver.stop()
        finally:
            self.server.stop()

    def _cpu(self) -> tuple[float, float | None, dict[str, float]]:
        parts = self.server.cpu_parts() if isinstance(self.server, DaprdStack) else {}
        store = tree_cpu_seconds(self.store_pid) if self.store_pid else None
        return self.server.cpu_seconds(), store, parts

    def measure(self, shape: str, n: int, idle: bool = False) -> tuple[Round, dict[str, Any]]:
        cpu0, store0, parts0 = self._cpu()
        reply = self.driver.batch(shape, n, idle=idle)
        if len(reply["latencies_ms"]) != n or len(set(reply["ids"])) != n:
            raise RuntimeError(f"{self.name}: {len(reply['latencies_ms'])} of {n} workflows counted")
        cpu1, store1, parts1 = self._cpu()
        per_wf = 1000 / n
        batch = Round(
            wf_per_s=n / reply["makespan_seconds"],
            p50_ms=_pct(reply["latencies_ms"], 50),
            p99_ms=_pct(reply["latencies_ms"], 99),
            burst_p50_ms=_pct(reply["burst_ms"], 50),
            server_cpu_ms_per_wf=(cpu1 - cpu0) * per_wf,
            store_cpu_ms_per_wf=(store1 - store0) * per_wf
            if store0 is not None and store1 is not None
            else None,
            driver_cpu_ms_per_wf=reply["cpu_seconds"] * per_wf,
            cpu_parts_ms_per_wf={k: (parts1[k] - parts0[k]) * per_wf for k in parts0},
            drivers=reply["drivers"],
        )
        print(
            f"  {shape:<9} {self.name:<28} {batch.wf_per_s:>7.1f} wf/s  p50 {batch.p50_ms:>6.0f} ms  "
            f"burst p50 {batch.burst_p50_ms:>6.0f} ms  server {batch.server_cpu_ms_per_wf:>6.2f} ms/wf"
            + _split(batch.drivers)
            + (" (idle)" if idle else ""),
            file=sys.stderr,
            flush=True,
        )
        return batch, reply


def activity_shares(drivers: list[dict[str, Any]]) -> list[float]:
    """Each driver's worker's part of the activities run (the backend's spread of the work)."""
    total = sum(d["activities"] for d in drivers)
    return [d["activities"] / total if total else 0.0 for d in drivers]


def _split(drivers: list[dict[str, Any]]) -> str:
    if len(drivers) < 2:
        return ""
    return "  activities per worker " + "/".join(f"{x:.0%}" for x in activity_shares(drivers))


def _median_round(rounds: list[Round]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in (
        "wf_per_s",
        "p50_ms",
        "p99_ms",
        "burst_p50_ms",
        "server_cpu_ms_per_wf",
        "driver_cpu_ms_per_wf",
    ):
        out[key] = median(getattr(r, key) for r in rounds)
    stores = [r.store_cpu_ms_per_wf for r in rounds if r.store_cpu_ms_per_wf is not None]
    out["store_cpu_ms_per_wf"] = median(stores) if stores else None
    out["wf_per_s_min"] = min(r.wf_per_s for r in rounds)
    out["wf_per_s_max"] = max(r.wf_per_s for r in rounds)
    parts = rounds[0].cpu_parts_ms_per_wf.keys()
    out["cpu_parts_ms_per_wf"] = {k: median(r.cpu_parts_ms_per_wf[k] for r in rounds) for k in parts}
    by_round = [activity_shares(r.drivers) for r in rounds]
    out["activity_shares"] = [median(x[i] for x in by_round) for i in range(len(by_round[0]))]
    return out


def build(args: argparse.Namespace, workdir: Path) -> tuple[list[Contender], Any]:
    k = args.drivers
    contenders = [
        Contender(OURS, DaprEngineProcess(workdir / "sqlite", args.engine_log_level), workdir, drivers=k)
    ]
    (workdir / "sqlite").mkdir()
    postgres = None
    if args.postgresql:
        from tests.harness.postgres import PostgresServer

        postgres = PostgresServer(durable=True).start()
        assert postgres._proc is not None
        (workdir / "pg").mkdir()
        engine: EngineProcess = DaprEngineProcess(
            workdir / "pg", args.engine_log_level, store_url=postgres.create_database()
        )
        contenders.append(
            Contender(f"{OURS} (postgresql)", engine, workdir, store_pid=postgres._proc.pid, drivers=k)
        )
    for store in args.daprd_stores:
        contenders.append(Contender(f"daprd ({store})", DaprdStack(workdir, store), workdir, drivers=k))
    return contenders, postgres


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="dapr-workflows-vs-daprd-"))
    figures: dict[str, Any] = {
        "n": args.n,
        "drivers": args.drivers,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "shapes": {},
        "idle": {},
        "long": {},
    }
    contenders, postgres = build(args, workdir)
    load0 = os.getloadavg()
    began = time.perf_counter()
    started: list[Contender] = []
    try:
        for c in contenders:
            started.append(c)
            c.start(args)
        figures["backends"] = {c.name: c.server.description for c in contenders}
        for shape in [s for s in args.shapes if s in THROUGHPUT_SHAPES]:
            for c in contenders:
                c.measure(shape, args.warmup)
            rounds: dict[str, list[Round]] = {c.name: [] for c in contenders}
            for r in range(args.rounds):
                for k in range(len(contenders)):
                    c = contenders[(r + k) % len(contenders)]
                    rounds[c.name].append(c.measure(shape, args.n)[0])
            figures["shapes"][shape] = {
                name: {**_median_round(b), "rounds": [asdict(x) for x in b]} for name, b in rounds.items()
            }
        if args.idle:
            for c in contenders:
                c.driver.resize(1)  # one at a time: no hops between driver processes (driver_pool.py)
                batch, reply = c.measure("single", args.idle, idle=True)
                if args.long_n:
                    c.driver.resize(args.drivers)
                figures["idle"][c.name] = {
                    "p50_ms": batch.p50_ms,
                    "p99_ms": batch.p99_ms,
                    "round_trip_p50_ms": _pct(reply["round_trip_ms"], 50),
                    "server_cpu_ms_per_wf": batch.server_cpu_ms_per_wf,
                }
        if args.long_n:
            for length in LONG_CHAINS:
                name = "chain" if length == 10 else f"chain-{length}"
                for c in contenders:
                    batch, _ = c.measure(name, args.long_n)
                    figures["long"].setdefault(c.name, {})[str(length)] = {
                        "wf_per_s": batch.wf_per_s,
                        "activities_per_s": batch.wf_per_s * length,
                        "server_cpu_ms_per_activity": batch.server_cpu_ms_per_wf / length,
                        "store_cpu_ms_per_activity": (
                            batch.store_cpu_ms_per_wf / length
                            if batch.store_cpu_ms_per_wf is not None
                            else None
                        ),
                    }
    finally:
        for c in reversed(started):
            c.stop()
        if postgres is not None:
            postgres.stop()
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    figures["seconds"] = time.perf_counter() - began
    figures["load_average"] = {"before": load0[0], "after": os.getloadavg()[0]}
    return figures


# ---------------------------------------------------------------------------------------------- report


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def report(figures: dict[str, Any]) -> str:
    load = figures["load_average"]
    lines = [
        f"N={figures['n']} workflows per batch, median of {figures['rounds']} rounds; "
        f"{figures['cpus']} CPUs, load average {load['before']:.1f} before / {load['after']:.1f} after; "
        f"whole run {figures['seconds']:.0f}s",
        f"{figures.get('drivers', 1)} driver process(es) per backend (worker + client each, one server); "
        "server cpu: our engine's process / daprd + scheduler + placement + Redis; store cpu: PostgreSQL; "
        "driver cpu: all drivers; split: each worker's part of the activities run",
        "",
        f"{'shape':<8} {'backend':<28} {'wf/s':>7} {'(min-max)':>11} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'burst p50':>9} {'server ms/wf':>12} {'store ms/wf':>11} {'driver ms/wf':>12} split",
    ]
    for shape, by_backend in figures["shapes"].items():
        for name, r in by_backend.items():
            spread = f"({r['wf_per_s_min']:.0f}-{r['wf_per_s_max']:.0f})"
            lines.append(
                f"{shape:<8} {name:<28} {r['wf_per_s']:>7.1f} {spread:>11} "
                f"{r['p50_ms']:>7.0f} {r['p99_ms']:>7.0f} "
                f"{r['burst_p50_ms']:>9.0f} {r['server_cpu_ms_per_wf']:>12.2f} "
                f"{_fmt(r['store_cpu_ms_per_wf']):>11} {r['driver_cpu_ms_per_wf']:>12.2f} "
                + "/".join(f"{x:.0%}" for x in r.get("activity_shares", []))
            )
    ratio_rows = ratios(figures)
    if ratio_rows:
        lines += [
            "",
            "ours / daprd (wf/s: higher is better; the others: lower is better)",
            f"{'shape':<8} {'ours':<28} {'daprd':<18} {'wf/s':>7} {'server cpu':>10} {'burst p50':>9} "
            f"{'p50':>7} {'+store cpu':>10}",
        ]
        for x in ratio_rows:
            lines.append(
                f"{x['shape']:<8} {x['ours']:<28} {x['daprd']:<18} {x['throughput']:>6.2f}x "
                f"{x['server_cpu']:>9.2f}x "
                f"{x['burst_p50']:>8.2f}x {x['latency_p50']:>6.2f}x {x['server_and_store_cpu']:>9.2f}x"
            )
    if figures["idle"]:
        lines += [
            "",
            "idle: one 1-activity workflow at a time",
            f"{'backend':<28} {'p50 ms':>7} {'p99 ms':>7} {'round trip p50 ms':>17} {'server ms/wf':>12}",
        ]
        for name, r in figures["idle"].items():
            lines.append(
                f"{name:<28} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['round_trip_p50_ms']:>17.1f} "
                f"{r['server_cpu_ms_per_wf']:>12.2f}"
            )
    if figures["long"]:
        lines += [
            "",
            "long histories: server CPU per activity (ms), chains of "
            + ", ".join(str(n) for n in LONG_CHAINS),
        ]
        for name, by_length in figures["long"].items():
            cells = "  ".join(
                f"{n}: {r['server_cpu_ms_per_activity']:.2f} ({r['activities_per_s']:.0f} act/s)"
                for n, r in by_length.items()
            )
            first, last = by_length[str(LONG_CHAINS[0])], by_length[str(LONG_CHAINS[-1])]
            growth = last["server_cpu_ms_per_activity"] / first["server_cpu_ms_per_activity"]
            lines.append(f"{name:<28} {cells}  {LONG_CHAINS[-1]}/{LONG_CHAINS[0]}: {growth:.2f}x")
    return "\n".join(lines)


def ratios(figures: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for shape, by_backend in figures["shapes"].items():
        for ours in (n for n in by_backend if n.startswith(OURS)):
            for daprd in (n for n in by_backend if n.startswith("daprd")):
                a, b = by_backend[ours], by_backend[daprd]
                out.append(
                    {
                        "shape": shape,
                        "ours": ours,
                        "daprd": daprd,
                        "throughput": a["wf_per_s"] / b["wf_per_s"],
                        "server_cpu": a["server_cpu_ms_per_wf"] / b["server_cpu_ms_per_wf"],
                        "server_and_store_cpu": (a["server_cpu_ms_per_wf"] + (a["store_cpu_ms_per_wf"] or 0))
                        / b["server_cpu_ms_per_wf"],
                        "burst_p50": a["burst_p50_ms"] / b["burst_p50_ms"],
                        "latency_p50": a["p50_ms"] / b["p50_ms"],
                    }
                )
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("with --reference daprd")
    group.add_argument(
        "--drivers",
        type=int,
        default=DEFAULT_DRIVERS,
        metavar="K",
        help="driver processes per backend, like replicas of one app: each its own worker and client on "
        f"the same server, a batch split across them (default {DEFAULT_DRIVERS})",
    )
    group.add_argument(
        "--daprd-stores",
        default="redis,in-memory",
        help="daprd's actor state stores to measure: redis (append-only file), in-memory (default: both)",
    )
    group.add_argument(
        "--postgresql",
        action="store_true",
        help="also our engine on PostgreSQL (a server started for the run), with its CPU",
    )
    group.add_argument(
        "--idle",
        type=int,
        default=50,
        metavar="N",
        help="idle latency: N workflows one at a time per backend (default 50; 0: skip)",
    )
    group.add_argument(
        "--long-n",
        type=int,
        default=5,
        metavar="N",
        help="long histories: N workflows per chain of 10, 100 and 500 (default 5; 0: skip)",
    )


def main(args: argparse.Namespace) -> None:
    if args.drivers < 1:
        raise SystemExit(f"--drivers must be at least 1, not {args.drivers}")
    args.daprd_stores = [s.strip() for s in args.daprd_stores.split(",") if s.strip()]
    figures = run(args)
    figures["ratios"] = ratios(figures)
    print()
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
