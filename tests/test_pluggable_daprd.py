"""The pluggable component with a real daprd, a real engine and a real SDK worker.

daprd (built by `scripts/install-dapr`) discovers the engine's socket, loads the component YAML of
`components/` and serves the binding on its HTTP and gRPC APIs; an HTTP app in this process takes
the lifecycle events. One engine, worker, app and daprd serve the module (`stack`); the tests that
restart daprd or the engine, or need a daprd of their own, build their own.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.harness.binding_app import RecordingApp
from tests.harness.daprd import (
    NO_DATA,
    BindingError,
    Daprd,
    GrpcBinding,
    HttpBinding,
    component_yaml,
)
from tests.harness.engine_process import EngineProcess
from tests.harness.sdk_host import SdkHost
from tests.harness.shared import start as sdk_start
from tests.harness.shared import unique, wait_done, wait_until

Binding = HttpBinding | GrpcBinding


@dataclass
class Stack:
    engine: EngineProcess
    sdk: SdkHost  # a Dapr-dialect worker (and client) on the engine
    app: RecordingApp  # answers OPTIONS /workflows, so daprd reads lifecycle events for it
    daprd: Daprd  # with the YAML of components/ as it is


@contextlib.contextmanager
def running_stack(dapr_bin: Path, workdir: Path) -> Iterator[Stack]:
    """Engine, then the SDK worker, the app and daprd (daprd finds the socket only at its start)."""
    with contextlib.ExitStack() as cleanup:
        engine = EngineProcess(workdir).start()
        cleanup.callback(engine.kill)
        sdk = SdkHost("dapr", engine.address("dapr"), workdir / "dapr-host.log")
        cleanup.callback(sdk.close)
        app = RecordingApp(("workflows",)).start()
        cleanup.callback(app.stop)
        daprd = Daprd(dapr_bin, engine, workdir, app_port=app.port)
        cleanup.callback(daprd.kill)
        daprd.start()
        yield Stack(engine, sdk, app, daprd)


@pytest.fixture(scope="module")
def stack(dapr_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(dapr_bin, tmp_path_factory.mktemp("daprd-stack")) as s:
        yield s


@pytest.fixture(params=["http", "grpc"])
def binding(request: pytest.FixtureRequest, stack: Stack) -> Iterator[Binding]:
    """The output binding through daprd's HTTP API, or through DaprClient.invoke_binding (gRPC)."""
    if request.param == "http":
        yield HttpBinding(stack.daprd)
        return
    client = stack.daprd.client()
    try:
        yield GrpcBinding(client)
    finally:
        client.close()


# ---------------------------------------------------------------------------------------- helpers


def get(binding: Binding, instance_id: str) -> dict[str, Any]:
    state: dict[str, Any] = binding.call("get", metadata={"instanceID": instance_id})
    return state


def wait_status(binding: Binding, instance_id: str, status: str, timeout: float = 30.0) -> dict[str, Any]:
    state: dict[str, Any] = wait_until(
        lambda: get(binding, instance_id), lambda s: s["runtimeStatus"] == status, timeout
    )
    return state


def start(binding: Binding, workflow: str, data: Any, instance_id: str) -> None:
    answer = binding.call("start", data, {"workflowName": workflow, "instanceID": instance_id})
    assert answer == {"instanceID": instance_id}


def prop(state: dict[str, Any], name: str) -> Any:
    """A property of a `get` answer, decoded from JSON."""
    return json.loads(state["properties"][f"dapr.workflow.{name}"])


def parse_time(text: str) -> datetime:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def component_error(
    binding: Binding, operation: str, data: Any = NO_DATA, metadata: Mapping[str, str] | None = None
) -> BindingError:
    """The call fails the way daprd reports any binding error, on its HTTP or gRPC API."""
    with pytest.raises(BindingError) as info:
        binding.call(operation, data, metadata)
    err = info.value
    if binding.transport == "http":
        assert (err.status, err.api_code) == (500, "ERR_INVOKE_OUTPUT_BINDING"), err
    else:
        assert err.status == "INTERNAL", err
    assert err.message.startswith("error invoking output binding workflows: "), err
    return err


def assert_component_error(err: BindingError, code: str, *fragments: str) -> None:
    """daprd's error names the component's gRPC status (`code`) and quotes its reason."""
    assert err.component_code == code, err
    assert err.reason is not None
    for fragment in fragments:
        assert fragment in err.reason, err


def engine_log_since_start(engine: EngineProcess) -> str:
    text = engine.log_text()
    return text[text.rfind("===== start ") :]


# ---------------------------------------------------------------------------------- discovery


def test_daprd_registers_the_component(stack: Stack) -> None:
    log = stack.daprd.log_text()
    for service in ("InputBinding", "OutputBinding"):
        assert (
            f"pluggable component 'dapr-workflows' was successfully registered for "
            f"'dapr.proto.components.v1.{service}'"
        ) in log
        direction = service.removesuffix("Binding").lower()
        assert f"successful init for {direction} binding (workflows (bindings.dapr-workflows/v1))" in log
    components = stack.daprd.metadata()["components"]
    assert [
        {**c, "capabilities": sorted(c.get("capabilities", []))}
        for c in components
        if c["name"] == "workflows"
    ] == [
        {
            "name": "workflows",
            "type": "bindings.dapr-workflows",
            "version": "v1",
            "capabilities": ["INPUT_BINDING", "OUTPUT_BINDING"],
        }
    ]
    # The app answered `OPTIONS /workflows`, so daprd opened the input binding's Read stream.
    assert "/workflows" in stack.app.options_paths
    wait_until(stack.engine.log_text, lambda text: "input binding 'workflows' connected" in text, timeout=10)


# ------------------------------------------------------------------------- output binding operations


def test_start_then_get(stack: Stack, binding: Binding) -> None:
    instance_id = unique("chain")
    start(binding, "chain", {"n": 3, "start": 10}, instance_id)
    # Like Dapr's own engine, start returns once a worker runs the instance.
    assert get(binding, instance_id)["runtimeStatus"] in ("RUNNING", "COMPLETED")
    state = wait_status(binding, instance_id, "COMPLETED")
    assert set(state) == {
        "instanceID",
        "workflowName",
        "createdAt",
        "lastUpdatedAt",
        "runtimeStatus",
        "properties",
    }
    assert state["instanceID"] == instance_id
    assert state["workflowName"] == "chain"
    assert set(state["properties"]) == {"dapr.workflow.input", "dapr.workflow.output"}
    assert prop(state, "input") == {"n": 3, "start": 10}
    assert prop(state, "output") == 13
    assert parse_time(state["createdAt"]) <= parse_time(state["lastUpdatedAt"])


def test_start_without_an_instance_id(stack: Stack, binding: Binding) -> None:
    answer = binding.call("start", {"n": 1}, {"workflowName": "chain"})
    instance_id = answer["instanceID"]
    assert re.fullmatch(r"[0-9a-f]{32}", instance_id), answer
    assert prop(wait_status(binding, instance_id, "COMPLETED"), "output") == 1


def test_raise_event(stack: Stack, binding: Binding) -> None:
    instance_id = unique("custom")
    start(binding, "custom_status_wf", {}, instance_id)
    waiting = wait_until(
        lambda: get(binding, instance_id),
        lambda s: "dapr.workflow.custom_status" in s["properties"],
    )
    assert waiting["runtimeStatus"] == "RUNNING"
    # Dapr's SDK sends the custom status as it is (a str is not JSON-encoded).
    assert waiting["properties"]["dapr.workflow.custom_status"] == "waiting"
    answer = binding.call("raiseEvent", "hello", {"instanceID": instance_id, "eventName": "next"})
    assert answer is None
    done = wait_status(binding, instance_id, "COMPLETED")
    assert prop(done, "output") == "hello"
    assert done["properties"]["dapr.workflow.custom_status"] == "done-hello"


def test_pause_resume_terminate_purge(stack: Stack, binding: Binding) -> None:
    instance_id = unique("managed")
    target = {"instanceID": instance_id}
    start(binding, "wait_events", {"names": ["go"]}, instance_id)
    assert get(binding, instance_id)["runtimeStatus"] == "RUNNING"
    # Each call has taken effect when it returns.
    assert binding.call("pause", metadata=target) is None
    assert get(binding, instance_id)["runtimeStatus"] == "SUSPENDED"
    assert binding.call("resume", metadata=target) is None
    assert get(binding, instance_id)["runtimeStatus"] == "RUNNING"
    assert binding.call("terminate", {"why": "test"}, target) is None
    terminated = get(binding, instance_id)
    assert terminated["runtimeStatus"] == "TERMINATED"
    assert prop(terminated, "output") == {"why": "test"}
    assert binding.call("purge", metadata=target) == {"deletedInstanceCount": 1}
    assert_component_error(component_error(binding, "get", metadata=target), "NotFound", instance_id)


def test_list_and_history(stack: Stack, binding: Binding) -> None:
    ids = [unique("listed") for _ in range(3)]
    for instance_id in ids:
        start(binding, "chain", {"n": 2}, instance_id)
    for instance_id in ids:
        wait_status(binding, instance_id, "COMPLETED")

    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        metadata = {"pageSize": "2"}
        if token:
            metadata["continuationToken"] = token
        page = binding.call("list", metadata=metadata)
        pages += 1
        assert len(page["instanceIDs"]) <= 2
        seen += page["instanceIDs"]
        token = page.get("continuationToken")
        if not token:
            break
    assert set(ids) <= set(seen)
    assert len(seen) == len(set(seen)), "an instance was listed twice"
    assert pages >= 2

    events = binding.call("history", metadata={"instanceID": ids[0]})["events"]
    kinds = [next(k for k in e if k not in ("eventId", "timestamp", "router")) for e in events]
    # A turn begins with workflowStarted; the first one holds executionStarted with name and input.
    assert kinds[:2] == ["workflowStarted", "executionStarted"], kinds
    assert events[1]["executionStarted"]["name"] == "chain"
    assert json.loads(events[1]["executionStarted"]["input"]) == {"n": 2}
    assert kinds.count("taskScheduled") == 2, kinds
    assert kinds.count("taskCompleted") == 2, kinds
    assert [e["taskScheduled"]["name"] for e in events if "taskScheduled" in e] == ["add_one", "add_one"]
    assert kinds[-1] == "executionCompleted", kinds
    assert json.loads(events[-1]["executionCompleted"]["result"]) == 2


# ---------------------------------------------------------------------------------- error paths


def test_error_instance_id_in_use(stack: Stack, binding: Binding) -> None:
    instance_id = unique("taken")
    start(binding, "wait_events", {"names": ["never"]}, instance_id)
    err = component_error(
        binding, "start", {"names": ["x"]}, {"workflowName": "wait_events", "instanceID": instance_id}
    )
    assert_component_error(err, "AlreadyExists", f"workflow instance {instance_id!r} already exists")


def test_error_malformed_instance_id(stack: Stack, binding: Binding) -> None:
    err = component_error(binding, "start", {"n": 1}, {"workflowName": "chain", "instanceID": "bad id!"})
    assert_component_error(err, "InvalidArgument", "instance ID 'bad id!' is malformed")


def test_error_unknown_instance(stack: Stack, binding: Binding) -> None:
    missing = unique("missing")
    target = {"instanceID": missing}
    for operation, data, metadata in (
        ("get", NO_DATA, target),
        ("pause", NO_DATA, target),
        ("resume", NO_DATA, target),
        ("terminate", NO_DATA, target),
        ("raiseEvent", "x", {**target, "eventName": "go"}),
        ("purge", NO_DATA, target),
        ("history", NO_DATA, target),
    ):
        err = component_error(binding, operation, data, metadata)
        assert_component_error(err, "NotFound", f"no workflow instance with ID {missing!r}")


def test_error_purge_of_a_running_instance(stack: Stack, binding: Binding) -> None:
    instance_id = unique("running")
    start(binding, "wait_events", {"names": ["never"]}, instance_id)
    err = component_error(binding, "purge", metadata={"instanceID": instance_id})
    assert_component_error(err, "FailedPrecondition", "is RUNNING", "can be purged")
    assert get(binding, instance_id)["runtimeStatus"] == "RUNNING"


def test_error_bad_metadata(stack: Stack, binding: Binding) -> None:
    err = component_error(binding, "start", {"n": 1}, {"instanceID": unique("nameless")})
    assert_component_error(err, "InvalidArgument", "needs the metadata key 'workflowName'")
    err = component_error(binding, "get", metadata={"instanceid": "x"})
    assert_component_error(err, "InvalidArgument", "'instanceid'", "did you mean 'instanceID'")
    err = component_error(binding, "list", metadata={"pageSize": "lots"})
    assert_component_error(err, "InvalidArgument", "pageSize", "'lots'")
    err = component_error(binding, "purge", metadata={"instanceID": "x", "recursive": "maybe"})
    assert_component_error(err, "InvalidArgument", "recursive must be true or false, not 'maybe'")


def test_error_unknown_operation(stack: Stack, binding: Binding) -> None:
    # daprd refuses it itself, from the operations the component listed (ListOperations).
    err = component_error(binding, "frobnicate", metadata={"instanceID": "x"})
    assert err.component_code is None, err
    assert "binding workflows does not support operation frobnicate" in err.message
    operations = "start get terminate raiseEvent pause resume purge list history"
    assert f"supported operations:{operations}" in err.message


def test_error_data_that_is_not_json_over_grpc(stack: Stack) -> None:
    """invoke_binding passes `data` on as bytes: the component refuses bytes that are not JSON."""
    client = stack.daprd.client()
    try:
        binding = GrpcBinding(client)
        instance_id = unique("raw")
        with pytest.raises(BindingError) as info:
            binding.call("start", metadata={"workflowName": "chain", "instanceID": instance_id}, raw=b"{nope")
        assert_component_error(info.value, "InvalidArgument", "the workflow input is not valid JSON")
        with pytest.raises(BindingError) as info:
            binding.call("raiseEvent", metadata={"instanceID": instance_id, "eventName": "e"}, raw=b"\xff")
        assert_component_error(info.value, "InvalidArgument", "the event data is not valid JSON")
        # Nothing was started.
        err = component_error(binding, "get", metadata={"instanceID": instance_id})
        assert_component_error(err, "NotFound")
    finally:
        client.close()


def test_http_data_is_always_json(stack: Stack) -> None:
    """Over HTTP, daprd JSON-encodes `data` itself: the component never sees bytes that are not JSON."""
    # A request body that is not JSON never reaches the component: daprd answers 400 itself.
    status, answer = post_raw(stack.daprd, b'{"operation": "start", "data": {nope}')
    assert (status, answer["errorCode"]) == (400, "ERR_MALFORMED_REQUEST"), answer
    assert "failed deserializing HTTP body" in answer["message"]
    # A string that is not JSON text arrives as a JSON string.
    http = HttpBinding(stack.daprd)
    instance_id = unique("stringy")
    start(http, "custom_status_wf", "{nope", instance_id)
    assert prop(get(http, instance_id), "input") == "{nope"


def post_raw(daprd: Daprd, body: bytes) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{daprd.http_port}/v1.0/bindings/workflows", data=body, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


# ------------------------------------------------------------------------------ component YAMLs


@pytest.mark.parametrize(
    ("metadata", "named"),
    [
        ({"startTimeoutSecs": "5"}, "unknown metadata startTimeoutSecs in the component YAML"),
        ({"startTimeoutSeconds": "soon"}, "startTimeoutSeconds must be a number of seconds, not 'soon'"),
    ],
    ids=["unknown-key", "bad-value"],
)
def test_init_rejects_bad_yaml_metadata(
    stack: Stack, dapr_bin: Path, tmp_path: Path, metadata: dict[str, str], named: str
) -> None:
    """daprd cannot load the component, says why in its log, and exits."""
    daprd = Daprd(
        dapr_bin, stack.engine, tmp_path, {"workflows.yaml": component_yaml(metadata=metadata)}, "bad-yaml"
    )
    daprd.start(wait=False)
    try:
        code = daprd.wait_exit(timeout=30)
    finally:
        daprd.kill()
    log = daprd.log_text()
    assert code != 0, log
    fatal = [line for line in log.splitlines() if "level=fatal" in line]
    assert fatal, log
    assert "Fatal error from runtime: process component workflows error" in fatal[0]
    assert "rpc error: code = InvalidArgument desc = " in fatal[0]
    assert named in fatal[0], fatal[0]


def test_two_components_on_one_socket(dapr_bin: Path, tmp_path: Path) -> None:
    """Several YAMLs of type bindings.dapr-workflows: several bindings in daprd, one engine behind them.

    Each YAML keeps its own settings; the input bindings that read share the lifecycle events,
    each event going to one of them. No worker runs here: instances stay PENDING.
    """
    resources = {
        # Reads events because the app answers OPTIONS /wf-a.
        "a.yaml": component_yaml("wf-a", {"startTimeoutSeconds": "0"}),
        # Reads events although the app answers OPTIONS /wf-b with 404: the direction says so.
        "b.yaml": component_yaml("wf-b", {"startTimeoutSeconds": "1", "direction": "input, output"}),
        # Output only: never an input binding.
        "c.yaml": component_yaml("wf-c", {"direction": "output"}),
    }
    with contextlib.ExitStack() as cleanup:
        app = RecordingApp(("wf-a", "wf-b", "wf-c"), options_routes=("wf-a", "wf-c")).start()
        cleanup.callback(app.stop)
        engine = EngineProcess(tmp_path).start()
        cleanup.callback(engine.kill)
        daprd = Daprd(dapr_bin, engine, tmp_path, resources, app_port=app.port)
        cleanup.callback(daprd.kill)
        daprd.start()

        capabilities = {c["name"]: sorted(c["capabilities"]) for c in daprd.metadata()["components"]}
        both = ["INPUT_BINDING", "OUTPUT_BINDING"]
        assert capabilities == {"wf-a": both, "wf-b": both, "wf-c": ["OUTPUT_BINDING"]}
        a, b, c = (HttpBinding(daprd, name) for name in ("wf-a", "wf-b", "wf-c"))

        # Start through one, read through the others: the same engine.
        ids = [unique("shared") for _ in range(6)]
        for instance_id in ids:
            began = time.monotonic()
            start(a, "chain", {"n": 1}, instance_id)
            assert time.monotonic() - began < 0.9  # wf-a: startTimeoutSeconds 0, no wait
        for instance_id in ids:
            for other in (b, c):
                state = get(other, instance_id)
                assert (state["workflowName"], state["runtimeStatus"]) == ("chain", "PENDING")
        # wf-b waits up to 1s for a worker (there is none) before it answers.
        late = unique("late")
        began = time.monotonic()
        start(b, "chain", {"n": 1}, late)
        assert 0.9 <= time.monotonic() - began < 5
        assert get(a, late)["runtimeStatus"] == "PENDING"

        for instance_id in ids:
            c.call("terminate", {"by": "wf-c"}, {"instanceID": instance_id})
            assert get(a, instance_id)["runtimeStatus"] == "TERMINATED"
        log = engine_log_since_start(engine)
        assert "input binding 'wf-a' connected" in log
        assert "input binding 'wf-b' connected" in log
        assert "input binding 'wf-c'" not in log

        def terminated() -> list[str]:
            return [d.body["instanceID"] for d in app.received() if d.body["type"] == "terminated"]

        app.wait_for(lambda _: set(ids) <= set(terminated()), 30, "terminated events of all instances")
        assert sorted(terminated()) == sorted(ids), "an event was delivered twice"
        for d in app.received():
            assert json.loads(d.body["output"]) == {"by": "wf-c"}
        # Both input bindings took a share of the events.
        assert {d.route for d in app.received()} == {"wf-a", "wf-b"}


# ------------------------------------------------------------------------------ lifecycle events


def test_lifecycle_events_reach_the_app(stack: Stack) -> None:
    http = HttpBinding(stack.daprd)
    instance_id = unique("events")
    start(http, "chain", {"n": 2, "start": 5}, instance_id)
    events = stack.app.wait_events(instance_id, {"started", "completed"})
    started, completed = events["started"], events["completed"]
    assert set(started) == {"type", "instanceID", "workflowName", "runtimeStatus", "time"}
    assert started["instanceID"] == instance_id
    assert (started["workflowName"], started["runtimeStatus"]) == ("chain", "RUNNING")
    assert set(completed) == {"type", "instanceID", "workflowName", "runtimeStatus", "time", "output"}
    assert (completed["workflowName"], completed["runtimeStatus"]) == ("chain", "COMPLETED")
    assert json.loads(completed["output"]) == 7
    assert parse_time(started["time"]) <= parse_time(completed["time"])
    # daprd passes the event's binding metadata on as HTTP headers.
    delivery = next(d for d in stack.app.received(instance_id) if d.body["type"] == "completed")
    headers = {k.lower(): v for k, v in delivery.headers.items()}
    assert headers.get("eventtype") == "completed", headers
    assert headers.get("instanceid") == instance_id, headers
    assert delivery.route == "workflows"


def test_management_and_failure_events(stack: Stack) -> None:
    http = HttpBinding(stack.daprd)
    managed = unique("managed-events")
    start(http, "wait_events", {"names": ["go"]}, managed)
    for operation in ("pause", "resume"):
        http.call(operation, metadata={"instanceID": managed})
    http.call("terminate", {"why": "enough"}, {"instanceID": managed})
    failing = unique("failing-events")
    start(http, "fail_uncaught", {"message": "boom"}, failing)

    events = stack.app.wait_events(managed, {"started", "suspended", "resumed", "terminated"})
    assert events["suspended"]["runtimeStatus"] == "SUSPENDED"
    assert events["resumed"]["runtimeStatus"] == "RUNNING"
    assert events["terminated"]["runtimeStatus"] == "TERMINATED"
    assert json.loads(events["terminated"]["output"]) == {"why": "enough"}
    failed = stack.app.wait_events(failing, {"started", "failed"})["failed"]
    assert failed["runtimeStatus"] == "FAILED"
    assert "output" not in failed
    assert "boom" in failed["failureDetails"]["errorMessage"], failed


def test_an_error_answer_gets_the_event_again(stack: Stack) -> None:
    instance_id = unique("redelivered")
    stack.app.fail_first.add(instance_id)  # the app answers 500 to each event's first delivery
    start(HttpBinding(stack.daprd), "chain", {"n": 1}, instance_id)
    stack.app.wait_events(instance_id, {"started", "completed"})
    for event_type in ("started", "completed"):
        attempts = stack.app.attempts(instance_id, event_type)
        assert [a.status for a in attempts] == [500, 200], attempts
        assert attempts[0].body == attempts[1].body
        assert attempts[1].at - attempts[0].at >= 0.4  # the component's backoff (0.5s at first)
    assert "error when handling message" in stack.daprd.log_text()


def test_an_app_that_was_down_misses_nothing(stack: Stack) -> None:
    http = HttpBinding(stack.daprd)
    stack.app.stop()
    try:
        ids = [unique("app-down") for _ in range(3)]
        for instance_id in ids:
            start(http, "chain", {"n": 1}, instance_id)
        for instance_id in ids:
            wait_status(http, instance_id, "COMPLETED")
        time.sleep(1.0)  # deliveries fail meanwhile: connection refused
    finally:
        stack.app.start()
    for instance_id in ids:
        stack.app.wait_events(instance_id, {"started", "completed"}, timeout=40)


# ------------------------------------------------------------------------------------ restarts


def test_daprd_restarts(dapr_bin: Path, tmp_path: Path) -> None:
    """daprd stopped (SIGTERM) and killed (SIGKILL) while the component runs."""
    with running_stack(dapr_bin, tmp_path) as s:
        http = HttpBinding(s.daprd)
        before = unique("before")
        start(http, "chain", {"n": 1}, before)
        s.app.wait_events(before, {"started", "completed"})

        for how in ("stop", "kill"):
            if how == "stop":
                assert s.daprd.stop() == 0
            else:
                s.daprd.kill()
            # Workflows run meanwhile, managed straight on the engine by the SDK client.
            meanwhile = [sdk_start(s.sdk, "chain", {"n": 1}) for _ in range(2)]
            for instance_id in meanwhile:
                assert wait_done(s.sdk, instance_id)["status"] == "COMPLETED"
            s.daprd.start()
            assert "pluggable component 'dapr-workflows' was successfully registered" in s.daprd.boot_log()
            # The output binding works again, and the events recorded meanwhile arrive.
            for instance_id in meanwhile:
                assert prop(get(http, instance_id), "output") == 1
                s.app.wait_events(instance_id, {"started", "completed"})
            after = unique(f"after-{how}")
            start(http, "chain", {"n": 1}, after)
            s.app.wait_events(after, {"started", "completed"})


def test_component_restart_while_daprd_runs(dapr_bin: Path, tmp_path: Path) -> None:
    """The engine restarted under a running daprd: output binding reconnects, the Read stream does not."""
    with running_stack(dapr_bin, tmp_path) as s:
        http = HttpBinding(s.daprd)
        before = unique("before")
        start(http, "chain", {"n": 1}, before)
        s.app.wait_events(before, {"started", "completed"})

        began = time.monotonic()
        assert s.engine.stop() == 0  # SIGTERM
        stop_seconds = time.monotonic() - began
        with pytest.raises(BindingError) as info:
            get(http, before)
        assert info.value.component_code == "Unavailable", info.value
        down_error = info.value.reason

        s.engine.start()
        # Output binding: daprd's gRPC client connects to the new socket by itself.
        began = time.monotonic()
        errors: list[str] = []

        def get_before() -> dict[str, Any] | None:
            try:
                return get(http, before)
            except BindingError as err:
                errors.append(f"{err.component_code}: {err.reason}")
                return None

        state = wait_until(get_before, lambda st: st is not None, timeout=60, interval=0.1)
        assert state is not None and state["runtimeStatus"] == "COMPLETED"
        reconnect_seconds = time.monotonic() - began
        # daprd called Init before this engine process started: the binding uses default settings.
        assert "was initialised before this process started; using default settings" in (
            engine_log_since_start(s.engine)
        )

        # Input binding: the Read stream broke with the old process and daprd does not reopen it.
        wait_until(s.daprd.log_text, lambda text: "failed to receive binding message" in text, timeout=10)
        # The SDK worker reconnects to the engine by itself.
        wait_until(
            lambda: engine_log_since_start(s.engine),
            lambda text: "connected (dapr dialect)" in text,
            timeout=60,
            interval=0.1,
        )
        waiting = unique("waiting")
        start(http, "chain", {"n": 1}, waiting)
        wait_status(http, waiting, "COMPLETED")
        time.sleep(2)
        assert s.app.received(waiting) == [], "daprd reopened the Read stream"
        assert "input binding 'workflows' connected" not in engine_log_since_start(s.engine)

        # Restarting daprd opens a new stream: the events kept in the outbox arrive.
        s.daprd.restart()
        s.app.wait_events(waiting, {"started", "completed"})
        print(
            f"\nengine SIGTERM took {stop_seconds:.1f}s; while it was down daprd said: {down_error}; "
            f"output binding back {reconnect_seconds:.2f}s after the engine restarted "
            f"({len(errors)} failed calls meanwhile: {sorted(set(errors))})"
        )


def test_sigterm_stops_the_engine_within_its_grace_under_daprd(dapr_bin: Path, tmp_path: Path) -> None:
    with running_stack(dapr_bin, tmp_path) as s:
        # Both long-lived streams are open: daprd's Read stream and the SDK worker's.
        wait_until(s.engine.log_text, lambda text: "input binding 'workflows' connected" in text, timeout=10)
        wait_until(s.engine.log_text, lambda text: "connected (dapr dialect)" in text, timeout=30)
        began = time.monotonic()
        assert s.engine.stop(timeout=30) == 0
        took = time.monotonic() - began
        assert "finishing calls in flight (up to 5s)" in s.engine.log_text()
        assert took < 7, f"SIGTERM took {took:.1f}s"
