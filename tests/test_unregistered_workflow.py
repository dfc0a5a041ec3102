"""A start for a workflow name no connected worker registers: the instance is recorded, the worker's
SDK fails it, and the failure says in one sentence which name is missing and which workers are
connected; the worker's stack trace stays in the failure details."""

from __future__ import annotations

import json
import urllib.request

from dapr_workflows_component.workflows import unregistered_workflow_message

from tests.harness.engine_process import EngineProcess
from tests.harness.sdk_host import SdkHost
from tests.harness.shared import start, unique, wait_done

SDK_NAMES = {"dapr": "Dapr SDK", "durabletask": "durabletask SDK"}


def test_the_failure_names_the_missing_workflow_and_the_connected_workers(
    engine: EngineProcess, sdk: SdkHost, dialect: str
) -> None:
    instance_id = start(sdk, "NoSuchWorkflow", {"n": 1}, unique("unregistered"))
    state = wait_done(sdk, instance_id)
    assert state["status"] == "FAILED", state
    sentence = (
        f"no workflow named 'NoSuchWorkflow' is registered in the worker that was offered it (1 "
        f"{SDK_NAMES[dialect]} worker is connected to this engine; workers do not tell the engine "
        "the names they register, so each should register every workflow)"
    )
    # What the SDK's client shows ...
    assert state["failure"]["message"] == sentence
    assert state["failure"]["type"].endswith("OrchestratorNotRegisteredError")
    # ... and the HTTP API, with the worker's stack trace apart from the message.
    with urllib.request.urlopen(f"{engine.http_url}/v1.0/workflows/dapr/{instance_id}", timeout=10) as r:
        properties = json.loads(r.read())["properties"]
    assert properties["dapr.workflow.failure.error_message"] == sentence
    assert "File " in properties["dapr.workflow.failure.stack_trace"]
    assert "File " not in sentence and "\n" not in sentence
    assert sentence in engine.log_text()


def test_other_failures_keep_the_workers_message() -> None:
    assert unregistered_workflow_message("TaskFailedError", "order", ["dapr"]) is None


def test_the_sentence_counts_the_workers_of_each_sdk() -> None:
    message = unregistered_workflow_message(
        "durabletask.worker.OrchestratorNotRegisteredError", "order", ["dapr", "durabletask", "dapr"]
    )
    assert message is not None
    assert "(2 Dapr SDK workers and 1 durabletask SDK worker are connected to this engine;" in message
    none = unregistered_workflow_message("OrchestratorNotRegisteredError", "order", [])
    assert none is not None and "(no worker is connected to this engine;" in none
