"""Bad input: malformed messages, oversized payloads, no deadlines, unknown and unsupported RPCs.

One engine serves the whole module, with a small payload limit (10000 bytes) and a short activity
lease (3 s), and keeps one SDK host per dialect connected throughout. Each test ends by checking that
the engine still serves everyone else: it is the same engine that took every bad call before.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from tests.harness import activity_log
from tests.harness.durability import event_kinds, wait_until
from tests.harness.engine_process import EngineProcess
from tests.harness.raw_grpc import SERVICE, RawClient, status_name
from tests.harness.sdk_host import SdkError, SdkHost

LIMIT = 10_000
LEASE = 3
DIALECTS = ("dapr", "durabletask")

GARBAGE = {
    "random bytes": b"\xff" * 11,
    "text": b"garbage!",
    "truncated field": b"\x0a\x64abc",  # field 1 claims 100 bytes, 3 follow
    "bad utf-8 string": b"\x0a\x02\xc3\x28",  # field 1 (a string in every request below) is not UTF-8
}
# RPCs of both dialects whose requests the engine parses (GetWorkItems ignores its request).
PARSED_RPCS = (
    "StartInstance",
    "GetInstance",
    "WaitForInstanceStart",
    "WaitForInstanceCompletion",
    "RaiseEvent",
    "TerminateInstance",
    "SuspendInstance",
    "ResumeInstance",
    "PurgeInstances",
    "CompleteActivityTask",
    "CompleteOrchestratorTask",
)
DIALECT_RPCS = {
    "dapr": ("CompleteWorkflowTask", "RerunWorkflowFromEvent", "ListInstanceIDs", "GetInstanceHistory"),
    "durabletask": ("QueryInstances", "ListInstanceIds", "RestartInstance", "AbandonTaskActivityWorkItem"),
}
ENTITY_RPCS = (
    "SignalEntity",
    "GetEntity",
    "QueryEntities",
    "CleanEntityStorage",
    "CompleteEntityTask",
    "AbandonTaskEntityWorkItem",
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    proc = EngineProcess(
        tmp_path_factory.mktemp("bad-input"),
        "--max-payload-bytes",
        str(LIMIT),
        "--activity-lease-seconds",
        str(LEASE),
    ).start()
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def hosts(engine: EngineProcess) -> Iterator[dict[str, SdkHost]]:
    started = {d: SdkHost(d, engine.address(d), engine.workdir / f"{d}-host.log") for d in DIALECTS}
    yield started
    for host in started.values():
        host.close()


@pytest.fixture
def sdk(hosts: dict[str, SdkHost], dialect: str) -> SdkHost:
    return hosts[dialect]


@pytest.fixture
def raw(engine: EngineProcess, dialect: str) -> Iterator[RawClient]:
    with RawClient(engine.address(dialect), dialect) as client:
        yield client


def run_normal_workflow(host: SdkHost, event: int = 7) -> None:
    """A workflow with activities, a timer and an event completes with the right output."""
    iid = host.call("start", workflow="durable_sum", input={"base": 3, "chain": 2, "fan": 2, "timer": 0.1})
    host.call("raise_event", instance_id=iid, name="go", data=event)
    state = host.submit("wait_done", instance_id=iid, timeout=20).result(timeout=30)
    assert state["status"] == "COMPLETED", state
    assert json.loads(state["output"]) == activity_log.expected_sum(3, 2, 2, event)


def assert_still_serving(engine: EngineProcess, hosts: dict[str, SdkHost]) -> None:
    assert engine.proc is not None and engine.proc.poll() is None, "the engine died"
    for host in hosts.values():
        run_normal_workflow(host)
    log = engine.log_text()
    assert "Traceback" not in log and "failed inside the engine" not in log, log[-3000:]


def json_string(n: int, char: str = "x") -> str:
    """A JSON string literal of n characters."""
    return json.dumps(char * n, ensure_ascii=False)


# ---------------------------------------------------------------------------------------- malformed


@pytest.mark.parametrize("method", PARSED_RPCS)
def test_malformed_message_is_invalid_argument(
    engine: EngineProcess, hosts: dict[str, SdkHost], raw: RawClient, method: str
) -> None:
    for name, garbage in GARBAGE.items():
        err = raw.error(method, garbage)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, err)
        details = err.details() or ""
        assert details.startswith("malformed ") and " message: " in details, (name, details)
    assert_still_serving(engine, hosts)


def test_malformed_message_to_dialect_rpcs_is_invalid_argument(
    engine: EngineProcess, hosts: dict[str, SdkHost], raw: RawClient, dialect: str
) -> None:
    for method in DIALECT_RPCS[dialect]:
        err = raw.error(method, GARBAGE["random bytes"])
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, err)
        assert (err.details() or "").startswith("malformed "), (method, err.details())
    if dialect == "durabletask":  # a server-streaming RPC
        call = raw.channel.unary_stream(
            SERVICE + "StreamInstanceHistory", request_serializer=None, response_deserializer=None
        )
        with pytest.raises(grpc.RpcError) as caught:
            list(call(GARBAGE["random bytes"], timeout=10))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (caught.value.details() or "").startswith("malformed StreamInstanceHistoryRequest")
    assert_still_serving(engine, hosts)


# ---------------------------------------------------------------------------------------- payload sizes


def test_oversized_input_is_resource_exhausted(
    engine: EngineProcess, hosts: dict[str, SdkHost], sdk: SdkHost, raw: RawClient
) -> None:
    with pytest.raises(SdkError) as caught:
        sdk.call(
            "start",
            workflow="sleepy",
            input={"seconds": 0, "pad": "x" * 2 * LIMIT},
            instance_id=f"too-big-{raw.dialect}",
        )
    assert "RESOURCE_EXHAUSTED" in caught.value.message
    assert f"the limit is {LIMIT} bytes" in caught.value.message

    req = raw.pb.CreateInstanceRequest(name="sleepy", instanceId=f"too-big-raw-{raw.dialect}")
    req.input.value = json_string(LIMIT + 1)
    err = raw.error("StartInstance", req)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == f"the workflow input is {LIMIT + 3} bytes; the limit is {LIMIT} bytes"
    # Exactly the limit is accepted.
    at_limit = json.dumps({"seconds": 0, "pad": "x" * (LIMIT - len(json.dumps({"seconds": 0, "pad": ""})))})
    assert len(at_limit) == LIMIT
    assert raw.start("sleepy", f"at-the-limit-{raw.dialect}", at_limit) == f"at-the-limit-{raw.dialect}"
    assert status_name(raw.pb, raw.wait_done(f"at-the-limit-{raw.dialect}", timeout=20)) == "COMPLETED"
    assert raw.get(f"too-big-{raw.dialect}") is None and raw.get(f"too-big-raw-{raw.dialect}") is None
    assert_still_serving(engine, hosts)


def test_oversized_event_is_resource_exhausted(
    engine: EngineProcess, hosts: dict[str, SdkHost], sdk: SdkHost, raw: RawClient
) -> None:
    iid = sdk.call("start", workflow="durable_sum", input={"base": 2, "chain": 1, "fan": 1, "timer": 0})
    with pytest.raises(SdkError) as caught:
        sdk.call("raise_event", instance_id=iid, name="go", data="y" * 2 * LIMIT)
    assert "RESOURCE_EXHAUSTED" in caught.value.message
    assert f"the event payload is {2 * LIMIT + 2} bytes; the limit is {LIMIT} bytes" in caught.value.message

    req = raw.pb.RaiseEventRequest(instanceId=iid, name="go")
    req.input.value = json_string(LIMIT + 1)
    err = raw.error("RaiseEvent", req)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == f"the event payload is {LIMIT + 3} bytes; the limit is {LIMIT} bytes"

    # The refused events left no trace: the next event is the one the workflow gets.
    sdk.call("raise_event", instance_id=iid, name="go", data=5)
    state = sdk.submit("wait_done", instance_id=iid, timeout=20).result(timeout=30)
    assert state["status"] == "COMPLETED" and json.loads(state["output"]) == activity_log.expected_sum(
        2, 1, 1, 5
    )
    assert event_kinds(raw.history(iid))["eventRaised"] == 1
    assert_still_serving(engine, hosts)


def test_message_beyond_the_grpc_receive_limit_is_resource_exhausted(
    engine: EngineProcess, hosts: dict[str, SdkHost], sdk: SdkHost, raw: RawClient
) -> None:
    """The engine receives messages up to the payload limit + 1 MiB; beyond that gRPC refuses them."""
    huge = 3 * 1024 * 1024
    with pytest.raises(SdkError) as caught:
        sdk.call(
            "start",
            workflow="sleepy",
            input={"seconds": 0, "pad": "x" * huge},
            instance_id=f"huge-{raw.dialect}",
        )
    assert "RESOURCE_EXHAUSTED" in caught.value.message
    req = raw.pb.CreateInstanceRequest(name="sleepy", instanceId=f"huge-raw-{raw.dialect}")
    req.input.value = json_string(huge)
    for method, message in [
        ("StartInstance", req),
        (
            "RaiseEvent",
            raw.pb.RaiseEventRequest(
                instanceId=f"huge-raw-{raw.dialect}", name="go", input={"value": "y" * huge}
            ),
        ),
        ("CompleteActivityTask", raw.pb.ActivityResponse(instanceId="x", result={"value": "z" * huge})),
        ("StartInstance", b"\xff" * huge),  # oversized garbage: refused before it is parsed
    ]:
        err = raw.error(method, message)
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (method, err)
        assert "Received message larger than max" in (err.details() or ""), (method, err.details())
    assert raw.get(f"huge-{raw.dialect}") is None and raw.get(f"huge-raw-{raw.dialect}") is None
    assert_still_serving(engine, hosts)


def test_payload_limit_counts_bytes_not_characters(
    engine: EngineProcess, hosts: dict[str, SdkHost], raw: RawClient
) -> None:
    """--max-payload-bytes is a number of bytes: 4000 x '€' is 12000 bytes of UTF-8 (4000 characters)."""
    text = json.dumps({"seconds": 0, "result": "€" * 4000}, ensure_ascii=False)
    assert len(text) < LIMIT < len(text.encode())
    req = raw.pb.CreateInstanceRequest(name="sleepy", instanceId=f"euro-{raw.dialect}")
    req.input.value = text
    try:
        err = raw.error("StartInstance", req)
    finally:
        assert_still_serving(engine, hosts)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    "dialect",
    [
        "dapr",
        "durabletask",
    ],
)
def test_oversized_activity_result_fails_the_activity(
    engine: EngineProcess, hosts: dict[str, SdkHost], sdk: SdkHost, dialect: str
) -> None:
    log = engine.workdir / f"big-result-{dialect}.log"
    iid = sdk.call("start", workflow="big_result_flow", input={"size": 2 * LIMIT, "log": str(log)})
    try:
        # Three lease periods: time enough for the failure to be recorded, or to see it redelivered.
        def ended() -> dict[str, Any] | None:
            state: dict[str, Any] = sdk.call("get", instance_id=iid)
            return state if state["status"] not in ("RUNNING", "PENDING") else None

        state = wait_until(ended, 3 * LEASE + 1, "the workflow to end", interval=0.2)
        assert state is not None
        assert state["status"] == "FAILED", state
        assert (
            f"the activity result is {2 * LIMIT + 2} bytes; the limit is {LIMIT} bytes"
            in (state["failure"]["message"])
        )
        assert len(activity_log.read(log)) == 1, "the activity ran again"
    finally:
        runs = len(activity_log.read(log))
        if sdk.call("get", instance_id=iid)["status"] == "RUNNING":
            sdk.call("terminate", instance_id=iid)
        print(f"\n[{dialect}] oversized activity result: the activity ran {runs} times")
        assert_still_serving(engine, hosts)


def test_oversized_workflow_output_fails_the_instance(
    engine: EngineProcess, hosts: dict[str, SdkHost], sdk: SdkHost
) -> None:
    iid = sdk.call("start", workflow="sleepy", input={"seconds": 0, "result": "z", "repeat": 2 * LIMIT})
    state = sdk.submit("wait_done", instance_id=iid, timeout=20).result(timeout=30)
    assert state["status"] == "FAILED", state
    assert state["failure"] == {
        "type": "PayloadTooLarge",
        "message": f"the workflow output is {2 * LIMIT + 2} bytes; the limit is {LIMIT} bytes",
    }
    assert_still_serving(engine, hosts)


# ---------------------------------------------------------------------------------------- deadlines


def test_waits_without_a_deadline_return_when_the_workflow_is_done(
    engine: EngineProcess, hosts: dict[str, SdkHost], sdk: SdkHost, raw: RawClient, dialect: str
) -> None:
    iid = sdk.call("start", workflow="sleepy", input={"seconds": 1, "result": "awake"})
    began = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        req = raw.pb.GetInstanceRequest(instanceId=iid, getInputsAndOutputs=True)
        started = pool.submit(raw.unary, "WaitForInstanceStart", req, None)
        done = pool.submit(raw.wait_done, iid, None)  # no deadline at all
        # The SDKs' own "no timeout": 0 for Dapr's client, None for durabletask's.
        sdk_done = sdk.submit("wait_done", instance_id=iid, timeout=0 if dialect == "dapr" else None)
        state = done.result(timeout=30)
        took = time.monotonic() - began
        assert started.result(timeout=30)
    assert status_name(raw.pb, state) == "COMPLETED" and state.output.value == '"awake"'
    assert 0.8 <= took < 10, took
    assert sdk_done.result(timeout=30)["output"] == '"awake"'
    assert_still_serving(engine, hosts)


# ---------------------------------------------------------------------------------------- unknown RPCs


def test_unknown_rpcs_are_unimplemented(
    engine: EngineProcess, hosts: dict[str, SdkHost], raw: RawClient, dialect: str
) -> None:
    other_dialect_only = {
        "dapr": ("QueryInstances", "RestartInstance", "SignalEntity", "StreamInstanceHistory"),
        "durabletask": (
            "RerunWorkflowFromEvent",
            "GetInstanceHistory",
            "CompleteWorkflowTask",
            "ListInstanceIDs",
        ),
    }[dialect]
    paths = [
        SERVICE + "NoSuchMethod",
        "/no.such.Service/StartInstance",
        "/dapr.proto.runtime.v1.Dapr/StartWorkflowBeta1",
        *(SERVICE + m for m in other_dialect_only),
    ]
    for path in paths:
        err = raw.error(path, b"")
        assert err.code() == grpc.StatusCode.UNIMPLEMENTED, (path, err)
    assert_still_serving(engine, hosts)


def test_entity_rpcs_refuse_bad_input_with_one_clear_sentence(
    engine: EngineProcess, hosts: dict[str, SdkHost]
) -> None:
    with RawClient(engine.address("durabletask"), "durabletask") as raw:
        pb = raw.pb
        for method in ENTITY_RPCS:
            for garbage in GARBAGE.values():
                err = raw.error(method, garbage)
                assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, err)
                assert err.details().startswith("malformed "), (method, err.details())
        refused = {
            "SignalEntity": [
                (b"", "the instance ID is empty"),
                (pb.SignalEntityRequest(instanceId="not-an-entity", name="add"), "is not an entity ID"),
                (pb.SignalEntityRequest(instanceId="@counter@a", name=""), "entity operation name"),
            ],
            "GetEntity": [(pb.GetEntityRequest(instanceId="@@a"), "is not an entity ID")],
        }
        for method, cases in refused.items():
            for request, text in cases:
                err = raw.error(method, request)
                assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, err)
                assert text in err.details(), (method, err.details())
        # A result or an abandon under a token no lease has is ignored, as for other work items.
        raw.unary("CompleteEntityTask", pb.EntityBatchResult(completionToken="no-such-token"))
        raw.unary("AbandonTaskEntityWorkItem", pb.AbandonEntityTaskRequest(completionToken="no-such-token"))
        err = raw.error("RewindInstance", raw.pb.RewindInstanceRequest(instanceId="x"))
        # Rewind is served now (tests/test_rewind.py): an unknown instance is one sentence.
        assert err.code() == grpc.StatusCode.NOT_FOUND
        assert err.details() == "no workflow instance with ID 'x'"
    assert_still_serving(engine, hosts)


# ---------------------------------------------------------------------------------------- bad workers


def test_turn_with_an_unknown_action_fails_the_workflow_with_its_reason(
    engine: EngineProcess, hosts: dict[str, SdkHost]
) -> None:
    """A raw Dapr-dialect worker answers a turn with an action that has no type set."""
    # On an engine of its own, so that no SDK worker takes the turn.
    fresh = EngineProcess(engine.workdir / "fresh")
    fresh.workdir.mkdir(exist_ok=True)
    fresh.start()
    try:
        with RawClient(fresh.address("dapr"), "dapr") as raw:
            pb = raw.pb
            stream = raw.work_items()
            try:
                raw.start("raw_flow", "odd-action")
                turn = stream.next()
                raw.unary(
                    "CompleteOrchestratorTask",
                    pb.WorkflowResponse(
                        instanceId="odd-action",
                        completionToken=turn.completionToken,
                        actions=[pb.WorkflowAction(id=0)],
                    ),
                )
            finally:
                stream.cancel()
            state = raw.wait_done("odd-action", timeout=10)
            assert status_name(pb, state) == "FAILED"
            assert "unsupported action" in state.failureDetails.errorMessage
            assert state.failureDetails.errorType == "UnsupportedAction", state.failureDetails
    finally:
        fresh.kill()
        assert_still_serving(engine, hosts)


def test_turn_with_an_empty_entity_message_fails_the_workflow(
    engine: EngineProcess, hosts: dict[str, SdkHost]
) -> None:
    """A raw durabletask-dialect worker answers a turn with a sendEntityMessage action that sends
    nothing (2 s turn lease): the workflow fails with the reason, and its turn does not come back."""
    fresh = EngineProcess(engine.workdir / "entities", "--orchestration-lease-seconds", "2")
    fresh.workdir.mkdir(exist_ok=True)
    fresh.start()
    try:
        with RawClient(fresh.address("durabletask"), "durabletask") as raw:
            pb = raw.pb
            stream = raw.work_items()
            try:
                raw.start("uses_entities", "entity-turn")
                turn = stream.next()
                action = pb.OrchestratorAction(id=0)
                action.sendEntityMessage.SetInParent()
                response = pb.OrchestratorResponse(
                    instanceId="entity-turn", completionToken=turn.completionToken, actions=[action]
                )
                raw.unary("CompleteOrchestratorTask", response)
                redelivered = stream.pending(wait=3)
                state = raw.get("entity-turn")
                assert status_name(pb, state) == "FAILED", (status_name(pb, state), len(redelivered))
                assert state.failureDetails.errorType == "InvalidAction"
                assert state.failureDetails.errorMessage == "the workflow sent an empty entity message"
                assert redelivered == []
            finally:
                stream.cancel()
    finally:
        fresh.kill()
        assert_still_serving(engine, hosts)


def test_engine_keeps_serving_after_all_bad_input(engine: EngineProcess, hosts: dict[str, SdkHost]) -> None:
    """Runs last in this module: the engine that took every call above still serves both dialects."""
    assert_still_serving(engine, hosts)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: run_normal_workflow(hosts[DIALECTS[i % 2]], event=i + 1), range(16)))
