"""A long chaos run, kept out of the test suite's time: many workflows, random kill -9s of the engine
and of the worker, and a count of what was lost, wrong or applied twice.

    python -m tests.chaos --workflows 1000 --engine-kills 20 --worker-kills 5 --store sqlite
    python -m tests.chaos --workflows 300 --engine-kills 20 --worker-kills 5 --store postgresql

Each workflow (`durable_sum`) runs a chain of activities, a fan-out, a timer and waits for an event;
its output is the sum of its activity results and the event, so a result applied twice or lost shows
in the output, and its history is read over raw gRPC and each task's results counted. The client
(starts and events) runs in its own SDK process, resending calls that failed with a kill; the worker
is another one, killed and started again. Exits 1 unless lost, wrong and applied twice are all 0.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness import activity_log
from tests.harness.durability import (
    RetryingCalls,
    assert_each_result_applied_once,
    event_kinds,
    wait_until,
    wait_worker_connected,
)
from tests.harness.engine_process import EngineProcess
from tests.harness.postgres import PostgresServer
from tests.harness.raw_grpc import RawClient
from tests.harness.sdk_host import SdkHost

CHAIN, FAN = 2, 3
# With PostgreSQL a killed engine's leases expire after this; the restarted engine then takes them.
POSTGRES_ARGS = ("--store-lease-seconds", "2", "--poll-seconds", "0.3")


def event_value(i: int) -> int:
    return i + 1  # never 0: Dapr's client drops falsy event data


def workflow_input(i: int, log: Path) -> dict[str, Any]:
    return {"base": i, "chain": CHAIN, "fan": FAN, "timer": (i % 5) * 0.3, "log": str(log)}


class Chaos:
    def __init__(self, args: argparse.Namespace, workdir: Path, engine: EngineProcess) -> None:
        self.args = args
        self.workdir = workdir
        self.engine = engine
        self.rng = random.Random(args.seed)
        self.log = workdir / "activities.log"
        self.ids = [f"chaos-{i:05d}" for i in range(args.workflows)]
        self.client = SdkHost(
            args.dialect, engine.address(args.dialect), workdir / "client.log", worker=False
        )
        self.worker_starts = 0
        self.worker = self._new_worker()
        self.calls = RetryingCalls(self.client)

    def _new_worker(self) -> SdkHost:
        self.worker_starts += 1
        log = self.workdir / f"worker-{self.worker_starts}.log"
        return SdkHost(self.args.dialect, self.engine.address(self.args.dialect), log)

    def run(self) -> dict[str, Any]:
        began = time.monotonic()
        n, dialect = len(self.ids), self.args.dialect
        kinds = ["engine"] * self.args.engine_kills + ["worker"] * self.args.worker_kills
        self.rng.shuffle(kinds)
        phases = len(kinds) + 1
        order = list(range(n))
        self.rng.shuffle(order)
        starts = [order[k::phases] for k in range(phases)]
        events: list[list[int]] = [[] for _ in range(phases)]
        for i in range(n):  # an instance's event comes in its start's phase or a later one
            phase = next(k for k in range(phases) if i in set(starts[k]))
            events[self.rng.randint(phase, phases - 1)].append(i)
        retry: list[tuple[str, dict[str, Any]]] = []
        for k, kind in enumerate([*kinds, None]):
            wait_worker_connected(self.engine, dialect, timeout=60)
            self.calls.resend(sorted(retry, key=lambda c: c[0] != "start"))
            for i in starts[k]:
                self.calls.submit(
                    "start",
                    workflow="durable_sum",
                    input=workflow_input(i, self.log),
                    instance_id=self.ids[i],
                )
            for i in events[k]:
                self.calls.submit("raise_event", instance_id=self.ids[i], name="go", data=event_value(i))
            if kind is None:
                break
            time.sleep(self.rng.uniform(0.3, 2.0))
            if kind == "engine":
                self.engine.kill()
                self.engine.start()
            else:
                self.worker.kill()
                self.worker = self._new_worker()
            retry = self.calls.settle(timeout=60)
            print(f"kill {k + 1}/{len(kinds)} ({kind}); {len(retry)} calls to send again", flush=True)
        self.calls.until_all_succeed(self.calls.settle(timeout=60), timeout=120)
        states = self._final_states(timeout=60 + n * 0.3)
        return self._figures(states, kinds, time.monotonic() - began)

    def _final_states(self, timeout: float) -> dict[str, dict[str, Any] | None]:
        states: dict[str, dict[str, Any] | None] = {}

        def done() -> bool:
            pending = [iid for iid in self.ids if iid not in states]
            futures = [(iid, self.client.submit("get", instance_id=iid)) for iid in pending]
            for iid, fut in futures:
                state = fut.result(timeout=60)
                if state is not None and state["status"] not in ("RUNNING", "PENDING"):
                    states[iid] = state
            return len(states) == len(self.ids)

        try:
            wait_until(done, timeout, "all workflows to finish", interval=1.0)
        except AssertionError:
            for iid in self.ids:
                if iid not in states:
                    states[iid] = self.client.call("get", instance_id=iid)
        return states

    def _figures(
        self, states: dict[str, dict[str, Any] | None], kinds: list[str], elapsed: float
    ) -> dict[str, Any]:
        lost = [iid for iid in self.ids if states.get(iid) is None]
        unfinished = [
            iid
            for iid in self.ids
            if (s := states.get(iid)) is not None and s["status"] in ("RUNNING", "PENDING")
        ]
        wrong = []
        for i, iid in enumerate(self.ids):
            state = states.get(iid)
            if state is None or state["status"] in ("RUNNING", "PENDING"):
                continue
            expected = activity_log.expected_sum(i, CHAIN, FAN, event_value(i))
            if state["status"] != "COMPLETED" or json.loads(state["output"]) != expected:
                wrong.append(iid)
        twice = []
        with RawClient(self.engine.address(self.args.dialect), self.args.dialect) as raw:
            for iid in self.ids:
                if states.get(iid) is None:
                    continue
                events = raw.history(iid)
                try:
                    assert_each_result_applied_once(iid, events)
                    assert event_kinds(events)["taskCompleted"] <= CHAIN + FAN
                except AssertionError:
                    twice.append(iid)
        executions = Counter((e["instance"], e["task"]) for e in activity_log.read(self.log))
        return {
            "store": self.args.store,
            "dialect": self.args.dialect,
            "workflows": len(self.ids),
            "engine_kills": kinds.count("engine"),
            "worker_kills": kinds.count("worker"),
            "lost": len(lost),
            "unfinished": len(unfinished),
            "wrong": len(wrong),
            "applied_twice": len(twice),
            "activities_run_more_than_once": sum(1 for c in executions.values() if c > 1),
            "client_calls_sent_again": self.calls.resent,
            "seconds": round(elapsed, 1),
            "examples": {
                "lost": lost[:3],
                "unfinished": unfinished[:3],
                "wrong": wrong[:3],
                "twice": twice[:3],
            },
        }

    def close(self) -> None:
        for host in (self.worker, self.client):
            if host.proc.poll() is None:
                host.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--engine-kills", type=int, default=20)
    parser.add_argument("--worker-kills", type=int, default=5)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--dialect", choices=("dapr", "durabletask"), default="dapr")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--workdir", type=Path, default=None, help="where logs and the store go (kept)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dapr-workflows-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"chaos run in {workdir}", flush=True)
    cleanups: list[Callable[[], None]] = []
    try:
        if args.store == "postgresql":
            server = PostgresServer().start()
            cleanups.append(server.stop)
            engine = EngineProcess(workdir, *POSTGRES_ARGS, store_url=server.create_database())
        else:
            engine = EngineProcess(workdir)
        engine.start()
        cleanups.append(engine.kill)
        chaos = Chaos(args, workdir, engine)
        cleanups.append(chaos.close)
        figures = chaos.run()
    finally:
        for cleanup in reversed(cleanups):
            cleanup()
    print(json.dumps(figures, indent=2))
    return (
        0
        if figures["lost"] == figures["wrong"] == figures["applied_twice"] == figures["unfinished"] == 0
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
