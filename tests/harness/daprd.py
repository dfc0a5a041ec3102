"""Runs a real daprd (built by `scripts/install-dapr`) against an engine's component socket.

daprd discovers the pluggable component only when it starts, so start the engine first. Each
`Daprd` gets a resources folder of its own with component YAMLs made from the templates in
`components/` (`component_yaml`), free ports that it keeps across restarts, and a log file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dapr_workflows_component.pluggable.server import socket_in_use

from tests.harness.engine_process import EngineProcess, free_port

if TYPE_CHECKING:
    from dapr.clients import DaprClient

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = REPO / "components"
TEMPLATE = COMPONENTS / "workflows.yaml"


class DaprInstallError(RuntimeError):
    pass


def install_dapr() -> Path:
    """Runs `scripts/install-dapr` (instant once built) and returns the folder of the binaries."""
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "install-dapr")], capture_output=True, text=True, cwd=REPO
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise DaprInstallError(
            f"scripts/install-dapr failed with exit code {proc.returncode}; daprd is needed for these "
            f"tests and is never faked:\n{proc.stderr.strip()}\n{proc.stdout.strip()}"
        )
    bin_dir = Path(lines[-1])
    if not (bin_dir / "daprd").is_file():
        raise DaprInstallError(f"scripts/install-dapr printed {bin_dir}, which has no daprd")
    return bin_dir


# ------------------------------------------------------------------------------ component YAMLs

_ITEM = re.compile(r"^(\s*)- name:\s*(\S+)\s*$")


def component_yaml(
    name: str = "workflows", metadata: Mapping[str, str | None] | None = None, template: Path = TEMPLATE
) -> str:
    """The template with `metadata.name` set to `name` and its `spec.metadata` changed.

    `metadata` maps keys to values; a key already in the template gets the new value, a new key is
    appended, and None removes the key.
    """
    lines = template.read_text().splitlines()
    top = lines.index("metadata:")
    for i in range(top + 1, len(lines)):
        if lines[i].strip().startswith("name:"):
            lines[i] = f"  name: {name}"
            break
    else:
        raise ValueError(f"{template} has no metadata.name")
    spec = lines.index("spec:")
    block = next(i for i in range(spec, len(lines)) if lines[i].strip() == "metadata:")
    changes = dict(metadata or {})
    out = lines[: block + 1]
    indent = "    "
    i = block + 1
    while i < len(lines):
        match = _ITEM.match(lines[i])
        if match:
            indent = match.group(1)
            key = match.group(2)
            value_line = lines[i + 1]
            if key in changes:
                value = changes.pop(key)
                if value is not None:
                    out += [lines[i], f"{indent}  value: {json.dumps(value)}"]
            else:
                out += [lines[i], value_line]
            i += 2
            continue
        out.append(lines[i])
        i += 1
    for key, value in changes.items():
        if value is not None:
            out += [f"{indent}- name: {key}", f"{indent}  value: {json.dumps(value)}"]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------ daprd


class BindingError(Exception):
    """A binding call daprd answered with an error.

    `component_code` and `reason` are the gRPC status the component gave (`AlreadyExists`, ...) and
    its message, as daprd quotes them (`rpc error: code = X desc = Y`); None when daprd itself
    refused the call. `status` is the HTTP status or the gRPC status name daprd answered with.
    """

    def __init__(self, status: int | str, api_code: str | None, message: str) -> None:
        super().__init__(f"{status} {api_code}: {message}")
        self.status = status
        self.api_code = api_code
        self.message = message
        match = re.search(r"rpc error: code = (\w+) desc = (.*)$", message, re.S)
        self.component_code = match.group(1) if match else None
        self.reason = match.group(2) if match else None


def wait_component_socket(engine: EngineProcess, timeout: float = 20.0) -> None:
    """The engine opens its component socket just after its TCP ports: wait for it."""
    deadline = time.monotonic() + timeout
    while not socket_in_use(engine.socket_path):
        if engine.proc is not None and engine.proc.poll() is not None:
            raise RuntimeError(f"the engine exited with {engine.proc.returncode}:\n{engine.log_text()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no component socket at {engine.socket_path} after {timeout}s")
        time.sleep(0.05)


class Daprd:
    """One daprd process with its own resources folder; restarts keep the ports and the folder."""

    def __init__(
        self,
        bin_dir: Path,
        engine: EngineProcess,
        workdir: Path,
        resources: Mapping[str, str] | None = None,
        app_id: str = "app",
        app_port: int | None = None,
        extra_args: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`env` is added to daprd's environment (e.g. DAPR_API_TOKEN, APP_API_TOKEN)."""
        self.bin_dir = bin_dir
        self.env = dict(env or {})
        self.engine = engine
        self.app_id = app_id
        self.app_port = app_port
        self.extra_args = list(extra_args)
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.metrics_port = free_port()
        self.resources_path = workdir / f"resources-{app_id}"
        self.resources_path.mkdir(parents=True, exist_ok=True)
        for file_name, text in (resources or {"workflows.yaml": component_yaml()}).items():
            (self.resources_path / file_name).write_text(text)
        self.log_path = workdir / f"daprd-{app_id}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # -- process

    def start(self, wait: bool = True, timeout: float = 30.0) -> Daprd:
        wait_component_socket(self.engine)
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start {self.starts} =====\n".encode())
            log.flush()
            args = [
                str(self.bin_dir / "daprd"),
                "--app-id",
                self.app_id,
                "--resources-path",
                str(self.resources_path),
                "--dapr-http-port",
                str(self.http_port),
                "--dapr-grpc-port",
                str(self.grpc_port),
                "--metrics-port",
                str(self.metrics_port),
                "--log-level",
                "info",
                *(["--app-port", str(self.app_port)] if self.app_port else []),
                *self.extra_args,
            ]
            env = {
                **os.environ,
                **self.env,
                "DAPR_COMPONENTS_SOCKETS_FOLDER": str(self.engine.socket_folder),
            }
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until `GET /v1.0/healthz` answers 204."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.http_port}/v1.0/healthz"
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"daprd exited with {self.proc.returncode}:\n{self.boot_log()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 204:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"daprd not healthy within {timeout}s:\n{self.boot_log()}")
            time.sleep(0.05)

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM: daprd shuts down gracefully; returns its exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL: daprd gets no chance to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def boot_log(self) -> str:
        """The log since the latest start."""
        text = self.log_text()
        marker = f"===== start {self.starts} ====="
        return text[text.rfind(marker) :] if marker in text else text

    # -- Dapr's HTTP API

    def http(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
        """A call on daprd's HTTP API; returns the status and the JSON body (None when empty)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        return status, (json.loads(raw) if raw.strip() else None)

    def metadata(self) -> dict[str, Any]:
        status, body = self.http("GET", "/v1.0/metadata")
        assert status == 200, body
        return dict(body)

    def client(self) -> DaprClient:
        """The dapr SDK's gRPC client on this daprd (close it after use)."""
        from unittest import mock

        from dapr.clients import DaprClient

        # The client's constructor waits for the sidecar's HTTP health endpoint, found by port.
        with mock.patch.dict(os.environ, {"DAPR_HTTP_PORT": str(self.http_port)}):
            return DaprClient(address=f"127.0.0.1:{self.grpc_port}")


# ------------------------------------------------------------------------------ binding calls

NO_DATA: Any = object()


class HttpBinding:
    """Calls the output binding through daprd's HTTP API: `POST /v1.0/bindings/<name>`."""

    transport = "http"

    def __init__(self, daprd: Daprd, name: str = "workflows") -> None:
        self.daprd = daprd
        self.name = name

    def call(self, operation: str, data: Any = NO_DATA, metadata: Mapping[str, str] | None = None) -> Any:
        """`data` is a JSON value (daprd sends it to the component JSON-encoded); returns the answer."""
        body: dict[str, Any] = {"operation": operation, "metadata": dict(metadata or {})}
        if data is not NO_DATA:
            body["data"] = data
        status, answer = self.daprd.http("POST", f"/v1.0/bindings/{self.name}", body)
        if status == 200:
            return answer
        answer = answer or {}
        raise BindingError(status, answer.get("errorCode"), str(answer.get("message", answer)))


class GrpcBinding:
    """Calls the output binding with the dapr SDK's `DaprClient.invoke_binding` (daprd's gRPC API)."""

    transport = "grpc"

    def __init__(self, client: DaprClient, name: str = "workflows") -> None:
        self.client = client
        self.name = name

    def call(
        self,
        operation: str,
        data: Any = NO_DATA,
        metadata: Mapping[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Any:
        """`data` is sent JSON-encoded, or `raw` as it is; returns the answer decoded from JSON."""
        import grpc

        payload = raw if raw is not None else b"" if data is NO_DATA else json.dumps(data).encode()
        try:
            resp = self.client.invoke_binding(
                self.name, operation, data=payload, binding_metadata=dict(metadata or {})
            )
        except grpc.RpcError as err:
            raise BindingError(err.code().name, None, str(err.details())) from None
        return json.loads(resp.data) if resp.data else None
