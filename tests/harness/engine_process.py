"""Runs `dapr-workflows serve` as a real process on free loopback ports."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EngineProcess:
    """One engine with its own SQLite file, or on the store URL given. Restarts keep the store and
    the ports."""

    def __init__(
        self,
        workdir: Path,
        *extra_args: str,
        env: dict[str, str] | None = None,
        store_url: str | None = None,
        log_name: str = "engine.log",
        fd_limit: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.db_path = workdir / "engine.db"
        self.store_url = store_url or f"sqlite:///{self.db_path}"
        self.dapr_address = f"127.0.0.1:{free_port()}"
        self.durabletask_address = f"127.0.0.1:{free_port()}"
        self.http_address = f"127.0.0.1:{free_port()}"
        self.extra_args = list(extra_args)
        self.env = env or {}
        self.log_path = workdir / log_name
        # Unix socket paths are limited to about 100 bytes: pytest's tmp paths can be longer.
        self.socket_folder = Path(tempfile.mkdtemp(prefix="dw-sock-"))
        self.socket_name = "dapr-workflows"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        # The engine's limit of open file descriptors (soft and hard), when a test sets one.
        self.fd_limit = fd_limit

    @property
    def http_url(self) -> str:
        """The base URL of the Workflow HTTP API."""
        return f"http://{self.http_address}"

    def address(self, dialect: str) -> str:
        return self.dapr_address if dialect == "dapr" else self.durabletask_address

    def start(self) -> EngineProcess:
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== start {self.starts} =====\n".encode())
        log.flush()
        args = [
            sys.executable,
            "-m",
            "dapr_workflows_component.cli",
            "serve",
            "--store",
            self.store_url,
            "--engine-address",
            self.dapr_address,
            "--durabletask-address",
            self.durabletask_address,
            "--http-address",
            self.http_address,
            # Each engine serves its own component socket (extra_args may override it).
            "--socket-folder",
            str(self.socket_folder),
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            cwd=self.workdir,
            preexec_fn=self._limit_fds if self.fd_limit else None,
        )
        log.close()
        self._wait_listening()
        return self

    def _limit_fds(self) -> None:
        assert self.fd_limit is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.fd_limit, self.fd_limit))

    def _wait_listening(self, timeout: float = 20.0) -> None:
        """Until the engine logs that every listener (gRPC, HTTP, component socket) is up."""
        deadline = time.monotonic() + timeout
        marker = f"===== start {self.starts} ====="
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"the engine exited with {self.proc.returncode}:\n{self.log_text()}")
            if "dapr-workflows serve: ready" in self.log_text().rpartition(marker)[2]:
                return
            time.sleep(0.05)
        raise RuntimeError(f"the engine was not ready within {timeout}s:\n{self.log_text()}")

    def wait_http(self, timeout: float = 20.0) -> None:
        """The HTTP API listens a moment after the gRPC ports that `start` waits for."""
        host, port = self.http_address.rsplit(":", 1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((host, int(port)), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the HTTP API did not listen within {timeout}s:\n{self.log_text()}"
                    ) from None
                time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, as an orchestrator stops a container; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: the engine gets no chance to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.start()

    @property
    def socket_path(self) -> Path:
        return self.socket_folder / f"{self.socket_name}.sock"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
