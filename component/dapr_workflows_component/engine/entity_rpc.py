"""The durable-entity calls of the durabletask dialect's `TaskHubSidecarService`, over the engine's
entity API (`Engine.entities`, entity_service.py)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import grpc

from ..protos import durabletask_dialect_pb2 as mpb
from ..workflows import page_size
from . import Engine, EntityInfo, wire

Unary = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]


def split_entity_messages(resp: mpb.OrchestratorResponse) -> list[tuple[int, bytes]]:
    """Takes a turn's `sendEntityMessage` actions out of it: (action ID, serialized message)."""
    messages = [
        (a.id, a.sendEntityMessage.SerializeToString())
        for a in resp.actions
        if a.WhichOneof("orchestratorActionType") == "sendEntityMessage"
    ]
    if messages:
        kept = [a for a in resp.actions if a.WhichOneof("orchestratorActionType") != "sendEntityMessage"]
        del resp.actions[:]
        resp.actions.extend(kept)
    return messages


def _metadata(info: EntityInfo, include_state: bool) -> mpb.EntityMetadata:
    meta = mpb.EntityMetadata(
        instanceId=info.instance_id,
        lastModifiedTime=wire.timestamp(info.modified_at),
        backlogQueueSize=info.backlog,
    )
    if info.locked_by is not None:
        meta.lockedBy.value = info.locked_by
    if include_state and info.state is not None:
        meta.serializedState.value = info.state
    return meta


def entity_handlers(engine: Engine) -> dict[str, Unary]:
    entities = engine.entities

    async def complete(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await entities.complete(wire.parse(mpb.EntityBatchResult, raw))
        return b""

    async def abandon(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        engine.abandon(wire.parse(mpb.AbandonEntityTaskRequest, raw).completionToken)
        return b""

    async def signal(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        req: mpb.SignalEntityRequest = wire.parse(mpb.SignalEntityRequest, raw)
        await entities.signal(
            req.instanceId,
            req.name,
            req.input.value if req.HasField("input") else None,
            req.requestId or uuid.uuid4().hex,
            wire.micros_or_none(req, "scheduledTime"),
        )
        return b""

    async def get(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        req: mpb.GetEntityRequest = wire.parse(mpb.GetEntityRequest, raw)
        info = await entities.get(req.instanceId)
        if info is None:
            return mpb.GetEntityResponse(exists=False).SerializeToString()
        return mpb.GetEntityResponse(
            exists=True, entity=_metadata(info, req.includeState)
        ).SerializeToString()

    async def query(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        q = wire.parse(mpb.QueryEntitiesRequest, raw).query
        size = page_size(q.pageSize.value if q.HasField("pageSize") else 0)
        page = await entities.query(
            q.instanceIdStartsWith.value if q.HasField("instanceIdStartsWith") else None,
            wire.micros_or_none(q, "lastModifiedFrom"),
            wire.micros_or_none(q, "lastModifiedTo"),
            q.includeTransient,
            size,
            q.continuationToken.value
            if q.HasField("continuationToken") and q.continuationToken.value
            else None,
        )
        resp = mpb.QueryEntitiesResponse(entities=[_metadata(i, q.includeState) for i in page.entities])
        if page.continuation_token is not None:
            resp.continuationToken.value = page.continuation_token
        return resp.SerializeToString()

    async def clean(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        req: mpb.CleanEntityStorageRequest = wire.parse(mpb.CleanEntityStorageRequest, raw)
        removed, released = await entities.clean(req.removeEmptyEntities, req.releaseOrphanedLocks)
        return mpb.CleanEntityStorageResponse(
            emptyEntitiesRemoved=removed, orphanedLocksReleased=released
        ).SerializeToString()

    return {
        "CompleteEntityTask": complete,
        "AbandonTaskEntityWorkItem": abandon,
        "SignalEntity": signal,
        "GetEntity": get,
        "QueryEntities": query,
        "CleanEntityStorage": clean,
    }
