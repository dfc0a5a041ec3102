"""A throw-away PostgreSQL server for the tests: Debian's real server in a temporary folder.

`PostgresServer().start()` runs initdb and the server on a free loopback port (127.0.0.1 only; the
Unix socket sits inside the temporary folder), `create_database()` gives each test a fresh database,
and `stop()` shuts the server down and deletes its folder. An atexit hook stops any server a test
run forgot, so none outlives the run. `scripts/install-services` installs the Debian package.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import weakref
from pathlib import Path
from typing import Any

import psycopg

_SUPERUSER = "postgres"
_OS_USER = "postgres"  # the server refuses to run as root


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed, or the server did not start."""


def find_bin_dir() -> Path:
    """The newest installed server's binaries (/usr/lib/postgresql/<version>/bin)."""
    found: list[tuple[int, Path]] = []
    for postgres in glob.glob("/usr/lib/postgresql/*/bin/postgres"):
        version = Path(postgres).parent.parent.name
        if re.fullmatch(r"\d+", version):
            found.append((int(version), Path(postgres).parent))
    if not found:
        raise PostgresUnavailable(
            "PostgreSQL's server is not installed (no /usr/lib/postgresql/<version>/bin/postgres): "
            "run `bash scripts/install-services` (Debian's postgresql package)"
        )
    return max(found)[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    # SIGINT is PostgreSQL's fast shutdown: sessions are ended, nothing waits for clients.
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _cleanup(proc: subprocess.Popen[bytes] | None, folder: str) -> None:
    if proc is not None:
        _stop_process(proc)
    shutil.rmtree(folder, ignore_errors=True)


class PostgresServer:
    def __init__(self, durable: bool = False) -> None:
        # durable: fsync and full-page writes on (a benchmark's server); the commit is still
        # asynchronous, which loses no commit when a client process dies.
        self.durable = durable
        self.bin_dir = find_bin_dir()
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._folder = tempfile.mkdtemp(prefix="dapr-workflows-pg-")
        self._names = itertools.count(1)
        # Stops the server and deletes the folder when stop() is not called: at interpreter exit or
        # when the object is collected, whichever comes first.
        self._finalizer = weakref.finalize(self, _cleanup, None, self._folder)

    @property
    def folder(self) -> Path:
        return Path(self._folder)

    @property
    def log_path(self) -> Path:
        return self.folder / "server.log"

    def _as_server_user(self) -> dict[str, Any]:
        """Popen arguments that run a command as the postgres OS user when the tests run as root."""
        if os.geteuid() != 0:
            return {}
        return {"user": _OS_USER, "group": _OS_USER, "extra_groups": []}

    def start(self, timeout: float = 30.0) -> PostgresServer:
        data = self.folder / "data"
        sockets = self.folder / "sockets"
        sockets.mkdir()
        if os.geteuid() == 0:
            entry = pwd.getpwnam(_OS_USER)
            for path in (self.folder, sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        with open(self.folder / "initdb.log", "wb") as out:
            done = subprocess.run(
                [
                    str(self.bin_dir / "initdb"),
                    "--pgdata",
                    str(data),
                    "--username",
                    _SUPERUSER,
                    # Loopback only, a throw-away server: no passwords.
                    "--auth",
                    "trust",
                    "--encoding",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
                **self._as_server_user(),
            )
        if done.returncode != 0:
            log = (self.folder / "initdb.log").read_text(errors="replace")
            raise PostgresUnavailable(f"initdb failed (exit {done.returncode}):\n{log}")
        for _ in range(5):  # another process may take the free port before the server binds it
            self.port = _free_port()
            if self._launch(timeout):
                return self
        raise PostgresUnavailable(f"PostgreSQL did not start:\n{self._log_tail()}")

    def kill(self) -> None:
        """Stops the server at once (SIGKILL): clients lose their connections, but no data."""
        if self._proc is not None and self._proc.poll() is None:
            # Without synchronous commits, a crash loses the last moments' commits; a checkpoint
            # first writes them out, so a test sees the connection loss alone.
            with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
                conn.execute("CHECKPOINT")
            # The whole session: the postmaster's children would otherwise linger on their sockets.
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
            # A backend forked as the signal went out (a client reconnecting at that moment) is
            # killed too: until every one is gone, the server cannot start again on its data.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    break
                time.sleep(0.02)

    def restart(self, timeout: float = 30.0) -> None:
        """Starts the server again, on the same port with the same data, after `kill`."""
        deadline = time.monotonic() + timeout
        # The killed server's last backends may still be exiting (they hold its shared memory):
        # then the new one refuses to start, and starting again a moment later works.
        while not self._launch(max(1.0, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                raise PostgresUnavailable(f"PostgreSQL did not start again:\n{self._log_tail()}")
            time.sleep(0.2)

    def _launch(self, timeout: float) -> bool:
        data = self.folder / "data"
        sockets = self.folder / "sockets"
        log = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(
                [
                    str(self.bin_dir / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(self.port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={sockets}",
                    # Durability settings only a throw-away TEST server may use: a crashed server
                    # loses its last commits (a crashed machine, anything), and the data is
                    # deleted at the end anyway.
                    "-c",
                    f"fsync={'on' if self.durable else 'off'}",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    f"full_page_writes={'on' if self.durable else 'off'}",
                    "-c",
                    "max_connections=300",
                    # Deadlock tests should not wait the default second for detection.
                    "-c",
                    "deadlock_timeout=100ms",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **self._as_server_user(),
            )
        finally:
            log.close()
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _cleanup, self._proc, self._folder)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        _stop_process(self._proc)
        raise PostgresUnavailable(
            f"PostgreSQL did not accept connections within {timeout:g}s:\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no server log)"

    def url(self, dbname: str) -> str:
        return f"postgresql://{_SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        """Creates an empty database and returns its URL."""
        if self._proc is None or self._proc.poll() is not None:
            raise PostgresUnavailable("the PostgreSQL server is not running")
        name = f"test_{next(self._names)}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        self._finalizer()
