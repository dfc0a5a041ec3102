"""A start of `dapr-workflows serve` that cannot listen: one line that says why, and nothing left
behind. The engines are real processes; "another serve" is a real second engine."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from dapr_workflows_component.pluggable.server import socket_in_use

from tests.harness.engine_process import EngineProcess, free_port


def serve(cwd: Path, *args: str, socket_folder: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`dapr-workflows serve` in `cwd` with the default store (a file there); free ports and its own
    socket folder unless `args` say otherwise. Returns once it has exited (a start that fails)."""
    cwd.mkdir(parents=True, exist_ok=True)
    folder = socket_folder or Path(tempfile.mkdtemp(prefix="dw-sock-"))
    command = [
        sys.executable,
        "-m",
        "dapr_workflows_component.cli",
        "serve",
        "--engine-address",
        f"127.0.0.1:{free_port()}",
        "--durabletask-address",
        f"127.0.0.1:{free_port()}",
        "--http-address",
        f"127.0.0.1:{free_port()}",
        "--socket-folder",
        str(folder),
        *args,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAPR_WORKFLOWS_")}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def http_status(engine: EngineProcess, path: str) -> int:
    engine.wait_http()
    try:
        with urllib.request.urlopen(f"{engine.http_url}{path}", timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_a_second_serve_on_the_same_addresses_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "first").mkdir()
    first = EngineProcess(tmp_path / "first").start()
    try:
        second = tmp_path / "second"
        done = serve(
            second,
            "--engine-address",
            first.dapr_address,
            "--durabletask-address",
            first.durabletask_address,
            "--http-address",
            first.http_address,
        )
        assert done.returncode != 0
        lines = done.stderr.strip().splitlines()
        assert lines == [
            f"dapr-workflows: cannot listen on {first.dapr_address}, {first.durabletask_address} and "
            f"{first.http_address}: they are already in use (another dapr-workflows serve?); choose "
            "other addresses with --engine-address, --durabletask-address and --http-address"
        ], done.stderr
        assert "add_port" not in done.stderr and done.stdout == ""
        # Nothing was created: no store file.
        assert sorted(os.listdir(second)) == []
        # The first engine goes on.
        assert http_status(first, "/v1.0/workflows/dapr/nobody") == 404
    finally:
        first.kill()


def test_one_busy_address_names_its_flag_and_who_else_may_hold_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        done = serve(tmp_path, "--durabletask-address", address)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"dapr-workflows: cannot listen on {address}: it is already in use (another dapr-workflows "
        "serve, or a durabletask sidecar?); choose another address with --durabletask-address"
    ], done.stderr
    assert os.listdir(tmp_path) == []


def test_an_address_of_another_machine_is_one_line_too(tmp_path: Path) -> None:
    # 192.0.2.0/24 is reserved for documentation: no interface of this machine has it.
    done = serve(tmp_path, "--http-address", "192.0.2.1:4180")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "dapr-workflows: cannot listen on 192.0.2.1:4180 (--http-address): Cannot assign requested address"
    ], done.stderr
    assert os.listdir(tmp_path) == []


def test_a_start_that_fails_after_creating_its_store_removes_it(tmp_path: Path) -> None:
    """The component socket is taken by another engine: the store this start created goes again."""
    (tmp_path / "first").mkdir()
    first = EngineProcess(tmp_path / "first").start()
    try:
        second = tmp_path / "second"
        done = serve(second, socket_folder=first.socket_folder)
        assert done.returncode != 0
        assert done.stderr.strip().splitlines()[-1] == (
            f"dapr-workflows: cannot serve the component socket: another process is serving the "
            f"component socket {first.socket_path}; stop it or choose another --socket-name"
        ), done.stderr
        assert "store: SQLite" in done.stderr, "the store was opened before the socket failed"
        assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
        assert sorted(os.listdir(second)) == [], "the new store, its -wal and -shm are removed"
        # The other engine's socket is left alone and still served.
        assert socket_in_use(first.socket_path)
        assert http_status(first, "/v1.0/workflows/dapr/nobody") == 404
    finally:
        first.kill()


def test_a_failed_start_keeps_a_store_that_existed_before(tmp_path: Path) -> None:
    (tmp_path / "owner").mkdir()
    owner = EngineProcess(tmp_path / "owner", "--http-start-timeout-seconds", "0").start()
    request = urllib.request.Request(
        f"{owner.http_url}/v1.0/workflows/dapr/kept/start?instanceID=kept-1", data=b'{"n": 1}', method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.loads(answer.read()) == {"instanceID": "kept-1"}
    assert owner.stop() == 0
    db = owner.db_path
    assert db.exists()

    (tmp_path / "holder").mkdir()
    holder = EngineProcess(tmp_path / "holder").start()
    try:
        # The same store, a socket that is taken: the start opens the store, then fails.
        done = serve(tmp_path / "elsewhere", "--store", f"sqlite:///{db}", socket_folder=holder.socket_folder)
    finally:
        holder.kill()
    assert done.returncode != 0 and "cannot serve the component socket" in done.stderr, done.stderr
    assert f"store: SQLite {db}" in done.stderr
    assert db.exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT instance_id FROM instances").fetchall() == [("kept-1",)]


def test_a_second_serve_on_a_store_in_use_leaves_its_files_alone(tmp_path: Path) -> None:
    (tmp_path / "first").mkdir()
    first = EngineProcess(tmp_path / "first").start()
    try:
        files = {p.name for p in first.workdir.iterdir() if p.name.startswith("engine.db")}
        assert {"engine.db", "engine.db-wal", "engine.db-shm"} <= files
        done = serve(tmp_path / "second", "--store", first.store_url)
        assert done.returncode != 0
        assert "already uses the SQLite store" in done.stderr, done.stderr
        assert {p.name for p in first.workdir.iterdir() if p.name.startswith("engine.db")} == files
        assert http_status(first, "/v1.0/workflows/dapr/nobody") == 404
    finally:
        first.kill()
