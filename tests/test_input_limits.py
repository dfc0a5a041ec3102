"""Bounded input: names, instance IDs, tags and JSON nesting are limited on every surface.

One engine serves the module: both Durable Task dialects, the HTTP API, the output binding and the
Workflow service on its socket, and two trigger routes (posted to as daprd would). Each refusal is
INVALID_ARGUMENT / 400 naming the limit; none is a 5xx or shows an exception's text, nothing is
recorded, and the engine's log has no traceback at the end.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import yaml
from dapr_workflows_component.protos import dapr_components_pb2 as cpb
from dapr_workflows_component.protos import dapr_components_pb2_grpc as cgrpc
from dapr_workflows_component.protos import dapr_components_workflow_pb2 as wpb
from dapr_workflows_component.protos import dapr_components_workflow_pb2_grpc as wgrpc
from dapr_workflows_component.workflows import (
    MAX_ANY_INSTANCE_ID_LENGTH,
    MAX_JSON_DEPTH,
    MAX_NAME_LENGTH,
    MAX_TAG_KEY_LENGTH,
    MAX_TAGS,
)

from tests.harness.engine_process import EngineProcess
from tests.harness.raw_grpc import RawClient, status_name
from tests.harness.sdk_host import SdkHost
from tests.harness.shared import unique

MEGABYTE = 1024 * 1024
HUGE_NAME = "n" * MEGABYTE
NESTED = "[" * 100_000  # the probe of the issue: 100,000 nested `[`
DEPTH_MESSAGE = f"more than {MAX_JSON_DEPTH} levels deep; the limit is {MAX_JSON_DEPTH}"
TRIGGERS = {
    "triggers": [
        {"name": "orders", "pubsub": "queue", "topic": "orders", "workflow": "echo_input"},
        {"name": "jobs", "binding": "jobs", "workflow": "echo_input"},
    ]
}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    workdir = tmp_path_factory.mktemp("input-limits")
    triggers = workdir / "triggers.yaml"
    triggers.write_text(yaml.safe_dump(TRIGGERS))
    proc = EngineProcess(workdir, "--triggers", str(triggers)).start()
    proc.wait_http()
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def worker(engine: EngineProcess) -> Iterator[SdkHost]:
    host = SdkHost("dapr", engine.dapr_address, engine.workdir / "dapr-host.log")
    yield host
    host.close()


@pytest.fixture
def raw(engine: EngineProcess, dialect: str) -> Iterator[RawClient]:
    with RawClient(engine.address(dialect), dialect) as client:
        yield client


@pytest.fixture
def socket_channel(engine: EngineProcess) -> Iterator[grpc.Channel]:
    channel = grpc.insecure_channel(
        f"unix://{engine.socket_path}", options=[("grpc.max_send_message_length", -1)]
    )
    yield channel
    channel.close()


def http(method: str, url: str, body: bytes = b"") -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body or None, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, json.loads(raw) if raw else None


def assert_invalid(err: grpc.RpcError, *fragments: str) -> None:
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    for fragment in fragments:
        assert fragment in (err.details() or ""), (fragment, err.details())


def assert_clean_log(engine: EngineProcess) -> None:
    assert engine.proc is not None and engine.proc.poll() is None, "the engine died"
    log = engine.log_text()
    assert "Traceback" not in log and "failed inside the engine" not in log, log[-3000:]


# ---------------------------------------------------------------------------------- gRPC, both dialects


def test_grpc_refuses_huge_names_ids_and_tags_naming_the_limit(engine: EngineProcess, raw: RawClient) -> None:
    iid = unique("limits")
    req = raw.pb.CreateInstanceRequest(name=HUGE_NAME, instanceId=iid)
    err = raw.error("StartInstance", req, timeout=30)
    assert_invalid(err, f"the workflow name is {MEGABYTE} characters long; the limit is {MAX_NAME_LENGTH}")

    req = raw.pb.CreateInstanceRequest(name="echo_input", instanceId=iid)
    for n in range(200_000):
        req.tags[f"t{n}"] = "v"
    assert_invalid(
        raw.error("StartInstance", req, timeout=30), f"200000 tags are given; the limit is {MAX_TAGS}"
    )

    req = raw.pb.CreateInstanceRequest(name="echo_input", instanceId=iid)
    req.tags["k" * (MAX_TAG_KEY_LENGTH + 1)] = "v"
    assert_invalid(raw.error("StartInstance", req), f"the limit is {MAX_TAG_KEY_LENGTH}")

    req = raw.pb.CreateInstanceRequest(name="echo_input", instanceId=iid)
    req.input.value = NESTED
    assert_invalid(raw.error("StartInstance", req), "the workflow input nests JSON", DEPTH_MESSAGE)
    assert raw.get(iid) is None, "a refused start left an instance behind"

    huge_id = "i" * MEGABYTE
    err = raw.error("GetInstance", raw.pb.GetInstanceRequest(instanceId=huge_id), timeout=30)
    assert_invalid(err, f"the limit is {MAX_ANY_INSTANCE_ID_LENGTH}")
    err = raw.error("TerminateInstance", raw.pb.TerminateRequest(instanceId=huge_id), timeout=30)
    assert_invalid(err, f"the limit is {MAX_ANY_INSTANCE_ID_LENGTH}")
    assert_clean_log(engine)


def test_grpc_refuses_a_huge_event_name_and_nested_event_data(
    engine: EngineProcess, worker: SdkHost, raw: RawClient
) -> None:
    iid = raw.start("sleepy", unique("event-limits"), json.dumps({"seconds": 30}))
    err = raw.error("RaiseEvent", raw.pb.RaiseEventRequest(instanceId=iid, name=HUGE_NAME), timeout=30)
    assert_invalid(err, f"the event name is {MEGABYTE} characters long; the limit is {MAX_NAME_LENGTH}")
    req = raw.pb.RaiseEventRequest(instanceId=iid, name="go")
    req.input.value = NESTED
    assert_invalid(raw.error("RaiseEvent", req), DEPTH_MESSAGE)
    req = raw.pb.TerminateRequest(instanceId=iid)
    req.output.value = NESTED
    assert_invalid(raw.error("TerminateInstance", req), DEPTH_MESSAGE)
    # No refused event reached the instance.
    kinds = [e.WhichOneof("eventType") for e in raw.history(iid)]
    assert "eventRaised" not in kinds, kinds
    assert_clean_log(engine)


def test_json_at_the_depth_limit_and_names_at_the_length_limit_are_accepted(
    engine: EngineProcess, worker: SdkHost
) -> None:
    with RawClient(engine.dapr_address, "dapr") as raw:
        iid = raw.start("echo_input", unique("at-limit"), nested(MAX_JSON_DEPTH))
        state = raw.wait_done(iid, timeout=30)
        assert status_name(raw.pb, state) == "COMPLETED"
        assert json.loads(state.output.value)["input"] == json.loads(nested(MAX_JSON_DEPTH))
        req = raw.pb.CreateInstanceRequest(name="n" * MAX_NAME_LENGTH, instanceId=unique("long-name"))
        for n in range(MAX_TAGS):
            req.tags[f"t{n}"] = "v"
        raw.unary("StartInstance", req)


# ---------------------------------------------------------------------------------- HTTP API


def test_http_nested_json_is_400_not_500(engine: EngineProcess, worker: SdkHost) -> None:
    base = f"{engine.http_url}/v1.0/workflows/dapr"
    iid = unique("http-nested")
    status, body = http("POST", f"{base}/echo_input/start?instanceID={iid}", NESTED.encode())
    assert status == 400, (status, body)
    assert body["errorCode"] == "ERR_INVALID_REQUEST" and DEPTH_MESSAGE in body["message"], body
    assert http("GET", f"{base}/{iid}")[0] == 404

    status, body = http("POST", f"{base}/sleepy/start?instanceID={iid}", b'{"seconds": 30}')
    assert status == 202, body
    for route in ("raiseEvent/go", "terminate"):
        status, body = http("POST", f"{base}/{iid}/{route}", NESTED.encode())
        assert status == 400 and DEPTH_MESSAGE in body["message"], (route, status, body)
    status, body = http("POST", f"{base}/{iid}/raiseEvent/{'e' * (MAX_NAME_LENGTH + 1)}", b"1")
    assert status == 400 and f"the limit is {MAX_NAME_LENGTH}" in body["message"], (status, body)
    assert_clean_log(engine)


# ---------------------------------------------------------------------------------- component socket


def invoke(channel: grpc.Channel, operation: str, data: bytes = b"", **metadata: str) -> cpb.InvokeResponse:
    stub = cgrpc.OutputBindingStub(channel)
    return stub.Invoke(cpb.InvokeRequest(operation=operation, data=data, metadata=metadata), timeout=30)


def binding_error(channel: grpc.Channel, operation: str, data: bytes = b"", **metadata: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        invoke(channel, operation, data, **metadata)
    return info.value


def test_the_output_binding_refuses_nested_json_and_huge_names(
    engine: EngineProcess, socket_channel: grpc.Channel
) -> None:
    iid = unique("binding-limits")
    err = binding_error(socket_channel, "start", NESTED.encode(), workflowName="echo_input", instanceID=iid)
    assert_invalid(err, DEPTH_MESSAGE)
    err = binding_error(socket_channel, "start", b"1", workflowName=HUGE_NAME, instanceID=iid)
    assert_invalid(err, f"the limit is {MAX_NAME_LENGTH}")
    err = binding_error(socket_channel, "start", b"1", workflowName="echo_input", instanceID="i" * MEGABYTE)
    assert_invalid(err, "the limit is 256")
    err = binding_error(socket_channel, "get", instanceID="i" * MEGABYTE)
    assert_invalid(err, f"the limit is {MAX_ANY_INSTANCE_ID_LENGTH}")
    err = binding_error(socket_channel, "raiseEvent", b"1", instanceID=iid, eventName=HUGE_NAME)
    assert_invalid(err, f"the limit is {MAX_NAME_LENGTH}")
    assert_clean_log(engine)


def test_the_workflow_service_refuses_nested_json_and_huge_names(
    engine: EngineProcess, socket_channel: grpc.Channel
) -> None:
    stub = wgrpc.WorkflowStub(socket_channel)
    iid = unique("service-limits")
    calls = [
        (
            wpb.WorkflowStartRequest(workflow_name="echo_input", instance_id=iid, input=NESTED.encode()),
            "Start",
        ),
        (wpb.WorkflowStartRequest(workflow_name=HUGE_NAME, instance_id=iid), "Start"),
        (wpb.WorkflowRaiseEventRequest(instance_id=iid, event_name=HUGE_NAME), "RaiseEvent"),
        (wpb.WorkflowGetRequest(instance_id="i" * MEGABYTE), "Get"),
    ]
    for request, rpc in calls:
        with pytest.raises(grpc.RpcError) as info:
            getattr(stub, rpc)(request, timeout=30)
        assert_invalid(info.value, "the limit is")
    assert_clean_log(engine)


# ---------------------------------------------------------------------------------- triggers


def test_triggers_drop_nested_events_as_malformed(engine: EngineProcess) -> None:
    status, body = http("POST", f"{engine.http_url}/dapr-workflows/triggers/orders", NESTED.encode())
    assert (status, body) == (200, {"status": "DROP"})
    event = '{"specversion": "1.0", "source": "s", "id": "1", "type": "t", "data": ' + NESTED + "}"
    status, body = http("POST", f"{engine.http_url}/dapr-workflows/triggers/orders", event.encode())
    assert (status, body) == (200, {"status": "DROP"})
    status, body = http("POST", f"{engine.http_url}/jobs", NESTED.encode())
    assert (status, body) == (200, {"outcome": "malformed"})
    log = engine.log_text()
    assert log.count(DEPTH_MESSAGE) >= 3, log[-3000:]
    assert_clean_log(engine)


# ---------------------------------------------------------------------------------- names from workers


def test_a_turn_with_a_huge_activity_name_fails_the_instance_naming_the_limit(engine: EngineProcess) -> None:
    """A worker's action is held to the same limits: the instance fails with the reason (a turn
    refused as a whole would only come back after every lease)."""
    with RawClient(engine.durabletask_address, "durabletask") as raw:
        pb = raw.pb
        stream = raw.work_items()
        try:
            iid = raw.start("raw_huge_name", unique("worker-limits"))
            turn = stream.next(timeout=30)
            while turn.orchestratorRequest.instanceId != iid:  # earlier tests' instances wait too
                turn = stream.next(timeout=30)
            action = pb.OrchestratorAction(id=0, scheduleTask=pb.ScheduleTaskAction(name=HUGE_NAME))
            raw.unary(
                "CompleteOrchestratorTask",
                pb.OrchestratorResponse(
                    instanceId=iid, completionToken=turn.completionToken, actions=[action]
                ),
                timeout=30,
            )
        finally:
            stream.cancel()
        state = raw.get(iid)
        assert status_name(pb, state) == "FAILED"
        assert state.failureDetails.errorType == "InvalidAction"
        assert f"the activity name is {MEGABYTE} characters long" in state.failureDetails.errorMessage
    assert_clean_log(engine)
