"""`TaskHubSidecarService` in both wire dialects, over the one engine.

The two SDKs' generated code cannot share a process, so the handlers are registered by hand on the
path `/TaskHubSidecarService/<Method>` and parse requests themselves: a malformed message becomes a
clear INVALID_ARGUMENT, not a generic deserialisation failure. Where both dialects number a message's
fields alike, the Dapr dialect's class parses it for both.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from ..protos import dapr_dialect_pb2 as pb
from ..protos import durabletask_dialect_pb2 as mpb
from ..telemetry.observer import CALLER_TRACE_PARENT
from ..workflows import (
    ErrorCode,
    Instance,
    InstanceQuery,
    ReusePolicy,
    RuntimeStatus,
    StartRequest,
    WorkflowError,
    instance_page,
    page_of,
    page_query,
    page_size,
    require_instance_id,
    statuses,
)
from . import Engine, WorkFilters, metadata_app_id, wire
from .entity_rpc import entity_handlers, split_entity_messages
from .wire import parse

log = logging.getLogger("dapr_workflows.grpc")

SERVICE = "TaskHubSidecarService"
# A peer that does not answer a ping is detected within twice this (20 s).
DEFAULT_KEEPALIVE_SECONDS = 10.0

Unary = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]
Streaming = Callable[[bytes, grpc.aio.ServicerContext], AsyncIterator[bytes]]

# The page size of Dapr's ListInstanceIDs when the caller gives none.
_DAPR_LIST_PAGE_SIZE = 1024
# History events per message of StreamInstanceHistory.
_HISTORY_CHUNK = 200


async def _abort(context: grpc.aio.ServicerContext, err: WorkflowError) -> None:
    await context.abort(err.code.grpc_status, err.message)


def _unary(method: str, fn: Unary) -> grpc.RpcMethodHandler:
    async def handler(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            return await fn(raw, context)
        except WorkflowError as err:
            await _abort(context, err)
        except Exception:
            log.exception("%s failed", method)
            await context.abort(grpc.StatusCode.INTERNAL, f"{method} failed inside the engine; see its log")
        raise AssertionError("unreachable")

    return grpc.unary_unary_rpc_method_handler(handler)


def _streaming(method: str, fn: Streaming) -> grpc.RpcMethodHandler:
    async def handler(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        try:
            async for item in fn(raw, context):
                yield item
        except WorkflowError as err:
            await _abort(context, err)
        except Exception:
            log.exception("%s failed", method)
            await context.abort(grpc.StatusCode.INTERNAL, f"{method} failed inside the engine; see its log")

    return grpc.unary_stream_rpc_method_handler(handler)


def _unimplemented(what: str) -> Unary:
    async def fn(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise WorkflowError(ErrorCode.UNIMPLEMENTED, f"{what} are not supported by dapr-workflows yet")

    return fn


def _value_or_none(msg: Message, name: str) -> str | None:
    return getattr(msg, name).value if msg.HasField(name) else None


def workflow_state(inst: Instance, include_io: bool) -> pb.WorkflowState:
    """The instance as a WorkflowState (numbered alike in Microsoft's OrchestrationState)."""
    state = pb.WorkflowState(
        instanceId=inst.instance_id,
        name=inst.name,
        workflowStatus=int(inst.status),  # type: ignore[arg-type]
        createdTimestamp=wire.timestamp(inst.created_at),
        lastUpdatedTimestamp=wire.timestamp(inst.updated_at),
        executionId=wire.string_value(inst.execution_id),
        tags=inst.tags,
    )
    if inst.version is not None:
        state.version.value = inst.version
    if inst.scheduled_start_at is not None:
        state.scheduledStartTimestamp.CopyFrom(wire.timestamp(inst.scheduled_start_at))
    if inst.completed_at is not None:
        state.completedTimestamp.CopyFrom(wire.timestamp(inst.completed_at))
    if inst.parent_instance_id:
        state.parentInstanceId.value = inst.parent_instance_id
    if inst.failure:
        state.failureDetails.ParseFromString(inst.failure)
    if inst.custom_status is not None:
        state.customStatus.value = inst.custom_status
    if include_io:
        if inst.input is not None:
            state.input.value = inst.input
        if inst.output is not None:
            state.output.value = inst.output
    return state


def _instance_response(inst: Instance | None, include_io: bool) -> bytes:
    if inst is None:
        return pb.GetInstanceResponse(exists=False).SerializeToString()
    return pb.GetInstanceResponse(
        exists=True, workflowState=workflow_state(inst, include_io)
    ).SerializeToString()


def _purged(count: int) -> bytes:
    """PurgeInstancesResponse, numbered alike in both dialects."""
    done = wrappers_pb2.BoolValue(value=True)
    return pb.PurgeInstancesResponse(deletedInstanceCount=count, isComplete=done).SerializeToString()


def _not_pending(inst: Instance) -> bool:
    return inst.status != RuntimeStatus.PENDING


def _finished(inst: Instance) -> bool:
    return inst.status.is_terminal


class DialectServer:
    """The handlers shared by both dialects; subclasses add what differs."""

    dialect = ""
    health_ping_field = 0

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        unary: dict[str, Unary] = {
            "Hello": self.hello,
            "StartInstance": self.start_instance,
            "GetInstance": self.get_instance,
            "WaitForInstanceStart": self.wait_for_start,
            "WaitForInstanceCompletion": self.wait_for_completion,
            "RaiseEvent": self.raise_event,
            "TerminateInstance": self.terminate,
            "SuspendInstance": self.suspend,
            "ResumeInstance": self.resume,
            "PurgeInstances": self.purge,
            "CompleteActivityTask": self.complete_activity,
            "CompleteOrchestratorTask": self.complete_orchestration,
        }
        unary.update(self.extra_unary())
        out = {name: _unary(name, self._hearing(fn)) for name, fn in unary.items()}
        out["GetWorkItems"] = _streaming("GetWorkItems", self.get_work_items)
        for name, fn in self.extra_streaming().items():
            out[name] = _streaming(name, fn)
        return out

    def _hearing(self, fn: Unary) -> Unary:
        """Every call tells the engine that its connection is alive (a worker's completions do)."""

        async def call(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            self.engine.heard_from(context.peer())
            return await fn(raw, context)

        return call

    def extra_unary(self) -> dict[str, Unary]:
        return {}

    def extra_streaming(self) -> dict[str, Streaming]:
        return {}

    # -- shared handlers

    async def hello(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return b""

    def start_request(self, raw: bytes) -> StartRequest:
        req = parse(pb.CreateInstanceRequest, raw)
        CALLER_TRACE_PARENT.set(req.parentTraceContext.traceParent or None)
        return StartRequest(
            name=req.name,
            instance_id=req.instanceId or uuid.uuid4().hex,
            input=_value_or_none(req, "input"),
            version=_value_or_none(req, "version"),
            scheduled_start_at=wire.micros_or_none(req, "scheduledStartTimestamp"),
            tags=dict(req.tags),
            dialect=self.dialect,
            app_id=req.router.targetAppID if req.HasField("router") else "",
        )

    async def start_instance(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        instance_id = await self.engine.start_workflow(self.start_request(raw))
        return pb.CreateInstanceResponse(instanceId=instance_id).SerializeToString()

    async def get_instance(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        req = parse(pb.GetInstanceRequest, raw)
        require_instance_id(req.instanceId)
        return _instance_response(await self.engine.get_instance(req.instanceId), req.getInputsAndOutputs)

    async def _wait(self, raw: bytes, done: Callable[[Instance], bool]) -> bytes:
        # No deadline from the client means wait as long as the call lives: the engine never computes
        # a timeout from the deadline, which a client without one makes astronomically large.
        req = parse(pb.GetInstanceRequest, raw)
        require_instance_id(req.instanceId)
        inst = await self.engine.wait_for(req.instanceId, done)
        return _instance_response(inst, req.getInputsAndOutputs)

    async def wait_for_start(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return await self._wait(raw, _not_pending)

    async def wait_for_completion(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return await self._wait(raw, _finished)

    async def raise_event(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        req = parse(pb.RaiseEventRequest, raw)
        await self.engine.raise_event(req.instanceId, req.name, _value_or_none(req, "input"))
        return b""

    async def terminate(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        req = parse(pb.TerminateRequest, raw)
        await self.engine.terminate(req.instanceId, _value_or_none(req, "output"), req.recursive)
        return b""

    async def suspend(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        req = parse(pb.SuspendRequest, raw)
        await self.engine.suspend(req.instanceId, _value_or_none(req, "reason"))
        return b""

    async def resume(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        req = parse(pb.ResumeRequest, raw)
        await self.engine.resume(req.instanceId, _value_or_none(req, "reason"))
        return b""

    async def purge_one(self, instance_id: str, recursive: bool, force: bool = False) -> int:
        try:
            return await self.engine.purge(instance_id, recursive, force)
        except WorkflowError as err:
            if err.code == ErrorCode.NOT_FOUND:  # the SDKs expect a count of 0, not an error
                return 0
            raise

    @staticmethod
    def filter_query(flt: Any) -> InstanceQuery:
        return InstanceQuery(
            statuses=statuses(flt.runtimeStatus),
            created_from=wire.micros_or_none(flt, "createdTimeFrom"),
            created_to=wire.micros_or_none(flt, "createdTimeTo"),
        )

    async def purge(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        req = parse(pb.PurgeInstancesRequest, raw)
        if req.WhichOneof("request") == "purgeInstanceFilter":
            count = await self.engine.purge_where(self.filter_query(req.purgeInstanceFilter), req.recursive)
        else:
            count = await self.purge_one(req.instanceId, req.recursive, req.force)
        return _purged(count)

    async def complete_activity(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await self.engine.complete_activity(parse(pb.ActivityResponse, raw))
        return b""

    async def complete_orchestration(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await self.engine.complete_orchestration(parse(pb.WorkflowResponse, raw))
        return b""

    async def get_work_items(self, raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        worker_id = self.engine.connect_worker(self.dialect, self.worker_capacity(raw), context.peer())
        self.engine.identify_worker(worker_id, metadata_app_id(context.invocation_metadata()))
        self.engine.filter_work(worker_id, self.work_filters(raw))
        if self.keeps_histories(raw):
            self.engine.keep_histories(worker_id)
        try:
            while not self.engine.closing.is_set():
                item = await self.engine.next_work_item(self.dialect, worker_id)
                if item is not None:
                    yield item
                elif not self.engine.closing.is_set():
                    yield wire.encode_health_ping(self.health_ping_field)
        finally:
            self.engine.disconnect_worker(worker_id)

    def worker_capacity(self, raw: bytes) -> int:
        """How many work items the worker asks to hold at most; 0 when it does not say."""
        return 0

    def work_filters(self, raw: bytes) -> WorkFilters | None:
        """The work the worker said it handles (durabletask's workItemFilters); None: all."""
        return None

    def keeps_histories(self, raw: bytes) -> bool:
        """Whether the worker advertises WORKER_CAPABILITY_STATEFUL_HISTORY (Dapr's dialect)."""
        if self.dialect != "dapr":
            return False
        req = parse(pb.GetWorkItemsRequest, raw)
        return pb.WORKER_CAPABILITY_STATEFUL_HISTORY in req.capabilities

    async def history_events(self, instance_id: str) -> list[bytes]:
        return await self.engine.history(instance_id)


class DaprDialectServer(DialectServer):
    """The dialect of Dapr's workflow SDK (`dapr.ext.workflow`)."""

    dialect = "dapr"
    health_ping_field = 6

    def extra_unary(self) -> dict[str, Unary]:
        return {
            "CompleteWorkflowTask": self.complete_orchestration,
            "RerunWorkflowFromEvent": self.rerun,
            "ListInstanceIDs": self.list_instance_ids,
            "GetInstanceHistory": self.get_history,
        }

    async def rerun(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        req = parse(pb.RerunWorkflowFromEventRequest, raw)
        require_instance_id(req.sourceInstanceID)
        new_id = await self.engine.rerun_from_event(
            req.sourceInstanceID,
            req.eventID,
            req.newInstanceID if req.HasField("newInstanceID") else None,
            _value_or_none(req, "input"),
            req.overwriteInput,
            req.newChildWorkflowInstanceID if req.HasField("newChildWorkflowInstanceID") else None,
        )
        return pb.RerunWorkflowFromEventResponse(newInstanceID=new_id).SerializeToString()

    async def list_instance_ids(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        req = parse(pb.ListInstanceIDsRequest, raw)
        size = page_size(req.pageSize, clamp=True) if req.pageSize else _DAPR_LIST_PAGE_SIZE
        after = req.continuationToken if req.HasField("continuationToken") else None
        page = instance_page(await self.engine.query(page_query(size, after)), size)
        resp = pb.ListInstanceIDsResponse(instanceIds=page.instance_ids)
        if page.continuation_token is not None:
            resp.continuationToken = page.continuation_token
        return resp.SerializeToString()

    async def get_history(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        req = parse(pb.GetInstanceHistoryRequest, raw)
        return wire.encode_history_events(1, await self.history_events(req.instanceId))


# Fields of Microsoft's messages numbered like a different field of Dapr's: cleared before transcoding.
_MS_ACTION_CONFLICTS = {
    "scheduleTask": ("tags", "parentTraceContext"),
    "createSubOrchestration": ("parentTraceContext", "tags"),
    "completeOrchestration": ("tags",),
}


class DurableTaskDialectServer(DialectServer):
    """The dialect of Microsoft's `durabletask` SDK."""

    dialect = "durabletask"
    health_ping_field = 4

    def extra_unary(self) -> dict[str, Unary]:
        return {
            "QueryInstances": self.query_instances,
            "ListInstanceIds": self.list_instance_ids,
            "RestartInstance": self.restart,
            "RewindInstance": self.rewind,
            "AbandonTaskActivityWorkItem": self.abandon,
            "AbandonTaskOrchestratorWorkItem": self.abandon,
            **entity_handlers(self.engine),
            "CreateTaskHub": self.hello,
            "DeleteTaskHub": self.hello,
            "SkipGracefulOrchestrationTerminations": _unimplemented("graceful-termination skips"),
        }

    def extra_streaming(self) -> dict[str, Streaming]:
        return {"StreamInstanceHistory": self.stream_history}

    def worker_capacity(self, raw: bytes) -> int:
        req: mpb.GetWorkItemsRequest = parse(mpb.GetWorkItemsRequest, raw)
        return (
            max(req.maxConcurrentOrchestrationWorkItems, 0)
            + max(req.maxConcurrentActivityWorkItems, 0)
            + max(req.maxConcurrentEntityWorkItems, 0)
        )

    def work_filters(self, raw: bytes) -> WorkFilters | None:
        return WorkFilters.from_request(parse(mpb.GetWorkItemsRequest, raw))

    def start_request(self, raw: bytes) -> StartRequest:
        start = super().start_request(raw)
        req = parse(mpb.CreateInstanceRequest, raw)
        if req.HasField("orchestrationIdReusePolicy"):
            start.reuse = ReusePolicy(statuses(req.orchestrationIdReusePolicy.replaceableStatus))
        return start

    async def purge(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        req = parse(mpb.PurgeInstancesRequest, raw)
        which = req.WhichOneof("request")
        if which == "purgeInstanceFilter":
            count = await self.engine.purge_where(self.filter_query(req.purgeInstanceFilter), req.recursive)
        elif which == "instanceBatch":
            count = 0
            for instance_id in req.instanceBatch.instanceIds:
                count += await self.purge_one(instance_id, req.recursive)
        else:
            count = await self.purge_one(req.instanceId, req.recursive)
        return _purged(count)

    async def complete_orchestration(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        resp = parse(mpb.OrchestratorResponse, raw)
        unsupported = [
            kind
            for kind in (a.WhichOneof("orchestratorActionType") for a in resp.actions)
            if kind == "rewindOrchestration"
        ]
        if unsupported:
            err = WorkflowError(
                ErrorCode.UNIMPLEMENTED,
                f"the workflow asked for {unsupported[0]}, which dapr-workflows does not support yet",
            )
            await self.engine.refuse_turn(resp.instanceId, resp.completionToken, err)
            raise err
        messages = split_entity_messages(resp)
        await self.engine.complete_orchestration(self.translate(resp), messages)
        return b""

    @staticmethod
    def translate(resp: mpb.OrchestratorResponse) -> pb.WorkflowResponse:
        """The turn in the Dapr dialect's types, without the fields the two number differently."""
        for action in resp.actions:
            kind = action.WhichOneof("orchestratorActionType")
            for name in _MS_ACTION_CONFLICTS.get(kind or "", ()):
                getattr(action, kind or "").ClearField(name)
        resp.ClearField("orchestrationTraceContext")
        translated: pb.WorkflowResponse = pb.WorkflowResponse.FromString(resp.SerializeToString())
        return translated

    async def query_instances(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        q = parse(mpb.QueryInstancesRequest, raw).query
        size = page_size(q.maxInstanceCount, clamp=True)
        where = InstanceQuery(
            statuses=statuses(q.runtimeStatus),
            created_from=wire.micros_or_none(q, "createdTimeFrom"),
            created_to=wire.micros_or_none(q, "createdTimeTo"),
            id_prefix=_value_or_none(q, "instanceIdPrefix"),
        )
        found = await self.engine.query(page_query(size, _value_or_none(q, "continuationToken"), where))
        instances, token = page_of(found, size)
        resp = mpb.QueryInstancesResponse()
        for inst in instances:
            resp.orchestrationState.add().ParseFromString(
                workflow_state(inst, q.fetchInputsAndOutputs).SerializeToString()
            )
        if token is not None:
            resp.continuationToken.value = token
        return resp.SerializeToString()

    async def list_instance_ids(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        req = parse(mpb.ListInstanceIdsRequest, raw)
        size = page_size(req.pageSize, clamp=True)
        where = InstanceQuery(
            statuses=statuses(req.runtimeStatus),
            completed_from=wire.micros_or_none(req, "completedTimeFrom"),
            completed_to=wire.micros_or_none(req, "completedTimeTo"),
        )
        found = await self.engine.query(page_query(size, _value_or_none(req, "lastInstanceKey"), where))
        page = instance_page(found, size)
        resp = mpb.ListInstanceIdsResponse(instanceIds=page.instance_ids)
        if page.continuation_token is not None:
            resp.lastInstanceKey.value = page.continuation_token
        return resp.SerializeToString()

    async def restart(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        req = parse(mpb.RestartInstanceRequest, raw)
        new_id = await self.engine.restart(req.instanceId, req.restartWithNewInstanceId)
        return mpb.RestartInstanceResponse(instanceId=new_id).SerializeToString()

    async def rewind(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        req = parse(mpb.RewindInstanceRequest, raw)
        await self.engine.rewind(req.instanceId, _value_or_none(req, "reason"))
        return b""

    async def abandon(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.engine.abandon(parse(mpb.AbandonActivityTaskRequest, raw).completionToken)
        return b""

    async def stream_history(self, raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        req = parse(mpb.StreamInstanceHistoryRequest, raw)
        events = await self.history_events(req.instanceId)
        for start in range(0, len(events), _HISTORY_CHUNK):
            yield wire.encode_history_events(1, events[start : start + _HISTORY_CHUNK])


def dialect_server(engine: Engine, dialect: str) -> DialectServer:
    return DaprDialectServer(engine) if dialect == "dapr" else DurableTaskDialectServer(engine)


def server_options(
    max_payload_bytes: int, keepalive_seconds: float = DEFAULT_KEEPALIVE_SECONDS
) -> list[tuple[str, int]]:
    """Options of every gRPC server of the component: TCP for the SDKs and the component socket.

    A message may be the payload limit plus room around it: a payload over the limit gets the
    engine's own RESOURCE_EXHAUSTED that names the limit, a grossly larger message gRPC's.

    Every connection is pinged (HTTP/2 PING) after `keepalive_seconds` without traffic and dropped
    when the peer does not answer within as long again: a frozen or vanished worker's streams end,
    and its work is offered to others at once, long before its leases would expire. Clients' own
    pings are accepted as often as every few seconds, with or without calls in flight.
    """
    keepalive_ms = int(keepalive_seconds * 1000)
    return [
        ("grpc.max_receive_message_length", max_payload_bytes + 1024 * 1024),
        ("grpc.max_send_message_length", -1),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_timeout_ms", keepalive_ms),
        # Recent gRPC times a keepalive ping out with the ping timeout (60 s unless set).
        ("grpc.http2.ping_timeout_ms", keepalive_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
        ("grpc.http2.max_ping_strikes", 0),
    ]


def add_to_server(server: grpc.aio.Server, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
