"""The `dapr-workflows` client commands against a running engine with a real Dapr-SDK worker: the
commands a user types, run as the installed `dapr-workflows` program."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from tests.harness.engine_process import EngineProcess, free_port
from tests.harness.sdk_host import SdkHost
from tests.harness.shared import unique, wait_until

PROGRAM = shutil.which("dapr-workflows", path=str(Path(sys.executable).parent)) or "dapr-workflows"


class Cli:
    def __init__(self, address: str) -> None:
        self.env = {**os.environ, "DAPR_WORKFLOWS_ADDRESS": address}

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PROGRAM, *args], capture_output=True, text=True, timeout=60, env={**self.env, **(env or {})}
        )

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args))

    def status(self, instance_id: str) -> str | None:
        for listed in self.json("list", "-o", "json"):
            if listed["instanceID"] == instance_id:
                return str(listed["runtimeStatus"])
        return None

    def wait_status(self, instance_id: str, status: str) -> None:
        wait_until(lambda: self.status(instance_id), lambda s: s == status, timeout=30, interval=0.2)

    def fails(self, *args: str, env: dict[str, str] | None = None) -> str:
        """Runs a command that must fail; returns its one line of error."""
        done = self.run(*args, env=env)
        assert done.returncode != 0, (args, done.stdout)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stdout == ""
        return lines[0]


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    engine = EngineProcess(tmp_path).start()
    try:
        engine.wait_http()
        worker = SdkHost("dapr", engine.dapr_address, tmp_path / "dapr-host.log")
        try:
            yield Cli(engine.http_url)
        finally:
            worker.close()
    finally:
        engine.kill()


def test_the_operating_sequence(cli: Cli) -> None:
    done = [unique("done"), unique("done")]
    for instance_id in done:
        assert instance_id in cli.ok("run", "chain", "--input", '{"n": 2}', "--instance-id", instance_id)
    waiting = unique("waiting")
    cli.ok("run", "wait_events", "-x", '{"names": ["go"]}', "-i", waiting)
    doomed = unique("doomed")
    cli.ok("run", "wait_events", "-x", '{"names": ["never"]}', "-i", doomed)
    for instance_id in done:
        cli.wait_status(instance_id, "COMPLETED")

    # list -o json lists the instances; its filters narrow them.
    listed = cli.json("list", "-o", "json")
    assert {i["instanceID"] for i in listed} == {*done, waiting, doomed}
    first = next(i for i in listed if i["instanceID"] == done[0])
    assert first["name"] == "chain" and first["output"] == "2" and first["created"].endswith("Z")
    assert {i["instanceID"] for i in cli.json("list", "-s", "COMPLETED", "-o", "json")} == set(done)
    assert {i["instanceID"] for i in cli.json("list", "--filter-name", "wait_events", "-o", "json")} == {
        waiting,
        doomed,
    }
    assert len(cli.json("list", "-m", "1h", "-o", "json")) == 4
    assert set(cli.ok("list", "-o", "ids").split()) == {*done, waiting, doomed}
    assert cli.json("list", "-m", "2000-01-01", "-s", "FAILED", "-o", "json") == []
    table = cli.ok("list").splitlines()
    assert table[0].split() == ["NAME", "ID", "STATUS", "CUSTOM", "STATUS", "AGE"]
    assert any(done[0] in row and "COMPLETED" in row and row.rstrip()[-1] == "s" for row in table[1:])
    assert "INSTANCE ID" in cli.ok("list", "-o", "wide")
    assert "instanceID: " in cli.ok("list", "-o", "yaml")

    # history ID -o json gives the events.
    events = cli.json("history", done[0], "-o", "json")
    assert [e["name"] for e in events if e["type"] == "taskScheduled"] == ["add_one", "add_one"]
    assert events[-1]["type"] == "executionCompleted"
    assert "taskCompleted" in cli.ok("history", done[0])

    # raise-event ID/EVENT --input, suspend, resume, terminate.
    cli.ok("suspend", waiting)
    cli.wait_status(waiting, "SUSPENDED")
    cli.ok("resume", waiting)
    cli.ok("raise-event", f"{waiting}/go", "--input", '"yes"')
    cli.wait_status(waiting, "COMPLETED")
    assert (
        next(i for i in cli.json("list", "-o", "json") if i["instanceID"] == waiting)["output"] == '["yes"]'
    )
    cli.ok("terminate", doomed, "--output", '"stopped"')
    cli.wait_status(doomed, "TERMINATED")

    # rerun ID --event-id --new-instance-id --input
    second = [e for e in events if e["type"] == "taskScheduled"][1]["eventID"]
    again = unique("again")
    cli.ok("rerun", done[0], "-e", str(second), "--new-instance-id", again, "-x", "10")
    cli.wait_status(again, "COMPLETED")
    assert next(i for i in cli.json("list", "-o", "json") if i["instanceID"] == again)["output"] == "11"

    # purge --all-older-than 0s --all-filter-status COMPLETED takes the completed ones only.
    out = cli.ok("purge", "--all-older-than", "0s", "--all-filter-status", "COMPLETED")
    assert "Purged 4 workflow instances" in out
    assert {i["instanceID"] for i in cli.json("list", "-o", "json")} == {doomed}
    cli.ok("purge", doomed)
    assert cli.json("list", "-o", "json") == []


def test_errors_are_one_sentence_and_a_failing_exit(cli: Cli) -> None:
    assert "no workflow instance with ID 'nope'" in cli.fails("history", "nope")
    assert "no workflow instance with ID 'nope'" in cli.fails("terminate", "nope")
    assert "no workflow instance with ID 'nope'" in cli.fails("raise-event", "nope/go")
    assert "unknown runtime status 'SLEEPING'" in cli.fails("list", "-s", "SLEEPING")
    assert "--filter-max-age" in cli.fails("list", "-m", "a while")
    assert "INSTANCE_ID/EVENT_NAME" in cli.fails("raise-event", "just-an-id")
    assert "--input must be JSON" in cli.fails("run", "chain", "--input", "{oops")
    assert "--all-filter-status needs --all-older-than" in cli.fails("purge", "--all-filter-status", "FAILED")
    running = unique("running")
    cli.ok("run", "wait_events", "-x", '{"names": ["never"]}', "-i", running)
    assert "only completed, failed, terminated or canceled" in cli.fails("purge", running)
    down = f"http://127.0.0.1:{free_port()}"
    assert f"cannot reach the engine at {down}" in cli.fails("list", "--address", down)
    assert "cannot reach the engine" in cli.fails("history", "x", env={"DAPR_WORKFLOWS_ADDRESS": down})


def test_version_and_help() -> None:
    for flag in ("--version", "-V"):
        done = subprocess.run([PROGRAM, flag], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and done.stdout.strip() == f"dapr-workflows {version('dapr-workflows')}"
    usage = subprocess.run([PROGRAM, "--help"], capture_output=True, text=True, timeout=30).stdout
    for command in (
        "serve",
        "list",
        "history",
        "run",
        "raise-event",
        "suspend",
        "resume",
        "terminate",
        "rerun",
    ):
        assert any(line.split()[:1] == [command] for line in usage.splitlines()), command
    purge = subprocess.run([PROGRAM, "purge", "--help"], capture_output=True, text=True, timeout=30).stdout
    assert "examples:" in purge and "--all-older-than 0s --all-filter-status COMPLETED" in purge


def test_an_address_that_is_no_engine_is_one_sentence(tmp_path: Path) -> None:
    # A web server that is not the engine answers 200 with a page, not JSON.
    (tmp_path / "v1.0" / "workflows").mkdir(parents=True)
    (tmp_path / "v1.0" / "workflows" / "dapr").write_text("<html>not an engine</html>")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        other = Cli(f"http://127.0.0.1:{port}")
        wait_until(lambda: other.run("list").stderr, lambda e: "cannot reach" not in e, timeout=30)
        assert "did not answer with JSON" in other.fails("list")
    finally:
        server.kill()
        server.wait()
    assert "--address" in Cli("http://[::1").fails("list")
