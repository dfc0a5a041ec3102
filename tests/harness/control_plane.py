"""Dapr's placement and scheduler, run locally: what daprd's built-in workflow engine needs.

The built-in engine runs workflows as actors, so its daprd needs placement (actor placement), the
scheduler (workflow timers and reminders, with an embedded etcd) and an actor state store
(`actor_state_store_yaml`). Both services run here in standalone mode without mTLS (their default
there) and without metrics, on free loopback ports (their gRPC and healthz ports, placement's raft
port, the embedded etcd's client and peer ports), with a log file each in the work folder.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.harness.engine_process import free_port

_LOOPBACK = "127.0.0.1"


def actor_state_store_yaml(name: str = "statestore") -> str:
    """An in-memory state store that daprd uses for actors (and so for built-in workflows)."""
    return (
        "apiVersion: dapr.io/v1alpha1\n"
        "kind: Component\n"
        "metadata:\n"
        f"  name: {name}\n"
        "spec:\n"
        "  type: state.in-memory\n"
        "  version: v1\n"
        "  metadata:\n"
        "    - name: actorStateStore\n"
        '      value: "true"\n'
    )


class PortTaken(RuntimeError):
    """A port picked as free was taken before the service bound it."""


def _wait_healthy(name: str, healthz_port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the service's healthz answers 200 (the scheduler's only once its etcd runs)."""
    deadline = time.monotonic() + 30.0
    url = f"http://{_LOOPBACK}:{healthz_port}/healthz"
    while True:
        if proc.poll() is not None:
            text = log.read_text(errors="replace")
            cls = PortTaken if "address already in use" in text else RuntimeError
            raise cls(f"{name} exited with {proc.returncode}:\n{text}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} not healthy within 30s:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)


class ControlPlane:
    """placement and scheduler processes; `daprd_args` points a daprd at them."""

    def __init__(self, bin_dir: Path, workdir: Path) -> None:
        self.bin_dir = bin_dir
        self.workdir = workdir
        self.placement_port = free_port()
        self.scheduler_port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def daprd_args(self) -> tuple[str, ...]:
        return (
            "--placement-host-address",
            f"{_LOOPBACK}:{self.placement_port}",
            "--scheduler-host-address",
            f"{_LOOPBACK}:{self.scheduler_port}",
        )

    def _spawn(self, name: str, args: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen([str(self.bin_dir / name), *args], stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc, log

    def start(self, attempts: int = 3) -> ControlPlane:
        """Starts both; a port taken meanwhile (free ports are only free when picked) means a retry."""
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
                return self
            except PortTaken:
                self.stop()
                if attempt == attempts:
                    raise
                self.placement_port = free_port()
                self.scheduler_port = free_port()
            except BaseException:
                self.stop()
                raise
        return self

    def _start_once(self) -> None:
        common = ["--healthz-listen-address", _LOOPBACK, "--log-level", "info", "--enable-metrics=false"]
        placement_healthz = free_port()
        placement, placement_log = self._spawn(
            "placement",
            [
                "--port",
                str(self.placement_port),
                "--listen-address",
                _LOOPBACK,
                "--healthz-port",
                str(placement_healthz),
                # One raft node, in memory.
                "--initial-cluster",
                f"dapr-placement-0={_LOOPBACK}:{free_port()}",
                *common,
            ],
        )
        etcd_dir = self.workdir / "scheduler-etcd"
        shutil.rmtree(etcd_dir, ignore_errors=True)
        etcd_dir.mkdir()
        scheduler_healthz = free_port()
        scheduler, scheduler_log = self._spawn(
            "scheduler",
            [
                "--port",
                str(self.scheduler_port),
                "--listen-address",
                _LOOPBACK,
                "--healthz-port",
                str(scheduler_healthz),
                # Without it the scheduler tells daprd to connect to the host's first address.
                "--override-broadcast-host-port",
                f"{_LOOPBACK}:{self.scheduler_port}",
                # Its embedded etcd: a data folder and two ports of its own.
                "--etcd-data-dir",
                str(etcd_dir),
                "--etcd-client-port",
                str(free_port()),
                "--etcd-initial-cluster",
                f"dapr-scheduler-server-0=http://{_LOOPBACK}:{free_port()}",
                *common,
            ],
        )
        _wait_healthy("placement", placement_healthz, placement, placement_log)
        _wait_healthy("scheduler", scheduler_healthz, scheduler, scheduler_log)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()
