"""The workflow state machine: what an orchestration turn, a start, an event or a finish writes.

Everything here runs inside one store transaction and is pure: it reads and writes through the
`StoreTx` it is given, and what the in-memory side must do after the commit (queue work, arm timers,
wake waiters) goes into the `Effects` it is given. It knows nothing of asyncio, leases or gRPC, so a
test can drive it with a store transaction and raw protobuf responses.

A turn: the worker was given the instance's history and its new events (`Turn`); it answers with
actions (`WorkflowResponse`); `Turns.record` appends the turn to the history, removes the consumed
inbox rows and writes what each action causes, one handler per action kind (`_ACTION_HANDLERS`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ..protos import dapr_dialect_pb2 as pb
from ..store import InboxRow, StoreTx
from ..telemetry.observer import EngineObserver
from ..workflows import (
    ErrorCode,
    Instance,
    LifecycleEvent,
    RuntimeStatus,
    WorkflowError,
    check_payload_size,
    check_tags,
    require_event_name,
    require_name,
    require_new_workflow_id,
    require_timestamp,
    runs_execution,
)
from . import propagation, routing, wire
from .effects import Effects, NewWork
from .outbox import LifecycleOutbox
from .patches import patch_mismatch, patches_after, recorded_patches, started_marker
from .wire import history_event, now_us

log = logging.getLogger("dapr_workflows.engine")

# While suspended, an instance's worker sees only these events; the rest wait in the inbox.
DELIVERED_WHILE_SUSPENDED = frozenset({"executionSuspended", "executionResumed", "executionTerminated"})
# The failure type recorded when the engine refuses what a worker sent, by the reason's code.
FAILURE_TYPES = {
    ErrorCode.RESOURCE_EXHAUSTED: "PayloadTooLarge",
    ErrorCode.UNIMPLEMENTED: "UnsupportedAction",
    ErrorCode.INVALID_ARGUMENT: "InvalidAction",
}
# On continue-as-new, inbox events of these kinds belong to the ended execution and are dropped.
EXECUTION_BOUND_EVENTS = frozenset(
    {
        "timerFired",
        "taskCompleted",
        "taskFailed",
        "childWorkflowInstanceCompleted",
        "childWorkflowInstanceFailed",
    }
)
# A visibility time later than any timer's: reading the inbox up to it reads all of it.
END_OF_TIME_US = 2**62


# A turn's entity messages (action ID, serialized message) applied; returns their history events.
EntityMessages = Callable[[StoreTx, Instance, list[tuple[int, bytes]], int, Effects], list[bytes]]


def deliverable(inst: Instance | None, rows: list[InboxRow]) -> list[InboxRow]:
    """The inbox rows a worker may see now: none for a missing or finished instance, only the
    suspend/resume/terminate events of a suspended one."""
    if inst is None or inst.status.is_terminal:
        return []
    if inst.status == RuntimeStatus.SUSPENDED:
        return [r for r in rows if wire.event_type(r.event) in DELIVERED_WHILE_SUSPENDED]
    return rows


def turn_events(rows: list[InboxRow], now: int) -> list[bytes]:
    """The new events of a turn: a workflowStarted marker, then the inbox events."""
    started = history_event(now, workflowStarted=pb.WorkflowStartedEvent()).SerializeToString()
    return [started] + [r.event for r in rows]


@dataclass
class Turn:
    """What a worker was given for one orchestration turn of one execution."""

    instance_id: str
    execution_id: str
    inbox_ids: list[int]
    new_events: list[bytes]  # the workflowStarted marker first, then the inbox events
    workflow_name: str = ""
    propagated: pb.PropagatedHistory | None = None  # the history a child was given (propagation.py)


@dataclass
class _Step:
    """A turn being recorded: the transaction, the instance, and the events the turn appends."""

    t: StoreTx
    inst: Instance
    now: int
    fx: Effects
    history: list[bytes]
    events: list[bytes] = field(default_factory=list)
    ended: bool = False  # the execution finished or continued as new: the turn is written already
    _app: str | None = None
    received: pb.PropagatedHistory | None = None  # what this instance was given by its parent
    patches: list[str] = field(default_factory=list)  # those `history` records (patches.py)

    @property
    def app(self) -> str:
        """The app the instance runs on ("" for any), from its executionStarted event."""
        if self._app is None:
            # Only Dapr's dialect has routers (Microsoft's uses those field numbers otherwise).
            dapr = self.inst.dialect == "dapr"
            self._app = routing.instance_app(self.history + self.events) if dapr else ""
        return self._app

    def router(self, action: pb.WorkflowAction) -> tuple[pb.TaskRouter | None, str]:
        """(the router to record, the app the work goes to) of a scheduling action."""
        sent = action.router if action.HasField("router") and self.inst.dialect == "dapr" else None
        target = routing.target_app(self.app, sent)
        if sent is None and not self.app:
            return None, target  # single-app: nothing to record
        return routing.action_router(self.app, sent), target


class Turns:
    """The state machine's transitions; every method runs inside the caller's transaction."""

    def __init__(self, max_payload_bytes: int, outbox: LifecycleOutbox, observer: EngineObserver) -> None:
        self.max_payload_bytes = max_payload_bytes
        self.outbox = outbox
        self.observer = observer
        # Durable entities (entities.py): a turn's entity messages, and what an instance that
        # finishes or is deleted held; set by the engine.
        self.entity_messages: EntityMessages | None = None
        self.instance_gone: Callable[[StoreTx, Instance, int, Effects], None] | None = None

    # ------------------------------------------------------------ a worker's turn

    def record(
        self,
        t: StoreTx,
        turn: Turn,
        resp: pb.WorkflowResponse,
        fx: Effects,
        history: list[bytes] | None,
        entity_messages: list[tuple[int, bytes]] | None = None,
        patches: list[str] | None = None,
    ) -> None:
        """Records the worker's answer to `turn`; `history` is the instance's history if known, and
        `patches` the patches it records, if known."""
        inst = t.get_instance(turn.instance_id)
        if not runs_execution(inst, turn.execution_id):
            return
        now = now_us()
        started = started_marker(turn.new_events[0], resp)
        if history is None:
            history, patches = t.history(inst.instance_id), None
        patches = recorded_patches(history) if patches is None else patches
        mismatch = patch_mismatch(history, list(resp.version.patches), patches)
        if mismatch is not None:
            self._stall_on_patches(t, inst, history, mismatch, now, fx)
            fx.patches[inst.instance_id] = patches  # (a stall event records none)
            return
        t.delete_inbox(turn.inbox_ids)
        if inst.status == RuntimeStatus.PENDING:
            inst.status = RuntimeStatus.RUNNING
            fx.changed.add(inst.instance_id)
            self.outbox.record(t, LifecycleEvent.STARTED, inst, now, fx)
        elif inst.status == RuntimeStatus.STALLED:  # a turn that applies ends the stall
            inst.status = RuntimeStatus.RUNNING
            fx.changed.add(inst.instance_id)
        if resp.HasField("customStatus"):
            check_payload_size("custom status", resp.customStatus.value, self.max_payload_bytes)
            inst.custom_status = resp.customStatus.value
        step = _Step(t, inst, now, fx, history, patches=patches)
        step.events = [started, *turn.new_events[1:]]
        step.received = turn.propagated
        if entity_messages and self.entity_messages is not None:
            step.events.extend(self.entity_messages(t, inst, entity_messages, now, fx))
        for action in resp.actions:
            kind = action.WhichOneof("workflowActionType")
            handler = _ACTION_HANDLERS.get(kind or "")
            if handler is None:
                raise WorkflowError(
                    ErrorCode.UNIMPLEMENTED, f"the workflow asked for an unsupported action {kind!r}"
                )
            handler(self, step, action)
            if step.ended:
                return
        self._append_turn(step)
        inst.updated_at = now
        t.put_instance(inst)

    def refuse(self, t: StoreTx, turn: Turn, err: WorkflowError, fx: Effects) -> None:
        """The turn cannot be recorded as the worker asked: the instance fails with the reason."""
        inst = t.get_instance(turn.instance_id)
        if not runs_execution(inst, turn.execution_id):
            return
        t.delete_inbox(turn.inbox_ids)
        failure = wire.failure_details(FAILURE_TYPES.get(err.code, "WorkflowTurnRefused"), err.message)
        self.finish(t, inst, RuntimeStatus.FAILED, None, failure, now_us(), fx)

    @staticmethod
    def _stall_on_patches(
        t: StoreTx, inst: Instance, history: list[bytes], description: str, now: int, fx: Effects
    ) -> None:
        """The turn is not applied: its inbox events stay for a worker whose code matches (offered
        again when a worker connects, and by a shared store's sweep); the stall is recorded once per
        description, as daprd does."""
        last = pb.HistoryEvent.FromString(history[-1]) if history else pb.HistoryEvent()
        if not (last.HasField("executionStalled") and last.executionStalled.description == description):
            stalled = pb.ExecutionStalledEvent(reason=pb.PATCH_MISMATCH, description=description)
            event = history_event(now, executionStalled=stalled).SerializeToString()
            t.append_history(inst.instance_id, len(history), [event])
            fx.history[inst.instance_id] = [*history, event]
        if inst.status != RuntimeStatus.STALLED:
            inst.status = RuntimeStatus.STALLED
            fx.changed.add(inst.instance_id)
            log.warning(
                "workflow %r stalled: %s",
                inst.instance_id,
                description,
                extra={"instanceID": inst.instance_id},
            )
        inst.updated_at = now
        t.put_instance(inst)
        fx.stalled[inst.instance_id] = inst.dialect

    @staticmethod
    def _append_turn(step: _Step) -> None:
        step.t.append_history(step.inst.instance_id, len(step.history), step.events)
        step.fx.history[step.inst.instance_id] = step.history + step.events
        step.fx.patches[step.inst.instance_id] = patches_after(step.patches, step.events)

    # ------------------------------------------------------------ one handler per action kind

    def _schedule_task(self, step: _Step, action: pb.WorkflowAction) -> None:
        a = action.scheduleTask
        inst = step.inst
        require_name("activity name", a.name)
        check_payload_size("activity input", a.input.value, self.max_payload_bytes)
        scheduled = pb.TaskScheduledEvent(name=a.name, taskExecutionId=a.taskExecutionId)
        if a.HasField("version"):
            scheduled.version.CopyFrom(a.version)
        if a.HasField("input"):
            scheduled.input.CopyFrom(a.input)
        if inst.rerun and inst.rerun.get("task_id") == action.id:
            # A rerun from this activity with a new input: the new input replaces the recorded one.
            if inst.rerun.get("input") is not None:
                scheduled.input.value = inst.rerun["input"]
            inst.rerun = None
        request = pb.ActivityRequest(
            name=a.name,
            workflowInstance=pb.WorkflowInstance(
                instanceId=inst.instance_id, executionId=wire.string_value(inst.execution_id)
            ),
            taskId=action.id,
            taskExecutionId=a.taskExecutionId,
        )
        if scheduled.HasField("version"):
            request.version.CopyFrom(scheduled.version)
        if scheduled.HasField("input"):
            request.input.CopyFrom(scheduled.input)
        scope = propagation.scope_of(a)
        if scope != propagation.NONE:
            scheduled.historyPropagationScope = scope  # type: ignore[assignment]
            given = propagation.propagate(scope, step.received, inst, step.app, step.history + step.events)
            if given is not None:
                request.propagatedHistory.CopyFrom(given)
        self.observer.trace_activity(inst.instance_id, request, scheduled)
        activity_id = step.t.add_activity(
            inst.instance_id, inst.execution_id, inst.dialect, action.id, request.SerializeToString()
        )
        router, target = step.router(action)
        step.fx.activities.append((activity_id, inst.dialect))
        step.fx.activity_apps[activity_id] = target
        # An activity without a version of its own is matched by its orchestration's (eligibility.py).
        version = a.version.value if a.HasField("version") else inst.version
        step.fx.activity_work[activity_id] = NewWork(a.name, version, inst.instance_id)
        event = history_event(step.now, action.id, taskScheduled=scheduled)
        if router is not None:
            event.router.CopyFrom(router)
        step.events.append(event.SerializeToString())

    def _create_timer(self, step: _Step, action: pb.WorkflowAction) -> None:
        timer = action.createTimer
        inst, now = step.inst, step.now
        created = pb.TimerCreatedEvent(fireAt=timer.fireAt)
        if timer.HasField("name"):
            created.name = timer.name
        origin = timer.WhichOneof("origin")
        if origin:
            getattr(created, origin).CopyFrom(getattr(timer, origin))
        step.events.append(history_event(now, action.id, timerCreated=created).SerializeToString())
        fire_at = require_timestamp("timer's fire time", wire.micros(timer.fireAt))
        fired = history_event(now, timerFired=pb.TimerFiredEvent(fireAt=timer.fireAt, timerId=action.id))
        step.t.add_inbox(inst.instance_id, fired.SerializeToString(), fire_at)
        if fire_at <= now:
            step.fx.ready[inst.instance_id] = inst.dialect
        else:
            step.fx.timers.append((fire_at, inst.instance_id, inst.dialect))

    def _create_child_workflow(self, step: _Step, action: pb.WorkflowAction) -> None:
        a = action.createChildWorkflow
        require_name("child workflow name", a.name)
        if a.instanceId:
            require_new_workflow_id(step.inst.dialect, a.instanceId)
        t, inst, now, fx = step.t, step.inst, step.now, step.fx
        router, target = step.router(action)
        child_id = a.instanceId or f"{inst.instance_id}:{action.id:04x}"
        if inst.rerun and inst.rerun.get("task_id") == action.id:
            # A rerun from this child workflow, under the child instance ID the caller chose.
            child_id = inst.rerun.get("child_id") or child_id
            inst.rerun = None
        created = pb.ChildWorkflowInstanceCreatedEvent(instanceId=child_id, name=a.name)
        if propagation.scope_of(a) != propagation.NONE:
            created.historyPropagationScope = propagation.scope_of(a)  # type: ignore[assignment]
        if a.HasField("version"):
            created.version.CopyFrom(a.version)
        if a.HasField("input"):
            created.input.CopyFrom(a.input)
        existing = t.get_instance(child_id)
        if existing is not None and not existing.status.is_terminal:
            failed = pb.ChildWorkflowInstanceFailedEvent(
                taskScheduledId=action.id,
                failureDetails=wire.failure_details(
                    "InstanceAlreadyExists",
                    f"child workflow instance {child_id!r} already exists and is {existing.status.name}",
                ),
            )
            t.add_inbox(
                inst.instance_id,
                history_event(now, childWorkflowInstanceFailed=failed).SerializeToString(),
                now,
            )
            fx.ready[inst.instance_id] = inst.dialect
        else:
            if existing is not None:
                # A retried child reuses its instance ID: the failed attempt makes way.
                self.delete(t, existing, fx)
            parent = pb.ParentInstanceInfo(
                taskScheduledId=action.id,
                name=wire.string_value(inst.name),
                workflowInstance=pb.WorkflowInstance(
                    instanceId=inst.instance_id, executionId=wire.string_value(inst.execution_id)
                ),
            )
            self.create_instance(
                t,
                child_id,
                a.name,
                inst.dialect,
                a.input.value if a.HasField("input") else None,
                a.version.value if a.HasField("version") else None,
                now,
                fx,
                parent=parent,
                parent_execution_id=inst.execution_id,
                router=pb.TaskRouter(sourceAppID=step.app, targetAppID=target) if router else None,
            )
        event = history_event(now, action.id, childWorkflowInstanceCreated=created)
        if router is not None:
            event.router.CopyFrom(router)
        step.events.append(event.SerializeToString())

    def _send_event(self, step: _Step, action: pb.WorkflowAction) -> None:
        send = action.sendEvent
        require_event_name(send.name)
        sent = pb.EventSentEvent(instanceId=send.instance.instanceId, name=send.name)
        if send.HasField("data"):
            sent.input.CopyFrom(send.data)
        step.events.append(history_event(step.now, action.id, eventSent=sent).SerializeToString())
        data = send.data.value if send.HasField("data") else None
        self.deliver_event(step.t, send.instance.instanceId, send.name, data, step.now, step.fx)

    def _terminate_workflow(self, step: _Step, action: pb.WorkflowAction) -> None:
        term = action.terminateWorkflow
        target = step.t.get_instance(term.instanceId)
        if target is not None:
            reason = term.reason.value if term.HasField("reason") else None
            self.terminate(step.t, target, reason, term.recurse, step.now, step.fx)

    def _create_detached_workflow(self, step: _Step, action: pb.WorkflowAction) -> None:
        detached = action.createDetachedWorkflow
        require_name("workflow name", detached.name)
        require_new_workflow_id(step.inst.dialect, detached.instanceId)
        check_tags(detached.tags)
        if step.t.get_instance(detached.instanceId) is None:
            self.create_instance(
                step.t,
                detached.instanceId,
                detached.name,
                step.inst.dialect,
                detached.input.value if detached.HasField("input") else None,
                detached.version.value if detached.HasField("version") else None,
                step.now,
                step.fx,
                tags=dict(detached.tags),
            )

    def _workflow_version_not_available(self, step: _Step, action: pb.WorkflowAction) -> None:
        step.inst.status = RuntimeStatus.STALLED
        step.fx.changed.add(step.inst.instance_id)
        stalled = pb.ExecutionStalledEvent(
            reason=pb.VERSION_NOT_AVAILABLE, description="no worker has this workflow version"
        )
        step.events.append(history_event(step.now, action.id, executionStalled=stalled).SerializeToString())

    def _complete_workflow(self, step: _Step, action: pb.WorkflowAction) -> None:
        done = action.completeWorkflow
        result = done.result.value if done.HasField("result") else None
        check_payload_size("workflow output", result, self.max_payload_bytes)
        step.ended = True
        if done.workflowStatus == pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW:
            self.continue_as_new(step.t, step.inst, done, step.now, step.fx, step.app)
            return
        completed = pb.ExecutionCompletedEvent(workflowStatus=done.workflowStatus)
        if done.HasField("result"):
            completed.result.CopyFrom(done.result)
        if done.HasField("failureDetails"):
            completed.failureDetails.CopyFrom(done.failureDetails)
        step.events.append(
            history_event(step.now, action.id, executionCompleted=completed).SerializeToString()
        )
        self._append_turn(step)
        failure = done.failureDetails if done.HasField("failureDetails") else None
        self.finish(step.t, step.inst, RuntimeStatus(done.workflowStatus), result, failure, step.now, step.fx)

    # ------------------------------------------------------------ transitions of an instance

    def continue_as_new(
        self, t: StoreTx, inst: Instance, a: pb.CompleteWorkflowAction, now: int, fx: Effects, app: str = ""
    ) -> None:
        """Starts a new execution of the instance (on the same app) with the action's result as its
        input."""
        # Events raised during the ended execution's last turn carry over; its timers and results don't,
        # nor its entity answers and lock grants (the events Dapr's types do not name). Its locks go.
        kept = [
            r
            for r in t.inbox(inst.instance_id, END_OF_TIME_US)
            if (kind := wire.event_type(r.event)) is not None and kind not in EXECUTION_BOUND_EVENTS
        ]
        if self.instance_gone is not None:
            self.instance_gone(t, inst, now, fx)
        t.clear_inbox(inst.instance_id)
        t.clear_history(inst.instance_id)
        fx.cancelled_activities.extend(t.clear_activities(inst.instance_id))
        inst.execution_id = wire.new_execution_id()
        inst.input = a.result.value if a.HasField("result") else None
        if a.HasField("newVersion"):
            inst.version = a.newVersion.value
        inst.output = None
        inst.status = RuntimeStatus.RUNNING
        inst.updated_at = now
        started = execution_started(inst, now, router=pb.TaskRouter(sourceAppID=app) if app else None)
        t.add_inbox(inst.instance_id, started, now)
        for event in a.carryoverEvents:
            t.add_inbox(inst.instance_id, event.SerializeToString(), now)
        for row in kept:
            t.add_inbox(inst.instance_id, row.event, row.visible_at)
        t.put_instance(inst)
        fx.history[inst.instance_id] = []
        fx.instance_work[inst.instance_id] = NewWork(inst.name, inst.version, inst.instance_id)
        fx.ready[inst.instance_id] = inst.dialect
        fx.changed.add(inst.instance_id)

    def create_instance(
        self,
        t: StoreTx,
        instance_id: str,
        name: str,
        dialect: str,
        input: str | None,
        version: str | None,
        now: int,
        fx: Effects,
        *,
        parent: pb.ParentInstanceInfo | None = None,
        parent_execution_id: str | None = None,
        scheduled_start_at: int | None = None,
        tags: dict[str, str] | None = None,
        router: pb.TaskRouter | None = None,
    ) -> Instance:
        """Creates a PENDING instance whose first turn sees its executionStarted event; `router`
        says which app runs it (none: any app's worker)."""
        inst = Instance(
            instance_id=instance_id,
            name=name,
            dialect=dialect,
            status=RuntimeStatus.PENDING,
            execution_id=wire.new_execution_id(),
            created_at=now,
            updated_at=now,
            version=version,
            input=input,
            parent_instance_id=parent.workflowInstance.instanceId if parent else None,
            parent_task_id=parent.taskScheduledId if parent else None,
            parent_execution_id=parent_execution_id,
            tags=tags or {},
            scheduled_start_at=scheduled_start_at,
        )
        t.create_instance(inst)
        visible_at = scheduled_start_at if scheduled_start_at and scheduled_start_at > now else now
        started = self.observer.trace_execution_started(
            execution_started(inst, now, parent, router), inst.parent_instance_id
        )
        fx.instance_apps[instance_id] = routing.router_target(router) if router is not None else ""
        fx.instance_work[instance_id] = NewWork(name, version, inst.parent_instance_id or "")
        t.add_inbox(instance_id, started, visible_at)
        fx.history[instance_id] = []
        fx.changed.add(instance_id)
        fx.dropped.discard(instance_id)
        if visible_at > now:
            fx.timers.append((visible_at, instance_id, dialect))
        else:
            fx.ready[instance_id] = dialect
        return inst

    def deliver_event(
        self, t: StoreTx, instance_id: str, name: str, data: str | None, now: int, fx: Effects
    ) -> None:
        """Puts an external event into the instance's inbox (dropped if no instance runs there)."""
        target = t.get_instance(instance_id)
        if target is None or target.status.is_terminal:
            log.info("dropped event %r sent to %r: no running instance has that ID", name, instance_id)
            return
        raised = pb.EventRaisedEvent(name=name)
        if data is not None:
            raised.input.value = data
        t.add_inbox(instance_id, history_event(now, eventRaised=raised).SerializeToString(), now)
        fx.ready[instance_id] = target.dialect

    def finish(
        self,
        t: StoreTx,
        inst: Instance,
        status: RuntimeStatus,
        output: str | None,
        failure: pb.TaskFailureDetails | None,
        now: int,
        fx: Effects,
    ) -> None:
        """Records a terminal status, drops pending work and tells the parent."""
        inst.status = status
        inst.output = output
        inst.failure = failure.SerializeToString() if failure is not None else None
        inst.completed_at = now
        inst.updated_at = now
        t.put_instance(inst)
        t.clear_inbox(inst.instance_id)
        fx.cancelled_activities.extend(t.clear_activities(inst.instance_id))
        fx.changed.add(inst.instance_id)
        fx.finished.add(inst.instance_id)
        if self.instance_gone is not None:
            self.instance_gone(t, inst, now, fx)
        self.outbox.record(t, LifecycleEvent.of_terminal(status), inst, now, fx)
        log.info(
            "workflow %r (%s) %s",
            inst.instance_id,
            inst.name,
            status.name,
            extra={"instanceID": inst.instance_id},
        )
        fx.notes.append(
            functools.partial(
                self.observer.workflow_finished, inst.instance_id, inst.name, status.name, inst.created_at
            )
        )
        if not inst.parent_instance_id:
            return
        parent = t.get_instance(inst.parent_instance_id)
        if not runs_execution(parent, inst.parent_execution_id):
            return
        t.add_inbox(parent.instance_id, _child_result(inst, status, output, failure, now), now)
        fx.ready[parent.instance_id] = parent.dialect

    def terminate(
        self, t: StoreTx, inst: Instance, output: str | None, recursive: bool, now: int, fx: Effects
    ) -> None:
        """Terminates the instance (and, if `recursive`, its children); a finished one stays as it is."""
        if inst.status.is_terminal:
            return
        terminated = pb.ExecutionTerminatedEvent(recurse=recursive)
        completed = pb.ExecutionCompletedEvent(workflowStatus=pb.ORCHESTRATION_STATUS_TERMINATED)
        if output is not None:
            terminated.input.value = output
            completed.result.value = output
        history = t.history(inst.instance_id)
        events = [
            history_event(now, executionTerminated=terminated).SerializeToString(),
            history_event(now, executionCompleted=completed).SerializeToString(),
        ]
        t.append_history(inst.instance_id, len(history), events)
        # A turn in flight is void: its completion will find no lease.
        fx.dropped.add(inst.instance_id)
        self.finish(t, inst, RuntimeStatus.TERMINATED, output, None, now, fx)
        if recursive:
            for child_id in t.child_ids(inst.instance_id):
                child = t.get_instance(child_id)
                if child is not None:
                    self.terminate(t, child, output, True, now, fx)

    def delete(self, t: StoreTx, inst: Instance, fx: Effects) -> None:
        """Deletes the instance with everything it has in the store."""
        if self.instance_gone is not None:
            self.instance_gone(t, inst, now_us(), fx)
        fx.cancelled_activities.extend(t.clear_activities(inst.instance_id))
        t.delete_instance(inst.instance_id)
        fx.dropped.add(inst.instance_id)
        fx.changed.add(inst.instance_id)


_ACTION_HANDLERS: dict[str, Callable[[Turns, _Step, pb.WorkflowAction], None]] = {
    "scheduleTask": Turns._schedule_task,
    "createTimer": Turns._create_timer,
    "createChildWorkflow": Turns._create_child_workflow,
    "sendEvent": Turns._send_event,
    "terminateWorkflow": Turns._terminate_workflow,
    "createDetachedWorkflow": Turns._create_detached_workflow,
    "workflowVersionNotAvailable": Turns._workflow_version_not_available,
    "completeWorkflow": Turns._complete_workflow,
}


def execution_started(
    inst: Instance,
    now: int,
    parent: pb.ParentInstanceInfo | None = None,
    router: pb.TaskRouter | None = None,
) -> bytes:
    """The executionStarted event that begins an execution of `inst` (on the app of `router`)."""
    started = pb.ExecutionStartedEvent(
        name=inst.name,
        workflowInstance=pb.WorkflowInstance(
            instanceId=inst.instance_id, executionId=wire.string_value(inst.execution_id)
        ),
        tags=inst.tags,
    )
    if inst.input is not None:
        started.input.value = inst.input
    if inst.version is not None:
        started.version.value = inst.version
    if inst.scheduled_start_at is not None:
        started.scheduledStartTimestamp.CopyFrom(wire.timestamp(inst.scheduled_start_at))
    if parent is None and inst.parent_instance_id:
        parent = pb.ParentInstanceInfo(
            taskScheduledId=inst.parent_task_id or 0,
            workflowInstance=pb.WorkflowInstance(
                instanceId=inst.parent_instance_id,
                executionId=wire.string_value(inst.parent_execution_id),
            ),
        )
    if parent is not None:
        started.parentInstance.CopyFrom(parent)
    event = history_event(now, executionStarted=started)
    if router is not None:
        event.router.CopyFrom(router)
    return event.SerializeToString()


def _child_result(
    inst: Instance, status: RuntimeStatus, output: str | None, failure: pb.TaskFailureDetails | None, now: int
) -> bytes:
    """The event a finished child puts into its parent's inbox."""
    task_id = inst.parent_task_id or 0
    if status == RuntimeStatus.COMPLETED:
        done = pb.ChildWorkflowInstanceCompletedEvent(taskScheduledId=task_id)
        if output is not None:
            done.result.value = output
        return history_event(now, childWorkflowInstanceCompleted=done).SerializeToString()
    details = (
        failure
        if failure is not None
        else wire.failure_details(
            f"Workflow{status.name.capitalize()}",
            f"child workflow {inst.instance_id!r} was {status.name.lower()}",
        )
    )
    failed = pb.ChildWorkflowInstanceFailedEvent(taskScheduledId=task_id, failureDetails=details)
    return history_event(now, childWorkflowInstanceFailed=failed).SerializeToString()
