"""The order-processing sample end to end, as the README's quickstart runs it: a real
`dapr-workflows serve`, then the real dapr CLI (`dapr run -f samples/order_processing`) with the
real daprd of `scripts/install-dapr`, then the quickstart's curl and client commands as written.

The sample and `components/` are copied into a folder of their own (so `dapr run` writes its logs
there, not into the repository). The only changes are the ports: the engine listens on free ports
and the worker's daprd on a free port instead of 3500, and the README's commands get those ports
in place of 4180 and 3500. Everything the dapr CLI starts (daprd, the apps) is in one process
group, which is ended at the end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.engine_process import EngineProcess, free_port
from tests.test_readme import load_try_as_new_user, readme_block, readme_text

REPO = Path(__file__).resolve().parents[1]
SAMPLE = Path("samples") / "order_processing"
CLIENT_PREFIX = "== APP - order-client == "
README_DAPRD_PORT = 3500
README_ENGINE_HTTP = "localhost:4180"


@dataclass
class SampleRun:
    root: Path
    engine: EngineProcess
    env: dict[str, str]
    daprd_port: int
    log_path: Path
    proc: subprocess.Popen[bytes]

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client_lines(self) -> list[str]:
        return [
            line[len(CLIENT_PREFIX) :]
            for line in self.output().splitlines()
            if line.startswith(CLIENT_PREFIX)
        ]

    def engine_get(self, instance_id: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(
                f"{self.engine.http_url}/v1.0/workflows/dapr/{instance_id}", timeout=10
            ) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def with_test_ports(self, commands: str) -> str:
        """The README's commands, aimed at this run's daprd and engine."""
        commands = commands.replace(f"localhost:{README_DAPRD_PORT}", f"localhost:{self.daprd_port}")
        return commands.replace(README_ENGINE_HTTP, self.engine.http_address)

    def bash(self, commands: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", commands],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def end_process_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the group (the dapr CLI stops daprd and the apps), then SIGKILL to what is left."""
    for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                proc.wait(timeout=5)
                return
            time.sleep(0.1)
    proc.wait(timeout=10)


def wait_for(run: SampleRun, pattern: str, timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while True:
        match = re.search(pattern, run.output(), re.M)
        if match:
            return match
        if run.proc.poll() is not None:
            pytest.fail(f"dapr run exited with {run.proc.returncode}:\n{run.output()[-6000:]}", pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(
                f"no {pattern!r} within {timeout:g}s:\n{run.output()[-6000:]}\n--- engine ---\n"
                f"{run.engine.log_text()[-3000:]}",
                pytrace=False,
            )
        time.sleep(0.2)


@pytest.fixture(scope="module")
def sample_run(dapr_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampleRun]:
    root = tmp_path_factory.mktemp("sample-run")
    shutil.copytree(REPO / SAMPLE, root / SAMPLE, ignore=shutil.ignore_patterns(".dapr", "__pycache__"))
    shutil.copytree(REPO / "components", root / "components")
    template = root / SAMPLE / "dapr.yaml"
    text = template.read_text()
    assert f"daprHTTPPort: {README_DAPRD_PORT}" in text, "the README's curl examples expect this port"
    daprd_port = free_port()
    template.write_text(text.replace(f"daprHTTPPort: {README_DAPRD_PORT}", f"daprHTTPPort: {daprd_port}"))

    engine = EngineProcess(root)
    engine.start()
    try:
        # As the README's exports, and the engine's own ports and socket folder.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "VIRTUAL_ENV"))}
        env.update(
            DAPR_RUNTIME_PATH=str(dapr_bin.parent),
            PATH=os.pathsep.join(
                [str(dapr_bin), str(Path(sys.executable).parent), os.environ.get("PATH", "")]
            ),
            DAPR_COMPONENTS_SOCKETS_FOLDER=str(engine.socket_folder),
            DAPR_WORKFLOWS_ENGINE_ADDRESS=engine.dapr_address,
        )
        run_line = readme_block("quickstart-run").strip().splitlines()[-1]
        assert run_line == f"dapr run -f {SAMPLE}", run_line
        log_path = root / "dapr-run.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                ["bash", "-c", f"exec {run_line}"],
                cwd=root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        run = SampleRun(root, engine, env, daprd_port, log_path, proc)
        try:
            yield run
        finally:
            end_process_group(proc)
    finally:
        engine.kill()


def client_result(run: SampleRun) -> tuple[str, dict[str, Any]]:
    """Waits for the client to end; returns the instance ID and the result it printed."""
    wait_for(run, r"^\S*\s*(Exited App successfully|The App process exited with error code.*)$", 180)
    lines = run.client_lines()
    started = next((ln for ln in lines if ln.startswith("started OrderProcessingWorkflow ")), None)
    assert started, run.output()[-6000:]
    instance_id = started.split()[2].rstrip(":")
    result = next(ln for ln in lines if ln.startswith("result: "))
    return instance_id, json.loads(result[len("result: ") :])


def test_dapr_run_f_completes_the_order(sample_run: SampleRun) -> None:
    instance_id, result = client_result(sample_run)
    output = sample_run.output()
    assert "Exited App successfully" in output and "exited with error code" not in output, output[-6000:]
    assert f"{instance_id} asked for approval; sent approval_event" in "\n".join(sample_run.client_lines())
    assert f"{instance_id} finished: COMPLETED" in sample_run.client_lines()
    assert result["status"] == "completed"
    assert result["item"] == "Paperclips" and result["total"] == 99.95
    assert result["approved_by"] == "the sample client"
    # The child workflow's payment failed once and the retry policy ran it again.
    assert result["payment"] == {"attempts": 2, "charged": 99.95}
    assert "no answer from the payment service (simulated); retrying" in output

    # The engine's own record of the instance and of its child.
    status, body = sample_run.engine_get(instance_id)
    assert status == 200 and body["runtimeStatus"] == "COMPLETED", body
    assert json.loads(body["properties"]["dapr.workflow.output"]) == result
    status, child = sample_run.engine_get(f"{instance_id}-fulfilment")
    assert status == 200 and child["workflowName"] == "FulfilOrderWorkflow", child
    assert child["runtimeStatus"] == "COMPLETED"


def test_dapr_run_f_prints_what_the_readme_shows_and_no_daprd_error(sample_run: SampleRun) -> None:
    """The README's output block of `dapr run -f`, and daprd without placement and scheduler: no
    error line in its logs; the client's daprd ends with the client, the worker's keeps running."""
    client_result(sample_run)
    newcomer = load_try_as_new_user()
    expected = readme_block_output("quickstart-run").replace(
        f"HTTP Port: {README_DAPRD_PORT}.", f"HTTP Port: {sample_run.daprd_port}."
    )
    assert newcomer.missing_lines(expected, sample_run.output()) == [], sample_run.output()[-6000:]

    def daprds(app_id: str) -> list[int]:
        return [p for p in newcomer.daprd_pids(sample_run.root) if f"--app-id {app_id} " in cmdline(p)]

    deadline = time.monotonic() + 30
    while daprds("order-client") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert daprds("order-client") == [], "the client's daprd outlived the client"
    assert len(daprds("order-worker")) == 1
    logs = sorted((sample_run.root / SAMPLE / ".dapr" / "logs").glob("*_daprd_*.log"))
    assert len(logs) == 2, logs
    errors = [ln for log in logs for ln in log.read_text().splitlines() if "level=error" in ln]
    assert errors == []
    assert "level=error" not in sample_run.output()


def readme_block_output(name: str) -> str:
    match = re.search(rf"^<!-- output: {name} -->\n```\n(.*?)^```", readme_text(), re.M | re.S)
    assert match, name
    return match.group(1)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_readme_curl_through_the_binding_and_the_http_api(sample_run: SampleRun) -> None:
    client_result(sample_run)  # the worker is up and the first order is done
    proc = sample_run.bash(f"set -e\n{sample_run.with_test_ports(readme_block('quickstart-curl'))}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    started, got, raised, shown, purged = proc.stdout.splitlines()
    assert json.loads(started) == {"instanceID": "order-42"}
    assert json.loads(got)["runtimeStatus"] == "RUNNING"
    assert raised == ""
    shown_body = json.loads(shown)
    assert shown_body["runtimeStatus"] == "COMPLETED"
    assert json.loads(shown_body["properties"]["dapr.workflow.output"])["approved_by"] == "curl"
    assert purged == "202"
    status, _ = sample_run.engine_get("order-42")
    assert status == 404, "purged"


def test_readme_http_api_walkthrough(sample_run: SampleRun) -> None:
    client_result(sample_run)
    proc = sample_run.bash(f"set -e\n{sample_run.with_test_ports(readme_block('http-api-curl'))}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "HTTP/1.1 202" in out and "Location: /v1.0/workflows/dapr/12345678" in out, out
    assert re.search(r'"runtimeStatus": ?"SUSPENDED"', out), out
    assert "HTTP/1.1 404" in out, out
    assert re.search(r'"runtimeStatus": ?"TERMINATED"', out), out
    status, body = sample_run.engine_get("87654321")
    assert status == 200 and body["runtimeStatus"] == "TERMINATED"
    assert body["properties"]["dapr.workflow.output"] == '"cancelled"'


def test_readme_client_command_exits_with_the_orders_outcome(sample_run: SampleRun) -> None:
    client_result(sample_run)
    line = readme_block("quickstart-client").strip()
    assert line.startswith("dapr run ") and "client.py" in line
    proc = sample_run.bash(line, timeout=180)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert re.search(r"== APP == result: .*\"status\": \"completed\"", proc.stdout), proc.stdout[-6000:]
    assert '"quantity": 3' in proc.stdout and '"total": 299.85' in proc.stdout
    # The same command turning the order down: the client's exit code 1 is dapr run's.
    proc = sample_run.bash(f"{line} --reject", timeout=180)
    assert proc.returncode == 1, proc.stdout[-6000:]
    assert re.search(r"== APP == result: .*\"status\": \"rejected\"", proc.stdout), proc.stdout[-6000:]
