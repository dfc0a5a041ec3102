"""Which app a work item is for (multi-app workflows), as the history records it.

Dapr's SDK puts `TaskRouter{sourceAppID, targetAppID}` on the actions of `call_activity(...,
app_id=X)` and `call_child_workflow(..., app_id=X)`, and a worker learns its own app from the
router of `executionStarted`. The engine records the routers in the history as Dapr does, so an
item's app can always be read back from there (after a restart, or on another engine).
`dispatch.Dispatch.may_take` is the rule that uses them.
"""

from __future__ import annotations

from ..protos import dapr_dialect_pb2 as pb

# The gRPC metadata key by which a worker's stream says which app it serves (the SDK extension's
# `workflow_runtime()` sends $APP_ID, which `dapr run` and Dapr's sidecar injector set).
APP_ID_METADATA = "dapr-app-id"


def metadata_app_id(metadata: object) -> str:
    """The app ID in a call's metadata (pairs of key and value), "" when it has none."""
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key == APP_ID_METADATA and isinstance(value, str):
            return value.strip()
    return ""


def router_target(router: pb.TaskRouter) -> str:
    """The app a router sends to: its target, else its source (as the SDK's worker reads it)."""
    return router.targetAppID or router.sourceAppID


def instance_app(events: list[bytes]) -> str:
    """The app an instance runs on: the router of its executionStarted event ("" for any app)."""
    for raw in events:
        event = pb.HistoryEvent.FromString(raw)
        if event.HasField("executionStarted"):
            return router_target(event.router) if event.HasField("router") else ""
    return ""


def activity_app(history: list[bytes], task_id: int) -> str:
    """The app of the activity scheduled as `task_id`: its router's target, else the instance's."""
    for raw in history:
        event = pb.HistoryEvent.FromString(raw)
        if event.eventId == task_id and event.HasField("taskScheduled"):
            if event.HasField("router") and event.router.targetAppID:
                return event.router.targetAppID
            break
    return instance_app(history)


def action_router(source_app: str, router: pb.TaskRouter | None) -> pb.TaskRouter:
    """The router recorded for an action: the worker's as it sent it, the source filled in."""
    recorded = pb.TaskRouter(sourceAppID=source_app)
    if router is not None:
        recorded.CopyFrom(router)
        if not recorded.sourceAppID:
            recorded.sourceAppID = source_app
    return recorded


def target_app(source_app: str, router: pb.TaskRouter | None) -> str:
    """Where an action's work goes: the router's target, else the calling instance's app."""
    if router is not None and router.targetAppID:
        return router.targetAppID
    return source_app
