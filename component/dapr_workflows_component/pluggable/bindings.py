"""The output and input bindings daprd sees on the component socket.

The output binding is the workflow component interface: each operation is a call on the engine, its
answer the JSON of the Workflow HTTP API, its errors the engine's codes (daprd shows them in its
error text). The input binding carries lifecycle events from the engine's outbox to the app.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format

from ..engine import Engine, LifecycleDispatcher
from ..protos import dapr_components_pb2 as cpb
from ..protos import dapr_components_pb2_grpc as cgrpc
from ..protos import dapr_dialect_pb2 as pb
from ..workflows import (
    ErrorCode,
    StartRequest,
    WorkflowError,
    instance_json,
    instance_page,
    internal_error,
    json_payload,
    page_query,
    page_size,
    parse_bool,
)

log = logging.getLogger("dapr_workflows.binding")

# gRPC metadata daprd sends with every call: the `metadata.name` of the component YAML.
INSTANCE_HEADER = "x-component-instance"

OPERATIONS = ("start", "get", "terminate", "raiseEvent", "pause", "resume", "purge", "list", "history")

# Keys of `data`-less calls' metadata that the operations read.
_INVOKE_KEYS = ("workflowName", "instanceID", "eventName", "recursive", "pageSize", "continuationToken")

# Component YAML metadata daprd itself uses for bindings; passed through, never an error.
_DAPR_KEYS = frozenset({"direction", "route"})
# daprd initialises one component YAML as both an output and an input binding, since the socket
# serves both: each Init accepts every key of the component.
_COMPONENT_KEYS = _DAPR_KEYS | {"startTimeoutSeconds"}


def check_component_metadata(properties: Mapping[str, str]) -> None:
    unknown = sorted(k for k in properties if k not in _COMPONENT_KEYS)
    if unknown:
        raise WorkflowError(
            ErrorCode.INVALID_ARGUMENT,
            f"unknown metadata {', '.join(unknown)} in the component YAML; dapr-workflows accepts "
            f"{', '.join(sorted(_COMPONENT_KEYS))}",
        )


def component_instance(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == INSTANCE_HEADER:
            return str(value)
    return "default"


async def abort(context: grpc.aio.ServicerContext, err: WorkflowError) -> None:
    await context.abort(err.code.grpc_status, err.message)


@dataclass
class _Call:
    """One Invoke: the request, its metadata, the component's settings, the gRPC call."""

    request: cpb.InvokeRequest
    metadata: dict[str, str]
    settings: OutputSettings
    context: grpc.aio.ServicerContext


@dataclass
class OutputSettings:
    """What the output binding's component YAML may set."""

    start_timeout_seconds: float = 10.0

    @classmethod
    def parse(cls, properties: Mapping[str, str]) -> OutputSettings:
        settings = cls()
        check_component_metadata(properties)
        raw = properties.get("startTimeoutSeconds")
        if raw is not None:
            try:
                settings.start_timeout_seconds = float(raw)
            except ValueError:
                raise WorkflowError(
                    ErrorCode.INVALID_ARGUMENT,
                    f"startTimeoutSeconds must be a number of seconds, not {raw!r}",
                ) from None
            if settings.start_timeout_seconds < 0:
                raise WorkflowError(ErrorCode.INVALID_ARGUMENT, "startTimeoutSeconds must not be negative")
        return settings


async def wait_until_started(
    engine: Engine, instance_id: str, settings: OutputSettings, context: grpc.aio.ServicerContext
) -> None:
    """The engine's start-wait, within the component's `startTimeoutSeconds` and the call's deadline."""
    await engine.wait_until_started(instance_id, settings.start_timeout_seconds, context.time_remaining())


async def init_component(
    settings: dict[str, OutputSettings],
    what: str,
    properties: Mapping[str, str],
    context: grpc.aio.ServicerContext,
) -> None:
    """daprd's Init of one component YAML: its settings are checked and kept under its name."""
    instance = component_instance(context)
    try:
        settings[instance] = OutputSettings.parse(properties)
    except WorkflowError as err:
        log.error("%s %r: %s", what, instance, err.message)
        await abort(context, err)
    log.info("%s %r initialised", what, instance)


def _metadata(request: cpb.InvokeRequest) -> dict[str, str]:
    """The invoke metadata, with a clear error for our keys spelt in another case."""
    metadata = dict(request.metadata)
    for key in metadata:
        for known in _INVOKE_KEYS:
            if key != known and key.lower() == known.lower():
                raise WorkflowError(
                    ErrorCode.INVALID_ARGUMENT, f"unknown metadata key {key!r}: did you mean {known!r}?"
                )
    return metadata


def _required(metadata: Mapping[str, str], key: str, operation: str) -> str:
    value = metadata.get(key, "")
    if not value:
        raise WorkflowError(
            ErrorCode.INVALID_ARGUMENT, f"operation {operation!r} needs the metadata key {key!r}"
        )
    return value


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


class OutputBinding(cgrpc.OutputBindingServicer):
    def __init__(self, engine: Engine, settings: dict[str, OutputSettings]) -> None:
        self.engine = engine
        self.settings = settings
        self._operations: dict[str, Callable[[_Call], Any]] = {
            "start": self._start,
            "get": self._get,
            "terminate": self._terminate,
            "raiseEvent": self._raise_event,
            "pause": self._pause,
            "resume": self._resume,
            "purge": self._purge,
            "list": self._list,
            "history": self._history,
        }

    async def Init(
        self, request: cpb.OutputBindingInitRequest, context: grpc.aio.ServicerContext
    ) -> cpb.OutputBindingInitResponse:
        await init_component(self.settings, "output binding", request.metadata.properties, context)
        return cpb.OutputBindingInitResponse()

    async def ListOperations(
        self, request: cpb.ListOperationsRequest, context: grpc.aio.ServicerContext
    ) -> cpb.ListOperationsResponse:
        return cpb.ListOperationsResponse(operations=list(OPERATIONS))

    async def Ping(self, request: cpb.PingRequest, context: grpc.aio.ServicerContext) -> cpb.PingResponse:
        return cpb.PingResponse()

    async def Invoke(
        self, request: cpb.InvokeRequest, context: grpc.aio.ServicerContext
    ) -> cpb.InvokeResponse:
        instance = component_instance(context)
        settings = self.settings.get(instance)
        if settings is None:
            # daprd calls Init once; after this process restarted it goes straight to Invoke.
            log.warning(
                "output binding %r was initialised before this process started; using default settings",
                instance,
            )
            settings = self.settings[instance] = OutputSettings()
        operation = self._operations.get(request.operation)
        try:
            if operation is None:
                raise WorkflowError(
                    ErrorCode.INVALID_ARGUMENT,
                    f"unknown operation {request.operation!r}; the operations are {', '.join(OPERATIONS)}",
                )
            result = await operation(_Call(request, _metadata(request), settings, context))
        except WorkflowError as err:
            log.info("binding %s failed: %s", request.operation, err.message)
            await abort(context, err)
        except Exception:
            # Never the exception's text to daprd (it would show it to the app): one sentence.
            log.exception("binding %s failed inside the engine", request.operation)
            await abort(context, internal_error(f"the binding operation {request.operation!r}"))
        return cpb.InvokeResponse(
            data=b"" if result is None else _json(result), content_type="application/json"
        )

    # -- operations

    def _limit(self) -> int:
        return self.engine.settings.max_payload_bytes

    async def _start(self, call: _Call) -> Any:
        md = call.metadata
        instance_id = md.get("instanceID") or uuid.uuid4().hex
        await self.engine.start_workflow(
            StartRequest(
                name=_required(md, "workflowName", "start"),
                instance_id=instance_id,
                input=json_payload("workflow input", call.request.data, self._limit()),
            )
        )
        await wait_until_started(self.engine, instance_id, call.settings, call.context)
        return {"instanceID": instance_id}

    async def _get(self, call: _Call) -> Any:
        md = call.metadata
        return instance_json(await self.engine.require_instance(_required(md, "instanceID", "get")))

    async def _terminate(self, call: _Call) -> Any:
        md = call.metadata
        await self.engine.terminate(
            _required(md, "instanceID", "terminate"),
            json_payload("terminate output", call.request.data, self._limit()),
            parse_bool("recursive", md.get("recursive"), True),
        )
        return None

    async def _raise_event(self, call: _Call) -> Any:
        md = call.metadata
        await self.engine.raise_event(
            _required(md, "instanceID", "raiseEvent"),
            _required(md, "eventName", "raiseEvent"),
            json_payload("event data", call.request.data, self._limit()),
        )
        return None

    async def _pause(self, call: _Call) -> Any:
        md = call.metadata
        await self.engine.suspend(_required(md, "instanceID", "pause"))
        return None

    async def _resume(self, call: _Call) -> Any:
        md = call.metadata
        await self.engine.resume(_required(md, "instanceID", "resume"))
        return None

    async def _purge(self, call: _Call) -> Any:
        md = call.metadata
        count = await self.engine.purge(
            _required(md, "instanceID", "purge"), parse_bool("recursive", md.get("recursive"), True)
        )
        return {"deletedInstanceCount": count}

    async def _list(self, call: _Call) -> Any:
        raw_size = call.metadata.get("pageSize") or "0"
        if not raw_size.isdigit():
            raise WorkflowError(
                ErrorCode.INVALID_ARGUMENT, f"pageSize must be a whole number, not {raw_size!r}"
            )
        size = page_size(int(raw_size))
        found = await self.engine.query(page_query(size, call.metadata.get("continuationToken")))
        page = instance_page(found, size)
        answer: dict[str, Any] = {"instanceIDs": page.instance_ids}
        if page.continuation_token is not None:
            answer["continuationToken"] = page.continuation_token
        return answer

    async def _history(self, call: _Call) -> Any:
        md = call.metadata
        events = await self.engine.history(_required(md, "instanceID", "history"))
        return {
            "events": [
                json_format.MessageToDict(pb.HistoryEvent.FromString(e), preserving_proto_field_name=True)
                for e in events
            ]
        }


# ------------------------------------------------------------------------------------ input binding


class InputBinding(cgrpc.InputBindingServicer):
    def __init__(self, dispatcher: LifecycleDispatcher, settings: dict[str, OutputSettings]) -> None:
        self.dispatcher = dispatcher
        # Shared with the output binding: daprd initialises one YAML as both.
        self.settings = settings

    async def Init(
        self, request: cpb.InputBindingInitRequest, context: grpc.aio.ServicerContext
    ) -> cpb.InputBindingInitResponse:
        await init_component(self.settings, "input binding", request.metadata.properties, context)
        return cpb.InputBindingInitResponse()

    async def Ping(self, request: cpb.PingRequest, context: grpc.aio.ServicerContext) -> cpb.PingResponse:
        return cpb.PingResponse()

    async def Read(
        self, request_iterator: AsyncIterator[cpb.ReadRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cpb.ReadResponse]:
        stream = self.dispatcher.attach(component_instance(context))

        async def read_answers() -> None:
            async for ack in request_iterator:
                error = ack.response_error.message if ack.HasField("response_error") else None
                self.dispatcher.answered(stream, ack.message_id, error)

        reader = asyncio.get_running_loop().create_task(read_answers())
        try:
            while not reader.done():
                get = asyncio.ensure_future(stream.outgoing.get())
                await asyncio.wait([get, reader], return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    get.cancel()
                    continue
                delivery = get.result()
                if delivery is None:
                    # An error, not a clean end, so that daprd's log says why the stream stopped.
                    await context.abort(
                        grpc.StatusCode.UNAVAILABLE,
                        "dapr-workflows is shutting down; daprd does not reopen this stream, "
                        "restart daprd to receive lifecycle events again",
                    )
                    return
                yield cpb.ReadResponse(
                    data=delivery.payload.encode(),
                    content_type="application/json",
                    message_id=delivery.message_id,
                    metadata={"eventType": delivery.event_type, "instanceID": delivery.instance_id},
                )
        finally:
            reader.cancel()
            self.dispatcher.detach(stream)


__all__ = ["InputBinding", "OutputBinding", "OutputSettings"]
