"""The proposed Workflow service (`dapr.proto.components.v1.Workflow`) on the component socket.

A gRPC client with our generated stubs talks to a real engine over its Unix socket, as a daprd with
pluggable workflow support would, while a real Dapr-dialect SDK worker runs the workflows. One engine
and worker serve the module; tests use unique instance IDs. Tests that need an engine without a
worker start their own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from dapr_workflows_component.protos import dapr_components_pb2 as cpb
from dapr_workflows_component.protos import dapr_components_workflow_pb2 as wpb
from dapr_workflows_component.protos import dapr_components_workflow_pb2_grpc as wgrpc
from dapr_workflows_component.protos import dapr_dialect_pb2 as dpb
from google.protobuf import descriptor_pb2, timestamp_pb2, wrappers_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.harness.engine_process import EngineProcess
from tests.harness.sdk_host import SdkHost
from tests.harness.shared import unique, wait_until

SERVICE = "dapr.proto.components.v1.Workflow"
RPCS = {
    "Init",
    "Features",
    "Ping",
    "Start",
    "Get",
    "Terminate",
    "RaiseEvent",
    "Pause",
    "Resume",
    "Purge",
    "List",
    "History",
}
TIMEOUT = 30.0  # the deadline of every call that has no reason for another


class Component:
    """The engine's component socket, seen through a gRPC channel."""

    def __init__(self, engine: EngineProcess) -> None:
        self.engine = engine
        self.channel = grpc.insecure_channel(f"unix://{engine.socket_path}")
        self.stub = wgrpc.WorkflowStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def start(self, workflow: str, input: Any = None, instance_id: str | None = None, **kw: Any) -> str:
        data = b"" if input is None else json.dumps(input).encode()
        request = wpb.WorkflowStartRequest(
            workflow_name=workflow, instance_id=instance_id or "", input=data, **kw
        )
        return str(self.stub.Start(request, timeout=TIMEOUT).instance_id)

    def get(self, instance_id: str) -> wpb.WorkflowGetResponse:
        return self.stub.Get(wpb.WorkflowGetRequest(instance_id=instance_id), timeout=TIMEOUT)

    def status(self, instance_id: str) -> str:
        return status_name(self.get(instance_id).runtime_status)

    def wait_status(self, instance_id: str, *statuses: str, timeout: float = 30.0) -> wpb.WorkflowGetResponse:
        state: wpb.WorkflowGetResponse = wait_until(
            lambda: self.get(instance_id),
            lambda s: status_name(s.runtime_status) in statuses,
            timeout,
        )
        return state

    def history(self, instance_id: str) -> list[wpb.WorkflowHistoryEvent]:
        request = wpb.WorkflowHistoryRequest(instance_id=instance_id)
        return list(self.stub.History(request, timeout=TIMEOUT).events)


def status_name(value: int) -> str:
    return wpb.WorkflowRuntimeStatus.Name(value).removeprefix("WORKFLOW_RUNTIME_STATUS_")


def output(state: wpb.WorkflowGetResponse) -> Any:
    return json.loads(state.properties["dapr.workflow.output"])


def rpc_error(call: Callable[[], Any], code: grpc.StatusCode, *fragments: str) -> grpc.RpcError:
    """`call` fails with gRPC status `code` and a message that contains each of `fragments`."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    err = info.value
    assert err.code() == code, f"expected {code}, got {err.code()}: {err.details()}"
    for fragment in fragments:
        assert fragment in err.details(), f"{fragment!r} not in the error message: {err.details()}"
    return err


@pytest.fixture(scope="module")
def component(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Component]:
    """An engine with a Dapr-dialect worker, and a client of its Workflow service."""
    workdir = tmp_path_factory.mktemp("workflow-service")
    engine = EngineProcess(workdir).start()
    try:
        worker = SdkHost("dapr", engine.dapr_address, workdir / "dapr-host.log")
        client = Component(engine)
        try:
            yield client
        finally:
            client.close()
            worker.close()
    finally:
        engine.kill()


# ------------------------------------------------------------------------ discovery and lifecycle


def test_reflection_v1alpha_lists_the_workflow_service_next_to_the_bindings(component: Component) -> None:
    """daprd's discovery: list the services, then resolve the Workflow service's descriptor."""
    stub = reflection_pb2_grpc.ServerReflectionStub(component.channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE),
    ]
    listed, described = list(stub.ServerReflectionInfo(iter(requests), timeout=TIMEOUT))

    names = {s.name for s in listed.list_services_response.service}
    assert {
        SERVICE,
        "dapr.proto.components.v1.OutputBinding",
        "dapr.proto.components.v1.InputBinding",
    } <= names

    assert not described.HasField("error_response"), described.error_response
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in described.file_descriptor_response.file_descriptor_proto
    ]
    services = [
        s for f in files if f.package == "dapr.proto.components.v1" for s in f.service if s.name == "Workflow"
    ]
    assert len(services) == 1, [f.name for f in files]
    assert {m.name for m in services[0].method} == RPCS


def test_init_features_and_ping(component: Component) -> None:
    stub = component.stub
    init = wpb.WorkflowInitRequest(metadata=cpb.MetadataRequest(properties={"startTimeoutSeconds": "5"}))
    stub.Init(init, timeout=TIMEOUT, metadata=[("x-component-instance", "wf-ok")])

    bad_key = wpb.WorkflowInitRequest(metadata=cpb.MetadataRequest(properties={"bogusKey": "1"}))
    rpc_error(
        lambda: stub.Init(bad_key, timeout=TIMEOUT, metadata=[("x-component-instance", "wf-bad")]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "bogusKey",
    )
    bad_value = wpb.WorkflowInitRequest(
        metadata=cpb.MetadataRequest(properties={"startTimeoutSeconds": "soon"})
    )
    rpc_error(
        lambda: stub.Init(bad_value, timeout=TIMEOUT), grpc.StatusCode.INVALID_ARGUMENT, "startTimeoutSeconds"
    )

    features = stub.Features(cpb.FeaturesRequest(), timeout=TIMEOUT).features
    assert set(features) == {"SCHEDULED_START", "RECURSIVE_TERMINATE", "RECURSIVE_PURGE", "LIST", "HISTORY"}
    assert stub.Ping(cpb.PingRequest(), timeout=TIMEOUT) == cpb.PingResponse()


# ------------------------------------------------------------------------ start and get


def test_start_runs_a_workflow_and_get_shows_it_as_the_workflow_api_does(component: Component) -> None:
    instance_id = unique("chain")
    before = time.time()
    assert component.start("chain", {"n": 3, "start": 1}, instance_id) == instance_id
    # Start is synchronous: a worker has begun the instance when it returns.
    assert component.status(instance_id) in ("RUNNING", "COMPLETED")

    state = component.wait_status(instance_id, "COMPLETED")
    after = time.time()
    assert state.instance_id == instance_id
    assert state.workflow_name == "chain"
    assert output(state) == 4
    assert json.loads(state.properties["dapr.workflow.input"]) == {"n": 3, "start": 1}
    created = state.created_at.ToMicroseconds() / 1e6
    updated = state.last_updated_at.ToMicroseconds() / 1e6
    assert before - 1 <= created <= updated <= after + 1


def test_start_without_an_instance_id_makes_one_up(component: Component) -> None:
    first = component.start("chain", {"n": 1})
    second = component.start("chain", {"n": 1})
    assert first and second and first != second
    assert component.wait_status(first, "COMPLETED").workflow_name == "chain"
    assert output(component.wait_status(second, "COMPLETED")) == 1


def test_a_failed_workflow_reports_its_failure_in_the_properties(component: Component) -> None:
    instance_id = component.start("fail_uncaught", {"message": "boom from the activity"})
    state = component.wait_status(instance_id, "FAILED")
    assert "boom from the activity" in state.properties["dapr.workflow.failure.error_message"]
    assert state.properties["dapr.workflow.failure.error_type"]
    assert "dapr.workflow.output" not in state.properties


def test_start_at_a_scheduled_time_returns_at_once_and_runs_then(component: Component) -> None:
    due = time.time() + 2.0
    scheduled = timestamp_pb2.Timestamp()
    scheduled.FromMicroseconds(int(due * 1e6))
    started = time.monotonic()
    instance_id = component.start("chain", {"n": 1, "start": 9}, scheduled_start_time=scheduled)
    assert time.monotonic() - started < 1.5, "Start waited for a workflow scheduled for later"
    assert component.status(instance_id) == "PENDING"

    wait_until(lambda: component.status(instance_id), lambda s: s != "PENDING", 10, 0.02)
    assert time.time() >= due - 0.05, "the workflow began before its scheduled start time"
    state = component.wait_status(instance_id, "COMPLETED")
    assert output(state) == 10


def test_start_errors(component: Component) -> None:
    instance_id = component.start("wait_events", {"names": ["never"]}, unique("taken"))
    rpc_error(
        lambda: component.start("chain", {"n": 1}, instance_id),
        grpc.StatusCode.ALREADY_EXISTS,
        instance_id,
    )
    assert component.get(instance_id).workflow_name == "wait_events", "the duplicate start replaced it"

    rpc_error(
        lambda: component.start("chain", {"n": 1}, "no spaces allowed!"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "malformed",
    )
    not_json = unique("not-json")
    rpc_error(
        lambda: component.stub.Start(
            wpb.WorkflowStartRequest(workflow_name="chain", instance_id=not_json, input=b"{not json"),
            timeout=TIMEOUT,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "not valid JSON",
    )
    rpc_error(lambda: component.get(not_json), grpc.StatusCode.NOT_FOUND)
    rpc_error(
        lambda: component.start("", {"n": 1}, unique("nameless")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "workflow name",
    )
    component.stub.Terminate(wpb.WorkflowTerminateRequest(instance_id=instance_id), timeout=TIMEOUT)


# ------------------------------------------------------------------------ management


def test_events_pause_resume_purge_and_the_id_is_free_again(component: Component) -> None:
    stub = component.stub
    instance_id = component.start("wait_events", {"names": ["a", "b"]}, unique("lifecycle"))
    assert component.status(instance_id) == "RUNNING"

    stub.Pause(wpb.WorkflowPauseRequest(instance_id=instance_id, reason="maintenance"), timeout=TIMEOUT)
    assert component.status(instance_id) == "SUSPENDED"
    stub.Pause(wpb.WorkflowPauseRequest(instance_id=instance_id), timeout=TIMEOUT)  # already: no-op
    assert component.status(instance_id) == "SUSPENDED"

    # An event for a suspended instance waits until it resumes.
    event_a = wpb.WorkflowRaiseEventRequest(instance_id=instance_id, event_name="a", event_data=b'{"x": 1}')
    stub.RaiseEvent(event_a, timeout=TIMEOUT)
    time.sleep(0.5)
    assert component.status(instance_id) == "SUSPENDED"

    stub.Resume(wpb.WorkflowResumeRequest(instance_id=instance_id, reason="done"), timeout=TIMEOUT)
    assert component.status(instance_id) == "RUNNING"  # it still waits for "b"
    stub.Resume(wpb.WorkflowResumeRequest(instance_id=instance_id), timeout=TIMEOUT)  # running: no-op

    event_b = wpb.WorkflowRaiseEventRequest(instance_id=instance_id, event_name="b", event_data=b'"second"')
    stub.RaiseEvent(event_b, timeout=TIMEOUT)
    assert output(component.wait_status(instance_id, "COMPLETED")) == [{"x": 1}, "second"]

    kinds = [e.type for e in component.history(instance_id)]
    assert kinds.count("eventRaised") == 2
    suspended = [
        dpb.HistoryEvent.FromString(e.data)
        for e in component.history(instance_id)
        if e.type == "executionSuspended"
    ]
    assert [e.executionSuspended.input.value for e in suspended] == ["maintenance"]
    resumed = [
        dpb.HistoryEvent.FromString(e.data)
        for e in component.history(instance_id)
        if e.type == "executionResumed"
    ]
    assert [e.executionResumed.input.value for e in resumed] == ["done"]

    purged = stub.Purge(wpb.WorkflowPurgeRequest(instance_id=instance_id), timeout=TIMEOUT)
    assert purged.deleted_instance_count == 1
    rpc_error(lambda: component.get(instance_id), grpc.StatusCode.NOT_FOUND, instance_id)
    assert component.start("chain", {"n": 1}, instance_id) == instance_id
    assert output(component.wait_status(instance_id, "COMPLETED")) == 1


def test_terminate_records_its_output_at_once(component: Component) -> None:
    stub = component.stub
    instance_id = component.start("wait_events", {"names": ["never"]}, unique("terminate"))
    request = wpb.WorkflowTerminateRequest(instance_id=instance_id, output=b'{"reason": "test"}')
    stub.Terminate(request, timeout=TIMEOUT)
    state = component.get(instance_id)
    assert status_name(state.runtime_status) == "TERMINATED"
    assert output(state) == {"reason": "test"}
    stub.Terminate(wpb.WorkflowTerminateRequest(instance_id=instance_id), timeout=TIMEOUT)  # no-op
    assert output(component.get(instance_id)) == {"reason": "test"}


def test_terminate_and_purge_are_recursive_unless_told_otherwise(component: Component) -> None:
    stub = component.stub
    no = wrappers_pb2.BoolValue(value=False)

    def parent_and_child(prefix: str) -> tuple[str, str]:
        child = unique(f"{prefix}-child")
        parent = component.start("parent_waiting_child", {"child_id": child}, unique(prefix))
        wait_until(lambda: _exists(component, child), bool)
        component.wait_status(child, "RUNNING")
        return parent, child

    # recursive = false: the child lives on, and stays when its parent is purged
    parent, child = parent_and_child("shallow")
    stub.Terminate(wpb.WorkflowTerminateRequest(instance_id=parent, recursive=no), timeout=TIMEOUT)
    assert component.status(parent) == "TERMINATED"
    assert component.status(child) == "RUNNING"
    count = stub.Purge(wpb.WorkflowPurgeRequest(instance_id=parent, recursive=no), timeout=TIMEOUT)
    assert count.deleted_instance_count == 1
    assert component.status(child) == "RUNNING"
    stub.Terminate(wpb.WorkflowTerminateRequest(instance_id=child), timeout=TIMEOUT)

    # unset: both are terminated, both are purged
    parent, child = parent_and_child("deep")
    stub.Terminate(wpb.WorkflowTerminateRequest(instance_id=parent), timeout=TIMEOUT)
    assert component.status(parent) == "TERMINATED"
    assert component.status(child) == "TERMINATED"
    count = stub.Purge(wpb.WorkflowPurgeRequest(instance_id=parent), timeout=TIMEOUT)
    assert count.deleted_instance_count == 2
    rpc_error(lambda: component.get(child), grpc.StatusCode.NOT_FOUND)


def _exists(component: Component, instance_id: str) -> bool:
    try:
        component.get(instance_id)
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.NOT_FOUND:
            return False
        raise
    return True


def test_calls_on_an_unknown_or_empty_instance_id(component: Component) -> None:
    stub = component.stub
    calls: dict[str, Callable[[str], Any]] = {
        "Get": lambda i: stub.Get(wpb.WorkflowGetRequest(instance_id=i), timeout=TIMEOUT),
        "Terminate": lambda i: stub.Terminate(wpb.WorkflowTerminateRequest(instance_id=i), timeout=TIMEOUT),
        "RaiseEvent": lambda i: stub.RaiseEvent(
            wpb.WorkflowRaiseEventRequest(instance_id=i, event_name="e"), timeout=TIMEOUT
        ),
        "Pause": lambda i: stub.Pause(wpb.WorkflowPauseRequest(instance_id=i), timeout=TIMEOUT),
        "Resume": lambda i: stub.Resume(wpb.WorkflowResumeRequest(instance_id=i), timeout=TIMEOUT),
        "Purge": lambda i: stub.Purge(wpb.WorkflowPurgeRequest(instance_id=i), timeout=TIMEOUT),
        "History": lambda i: stub.History(wpb.WorkflowHistoryRequest(instance_id=i), timeout=TIMEOUT),
    }
    missing = unique("missing")
    for rpc, call in calls.items():
        err = rpc_error(partial(call, missing), grpc.StatusCode.NOT_FOUND, missing)
        assert err.details().startswith("no workflow instance"), (rpc, err.details())
        rpc_error(partial(call, ""), grpc.StatusCode.INVALID_ARGUMENT, "instance ID is empty")


def test_calls_the_instance_state_or_the_payload_forbids(component: Component) -> None:
    stub = component.stub
    running = component.start("wait_events", {"names": ["never"]}, unique("running"))

    rpc_error(
        lambda: stub.Purge(wpb.WorkflowPurgeRequest(instance_id=running), timeout=TIMEOUT),
        grpc.StatusCode.FAILED_PRECONDITION,
        "RUNNING",
    )
    assert component.status(running) == "RUNNING", "a refused purge changed the instance"
    rpc_error(
        lambda: stub.RaiseEvent(
            wpb.WorkflowRaiseEventRequest(instance_id=running, event_name="never", event_data=b"nope"),
            timeout=TIMEOUT,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "not valid JSON",
    )
    rpc_error(
        lambda: stub.RaiseEvent(wpb.WorkflowRaiseEventRequest(instance_id=running), timeout=TIMEOUT),
        grpc.StatusCode.INVALID_ARGUMENT,
        "event name",
    )
    rpc_error(
        lambda: stub.Terminate(
            wpb.WorkflowTerminateRequest(instance_id=running, output=b"<xml/>"), timeout=TIMEOUT
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "not valid JSON",
    )
    assert component.status(running) == "RUNNING", "a refused terminate changed the instance"

    finished = component.start("chain", {"n": 1}, unique("finished"))
    component.wait_status(finished, "COMPLETED")
    for call in (
        lambda: stub.RaiseEvent(
            wpb.WorkflowRaiseEventRequest(instance_id=finished, event_name="late"), timeout=TIMEOUT
        ),
        lambda: stub.Pause(wpb.WorkflowPauseRequest(instance_id=finished), timeout=TIMEOUT),
        lambda: stub.Resume(wpb.WorkflowResumeRequest(instance_id=finished), timeout=TIMEOUT),
    ):
        rpc_error(call, grpc.StatusCode.FAILED_PRECONDITION, "COMPLETED")
    stub.Terminate(wpb.WorkflowTerminateRequest(instance_id=running), timeout=TIMEOUT)


# ------------------------------------------------------------------------ list and history


def test_list_pages_through_every_instance_in_id_order(component: Component) -> None:
    prefix = unique("listed")
    mine = sorted(component.start("chain", {"n": 1}, f"{prefix}-{n}") for n in range(5))

    seen: list[str] = []
    token = ""
    for _ in range(10_000):
        page = component.stub.List(
            wpb.WorkflowListRequest(page_size=2, continuation_token=token), timeout=TIMEOUT
        )
        assert 0 < len(page.instance_ids) <= 2
        seen.extend(page.instance_ids)
        token = page.continuation_token
        if not token:
            break
    assert seen == sorted(set(seen)), "pages overlap or are out of order"
    assert [i for i in seen if i.startswith(prefix)] == mine

    default = component.stub.List(wpb.WorkflowListRequest(), timeout=TIMEOUT)
    assert len(default.instance_ids) == min(len(seen), 100)
    rpc_error(
        lambda: component.stub.List(wpb.WorkflowListRequest(page_size=10_001), timeout=TIMEOUT),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page size",
    )


def test_history_returns_the_serialized_events_with_their_types(component: Component) -> None:
    instance_id = component.start("chain", {"n": 3, "start": 1}, unique("history"))
    component.wait_status(instance_id, "COMPLETED")
    events = component.history(instance_id)

    parsed = [dpb.HistoryEvent.FromString(e.data) for e in events]
    assert [p.WhichOneof("eventType") for p in parsed] == [e.type for e in events]
    kinds = [e.type for e in events]
    started = next(p for p in parsed if p.HasField("executionStarted")).executionStarted
    assert started.name == "chain"
    assert json.loads(started.input.value) == {"n": 3, "start": 1}
    assert kinds.count("taskScheduled") == 3
    results = [json.loads(p.taskCompleted.result.value) for p in parsed if p.HasField("taskCompleted")]
    assert results == [2, 3, 4]
    assert kinds.index("executionStarted") < kinds.index("taskScheduled") < kinds.index("taskCompleted")


# ------------------------------------------------------------------------ no worker yet


def test_start_waits_for_a_worker_within_its_timeout_and_the_callers_deadline(tmp_path: Path) -> None:
    engine = EngineProcess(tmp_path, "--max-payload-bytes", "1024").start()
    component = Component(engine)
    worker: SdkHost | None = None
    try:
        stub = component.stub
        quick = [("x-component-instance", "quick")]
        init = wpb.WorkflowInitRequest(metadata=cpb.MetadataRequest(properties={"startTimeoutSeconds": "1"}))
        stub.Init(init, timeout=TIMEOUT, metadata=quick)

        # No worker: Start waits the component's start timeout, then answers with the recorded instance.
        began = time.monotonic()
        waited = stub.Start(
            wpb.WorkflowStartRequest(workflow_name="chain", input=b'{"n": 3, "start": 1}'),
            timeout=TIMEOUT,
            metadata=quick,
        ).instance_id
        elapsed = time.monotonic() - began
        assert 0.9 <= elapsed < 5, elapsed
        assert component.status(waited) == "PENDING"

        # The default start timeout (10s) is cut short by the caller's 2s deadline.
        began = time.monotonic()
        cut = component.stub.Start(
            wpb.WorkflowStartRequest(workflow_name="chain", input=b'{"n": 1, "start": 5}'), timeout=2
        ).instance_id
        assert time.monotonic() - began < 2
        assert component.status(cut) == "PENDING"

        rpc_error(
            lambda: component.start("chain", {"n": 1, "padding": "x" * 2000}),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "the limit is 1024 bytes",
        )

        worker = SdkHost("dapr", engine.dapr_address, tmp_path / "dapr-host.log")
        assert output(component.wait_status(waited, "COMPLETED")) == 4
        assert output(component.wait_status(cut, "COMPLETED")) == 6
    finally:
        if worker is not None:
            worker.close()
        component.close()
        engine.kill()
