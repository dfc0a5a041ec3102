"""What the Dapr SDK worker and client exchange with a backend, per workflow: calls, work items,
history events, bytes, HTTP/2 frames and the server's writes as the client reads them.

`python -m benchmarks.wire_counts --shapes single,chain,fanout --n 100` runs, in this process, the
same `dapr.ext.workflow` worker(s) and client as `benchmarks.dapr_driver`, against our engine
(Dapr's dialect, SQLite) and against daprd's built-in engine (Redis), one after the other. Two
vantage points:

- the SDK's gRPC stub, wrapped: every call and streamed work item, counted with the serialized
  size of its request and response, and every history event of the workflow work items by kind
  (past: what the worker replays, new: what the turn adds);
- a TCP relay between the SDK and the backend that parses the HTTP/2 frames of both directions
  and counts each read of the server's bytes ("s>c reads": roughly one per write of the server,
  each a wakeup of the client's transport), with the frame types each carried ("s>c write ...").

Figures are per workflow of the measured batch (a warm-up batch goes first). The counts do not
depend on load; the CPU per workflow printed beside them does, and includes the relay's.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FRAME_TYPES = {
    0: "DATA",
    1: "HEADERS",
    2: "PRIORITY",
    3: "RST_STREAM",
    4: "SETTINGS",
    5: "PUSH_PROMISE",
    6: "PING",
    7: "GOAWAY",
    8: "WINDOW_UPDATE",
    9: "CONTINUATION",
}
CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ACK = 0x1
END_STREAM = 0x1


class Tally:
    """Counts and bytes by key, shared by threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()
        self._bytes: collections.Counter[str] = collections.Counter()

    def add(self, key: str, size: int = 0) -> None:
        with self._lock:
            self._counts[key] += 1
            self._bytes[key] += size

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
            self._bytes.clear()

    def per(self, n: int) -> dict[str, tuple[float, float]]:
        """{key: (count, bytes)} divided by n."""
        with self._lock:
            return {k: (c / n, self._bytes[k] / n) for k, c in sorted(self._counts.items())}


class FrameReader:
    """HTTP/2 frames of one direction of a connection, fed the bytes as they are read."""

    def __init__(self, direction: str, tally: Tally, client_side: bool) -> None:
        self.direction = direction
        self.tally = tally
        self._skip = len(CLIENT_PREFACE) if client_side else 0
        self._buffer = b""

    def feed(self, data: bytes) -> list[str]:
        """Counts the read and every frame it completes; returns their names."""
        self.tally.add(f"{self.direction} reads", len(data))
        self._buffer += data
        if self._skip:
            cut = min(self._skip, len(self._buffer))
            self._buffer, self._skip = self._buffer[cut:], self._skip - cut
        names: list[str] = []
        while len(self._buffer) >= 9:
            length = int.from_bytes(self._buffer[:3], "big")
            if len(self._buffer) < 9 + length:
                break
            kind, flags = self._buffer[3], self._buffer[4]
            name = FRAME_TYPES.get(kind, f"type {kind}")
            if kind in (4, 6) and flags & ACK:
                name += " ack"
            elif kind == 1 and flags & END_STREAM:
                name = "HEADERS (trailers)"
            self.tally.add(f"{self.direction} {name}", 9 + length)
            names.append(name)
            self._buffer = self._buffer[9 + length :]
        return names


def write_shape(names: list[str]) -> str:
    """What one read carried, e.g. "1 response" or "3 DATA + WINDOW_UPDATE": a unary response is
    HEADERS, DATA, trailers; a streamed work item one DATA frame."""
    text = " ".join(names).replace("HEADERS DATA HEADERS (trailers)", "response")
    counts = collections.Counter(text.split(" ") if text else [])
    parts = [f"{counts[k]} {k}" if counts[k] > 1 else k for k in sorted(counts)]
    return " + ".join(parts) or "partial frame"


class Relay:
    """A TCP relay to `target` on its own thread and loop, counting the HTTP/2 frames it passes."""

    def __init__(self, target: str, tally: Tally) -> None:
        self.host, port = target.rsplit(":", 1)
        self.port = int(port)
        self.tally = tally
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),), daemon=True).start()

    async def _serve(self) -> None:
        server = await asyncio.start_server(self._connection, sock=self._listener)
        await server.serve_forever()

    async def _connection(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(self.host, self.port)
        for writer in (client_w, server_w):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tally.add("connections")
        up = FrameReader("c>s", self.tally, client_side=True)
        down = FrameReader("s>c", self.tally, client_side=False)
        await asyncio.gather(self._pump(client_r, server_w, up), self._pump(server_r, client_w, down))

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frames: FrameReader
    ) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                names = frames.feed(data)
                if frames.direction == "s>c":
                    self.tally.add(f"s>c write: {write_shape(names)}")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


def count_sdk_calls(tally: Tally) -> None:
    """Wraps the stub class of the SDK's vendored Durable Task client so that every call, streamed
    work item and history event is counted with its size."""
    import dapr.ext.workflow._durabletask.internal.orchestrator_service_pb2_grpc as stubs

    real = stubs.TaskHubSidecarServiceStub

    def item(work: Any) -> Any:
        kind = work.WhichOneof("request")
        tally.add(f"item {kind}", work.ByteSize())
        if kind == "workflowRequest":
            turn = work.workflowRequest
            for label, events in (("past", turn.pastEvents), ("new", turn.newEvents)):
                for event in events:
                    tally.add(f"event {label} {event.WhichOneof('eventType')}", event.ByteSize())
        return work

    class Stream:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __iter__(self) -> Stream:
            return self

        def __next__(self) -> Any:
            return item(next(self._inner))

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    class CountingStub:
        def __init__(self, channel: Any) -> None:
            self._stub = real(channel)

        def __getattr__(self, name: str) -> Callable[..., Any]:
            method = getattr(self._stub, name)

            def call(request: Any, *args: Any, **kwargs: Any) -> Any:
                answer = method(request, *args, **kwargs)
                if name == "GetWorkItems":
                    tally.add(f"call {name} (request)", request.ByteSize())
                    return Stream(answer)
                if hasattr(answer, "__await__"):

                    async def awaited() -> Any:
                        response = await answer
                        tally.add(f"call {name} (request)", request.ByteSize())
                        tally.add(f"call {name} (response)", response.ByteSize())
                        return response

                    return awaited()
                tally.add(f"call {name} (request)", request.ByteSize())
                return answer

            return call

    stubs.TaskHubSidecarServiceStub = CountingStub


def measure(address: str, shapes: list[str], n: int, drivers: int, tally: Tally) -> dict[str, Any]:
    from dapr.ext.workflow import WorkflowRuntime

    from .dapr_driver import DaprDriver, WorkCount, _quiet
    from .dapr_shapes import DAPR_SHAPES, register

    relay = Relay(address, tally)
    host, port = relay.address.rsplit(":", 1)
    runtimes = []
    for _ in range(drivers):  # like replicas of one app: each its own stream
        runtime = WorkflowRuntime(host=host, port=port, logger_options=_quiet(logging.ERROR))
        work = WorkCount()
        register(runtime, work.workflow, work.activity)
        runtime.start()  # type: ignore[no-untyped-call]
        runtimes.append(runtime)
    driver = DaprDriver(relay.address, 32, 120.0)
    loop = asyncio.new_event_loop()
    figures: dict[str, Any] = {}
    try:
        loop.run_until_complete(driver.run_batch(DAPR_SHAPES[shapes[0]], 20))
        for shape in shapes:
            time.sleep(1.0)  # the warm-up's or last shape's stragglers out of the figures
            tally.clear()
            batch = loop.run_until_complete(driver.run_batch(DAPR_SHAPES[shape], n))
            time.sleep(1.0)  # the last completions' calls land
            figures[shape] = {"cpu_ms": batch["cpu_seconds"] * 1000 / n, "per_workflow": tally.per(n)}
    finally:
        for runtime in runtimes:
            runtime.shutdown()  # type: ignore[no-untyped-call]
        loop.close()
    return figures


def table(figures: dict[str, dict[str, Any]]) -> str:
    """One row per key and shape, one column pair (count, bytes) per backend."""
    backends = list(figures)
    lines: list[str] = []
    shapes = list(next(iter(figures.values())))
    for shape in shapes:
        cpu = ", ".join(f"{b} {figures[b][shape]['cpu_ms']:.1f}" for b in backends)
        lines.append(f"## {shape} (per workflow; this process's CPU ms: {cpu})")
        lines.append("| | " + " | ".join(f"{b} n | {b} bytes" for b in backends) + " |")
        lines.append("|---|" + "---:|---:|" * len(backends))
        keys = sorted(set().union(*(figures[b][shape]["per_workflow"] for b in backends)))
        for key in keys:
            cells = [figures[b][shape]["per_workflow"].get(key, (0.0, 0.0)) for b in backends]
            lines.append(f"| {key} | " + " | ".join(f"{c:.2f} | {s:.0f}" for c, s in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wire_counts")
    parser.add_argument("--shapes", default="single,chain,fanout")
    parser.add_argument("--n", type=int, default=100, help="workflows per shape and backend")
    parser.add_argument("--drivers", type=int, default=1, help="SDK workers on one backend")
    parser.add_argument("--backends", default="ours,daprd", help="among ours, daprd (Redis)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    from .daprd_backend import DaprdStack, DaprEngineProcess

    tally = Tally()
    count_sdk_calls(tally)
    workdir = Path(tempfile.mkdtemp(prefix="wire-counts-"))
    figures: dict[str, Any] = {}
    for name in args.backends.split(","):
        if name == "ours":
            (workdir / "sqlite").mkdir()
            backend: Any = DaprEngineProcess(workdir / "sqlite", "warning")
        else:
            backend = DaprdStack(workdir, "redis")
        backend.start()
        try:
            figures[name] = measure(backend.address, args.shapes.split(","), args.n, args.drivers, tally)
        finally:
            backend.stop()
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(table(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
