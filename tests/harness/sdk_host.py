"""Drives a real workflow SDK that runs in its own process.

Dapr's SDK and Microsoft's durabletask cannot be imported into one process, so the test process
imports neither: each dialect's worker and client live in a host process (`tests/sdk_apps`) that
answers JSON requests on stdin/stdout, one line each.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


class SdkError(Exception):
    """The SDK call raised; `kind` is the exception's class name, `message` its text."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class SdkHost:
    def __init__(
        self,
        dialect: str,
        address: str,
        log_path: Path,
        worker: bool = True,
        env: dict[str, str] | None = None,
        module: str | None = None,
        host_args: tuple[str, ...] = (),
    ) -> None:
        """`env` is added to the host's environment (e.g. DAPR_API_TOKEN, which Dapr's SDK reads);
        `module` replaces the dialect's host (`tests.sdk_apps.<dialect>_host`), given `host_args`."""
        self.dialect = dialect
        self.address = address
        self.log_path = log_path
        module = module or f"tests.sdk_apps.{dialect}_host"
        args = [sys.executable, "-m", module, "--address", address, *host_args]
        if not worker:
            args.append("--no-worker")
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=REPO,
            env={**os.environ, **(env or {}), "PYTHONPATH": str(REPO)},
        )
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[Any]] = {}
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.call("ping", timeout=60)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg = json.loads(line)
            fut = self._pending.pop(msg["id"], None)
            if fut is None:
                continue
            if "error" in msg:
                fut.set_exception(SdkError(msg["error"]["kind"], msg["error"]["message"]))
            else:
                fut.set_result(msg["result"])
        for fut in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(RuntimeError(f"the {self.dialect} SDK host exited; see {self.log_path}"))

    def submit(self, op: str, **args: Any) -> Future[Any]:
        request_id = next(self._ids)
        fut: Future[Any] = Future()
        self._pending[request_id] = fut
        line = json.dumps({"id": request_id, "op": op, "args": args}) + "\n"
        with self._lock:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line.encode())
            self.proc.stdin.flush()
        return fut

    def call(self, op: str, timeout: float = 60, **args: Any) -> Any:
        return self.submit(op, **args).result(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("shutdown", timeout=20)
            except Exception:
                pass
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()

    def kill(self) -> None:
        """SIGKILL the host: its worker dies with whatever it was running."""
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._log.close()
