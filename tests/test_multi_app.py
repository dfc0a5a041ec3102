"""Multi-app workflows: the apps of `samples/multi_app` (Dapr's SDK, unchanged workflow code) share
one real engine; each app's worker says its app through the SDK extension's `workflow_runtime()`
($APP_ID, as `dapr run` sets it).

Checked: each work item goes only to its app's workers (a decoy worker of another app, with the
same activity registered, connected first, gets nothing); an activity or child whose app has no
worker waits (visible in the engine's log, and as a PENDING child) and runs once one connects;
results come back to the calling instance; the routers are in the history as Dapr records them;
after an engine restart the routing is read back from the history.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.engine_process import EngineProcess
from tests.harness.raw_grpc import RawClient, status_name
from tests.harness.shared import wait_until

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "multi_app"
ORDER = {"item": "paperclips", "quantity": 200}


class Apps:
    """The sample's app processes, each under its app ID."""

    def __init__(self, engine: EngineProcess, logs: Path) -> None:
        self.engine = engine
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, script: str, app_id: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAPR_")}
        env.update(APP_ID=app_id, DAPR_WORKFLOWS_ENGINE_ADDRESS=self.engine.dapr_address)
        with open(self.logs / f"{app_id}.log", "ab") as log:
            self.procs[app_id] = subprocess.Popen(
                [sys.executable, f"{script}.py"], cwd=SAMPLE, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_until(lambda: self.engine.log_text(), lambda text: f"serves app {app_id!r}" in text, timeout=60)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def apps(engine: EngineProcess, tmp_path: Path) -> Iterator[Apps]:
    running = Apps(engine, tmp_path)
    try:
        yield running
    finally:
        running.stop_all()


def start_order(client: RawClient) -> str:
    pb = client.pb
    instance_id = uuid.uuid4().hex
    req = pb.CreateInstanceRequest(
        name="order_workflow", instanceId=instance_id, router=pb.TaskRouter(targetAppID="orchestrator")
    )
    req.input.value = json.dumps(ORDER)
    client.unary("StartInstance", req)
    return instance_id


def events_of(client: RawClient, instance_id: str) -> list[tuple[str, Any]]:
    return [(e.WhichOneof("eventType"), e) for e in client.history(instance_id)]


def routers(client: RawClient, instance_id: str, kind: str) -> list[tuple[str, str]]:
    return [
        (e.router.sourceAppID, e.router.targetAppID)
        for k, e in events_of(client, instance_id)
        if k == kind and e.HasField("router")
    ]


def test_each_app_gets_only_its_work_and_missing_apps_wait(engine: EngineProcess, apps: Apps) -> None:
    # The decoy registers the same activity as `pricing`, under another app, and connects first.
    apps.start("pricing", "decoy")
    apps.start("orchestrator", "orchestrator")
    with RawClient(engine.dapr_address, "dapr") as client:
        instance_id = start_order(client)
        # No `pricing` worker: the quote waits, the decoy does not take it.
        wait_until(
            lambda: routers(client, instance_id, "taskScheduled"),
            lambda found: found == [("orchestrator", "pricing")],
        )
        wait_until(engine.log_text, lambda text: "waits for a worker of app 'pricing'" in text, timeout=10)
        time.sleep(1.0)
        assert status_name(client.pb, client.get(instance_id)) == "RUNNING"
        assert not any(k == "taskCompleted" for k, _ in events_of(client, instance_id))

        apps.start("pricing", "pricing")
        child_id = f"{instance_id}:0002"
        child = wait_until(lambda: client.get(child_id), lambda state: state is not None)
        # The child's app (`shipping`) has no worker yet: it waits, PENDING.
        time.sleep(1.0)
        assert status_name(client.pb, client.get(child_id)) == "PENDING", client.get(child_id)
        assert "waits for a worker of app 'shipping'" in engine.log_text()
        apps.start("shipping", "shipping")

        done = client.wait_done(instance_id, timeout=60)
        assert status_name(client.pb, done) == "COMPLETED", done
        result = json.loads(done.output.value)
        assert result == {
            "order": "paperclips",
            "quote": {"total": 10.0, "priced_by": "pricing"},
            "shipment": {"parcel": "200 x paperclips packed by shipping"},
        }
        del child
        # The routers, as Dapr records them.
        assert routers(client, instance_id, "executionStarted") == [("", "orchestrator")]
        assert routers(client, instance_id, "taskScheduled") == [("orchestrator", "pricing")]
        assert routers(client, instance_id, "childWorkflowInstanceCreated") == [("orchestrator", "shipping")]
        assert routers(client, child_id, "executionStarted") == [("orchestrator", "shipping")]
        # The child's own activity names no app: it ran on the child's app.
        assert routers(client, child_id, "taskScheduled") == [("shipping", "")]


def test_routing_survives_an_engine_restart(engine: EngineProcess, apps: Apps) -> None:
    apps.start("pricing", "decoy")
    apps.start("orchestrator", "orchestrator")
    apps.start("shipping", "shipping")
    with RawClient(engine.dapr_address, "dapr") as client:
        instance_id = start_order(client)
        wait_until(
            lambda: routers(client, instance_id, "taskScheduled"),
            lambda found: found == [("orchestrator", "pricing")],
        )
    # The new engine knows the waiting quote only from the store: the decoy may be offered it
    # first, and must give it back.
    engine.restart()
    for app_id in ("decoy", "orchestrator", "shipping"):
        wait_until(
            engine.log_text,
            lambda text, a=app_id: f"serves app {a!r}" in text.rpartition("===== start")[2],
            timeout=60,
        )
    apps.start("pricing", "pricing")
    with RawClient(engine.dapr_address, "dapr") as client:
        done = client.wait_done(instance_id, timeout=60)
        assert status_name(client.pb, done) == "COMPLETED", done
        assert json.loads(done.output.value)["quote"]["priced_by"] == "pricing"
