"""The SDK extension's DaprClient workflow methods, through a real daprd, on both routes.

One daprd serves both: our component (the YAML of `components/`, on a real engine) and daprd's
built-in engine (with real placement and scheduler processes and an in-memory actor state store).
`workflow_component="workflows"` goes to our component through daprd's binding API,
`workflow_component="dapr"` to the built-in engine through daprd's workflow gRPC API. The docs'
workflow runs in a real Dapr app (`tests/sdk_apps/docs_host.py`) for each: one whose
`WorkflowRuntime` takes work from our engine, one that takes it from daprd.

The dapr SDK is imported here; durabletask never is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import unittest
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dapr.clients.exceptions import DaprInternalError
from dapr_workflows_ext import (
    DaprClient,
    DaprWorkflowError,
    GetWorkflowResponse,
    InvalidWorkflowRequestError,
    NotAWorkflowComponentError,
    StartWorkflowResponse,
    WorkflowAlreadyExistsError,
    WorkflowNotFoundError,
    WorkflowRuntimeStatus,
    WorkflowStateError,
    WorkflowUnavailableError,
)
from dapr_workflows_ext.aio import DaprClient as AioDaprClient

from tests.harness.control_plane import ControlPlane, actor_state_store_yaml
from tests.harness.daprd import Daprd, component_yaml
from tests.harness.engine_process import EngineProcess
from tests.harness.sdk_host import SdkHost
from tests.harness.shared import unique, wait_until

RUNNING = WorkflowRuntimeStatus.RUNNING
SUSPENDED = WorkflowRuntimeStatus.SUSPENDED
TERMINATED = WorkflowRuntimeStatus.TERMINATED

# The component YAML of `components/`, output only: this daprd has no app to take lifecycle events.
COMPONENT_YAML = component_yaml("workflows", {"direction": "output"})


@dataclass
class Stack:
    engine: EngineProcess
    control_plane: ControlPlane
    daprd: Daprd


@contextlib.contextmanager
def app_on(address: str, log: Path) -> Iterator[SdkHost]:
    """The Dapr app of the docs' workflow, its WorkflowRuntime connected to `address`."""
    host = SdkHost("docs", address, log)
    try:
        yield host
    finally:
        host.close()


def wait_actor_runtime(daprd: Daprd, timeout: float = 30.0) -> None:
    """Until daprd reports placement and scheduler connected (the built-in engine needs both)."""
    wait_until(
        daprd.metadata,
        lambda md: (
            md.get("actorRuntime", {}).get("placement") == "placement: connected"
            and bool(md.get("scheduler", {}).get("connected_addresses"))
        ),
        timeout=timeout,
        interval=0.1,
    )


@pytest.fixture(scope="module")
def stack(dapr_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("sdk-ext-client")
    with contextlib.ExitStack() as cleanup:
        engine = EngineProcess(workdir).start()
        cleanup.callback(engine.kill)
        control_plane = ControlPlane(dapr_bin, workdir).start()
        cleanup.callback(control_plane.stop)
        cleanup.enter_context(app_on(engine.dapr_address, workdir / "app-on-engine.log"))
        daprd = Daprd(
            dapr_bin,
            engine,
            workdir,
            {"workflows.yaml": COMPONENT_YAML, "statestore.yaml": actor_state_store_yaml("statestore")},
            app_id="docs-app",
            extra_args=control_plane.daprd_args,
        )
        cleanup.callback(daprd.kill)
        daprd.start()
        wait_actor_runtime(daprd)
        cleanup.enter_context(app_on(f"127.0.0.1:{daprd.grpc_port}", workdir / "app-on-daprd.log"))
        yield Stack(engine, control_plane, daprd)


def point_sdk_at(daprd: Daprd, monkeypatch: pytest.MonkeyPatch) -> None:
    """`DaprClient()` without arguments finds this daprd, as an app under `dapr run` does."""
    for variable in ("DAPR_GRPC_ENDPOINT", "DAPR_HTTP_ENDPOINT", "DAPR_API_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("DAPR_HTTP_PORT", str(daprd.http_port))
    monkeypatch.setenv("DAPR_GRPC_PORT", str(daprd.grpc_port))


@pytest.fixture
def sidecar(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Daprd:
    point_sdk_at(stack.daprd, monkeypatch)
    return stack.daprd


@pytest.fixture(params=["workflows", "dapr"], ids=["component", "builtin"])
def workflow_component(request: pytest.FixtureRequest) -> str:
    """`workflows`: our component through daprd's binding API; `dapr`: daprd's built-in engine."""
    return str(request.param)


def custom_status(state: GetWorkflowResponse) -> Any:
    raw = state.properties.get("dapr.workflow.custom_status")
    return None if raw is None else json.loads(raw)


def check_state(state: GetWorkflowResponse, instance_id: str, status: WorkflowRuntimeStatus) -> None:
    assert isinstance(state, GetWorkflowResponse)
    assert state.instance_id == instance_id
    assert state.workflow_name == "hello_world_wf"
    assert state.runtime_status is status
    # As the Dapr SDK answered: `runtime_status` compares and prints as "Running", ...
    assert state.runtime_status == status.value and f"{state.runtime_status}" == status.value
    # Timezone-aware, in UTC.
    assert state.created_at.utcoffset() == timedelta(0) == state.last_updated_at.utcoffset()
    assert state.created_at <= state.last_updated_at
    assert abs(time.time() - state.created_at.timestamp()) < 120, state.created_at
    assert json.loads(state.properties["dapr.workflow.input"]) == "Hi Counter!"


# ------------------------------------------------------------------ the docs' sequence, verbatim


def test_docs_sequence(sidecar: Daprd, workflow_component: str) -> None:
    """The Python example of the Dapr docs (How to: Manage workflows), keyword for keyword."""
    instanceId = unique("docs")
    workflowComponent = workflow_component
    workflowName = "hello_world_wf"
    inputData = "Hi Counter!"
    workflowOptions = dict()
    workflowOptions["task_queue"] = "testQueue"
    eventName = "event1"
    eventData = "eventData"

    with DaprClient() as d:
        # Start workflow
        start_resp = d.start_workflow(
            instance_id=instanceId,
            workflow_component=workflowComponent,
            workflow_name=workflowName,
            input=inputData,
            workflow_options=workflowOptions,
        )
        assert isinstance(start_resp, StartWorkflowResponse)
        assert start_resp.instance_id == instanceId
        getResponse = d.get_workflow(instance_id=instanceId, workflow_component=workflowComponent)
        check_state(getResponse, instanceId, RUNNING)

        # Pause workflow
        d.pause_workflow(instance_id=instanceId, workflow_component=workflowComponent)
        getResponse = d.get_workflow(instance_id=instanceId, workflow_component=workflowComponent)
        check_state(getResponse, instanceId, SUSPENDED)

        # Resume workflow
        d.resume_workflow(instance_id=instanceId, workflow_component=workflowComponent)
        getResponse = d.get_workflow(instance_id=instanceId, workflow_component=workflowComponent)
        check_state(getResponse, instanceId, RUNNING)

        # Raise workflow event: the workflow takes it (its third activity runs after it).
        d.raise_workflow_event(
            instance_id=instanceId,
            workflow_component=workflowComponent,
            event_name=eventName,
            event_data=eventData,
        )
        consumed = wait_until(
            lambda: custom_status(
                d.get_workflow(instance_id=instanceId, workflow_component=workflowComponent)
            ),
            lambda status: status is not None and status["event1"] is not None,
        )
        assert consumed == {"counter": 111, "input": inputData, "event1": eventData}

        # Terminate workflow
        d.terminate_workflow(instance_id=instanceId, workflow_component=workflowComponent)
        getResponse = d.get_workflow(instance_id=instanceId, workflow_component=workflowComponent)
        check_state(getResponse, instanceId, TERMINATED)

        # Purge workflow
        d.purge_workflow(instance_id=instanceId, workflow_component=workflowComponent)
        # The docs catch DaprInternalError here: the typed errors are DaprInternalErrors.
        with pytest.raises(DaprInternalError) as info:
            d.get_workflow(instance_id=instanceId, workflow_component=workflowComponent)
        assert isinstance(info.value, WorkflowNotFoundError), info.value
        assert instanceId in info.value.message


# The Python sequence of the Dapr docs' "How to: Manage workflows" page (the seed documents), as
# written there. The page imports nothing; a user's code would have `from dapr.clients import
# DaprGrpcClient`, which becomes the one changed line: `from dapr_workflows_ext import DaprGrpcClient`.
DOCS_MANAGE_SEQUENCE = r"""
dapr = DaprGrpcClient(f'localhost:{self.server_port}')

# Sane parameters
workflow_name = 'testWorkflow'
instance_id = str(uuid.uuid4())
workflow_component = "dapr"
input = "paperclips"

# Start the workflow
start_response = dapr.start_workflow(instance_id, workflow_name, workflow_component,
                                     input.encode('utf-8'), None)
self.assertEqual(instance_id, start_response.instance_id)



# Get info on the workflow to check that it is running
get_response = dapr.get_workflow(instance_id, workflow_component)
self.assertEqual("RUNNING", get_response.runtime_status)

# Pause the workflow
dapr.pause_workflow(instance_id, workflow_component)

# Get info on the workflow to check that it is paused
get_response = dapr.get_workflow(instance_id, workflow_component)
self.assertEqual("SUSPENDED", get_response.runtime_status)

# Resume the workflow
dapr.resume_workflow(instance_id, workflow_component)

# Get info on the workflow to check that it is resumed
get_response = dapr.get_workflow(instance_id, workflow_component)
self.assertEqual("RUNNING", get_response.runtime_status)

# Raise an event on the workflow. \nTODO: Figure out how to check/verify this

# Terminate the workflow
dapr.terminate_workflow(instance_id, workflow_component)

# Get info on the workflow to check that it is terminated
get_response = dapr.get_workflow(instance_id, workflow_component)
self.assertEqual("TERMINATED", get_response.runtime_status)

# Purge the workflow
dapr.purge_workflow(instance_id, workflow_component)

# Get information on the workflow to ensure that it has been purged
TODO
"""


class DocsManageCase(unittest.TestCase):
    """The docs' sequence is a method of a TestCase (`self.server_port`, `self.assertEqual`)."""

    __test__ = False  # run by test_docs_manage_sequence_as_written, with its daprd
    server_port = 0
    workflow_component = "dapr"

    def runTest(self) -> None:
        source = DOCS_MANAGE_SEQUENCE
        if self.workflow_component != "dapr":  # the same sequence on our component
            source = source.replace(
                'workflow_component = "dapr"', f'workflow_component = "{self.workflow_component}"'
            )
        namespace: dict[str, Any] = {"uuid": uuid, "self": self, "TODO": None}
        exec("from dapr_workflows_ext import DaprGrpcClient", namespace)
        exec(source, namespace)
        # What the sequence did: its instance is gone (purged) once it ends.
        with namespace["dapr"] as dapr, self.assertRaises(WorkflowNotFoundError):
            dapr.get_workflow(namespace["instance_id"], namespace["workflow_component"])


def test_docs_manage_sequence_as_written(sidecar: Daprd, workflow_component: str) -> None:
    """The seed documents' sequence passes verbatim (`"RUNNING"` equals our status), on daprd's
    built-in engine (`"dapr"`, as written) and on our component (only the component name changed)."""
    case = DocsManageCase()
    case.server_port = sidecar.grpc_port
    case.workflow_component = workflow_component
    result = unittest.TestResult()
    case.run(result)
    assert result.wasSuccessful(), [text for _, text in result.failures + result.errors]
    assert result.testsRun == 1


def test_runtime_status_equals_both_spellings() -> None:
    """`"RUNNING"` (the docs, the HTTP API) and `"Running"` (the SDK) alike; prints as the SDK did."""
    for status in WorkflowRuntimeStatus:
        api_name = status.name
        assert status == api_name and api_name == status and not status != api_name
        assert status == status.value and status.value == status
        assert status == api_name.lower()
        assert f"{status}" == status.value == str(status)
        assert status in {status.value}
    assert RUNNING != "SUSPENDED" and "Suspended" != RUNNING and RUNNING != SUSPENDED
    assert WorkflowRuntimeStatus.CONTINUED_AS_NEW == "CONTINUED_AS_NEW"
    assert RUNNING != 1


def test_docs_sequence_async(sidecar: Daprd, workflow_component: str) -> None:
    """The same sequence with `dapr_workflows_ext.aio.DaprClient`, awaited."""

    async def sequence() -> None:
        instanceId = unique("docs-aio")
        workflowComponent = workflow_component
        async with AioDaprClient() as d:
            start_resp = await d.start_workflow(
                instance_id=instanceId,
                workflow_component=workflowComponent,
                workflow_name="hello_world_wf",
                input="Hi Counter!",
                workflow_options={"task_queue": "testQueue"},
            )
            assert start_resp.instance_id == instanceId

            async def get() -> GetWorkflowResponse:
                return await d.get_workflow(instance_id=instanceId, workflow_component=workflowComponent)

            check_state(await get(), instanceId, RUNNING)
            await d.pause_workflow(instance_id=instanceId, workflow_component=workflowComponent)
            check_state(await get(), instanceId, SUSPENDED)
            await d.resume_workflow(instance_id=instanceId, workflow_component=workflowComponent)
            check_state(await get(), instanceId, RUNNING)
            await d.raise_workflow_event(
                instance_id=instanceId,
                workflow_component=workflowComponent,
                event_name="event1",
                event_data={"n": 1},
            )
            deadline = time.monotonic() + 30
            while (status := custom_status(await get())) is None or status["event1"] is None:
                assert time.monotonic() < deadline, status
                await asyncio.sleep(0.05)
            assert status == {"counter": 111, "input": "Hi Counter!", "event1": {"n": 1}}
            await d.terminate_workflow(instance_id=instanceId, workflow_component=workflowComponent)
            check_state(await get(), instanceId, TERMINATED)
            await d.purge_workflow(instance_id=instanceId, workflow_component=workflowComponent)
            with pytest.raises(WorkflowNotFoundError):
                await get()

    asyncio.run(sequence())


def test_positional_arguments_of_the_sdk_and_a_generated_instance_id(
    sidecar: Daprd, workflow_component: str
) -> None:
    """The Dapr SDK's positional order (component first for start; instance ID first otherwise)."""
    with DaprClient() as d:
        started = d.start_workflow(workflow_component, "hello_world_wf", "Hi Counter!")
        instance_id = started.instance_id
        assert len(instance_id) == 36, instance_id  # a UUID, as the SDK made
        check_state(d.get_workflow(instance_id, workflow_component), instance_id, RUNNING)
        d.raise_workflow_event(instance_id, workflow_component, "event1", b'"raw"', True)
        wait_until(
            lambda: custom_status(d.get_workflow(instance_id, workflow_component)),
            lambda status: status is not None and status["event1"] == "raw",
        )
        d.terminate_workflow(instance_id, workflow_component)
        d.purge_workflow(instance_id, workflow_component)


# ---------------------------------------------------------------------------------- typed errors


class Client:
    """The sync or the async client behind one awaitable interface, so one scenario tests both."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.client: Any = DaprClient() if kind == "sync" else AioDaprClient()

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            return await result if asyncio.iscoroutine(result) else result

        return call

    async def close(self) -> None:
        result = self.client.close()
        if asyncio.iscoroutine(result):
            await result


async def raises(cls: type[DaprWorkflowError], call: Awaitable[Any], *fragments: str) -> DaprWorkflowError:
    with pytest.raises(cls) as info:
        await call
    err = info.value
    assert type(err) is cls, f"{type(err).__name__}: {err}"
    assert isinstance(err, DaprInternalError)
    for fragment in fragments:
        assert fragment in err.message, err.message
    return err


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_typed_errors(sidecar: Daprd, workflow_component: str, kind: str) -> None:
    """Already exists, invalid, not in a state that allows it, not found: provoked for real."""
    builtin = workflow_component == "dapr"

    async def scenario() -> None:
        d = Client(kind)
        try:
            instance_id = unique(f"errors-{kind}")
            target = {"instance_id": instance_id, "workflow_component": workflow_component}
            await d.start_workflow(
                instance_id=instance_id,
                workflow_component=workflow_component,
                workflow_name="hello_world_wf",
                input="Hi Counter!",
            )

            # The ID is in use.
            err = await raises(
                WorkflowAlreadyExistsError,
                d.start_workflow(
                    instance_id=instance_id,
                    workflow_component=workflow_component,
                    workflow_name="hello_world_wf",
                ),
                instance_id,
                "already exists",
            )
            assert (err.grpc_status, err.operation, err.instance_id) == (
                "ALREADY_EXISTS",
                "start",
                instance_id,
            )

            # A running instance cannot be purged.
            err = await raises(WorkflowStateError, d.purge_workflow(**target), instance_id)
            assert err.grpc_status == "FAILED_PRECONDITION"
            assert ("has not yet completed" if builtin else "only completed") in err.message

            # Malformed requests: daprd's or the component's check, and the client's own.
            err = await raises(
                InvalidWorkflowRequestError,
                d.start_workflow(
                    instance_id="bad id!",
                    workflow_component=workflow_component,
                    workflow_name="hello_world_wf",
                ),
                "'bad id!'",
            )
            assert isinstance(err, ValueError)  # what the Dapr SDK raised for bad arguments
            await raises(
                InvalidWorkflowRequestError,
                d.raise_workflow_event(**target, event_name=" "),
                "event_name must not be empty",
            )
            await raises(
                InvalidWorkflowRequestError, d.start_workflow(workflow_component, "hello_world_wf", {1j})
            )
            if not builtin:
                # The component takes JSON only (daprd's built-in engine takes any bytes).
                await raises(
                    InvalidWorkflowRequestError,
                    d.start_workflow(
                        workflow_component, "hello_world_wf", b"\x00not json", send_raw_bytes=True
                    ),
                    "not valid JSON",
                )

            # No instance with this ID: every operation says so (the built-in engine's get answers
            # an empty state, its pause and resume an INTERNAL error, its terminate and purge NOT_FOUND).
            missing = {"instance_id": unique("missing"), "workflow_component": workflow_component}
            for call in (
                d.get_workflow(**missing),
                d.pause_workflow(**missing),
                d.resume_workflow(**missing),
                d.terminate_workflow(**missing),
                d.purge_workflow(**missing),
                d.raise_workflow_event(**missing, event_name="event1", event_data=1),
            ):
                err = await raises(WorkflowNotFoundError, call, missing["instance_id"])
                assert "%!" not in err.message, err.message  # daprd's formatting slip is cleaned up

            await d.terminate_workflow(**target)
            await d.purge_workflow(**target)
        finally:
            await d.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_name_that_is_not_a_workflow_component(sidecar: Daprd, kind: str) -> None:
    """Refused before any call, with what the name is; daprd's metadata is asked once per client."""

    async def scenario() -> None:
        d = Client(kind)
        asked = 0
        get_metadata = d.client.get_metadata

        def counting_get_metadata() -> Any:
            nonlocal asked
            asked += 1
            return get_metadata()

        d.client.get_metadata = counting_get_metadata
        try:
            workflow_components = "the workflow components are 'dapr' (daprd's built-in engine), 'workflows'"
            await raises(
                NotAWorkflowComponentError,
                d.get_workflow("some-id", "statestore"),
                f"statestore is a state.in-memory component, not a workflow component; {workflow_components}",
            )
            err = await raises(
                NotAWorkflowComponentError,
                d.start_workflow("orders", "hello_world_wf"),
                f"daprd has no component named 'orders'; {workflow_components}",
            )
            assert isinstance(err, InvalidWorkflowRequestError)
            await raises(WorkflowNotFoundError, d.get_workflow(unique("missing"), "workflows"))
            assert asked == 1
        finally:
            await d.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_unavailable(dapr_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """The component down, the built-in engine without placement, daprd down: all unavailable."""
    with contextlib.ExitStack() as cleanup:
        engine = EngineProcess(tmp_path).start()
        cleanup.callback(engine.kill)
        # No placement and no scheduler: daprd's built-in engine cannot run.
        daprd = Daprd(dapr_bin, engine, tmp_path, {"workflows.yaml": COMPONENT_YAML}, app_id=f"alone-{kind}")
        cleanup.callback(daprd.kill)
        daprd.start()
        point_sdk_at(daprd, monkeypatch)

        async def scenario() -> None:
            d = Client(kind)
            try:
                instance_id = unique("unavailable")
                await raises(
                    WorkflowUnavailableError,
                    d.get_workflow(instance_id, "dapr"),
                    "placement service is not configured",
                )
                # Our component is up, then down.
                await raises(WorkflowNotFoundError, d.get_workflow(instance_id, "workflows"))
                engine.kill()
                err = await raises(WorkflowUnavailableError, d.get_workflow(instance_id, "workflows"))
                assert err.grpc_status == "UNAVAILABLE" and "error invoking output binding" in err.details
                # daprd down: the client cannot reach it, whatever the route.
                daprd.kill()
                for component in ("dapr", "workflows"):
                    await raises(WorkflowUnavailableError, d.get_workflow(instance_id, component))
            finally:
                await d.close()

        asyncio.run(scenario())
