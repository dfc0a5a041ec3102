"""Builders for the in-process tests of the engine's parts: an engine on an in-memory SQLite store,
the state machine on a store transaction, and raw protobuf actions and responses as a worker sends."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from dapr_workflows_component.engine import Engine, EngineSettings
from dapr_workflows_component.engine.effects import Effects
from dapr_workflows_component.engine.outbox import LifecycleOutbox
from dapr_workflows_component.engine.turns import Turn, Turns, deliverable, turn_events
from dapr_workflows_component.engine.wire import now_us, timestamp
from dapr_workflows_component.protos import dapr_dialect_pb2 as pb
from dapr_workflows_component.store import SQLiteStore, StoreTx
from dapr_workflows_component.telemetry.observer import EngineObserver
from dapr_workflows_component.workflows import Instance, StartRequest
from google.protobuf import wrappers_pb2

T = TypeVar("T")

LIMIT = 64 * 1024


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def events_of(raw: list[bytes]) -> list[pb.HistoryEvent]:
    return [pb.HistoryEvent.FromString(e) for e in raw]


def kinds(raw: list[bytes]) -> list[str]:
    return [str(e.WhichOneof("eventType")) for e in events_of(raw)]


# ---------------------------------------------------------------- actions a worker sends


def schedule(action_id: int, name: str = "act", input: str | None = None) -> pb.WorkflowAction:
    task = pb.ScheduleTaskAction(name=name)
    if input is not None:
        task.input.value = input
    return pb.WorkflowAction(id=action_id, scheduleTask=task)


def timer(action_id: int, fire_at_us: int) -> pb.WorkflowAction:
    return pb.WorkflowAction(id=action_id, createTimer=pb.CreateTimerAction(fireAt=timestamp(fire_at_us)))


def child(
    action_id: int, name: str = "child_wf", instance_id: str = "", input: str | None = None
) -> pb.WorkflowAction:
    create = pb.CreateChildWorkflowAction(name=name, instanceId=instance_id)
    if input is not None:
        create.input.value = input
    return pb.WorkflowAction(id=action_id, createChildWorkflow=create)


def send_event(action_id: int, target: str, name: str, data: str | None = None) -> pb.WorkflowAction:
    send = pb.SendEventAction(instance=pb.WorkflowInstance(instanceId=target), name=name)
    if data is not None:
        send.data.value = data
    return pb.WorkflowAction(id=action_id, sendEvent=send)


def terminate(
    action_id: int, target: str, reason: str | None = None, recurse: bool = True
) -> pb.WorkflowAction:
    term = pb.TerminateWorkflowAction(instanceId=target, recurse=recurse)
    if reason is not None:
        term.reason.value = reason
    return pb.WorkflowAction(id=action_id, terminateWorkflow=term)


def detached(action_id: int, instance_id: str, name: str = "detached_wf") -> pb.WorkflowAction:
    return pb.WorkflowAction(
        id=action_id,
        createDetachedWorkflow=pb.CreateDetachedWorkflowAction(instanceId=instance_id, name=name),
    )


def version_stall(action_id: int) -> pb.WorkflowAction:
    return pb.WorkflowAction(id=action_id, workflowVersionNotAvailable=pb.WorkflowVersionNotAvailableAction())


def complete(
    action_id: int,
    result: str | None = None,
    status: int = pb.ORCHESTRATION_STATUS_COMPLETED,
    failure: pb.TaskFailureDetails | None = None,
    carryover: list[pb.HistoryEvent] | None = None,
) -> pb.WorkflowAction:
    done = pb.CompleteWorkflowAction(workflowStatus=status)  # type: ignore[arg-type]
    if result is not None:
        done.result.value = result
    if failure is not None:
        done.failureDetails.CopyFrom(failure)
    done.carryoverEvents.extend(carryover or [])
    return pb.WorkflowAction(id=action_id, completeWorkflow=done)


def raised(name: str, data: str | None = None) -> pb.HistoryEvent:
    event = pb.EventRaisedEvent(name=name)
    if data is not None:
        event.input.value = data
    return pb.HistoryEvent(eventId=-1, timestamp=timestamp(now_us()), eventRaised=event)


def response(item: pb.WorkItem, *actions: pb.WorkflowAction, **fields: Any) -> pb.WorkflowResponse:
    req = item.workflowRequest
    return pb.WorkflowResponse(
        instanceId=req.instanceId, actions=list(actions), completionToken=item.completionToken, **fields
    )


def activity_done(item: pb.WorkItem, result: str) -> pb.ActivityResponse:
    req = item.activityRequest
    return pb.ActivityResponse(
        instanceId=req.workflowInstance.instanceId,
        taskId=req.taskId,
        result=wrappers_pb2.StringValue(value=result),
        completionToken=item.completionToken,
    )


# ---------------------------------------------------------------- the state machine on a transaction


class Machine:
    """`Turns` on an in-memory SQLite store: each call is one transaction, like the engine's."""

    def __init__(self, lifecycle_events: bool = True, max_payload_bytes: int = LIMIT) -> None:
        self.store = SQLiteStore(":memory:")
        self.turns = Turns(max_payload_bytes, LifecycleOutbox(lifecycle_events), EngineObserver())

    def tx(self, fn: Callable[[StoreTx], T]) -> T:
        return run(self.store.run(fn))

    def instance(self, instance_id: str) -> Instance:
        inst = self.tx(lambda t: t.get_instance(instance_id))
        assert inst is not None
        return inst

    def history(self, instance_id: str) -> list[bytes]:
        return self.tx(lambda t: t.history(instance_id))

    def inbox(self, instance_id: str, visible_before: int | None = None) -> list[bytes]:
        before = now_us() if visible_before is None else visible_before
        return [r.event for r in self.tx(lambda t: t.inbox(instance_id, before))]

    def outbox_types(self) -> list[str]:
        import json

        return [json.loads(p)["type"] for _, p in self.tx(lambda t: t.outbox(0, 1000))]

    def start(self, instance_id: str, name: str = "wf", input: str | None = None) -> Effects:
        fx = Effects()
        self.tx(lambda t: self.turns.create_instance(t, instance_id, name, "dapr", input, None, now_us(), fx))
        return fx

    def next_turn(self, instance_id: str) -> Turn:
        """The turn a worker would be given now (what dispatch reads)."""

        def read(t: StoreTx) -> Turn:
            inst = t.get_instance(instance_id)
            assert inst is not None
            rows = deliverable(inst, t.inbox(instance_id, now_us()))
            return Turn(instance_id, inst.execution_id, [r.id for r in rows], turn_events(rows, now_us()))

        return self.tx(read)

    def answer(self, turn: Turn, *actions: pb.WorkflowAction, **fields: Any) -> Effects:
        """Records the worker's answer to `turn` in one transaction; returns its effects."""
        fx = Effects()
        resp = pb.WorkflowResponse(instanceId=turn.instance_id, actions=list(actions), **fields)
        self.tx(lambda t: self.turns.record(t, turn, resp, fx, None))
        return fx

    def turn(self, instance_id: str, *actions: pb.WorkflowAction, **fields: Any) -> Effects:
        return self.answer(self.next_turn(instance_id), *actions, **fields)


# ---------------------------------------------------------------- a whole engine, in-process


def settings(**overrides: Any) -> EngineSettings:
    # A short ping interval: a worker that is offered nothing hears so quickly.
    base: dict[str, Any] = {"health_ping_seconds": 0.2, "lifecycle_events": True}
    base.update(overrides)
    return EngineSettings(**base)


async def engine_on(store: SQLiteStore | None = None, **overrides: Any) -> Engine:
    engine = Engine(store or SQLiteStore(":memory:"), settings(**overrides))
    await engine.start()
    return engine


async def next_item(engine: Engine, worker_id: int, dialect: str = "dapr") -> pb.WorkItem | None:
    """The next work item offered to the worker; None when a health ping was due instead."""
    raw = await engine.next_work_item(dialect, worker_id)
    return None if raw is None else pb.WorkItem.FromString(raw)


async def take(engine: Engine, worker_id: int, dialect: str = "dapr") -> pb.WorkItem:
    item = await next_item(engine, worker_id, dialect)
    assert item is not None, "no work item was offered"
    return item


async def start(engine: Engine, instance_id: str, name: str = "wf", input: str | None = None) -> None:
    await engine.start_workflow(StartRequest(name=name, instance_id=instance_id, input=input))


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.01)


def traced_statements(store: SQLiteStore) -> list[str]:
    """The SQL statements the store's connection runs from now on, as they run."""
    seen: list[str] = []
    store._conn.set_trace_callback(seen.append)
    return seen
