"""The proposed pluggable Workflow service (`dapr.proto.components.v1.Workflow`) on the component socket.

daprd 1.18 does not look for this service yet (dapr/dapr#8580); it is here for a daprd that will.
Like the output binding, it is a thin adapter: each rpc is one call on the engine, which applies the
rules of `workflows.py`; a refused call becomes the gRPC status of its `WorkflowError`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable
from typing import TypeVar

import grpc
from google.protobuf import timestamp_pb2

from ..engine import Engine
from ..engine.wire import now_us
from ..protos import dapr_components_pb2 as cpb
from ..protos import dapr_components_workflow_pb2 as wpb
from ..protos import dapr_components_workflow_pb2_grpc as wgrpc
from ..protos import dapr_dialect_pb2 as pb
from ..workflows import (
    Instance,
    RuntimeStatus,
    StartRequest,
    WorkflowError,
    instance_json,
    instance_page,
    internal_error,
    json_payload,
    page_query,
    page_size,
)
from .bindings import OutputSettings, abort, component_instance, init_component, wait_until_started

log = logging.getLogger("dapr_workflows.workflow_service")

# The optional capabilities this component has; the .proto file says what each one means.
FEATURES = ("SCHEDULED_START", "RECURSIVE_TERMINATE", "RECURSIVE_PURGE", "LIST", "HISTORY")

T = TypeVar("T")


def _timestamp(micros: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(micros)
    return ts


def runtime_status(status: RuntimeStatus) -> str:
    """The name of a status in the wire enum: the same name, with the enum's prefix."""
    return f"WORKFLOW_RUNTIME_STATUS_{status.name}"


def get_response(inst: Instance) -> wpb.WorkflowGetResponse:
    return wpb.WorkflowGetResponse(
        instance_id=inst.instance_id,
        workflow_name=inst.name,
        created_at=_timestamp(inst.created_at),
        last_updated_at=_timestamp(inst.updated_at),
        runtime_status=runtime_status(inst.status),
        properties=instance_json(inst)["properties"],
    )


class WorkflowService(wgrpc.WorkflowServicer):
    def __init__(self, engine: Engine, settings: dict[str, OutputSettings]) -> None:
        self.engine = engine
        # Per component (the `metadata.name` daprd sends with each call): the YAML's settings, which
        # are the output binding's (startTimeoutSeconds).
        self.settings = settings

    async def _run(self, context: grpc.aio.ServicerContext, rpc: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except WorkflowError as err:
            log.info("Workflow.%s failed: %s", rpc, err.message)
            await abort(context, err)
            raise AssertionError("unreachable: abort raises") from err
        except Exception:
            log.exception("Workflow.%s failed inside the engine", rpc)
            await abort(context, internal_error(f"Workflow.{rpc}"))
            raise AssertionError("unreachable: abort raises") from None

    def _limit(self) -> int:
        return self.engine.settings.max_payload_bytes

    # -- lifecycle of the component

    async def Init(
        self, request: wpb.WorkflowInitRequest, context: grpc.aio.ServicerContext
    ) -> wpb.WorkflowInitResponse:
        await init_component(self.settings, "workflow component", request.metadata.properties, context)
        return wpb.WorkflowInitResponse()

    async def Features(
        self, request: cpb.FeaturesRequest, context: grpc.aio.ServicerContext
    ) -> cpb.FeaturesResponse:
        return cpb.FeaturesResponse(features=list(FEATURES))

    async def Ping(self, request: cpb.PingRequest, context: grpc.aio.ServicerContext) -> cpb.PingResponse:
        return cpb.PingResponse()

    # -- management

    async def Start(
        self, request: wpb.WorkflowStartRequest, context: grpc.aio.ServicerContext
    ) -> wpb.WorkflowStartResponse:
        return await self._run(context, "Start", self._start(request, context))

    async def _start(
        self, request: wpb.WorkflowStartRequest, context: grpc.aio.ServicerContext
    ) -> wpb.WorkflowStartResponse:
        instance_id = request.instance_id or uuid.uuid4().hex
        scheduled = (
            request.scheduled_start_time.ToMicroseconds()
            if request.HasField("scheduled_start_time")
            else None
        )
        await self.engine.start_workflow(
            StartRequest(
                name=request.workflow_name,
                instance_id=instance_id,
                input=json_payload("workflow input", request.input, self._limit()),
                scheduled_start_at=scheduled,
            )
        )
        if scheduled is None or scheduled <= now_us():
            settings = self.settings.get(component_instance(context)) or OutputSettings()
            await wait_until_started(self.engine, instance_id, settings, context)
        return wpb.WorkflowStartResponse(instance_id=instance_id)

    async def Get(
        self, request: wpb.WorkflowGetRequest, context: grpc.aio.ServicerContext
    ) -> wpb.WorkflowGetResponse:
        inst = await self._run(context, "Get", self.engine.require_instance(request.instance_id))
        return get_response(inst)

    async def Terminate(
        self, request: wpb.WorkflowTerminateRequest, context: grpc.aio.ServicerContext
    ) -> wpb.WorkflowTerminateResponse:
        async def call() -> None:
            await self.engine.terminate(
                request.instance_id,
                json_payload("terminate output", request.output, self._limit()),
                request.recursive.value if request.HasField("recursive") else True,
            )

        await self._run(context, "Terminate", call())
        return wpb.WorkflowTerminateResponse()

    async def RaiseEvent(
        self, request: wpb.WorkflowRaiseEventRequest, context: grpc.aio.ServicerContext
    ) -> wpb.WorkflowRaiseEventResponse:
        async def call() -> None:
            await self.engine.raise_event(
                request.instance_id,
                request.event_name,
                json_payload("event data", request.event_data, self._limit()),
            )

        await self._run(context, "RaiseEvent", call())
        return wpb.WorkflowRaiseEventResponse()

    async def Pause(
        self, request: wpb.WorkflowPauseRequest, context: grpc.aio.ServicerContext
    ) -> wpb.WorkflowPauseResponse:
        await self._run(context, "Pause", self.engine.suspend(request.instance_id, request.reason or None))
        return wpb.WorkflowPauseResponse()

    async def Resume(
        self, request: wpb.WorkflowResumeRequest, context: grpc.aio.ServicerContext
    ) -> wpb.WorkflowResumeResponse:
        await self._run(context, "Resume", self.engine.resume(request.instance_id, request.reason or None))
        return wpb.WorkflowResumeResponse()

    async def Purge(
        self, request: wpb.WorkflowPurgeRequest, context: grpc.aio.ServicerContext
    ) -> wpb.WorkflowPurgeResponse:
        recursive = request.recursive.value if request.HasField("recursive") else True
        count = await self._run(context, "Purge", self.engine.purge(request.instance_id, recursive))
        return wpb.WorkflowPurgeResponse(deleted_instance_count=count)

    async def List(
        self, request: wpb.WorkflowListRequest, context: grpc.aio.ServicerContext
    ) -> wpb.WorkflowListResponse:
        async def call() -> wpb.WorkflowListResponse:
            size = page_size(request.page_size)
            found = await self.engine.query(page_query(size, request.continuation_token))
            page = instance_page(found, size)
            return wpb.WorkflowListResponse(
                instance_ids=page.instance_ids, continuation_token=page.continuation_token or ""
            )

        return await self._run(context, "List", call())

    async def History(
        self, request: wpb.WorkflowHistoryRequest, context: grpc.aio.ServicerContext
    ) -> wpb.WorkflowHistoryResponse:
        events = await self._run(context, "History", self.engine.history(request.instance_id))
        return wpb.WorkflowHistoryResponse(
            events=[
                wpb.WorkflowHistoryEvent(
                    type=pb.HistoryEvent.FromString(data).WhichOneof("eventType") or "", data=data
                )
                for data in events
            ]
        )


__all__ = ["FEATURES", "WorkflowService"]
