"""`python -m benchmarks.grpc_floor`: what gRPC itself costs the engine's process per workflow.

A server with trivial handlers, registered as the engine registers its own (generic handlers on raw
bytes under `/TaskHubSidecarService/<Method>`, grpc.aio on uvloop, the engine's `server_options`),
serves the call pattern of one 1-activity workflow driven by Dapr's SDK: 5 unary calls (StartInstance,
CompleteOrchestratorTask twice, CompleteActivityTask, WaitForInstanceCompletion) and 3 work items
streamed on GetWorkItems. Its handlers only move a few bytes between an in-memory queue and a dict of
futures, so its CPU per workflow is what any engine on grpcio pays before doing any work: the floor.

A client process plays the SDK's two sides as the SDK does: a worker on a blocking channel reading the
stream in a thread and completing items from a thread pool, and a client on an asyncio channel
starting workflows (up to --concurrency in flight) and waiting for them in start order.

Modes (each measured separately: the server's CPU before and after a batch):
  workflow  the 1-activity pattern above; reported per workflow
  unary     one unary call (request and answer of the typical sizes), --concurrency in flight
  stream    one stream of N items of the typical work item's size; reported per item

Variants (--variants) are server configurations compared in the same run, rounds interleaved in a
rotating order. A variant is `+`-joined knobs over a base: `ours` (the engine's options) or `bare`
(grpc.aio's defaults); the knobs are listed by --help. `opt:KEY=VALUE` adds any channel option and
`env:KEY=VALUE` any environment variable of the server process; `NAME@VARIANT` runs that server on the
interpreter `--python NAME=PATH` names (a virtual environment with another grpcio).

    python -m benchmarks.grpc_floor                          # the floor: ours, 3 rounds of N=1000
    python -m benchmarks.grpc_floor --n 300 --rounds 8 --variants ours,ours+bdp_off,ours+registered
    python -m benchmarks.grpc_floor --variants ours,old@ours --python old=/path/to/venv/bin/python

The server's CPU comes from the server process itself (all its threads, to the microsecond). Under
other load CPU time per call moves by 20 % and more from batch to batch: compare variants by the
paired ratios (same round), over several rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import IO, Any

import grpc

from .backends import free_port

SERVICE = "TaskHubSidecarService"
MODES = ("workflow", "unary", "stream")
_REPO = Path(__file__).resolve().parent.parent
_ID_WIDTH = 24  # instance IDs as the client makes them, fixed width so that items parse by slicing
_BURST = b"burst:"
# The Dapr dialect's other methods, answered like Hello: the floor registers as many methods as the engine.
_OTHER_METHODS = (
    "GetInstance",
    "WaitForInstanceStart",
    "RaiseEvent",
    "TerminateInstance",
    "SuspendInstance",
    "ResumeInstance",
    "PurgeInstances",
    "CompleteWorkflowTask",
    "RerunWorkflowFromEvent",
    "ListInstanceIDs",
    "GetInstanceHistory",
)


@dataclass
class Variant:
    """A server configuration: channel options over the base, environment, server arguments."""

    name: str
    options: dict[str, int | str] = field(default_factory=dict)
    drop: list[str] = field(default_factory=list)  # options of the base to leave out
    env: dict[str, str] = field(default_factory=dict)
    bare: bool = False  # grpc.aio's defaults instead of the engine's server_options
    wrapped: bool = False  # the engine's per-call wrappers around every handler
    registered: bool = False  # add_registered_method_handlers instead of a generic handler
    sync: bool = False  # grpc's blocking server; its pool threads run each handler on the loop
    server_kwargs: dict[str, Any] = field(default_factory=dict)


# The knobs a variant's name may join with `+`: what each changes in the server.
KNOBS: dict[str, Callable[[Variant], None]] = {
    "bdp_off": lambda v: v.options.update({"grpc.http2.bdp_probe": 0}),
    "throughput": lambda v: v.options.update({"grpc.optimization_target": "throughput"}),
    "latency": lambda v: v.options.update({"grpc.optimization_target": "latency"}),
    "streams100": lambda v: v.options.update({"grpc.max_concurrent_streams": 100}),
    "wbuf1m": lambda v: v.options.update({"grpc.http2.write_buffer_size": 1024 * 1024}),
    "wbuf0": lambda v: v.options.update({"grpc.http2.write_buffer_size": 0}),
    "frame16k": lambda v: v.options.update({"grpc.http2.max_frame_size": 16384}),
    "lookahead": lambda v: v.options.update({"grpc.http2.lookahead_bytes": 1024 * 1024}),
    "nocompress": lambda v: v.server_kwargs.update({"compression": grpc.Compression.NoCompression}),
    "mcr": lambda v: v.server_kwargs.update({"maximum_concurrent_rpcs": 100_000}),
    "pool": lambda v: v.server_kwargs.update({"migration_thread_pool": "1"}),
    "nokeepalive": lambda v: v.drop.extend(
        [
            "grpc.keepalive_time_ms",
            "grpc.keepalive_timeout_ms",
            "grpc.http2.ping_timeout_ms",
            "grpc.keepalive_permit_without_calls",
        ]
    ),
    "poll": lambda v: v.env.update({"GRPC_POLL_STRATEGY": "poll"}),
    "epoll1": lambda v: v.env.update({"GRPC_POLL_STRATEGY": "epoll1"}),
    "wrapped": lambda v: setattr(v, "wrapped", True),
    "registered": lambda v: setattr(v, "registered", True),
    "sync": lambda v: setattr(v, "sync", True),
    # gRPC core's EventEngine experiments off (TCP endpoints, listener, client): the older iomgr's
    # completion-queue thread would poll the sockets itself, one thread hop fewer per event.
    "noee": lambda v: v.env.update(
        {
            "GRPC_EXPERIMENTS": "-event_engine_listener,-event_engine_client,"
            "-event_engine_for_all_other_endpoints"
        }
    ),
}


def parse_variant(name: str) -> Variant:
    base, *knobs = name.rpartition("@")[2].split("+")
    if base not in ("ours", "bare"):
        raise SystemExit(f"grpc_floor: a variant starts with ours or bare, not {base!r} ({name})")
    variant = Variant(name, bare=base == "bare")
    for knob in knobs:
        key, _, value = knob.partition(":")
        if key == "opt" and "=" in value:
            opt, _, raw = value.partition("=")
            variant.options[opt] = int(raw) if raw.lstrip("-").isdigit() else raw
        elif key == "env" and "=" in value:
            var, _, raw = value.partition("=")
            variant.env[var] = raw
        elif knob in KNOBS:
            KNOBS[knob](variant)
        else:
            raise SystemExit(f"grpc_floor: unknown knob {knob!r} in {name}; known: {', '.join(KNOBS)}")
    return variant


def variant_options(variant: Variant) -> list[tuple[str, int | str]]:
    from dapr_workflows_component.engine.grpc_server import server_options
    from dapr_workflows_component.engine.settings import EngineSettings

    settings = EngineSettings()
    base: list[tuple[str, int | str]] = (
        [] if variant.bare else list(server_options(settings.max_payload_bytes, settings.keepalive_seconds))
    )
    kept = [(k, v) for k, v in base if k not in variant.drop and k not in variant.options]
    return kept + list(variant.options.items())


# -- the server


class FloorService:
    """The least an engine does per call: a queue of work items and a future per instance."""

    def __init__(self, item_bytes: int, answer_bytes: int) -> None:
        self.items: asyncio.Queue[bytes] = asyncio.Queue()
        self.turns: dict[bytes, int] = {}
        self.done: dict[bytes, asyncio.Future[None]] = {}
        self.item_pad = b"i" * max(0, item_bytes - 1 - _ID_WIDTH)
        self.answer = b"a" * answer_bytes

    def _future(self, instance: bytes) -> asyncio.Future[None]:
        fut = self.done.get(instance)
        if fut is None:
            fut = self.done[instance] = asyncio.get_running_loop().create_future()
        return fut

    async def start(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        instance = raw[:_ID_WIDTH]
        self.turns[instance] = 0
        self._future(instance)
        self.items.put_nowait(b"o" + instance + self.item_pad)
        return self.answer

    async def complete_orchestration(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        instance = raw[:_ID_WIDTH]
        turn = self.turns[instance] = self.turns[instance] + 1
        if turn == 1:
            self.items.put_nowait(b"a" + instance + self.item_pad)
        else:
            del self.turns[instance]
            self._future(instance).set_result(None)
        return b""

    async def complete_activity(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.items.put_nowait(b"o" + raw[:_ID_WIDTH] + self.item_pad)
        return b""

    async def wait(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        instance = raw[:_ID_WIDTH]
        await self._future(instance)
        del self.done[instance]
        return self.answer

    async def hello(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return self.answer

    async def work_items(self, raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        if raw.startswith(_BURST):  # the stream mode: N items as fast as the stream takes them
            item = b"o" + b"0" * _ID_WIDTH + self.item_pad
            for _ in range(int(raw[len(_BURST) :])):
                yield item
            return
        while True:
            yield await self.items.get()


def floor_handlers(service: FloorService, wrapped: bool) -> dict[str, grpc.RpcMethodHandler]:
    unary = {
        "Hello": service.hello,
        "StartInstance": service.start,
        "CompleteOrchestratorTask": service.complete_orchestration,
        "CompleteActivityTask": service.complete_activity,
        "WaitForInstanceCompletion": service.wait,
        **{name: service.hello for name in _OTHER_METHODS},
    }
    if not wrapped:
        out = {name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in unary.items()}
        out["GetWorkItems"] = grpc.unary_stream_rpc_method_handler(service.work_items)
        return out
    # The engine's own wrappers: error mapping, and every unary call telling the engine its peer.
    from dapr_workflows_component.engine import grpc_server as ours

    peers: set[str] = set()

    def hearing(fn: ours.Unary) -> ours.Unary:
        async def call(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            peers.discard(context.peer())
            return await fn(raw, context)

        return call

    out = {name: ours._unary(name, hearing(fn)) for name, fn in unary.items()}
    out["GetWorkItems"] = ours._streaming("GetWorkItems", service.work_items)
    return out


def blocking_handlers(
    handlers: dict[str, grpc.RpcMethodHandler], loop: asyncio.AbstractEventLoop
) -> dict[str, grpc.RpcMethodHandler]:
    """The handlers for grpc's blocking server: each call runs its coroutine on the engine's loop (the
    engine is asyncio) and its pool thread waits for the answer."""

    def unary(fn: Callable[..., Any]) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        def call(raw: bytes, context: grpc.ServicerContext) -> bytes:
            answer: bytes = asyncio.run_coroutine_threadsafe(fn(raw, context), loop).result()
            return answer

        return call

    def stream(fn: Callable[..., Any]) -> Callable[[bytes, grpc.ServicerContext], Any]:
        def call(raw: bytes, context: grpc.ServicerContext) -> Any:
            items = fn(raw, context)
            while True:
                try:
                    yield asyncio.run_coroutine_threadsafe(items.__anext__(), loop).result()
                except StopAsyncIteration:
                    return

        return call

    out = {}
    for name, handler in handlers.items():
        if handler.response_streaming:
            out[name] = grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream))
        else:
            out[name] = grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary))
    return out


async def serve(address: str, variant: Variant, item_bytes: int, answer_bytes: int) -> None:
    loop = asyncio.get_running_loop()
    kwargs = dict(variant.server_kwargs)
    if kwargs.get("migration_thread_pool"):
        kwargs["migration_thread_pool"] = concurrent.futures.ThreadPoolExecutor(1)
    handlers = floor_handlers(FloorService(item_bytes, answer_bytes), variant.wrapped)
    server: Any
    if variant.sync:
        pool = concurrent.futures.ThreadPoolExecutor(64)
        server = grpc.server(pool, options=variant_options(variant), **kwargs)
        handlers = blocking_handlers(handlers, loop)
    else:
        server = grpc.aio.server(options=variant_options(variant), **kwargs)
    if variant.registered:
        server.add_registered_method_handlers(SERVICE, handlers)
    else:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(address)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    threading.Thread(target=_tell_cpu, args=(loop, stop), daemon=True).start()
    if variant.sync:
        server.start()
        await stop.wait()
        server.stop(0)
        return
    await server.start()
    await stop.wait()
    await server.stop(0)


def _tell_cpu(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Each line on stdin is answered with the process's CPU seconds (all threads, to the microsecond:
    /proc's ticks are too coarse for a batch of a second); end of input stops the server."""
    print(json.dumps({"ready": True}), flush=True)
    for _ in sys.stdin:
        print(json.dumps({"cpu": time.process_time()}), flush=True)
    loop.call_soon_threadsafe(stop.set)


# -- the client


class FloorClient:
    """The SDK's worker (blocking channel, stream read in a thread, items completed in a pool) and its
    client (asyncio channel), on two connections as the SDK opens them."""

    def __init__(self, address: str, request_bytes: int, answer_bytes: int, workers: int) -> None:
        self.address = address
        self.pad = b"r" * max(0, request_bytes - _ID_WIDTH)
        self.answer_bytes = answer_bytes
        self.worker_channel = grpc.insecure_channel(address)
        self.pool = concurrent.futures.ThreadPoolExecutor(workers)
        self.complete_orchestration = self.worker_channel.unary_unary(f"/{SERVICE}/CompleteOrchestratorTask")
        self.complete_activity = self.worker_channel.unary_unary(f"/{SERVICE}/CompleteActivityTask")
        self.stream = self.worker_channel.unary_stream(f"/{SERVICE}/GetWorkItems")
        self.worker = threading.Thread(target=self._work, daemon=True)
        self.worker.start()

    def _work(self) -> None:
        for item in self.stream(b""):
            call = self.complete_orchestration if item[:1] == b"o" else self.complete_activity
            self.pool.submit(call, item[1 : 1 + _ID_WIDTH] + self.pad)

    async def workflows(self, n: int, batch: int, concurrency: int) -> None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            start = channel.unary_unary(f"/{SERVICE}/StartInstance")
            wait = channel.unary_unary(f"/{SERVICE}/WaitForInstanceCompletion")
            ids = [f"{batch:06d}-{i:0{_ID_WIDTH - 7}d}".encode() for i in range(n)]
            starting = asyncio.Semaphore(concurrency)

            async def one(instance: bytes) -> None:
                async with starting:
                    await start(instance + self.pad)

            await asyncio.gather(*(one(i) for i in ids))
            for instance in ids:
                if len(await wait(instance + self.pad)) != self.answer_bytes:
                    raise RuntimeError("a wait's answer is not the server's")

    async def unary(self, n: int, concurrency: int) -> None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            hello = channel.unary_unary(f"/{SERVICE}/Hello")
            request = b"0" * _ID_WIDTH + self.pad
            left = iter(range(n))

            async def caller() -> None:
                for _ in left:
                    await hello(request)

            await asyncio.gather(*(caller() for _ in range(concurrency)))

    def streamed(self, n: int) -> None:
        with grpc.insecure_channel(self.address) as channel:
            got = sum(1 for _ in channel.unary_stream(f"/{SERVICE}/GetWorkItems")(_BURST + str(n).encode()))
        if got != n:
            raise RuntimeError(f"the stream gave {got} items, not {n}")


def drive(address: str, request_bytes: int, answer_bytes: int, workers: int) -> None:
    """Answers JSON lines {"mode", "n", "concurrency"} with {"seconds"} until end of input."""
    client = FloorClient(address, request_bytes, answer_bytes, workers)
    loop = asyncio.new_event_loop()
    print(json.dumps({"ready": address}), flush=True)
    for batch, line in enumerate(sys.stdin):
        request = json.loads(line)
        n, concurrency = int(request["n"]), int(request["concurrency"])
        began = time.perf_counter()
        if request["mode"] == "workflow":
            loop.run_until_complete(client.workflows(n, batch, concurrency))
        elif request["mode"] == "unary":
            loop.run_until_complete(client.unary(n, concurrency))
        else:
            client.streamed(n)
        print(json.dumps({"seconds": time.perf_counter() - began}), flush=True)
    loop.close()


# -- the coordinator


class Pair:
    """A floor server of one variant and its client process."""

    def __init__(self, variant: Variant, args: argparse.Namespace, log: IO[bytes]) -> None:
        self.variant = variant
        self.address = f"127.0.0.1:{free_port()}"
        sizes = ["--request-bytes", str(args.request_bytes), "--answer-bytes", str(args.answer_bytes)]
        role = ["-m", "benchmarks.grpc_floor", "--address", self.address, *sizes]
        python, _, name = variant.name.rpartition("@")
        if python and python not in args.python:
            raise SystemExit(f"grpc_floor: variant {variant.name} names no --python {python}=PATH")
        server_python = args.python[python] if python else sys.executable
        # Another interpreter finds this checkout's component and benchmarks without installing them.
        path = [str(_REPO / "component"), str(_REPO), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, **variant.env, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
        self.server = subprocess.Popen(
            [
                server_python,
                *role,
                "--role",
                "server",
                "--variant",
                name,
                "--item-bytes",
                str(args.item_bytes),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
            cwd=_REPO,
        )
        _read_line(self.server, variant.name)
        self.client = subprocess.Popen(
            [sys.executable, *role, "--role", "client", "--workers", str(args.workers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=_REPO,
        )
        self._read()

    def _read(self) -> dict[str, Any]:
        return _read_line(self.client, self.variant.name)

    def server_cpu(self) -> float:
        assert self.server.stdin is not None
        self.server.stdin.write("\n")
        self.server.stdin.flush()
        return float(_read_line(self.server, self.variant.name)["cpu"])

    def batch(self, mode: str, n: int, concurrency: int) -> tuple[float, float]:
        """(server CPU seconds, wall seconds) of one batch."""
        assert self.client.stdin is not None
        cpu0 = self.server_cpu()
        self.client.stdin.write(json.dumps({"mode": mode, "n": n, "concurrency": concurrency}) + "\n")
        self.client.stdin.flush()
        seconds = float(self._read()["seconds"])
        return self.server_cpu() - cpu0, seconds

    def stop(self) -> None:
        for proc in (self.client, self.server):  # end of input stops either
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _read_line(proc: subprocess.Popen[str], name: str) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"a process of variant {name} exited; see the log (--log)")
    reply: dict[str, Any] = json.loads(line)
    return reply


def _count(mode: str, args: argparse.Namespace) -> int:
    return int(args.n * {"workflow": 1, "unary": 5, "stream": 30}[mode])


def run(args: argparse.Namespace) -> dict[str, Any]:
    args.python = dict(entry.split("=", 1) for entry in args.python)
    variants = [parse_variant(name) for name in args.variants.split(",")]
    modes = args.modes.split(",")
    unknown = set(modes) - set(MODES)
    if unknown:
        raise SystemExit(f"grpc_floor: unknown mode(s) {', '.join(sorted(unknown))}; known: {MODES}")
    figures: dict[str, dict[str, list[float]]] = {v.name: {m: [] for m in modes} for v in variants}
    with open(args.log, "ab") as log:
        pairs = [Pair(v, args, log) for v in variants]
        try:
            for pair in pairs:  # warm-up: connections, code paths, allocator
                for mode in modes:
                    pair.batch(mode, max(1, _count(mode, args) // 10), args.concurrency)
            for round_no in range(args.rounds):
                shift = round_no % len(pairs)
                for pair in pairs[shift:] + pairs[:shift]:
                    for mode in modes:
                        count = _count(mode, args)
                        cpu, wall = pair.batch(mode, count, args.concurrency)
                        figures[pair.variant.name][mode].append(cpu / count * 1e6)
                        print(
                            f"round {round_no + 1} {pair.variant.name:<28} {mode:<8} "
                            f"{cpu / count * 1e6:8.1f} us/{'wf' if mode == 'workflow' else 'op'}"
                            f"  ({count / wall:7.0f}/s)",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            for pair in pairs:
                pair.stop()
    return {
        name: {mode: {"median_us": median(values), "rounds_us": values} for mode, values in per.items()}
        for name, per in figures.items()
    }


def paired_ratio(results: dict[str, Any], name: str, base: str, mode: str) -> float:
    """The median over rounds of the variant's figure over the first variant's in the same round: the
    machine's load moves both alike within a round, so this is steadier than a ratio of medians."""
    ours, theirs = results[name][mode]["rounds_us"], results[base][mode]["rounds_us"]
    return float(median(a / b for a, b in zip(ours, theirs, strict=True)))


def report(results: dict[str, Any], modes: Sequence[str]) -> None:
    names = list(results)
    units = {"workflow": "ms/wf", "unary": "us/call", "stream": "us/item"}
    print(
        "| variant | "
        + " | ".join(units[m] for m in modes)
        + " | "
        + " | ".join(f"{units[m]} vs {names[0]} (paired)" for m in modes)
        + " |"
    )
    print("|---" * (2 * len(modes) + 1) + "|")
    for name in names:
        cells = []
        for mode in modes:
            value = results[name][mode]["median_us"]
            cells.append(f"{value / 1000:.3f}" if mode == "workflow" else f"{value:.1f}")
        ratios = [f"{paired_ratio(results, name, names[0], m):.3f}x" for m in modes]
        print(f"| {name} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    if "unary" in modes and "stream" in modes:
        for name in names:
            unary, item = results[name]["unary"]["median_us"], results[name]["stream"]["median_us"]
            print(f"{name}: 5 unary calls + 3 streamed items = {(5 * unary + 3 * item) / 1000:.3f} ms/wf")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.grpc_floor",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="knobs: " + ", ".join(KNOBS) + ", opt:KEY=VALUE, env:KEY=VALUE",
    )
    parser.add_argument("--variants", default="ours", help="comma-separated variants (default: ours)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument(
        "--n", type=int, default=1000, help="workflows per batch (unary calls: 5x, streamed items: 30x)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32, help="start (or unary) calls in flight")
    parser.add_argument("--workers", type=int, default=16, help="the worker's thread pool")
    parser.add_argument("--request-bytes", type=int, default=200, help="each request's size")
    parser.add_argument("--answer-bytes", type=int, default=100, help="StartInstance's and waits' answer")
    parser.add_argument("--item-bytes", type=int, default=400, help="each work item's size")
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="another interpreter for servers (a venv with another grpcio): variant NAME@ours runs on it",
    )
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--log", default="/dev/null", help="the server and client processes' output")
    parser.add_argument(
        "--role", choices=("coordinator", "server", "client"), default="coordinator", help=argparse.SUPPRESS
    )
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.role == "server":
        import uvloop

        uvloop.run(serve(args.address, parse_variant(args.variant), args.item_bytes, args.answer_bytes))
    elif args.role == "client":
        drive(args.address, args.request_bytes, args.answer_bytes, args.workers)
    else:
        print(f"load average before: {os.getloadavg()[0]:.2f}", file=sys.stderr)
        results = run(args)
        print(f"load average after: {os.getloadavg()[0]:.2f}", file=sys.stderr)
        report(results, args.modes.split(","))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
