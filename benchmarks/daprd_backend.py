"""daprd's built-in workflow engine as a benchmark backend, and our engine on Dapr's dialect beside it.

`DaprdStack` runs the pinned daprd (`scripts/install-dapr`) with placement and the scheduler
(`tests.harness.control_plane`) and an actor state store: Redis with an append-only file
(`appendonly yes`, `appendfsync everysec`: a killed process loses nothing, a power cut up to a
second), or daprd's in-memory store. Its CPU is that of every process it needs: daprd, scheduler,
placement and Redis. `DaprEngineProcess` is `dapr-workflows serve` listening on Dapr's dialect
(`--engine-address`), so that the same `dapr.ext.workflow` worker and client drive both.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from tests.harness.control_plane import ControlPlane

from .backends import _REPO, EngineProcess, free_port, process_cpu_seconds

STORES = ("redis", "in-memory")


def dapr_bin_dir() -> Path:
    """The folder of the pinned daprd, placement and scheduler (built once, instant afterwards)."""
    proc = subprocess.run(
        ["bash", str(_REPO / "scripts" / "install-dapr")], capture_output=True, text=True, cwd=_REPO
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not (Path(lines[-1]) / "daprd").is_file():
        raise RuntimeError(f"scripts/install-dapr failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return Path(lines[-1])


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process, of its children that were waited for, and of its living children (PostgreSQL
    forks one backend per connection; a backend that exited is counted in its parent's cutime)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    clk = os.sysconf("SC_CLK_TCK")
    total = sum(int(x) for x in fields[11:15]) / clk
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                child = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(child[1]) == pid:
            total += (int(child[11]) + int(child[12])) / clk
    return total


class DaprEngineProcess(EngineProcess):
    """Our engine serving Dapr's dialect only (the Durable Task address of `dapr.ext.workflow`)."""

    def command(self) -> list[str]:
        cmd = super().command()
        i = cmd.index("--durabletask-address")
        cmd[i - 2 : i + 2] = ["--engine-address", self.address, "--durabletask-address", ""]
        return cmd


def _redis_store_yaml(address: str) -> str:
    return (
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n"
        "  type: state.redis\n  version: v1\n  metadata:\n"
        f"    - name: redisHost\n      value: {json.dumps(address)}\n"
        '    - name: redisPassword\n      value: ""\n'
        '    - name: actorStateStore\n      value: "true"\n'
    )


def _memory_store_yaml() -> str:
    return (
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n"
        "  type: state.in-memory\n  version: v1\n  metadata:\n"
        '    - name: actorStateStore\n      value: "true"\n'
    )


class DaprdStack:
    """daprd + placement + scheduler (+ Redis), with the interface of `benchmarks.backends.ServerProcess`."""

    def __init__(self, workdir: Path, store: str) -> None:
        if store not in STORES:
            raise ValueError(f"unknown daprd store {store!r}; choose among {', '.join(STORES)}")
        self.store = store
        self.name = f"daprd ({store})"
        what = "Redis, appendonly yes, appendfsync everysec" if store == "redis" else "in-memory"
        self.workdir = workdir / f"daprd-{store}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bin_dir = dapr_bin_dir()
        version = self.bin_dir.parent.name
        self.description = f"daprd built-in engine ({version}), placement, scheduler, actor store {what}"
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.address = f"127.0.0.1:{self.grpc_port}"
        self.control_plane = ControlPlane(self.bin_dir, self.workdir)
        self.redis: subprocess.Popen[bytes] | None = None
        self.daprd: subprocess.Popen[bytes] | None = None

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log: IO[bytes] = open(self.workdir / f"{name}.log", "ab")
        try:
            return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()

    def _start_redis(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `bash scripts/install-services`")
        port = free_port()
        self.redis = self._spawn(
            "redis",
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--dir",
                str(self.workdir),
                "--daemonize",
                "no",
            ],
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return f"127.0.0.1:{port}"
            except OSError:
                pass
            if self.redis.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start; see {self.workdir / 'redis.log'}")
            time.sleep(0.05)

    def start(self, timeout: float = 60.0) -> None:
        store_yaml = _redis_store_yaml(self._start_redis()) if self.store == "redis" else _memory_store_yaml()
        resources = self.workdir / "resources"
        resources.mkdir(exist_ok=True)
        (resources / "statestore.yaml").write_text(store_yaml)
        self.control_plane.start()
        self.daprd = self._spawn(
            "daprd",
            [
                str(self.bin_dir / "daprd"),
                "--app-id",
                f"bench-{self.store}",
                "--resources-path",
                str(resources),
                "--dapr-grpc-port",
                str(self.grpc_port),
                "--dapr-http-port",
                str(self.http_port),
                "--metrics-port",
                str(free_port()),
                "--log-level",
                "info",
                *self.control_plane.daprd_args,
            ],
        )
        self._wait_actor_runtime(timeout)

    def _wait_actor_runtime(self, timeout: float) -> None:
        """Until daprd reports placement and scheduler connected (its workflow engine needs both)."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.http_port}/v1.0/metadata"
        while True:
            assert self.daprd is not None
            if self.daprd.poll() is not None:
                raise RuntimeError(
                    f"daprd exited with {self.daprd.returncode}; see {self.workdir / 'daprd.log'}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    meta = json.loads(resp.read())
                if meta.get("actorRuntime", {}).get("placement") == "placement: connected" and meta.get(
                    "scheduler", {}
                ).get("connected_addresses"):
                    return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"daprd's actor runtime not ready in {timeout:.0f}s; see {self.workdir}")
            time.sleep(0.1)

    def pids(self) -> dict[str, int]:
        named = {"daprd": self.daprd, "redis": self.redis}
        out = {k: p.pid for k, p in named.items() if p is not None}
        for proc in self.control_plane.procs:
            command = proc.args
            assert isinstance(command, list)  # started with an argument list
            out[Path(str(command[0])).name] = proc.pid
        return out

    def cpu_parts(self) -> dict[str, float]:
        return {name: process_cpu_seconds(pid) for name, pid in self.pids().items()}

    def cpu_seconds(self) -> float:
        return sum(self.cpu_parts().values())

    def stop(self) -> None:
        for proc in (self.daprd, self.redis):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        self.control_plane.stop()
