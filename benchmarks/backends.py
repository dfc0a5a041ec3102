"""The processes of a run: servers (our engine, the in-memory backend alone) and driver processes.

A server listens on a Durable Task address. A driver process (`benchmarks.driver`) holds one worker and
one client, and for the in-process reference the in-memory backend too; the coordinator sends it batches.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_REPO = Path(__file__).resolve().parent.parent  # where `python -m benchmarks.reference_server` imports


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


class ServerProcess:
    """A server in a child process, listening on `address` once `start` returns."""

    name = ""
    description = ""

    def __init__(self, log_path: Path, cwd: Path) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self, timeout: float = 30.0) -> None:
        log: IO[bytes] = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd, env=self.environment()
            )
        finally:
            log.close()
        host, port = self.address.rsplit(":", 1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with socket.create_connection((host, int(port)), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen on {self.address} within {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return process_cpu_seconds(self.proc.pid)


class EngineProcess(ServerProcess):
    """`dapr-workflows serve` with a durable SQLite file (WAL, synchronous=NORMAL: the default), or on
    the PostgreSQL database `store_url`."""

    name = "dapr-workflows"

    def __init__(
        self, workdir: Path, log_level: str = "info", store_options: str = "", store_url: str = ""
    ) -> None:
        super().__init__(workdir / "engine.log", cwd=workdir)
        self.db_path = workdir / "engine.db"
        self.log_level = log_level
        self.store_options = store_options
        self.store_url = store_url
        sync = "sync=full" if "sync=full" in store_options else "sync=normal"
        store = "PostgreSQL" if store_url else f"SQLite file ({sync})"
        self.description = f"engine process, {store}, log level {log_level}"

    def environment(self) -> dict[str, str]:
        # The pluggable-component socket goes to the run's own directory, not the folder that daprd and
        # other engines on this machine share (an engine without that option ignores the variable).
        return {**os.environ, "DAPR_WORKFLOWS_SOCKET_FOLDER": str(self.db_path.parent)}

    def command(self) -> list[str]:
        store = self.store_url or (
            f"sqlite:///{self.db_path}" + (f"?{self.store_options}" if self.store_options else "")
        )
        return [
            sys.executable,
            "-m",
            "dapr_workflows_component.cli",
            "serve",
            "--store",
            store,
            "--engine-address",
            "",
            "--durabletask-address",
            self.address,
            "--http-address",
            "",
            "--log-level",
            self.log_level,
        ]


class ReferenceProcess(ServerProcess):
    """durabletask's in-memory backend alone in a child process (`python -m benchmarks.reference_server`)."""

    name = "in-memory (own process)"
    description = "durabletask.testing in-memory backend in its own process"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir / "reference.log", cwd=_REPO)

    def command(self) -> list[str]:
        port = self.address.rsplit(":", 1)[1]
        return [sys.executable, "-m", "benchmarks.reference_server", "--port", port]


class DriverProcess:
    """`python -m benchmarks.driver ARGS`: one worker and one client (maybe with the backend) in a process."""

    def __init__(self, args: list[str], log_path: Path, module: str = "benchmarks.driver") -> None:
        self.args = args
        self.log_path = log_path
        self.module = module  # benchmarks.dapr_driver for Dapr's dialect
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> str:
        """Starts the process; returns the address its worker and client use."""
        log: IO[bytes] = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=_REPO,
                text=True,
            )
        finally:
            log.close()
        return str(self._read()["ready"])

    def batch(self, shape: str, n: int, **options: Any) -> dict[str, Any]:
        self.send({"shape": shape, "n": n, **options})
        return self._read()

    def send(self, request: dict[str, Any]) -> None:
        """One request, its answer read later (`receive`): so that several drivers work at once."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict[str, Any]:
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait(timeout=30)
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"driver process {' '.join(self.args)} exited with {code}:\n{tail}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # end of input: the driver stops its worker (and backend) and exits
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:  # in the middle of a batch (interrupted run)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
