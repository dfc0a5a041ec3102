"""A throw-away Redis server for the tests: Debian's real `redis-server` on a free loopback port.

`RedisServer().start()` runs it in a temporary folder with nothing persisted (no RDB snapshots, no
append-only file), `command(...)` sends one command with a minimal RESP client (enough to read
streams back: XRANGE, XPENDING), and `stop()` ends the server and deletes the folder. An atexit
hook stops a server a test run forgot. `scripts/install-services` installs the Debian package.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

from tests.harness.engine_process import free_port


class RedisUnavailable(RuntimeError):
    """redis-server is not installed, or it did not start."""


class RedisError(Exception):
    """The server answered a command with an error."""


def _stop(proc: subprocess.Popen[bytes] | None, folder: str) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    shutil.rmtree(folder, ignore_errors=True)


class RedisServer:
    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisUnavailable(
                "redis-server is not installed: run `bash scripts/install-services` (Debian's "
                "redis-server package); the pub/sub tests need a real Redis"
            )
        self.binary = binary
        self.port = free_port()
        self._folder = tempfile.mkdtemp(prefix="dapr-workflows-redis-")
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer = weakref.finalize(self, _stop, None, self._folder)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return Path(self._folder) / "redis.log"

    def start(self, timeout: float = 20.0) -> RedisServer:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._folder,
            "--logfile",
            str(self.log_path),
            "--daemonize",
            "no",
        ]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _stop, self._proc, self._folder)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RedisUnavailable(f"redis-server exited with {self._proc.returncode}:\n{self.log()}")
            try:
                if self.command("PING") == "PONG":
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RedisUnavailable(f"redis-server did not answer within {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        self._finalizer()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def command(self, *args: str | int) -> Any:
        """One command; the answer decoded (bulk strings as str, arrays as lists)."""
        parts = [str(a).encode() for a in args]
        request = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(request)
            reader = sock.makefile("rb")
            return _read(reader)


def _read(reader: Any) -> Any:
    line: bytes = reader.readline()
    if not line.endswith(b"\r\n"):
        raise OSError("the connection to redis-server closed mid-answer")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data: bytes = reader.read(size + 2)
        return data[:-2].decode(errors="replace")
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_read(reader) for _ in range(count)]
    raise OSError(f"unexpected answer from redis-server: {line!r}")
