"""`python -m benchmarks.management`: how fast the management API answers with many stored instances.

For each store (SQLite, and PostgreSQL when Debian's server is installed) and each size (10k, 100k
and 1M instances by default), a fresh store is filled directly through the store's bulk insert
(`StoreTx.put_instances`, no workers), with a mix of statuses, workflow names and creation times
over 30 days, and a history of 20 events for a sample of instances. Then `dapr-workflows serve`
runs on that store and each request below is sent `--repeat` times over one keep-alive HTTP
connection; the table shows the median (p50) and p95 latency in milliseconds.

- `list status`: a page of 50 RUNNING instances, newest first (5 % of the instances are RUNNING);
- `list status, page 20`: the 20th such page, reached through its continuation token;
- `list 2 statuses`: a page of FAILED or TERMINATED instances;
- `list name`: a page of one workflow name (one of 10);
- `list created range`: a page of the instances created in one day;
- `counts`: the number of instances of each status (`countsOnly=true`), which reads every index entry;
- `get`: one instance (a random one each time);
- `history`: one instance's history of 20 events.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dapr_workflows_component.protos import dapr_dialect_pb2 as pb
from dapr_workflows_component.store import open_store
from dapr_workflows_component.workflows import Instance, RuntimeStatus

from tests.harness.engine_process import EngineProcess
from tests.harness.postgres import PostgresServer, PostgresUnavailable

DAY_US = 86_400_000_000
NAMES = [f"workflow_{n}" for n in range(10)]
# Statuses of the stored instances, in these proportions.
MIX = [
    (RuntimeStatus.COMPLETED, 80),
    (RuntimeStatus.FAILED, 5),
    (RuntimeStatus.TERMINATED, 5),
    (RuntimeStatus.RUNNING, 5),
    (RuntimeStatus.PENDING, 3),
    (RuntimeStatus.SUSPENDED, 2),
]
FILL_BATCH = 20_000
HISTORY_SAMPLE = 200
HISTORY_EVENTS = 20


def _statuses(n: int, rng: random.Random) -> list[RuntimeStatus]:
    weights = [w for _, w in MIX]
    return rng.choices([s for s, _ in MIX], weights=weights, k=n)


def _history(created_at: int) -> list[bytes]:
    events = []
    for seq in range(HISTORY_EVENTS):
        ts = pb.HistoryEvent(eventId=seq, timestamp={"seconds": created_at // 1_000_000 + seq})
        if seq == 0:
            ts.executionStarted.name = NAMES[0]
            ts.executionStarted.input.value = '{"order": 17}'
        elif seq % 2:
            ts.taskScheduled.name = "step"
            ts.taskScheduled.input.value = str(seq)
        else:
            ts.taskCompleted.taskScheduledId = seq - 1
            ts.taskCompleted.result.value = str(seq + 1)
        events.append(ts.SerializeToString())
    return events


async def fill(url: str, size: int, seed: int = 7) -> tuple[list[str], list[str], int]:
    """Fills a fresh store; returns some instance IDs, the IDs with a history, and the time span's start."""
    rng = random.Random(seed)
    now = time.time_ns() // 1000
    first = now - 30 * DAY_US
    store = open_store(url)
    sample: list[str] = []
    try:
        for start in range(0, size, FILL_BATCH):
            count = min(FILL_BATCH, size - start)
            created = sorted(rng.randrange(first, now) for _ in range(count))
            batch = []
            for n, (status, created_at) in enumerate(zip(_statuses(count, rng), created, strict=True)):
                finished = created_at + 5_000_000 if status.is_terminal else None
                batch.append(
                    Instance(
                        instance_id=f"order-{start + n:08d}",
                        name=rng.choice(NAMES),
                        dialect="dapr",
                        status=status,
                        execution_id="e",
                        created_at=created_at,
                        updated_at=finished or created_at,
                        completed_at=finished,
                        input='{"order": 17}',
                        output='"done"' if status == RuntimeStatus.COMPLETED else None,
                    )
                )
            await store.run(lambda t, b=batch: t.put_instances(b))  # type: ignore[misc]
            sample += [i.instance_id for i in rng.sample(batch, min(50, len(batch)))]
        with_history = rng.sample(sample, min(HISTORY_SAMPLE, len(sample)))
        for instance_id in with_history:
            await store.run(lambda t, i=instance_id: t.append_history(i, 0, _history(now)))  # type: ignore[misc]
    finally:
        await store.close()
    return sample, with_history, first


class Timer:
    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)

    def get(self, path: str, query: Sequence[tuple[str, str]] = ()) -> tuple[float, Any]:
        url = path + ("?" + urllib.parse.urlencode(list(query)) if query else "")
        began = time.perf_counter()
        self.conn.request("GET", url)
        response = self.conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - began) * 1000
        if response.status != 200:
            raise RuntimeError(f"GET {url}: {response.status} {body[:200]!r}")
        return elapsed, json.loads(body)


def _token_of_page(timer: Timer, query: list[tuple[str, str]], page: int) -> str | None:
    token: str | None = None
    for _ in range(page - 1):
        _, answer = timer.get(
            "/v1.0/workflows/dapr", [*query, *([("continuationToken", token)] if token else [])]
        )
        token = answer["continuationToken"]
    return token


def measure(
    address: str, sample: list[str], with_history: list[str], first: int, repeat: int
) -> dict[str, list[float]]:
    timer = Timer(address)
    rng = random.Random(11)
    base = "/v1.0/workflows/dapr"
    running = [("status", "RUNNING"), ("pageSize", "50")]
    token = _token_of_page(timer, running, 20)
    day = first + 15 * DAY_US

    def iso(micros: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(micros / 1_000_000))

    requests: dict[str, Callable[[], tuple[str, list[tuple[str, str]]]]] = {
        "list status": lambda: (base, running),
        "list status, page 20": lambda: (
            base,
            [*running, *([("continuationToken", token)] if token else [])],
        ),
        "list 2 statuses": lambda: (base, [("status", "FAILED,TERMINATED"), ("pageSize", "50")]),
        "list name": lambda: (base, [("name", rng.choice(NAMES)), ("pageSize", "50")]),
        "list created range": lambda: (
            base,
            [("createdFrom", iso(day)), ("createdTo", iso(day + DAY_US)), ("pageSize", "50")],
        ),
        "counts": lambda: (base, [("countsOnly", "true")]),
        "get": lambda: (f"{base}/{rng.choice(sample)}", []),
        "history": lambda: (f"{base}/{rng.choice(with_history)}/history", []),
    }
    figures: dict[str, list[float]] = {}
    for name, request in requests.items():
        timer.get(*request())  # warm-up
        figures[name] = [timer.get(*request())[0] for _ in range(repeat)]
    return figures


def run_one(
    kind: str, size: int, repeat: int, workdir: Path, postgres: PostgresServer | None
) -> dict[str, Any]:
    url = postgres.create_database() if postgres else f"sqlite:///{workdir / f'mgmt-{size}.db'}"
    began = time.monotonic()
    sample, with_history, first = asyncio.run(fill(url, size))
    fill_seconds = time.monotonic() - began
    engine_dir = workdir / f"{kind}-{size}"
    engine_dir.mkdir()
    engine = EngineProcess(engine_dir, "--socket-name", "", store_url=url).start()
    try:
        engine.wait_http()
        figures = measure(engine.http_address, sample, with_history, first, repeat)
    finally:
        engine.kill()
    return {"store": kind, "instances": size, "fill_seconds": round(fill_seconds, 1), "ms": figures}


def _table(results: list[dict[str, Any]]) -> str:
    names = list(results[0]["ms"]) if results else []
    header = ["store", "instances", "fill s", *[f"{n} p50/p95" for n in names]]
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for r in results:
        cells = [r["store"], f"{r['instances']:,}", f"{r['fill_seconds']:g}"]
        for n in names:
            values = sorted(r["ms"][n])
            p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
            cells.append(f"{statistics.median(values):.1f} / {p95:.1f}")
        lines.append(" | ".join(cells))
    return "\n".join("| " + line + " |" for line in lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.management", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated instance counts")
    parser.add_argument("--stores", default="sqlite,postgresql", help="sqlite, postgresql or both")
    parser.add_argument("--repeat", type=int, default=50, help="requests per measured call")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    workdir = Path(tempfile.mkdtemp(prefix="dw-mgmt-bench-"))
    results: list[dict[str, Any]] = []
    postgres: PostgresServer | None = None
    try:
        for kind in [k for k in args.stores.split(",") if k]:
            if kind == "postgresql":
                try:
                    postgres = PostgresServer().start()
                except PostgresUnavailable as err:
                    print(f"skipping PostgreSQL: {err}", file=sys.stderr)
                    continue
            for size in sizes:
                print(f"{kind}: {size:,} instances ...", file=sys.stderr, flush=True)
                results.append(
                    run_one(kind, size, args.repeat, workdir, postgres if kind == "postgresql" else None)
                )
                print(_table(results[-1:]), file=sys.stderr, flush=True)
    finally:
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
