"""Durable entities (the durabletask dialect): the state machine, inside one store transaction.

An entity `@name@key` is an instance row (dialect durabletask, status RUNNING, listed like any
instance) with an `entities` row for its state and lock. Operations sent to it wait in its inbox
as the SDK's own history events (`entityOperationSignaled` / `entityOperationCalled`); a delayed
signal is an inbox row that becomes visible at its scheduled time, a durable timer like any other.
A worker gets the visible operations as one batch (`entityRequestV2`), one batch per entity at a
time (the instance's lease); its result writes the new state, answers the calling orchestrations
and sends what the operations sent.

Locks (critical sections) are kept by the engine, as the SDK's reference backend does: a lock
request waits until every entity of its lock set is free (requests that share an entity are
granted in the order they came), then the orchestration gets `entityLockGranted`. While an entity
is locked, only the lock holder's calls reach it; the rest waits in its inbox. An orchestration
that finishes (completes, fails, is terminated) or is deleted releases what it holds and asks.

Pure like `turns.py`: a `StoreTx` and an `Effects` in, no asyncio.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from ..protos import durabletask_dialect_pb2 as mpb
from ..store import EntityRow, InboxRow, StoreTx
from ..workflows import (
    ErrorCode,
    Instance,
    RuntimeStatus,
    WorkflowError,
    check_payload_size,
    is_entity_id,
    require_entity_id,
    require_name,
    require_timestamp,
    validate_new_instance_id,
)
from . import wire
from .effects import Effects
from .turns import Turns

log = logging.getLogger("dapr_workflows.engine")

DIALECT = "durabletask"
# The events an entity's batch is made of; anything else in its inbox is dropped.
OPERATION_EVENTS = frozenset({"entityOperationSignaled", "entityOperationCalled"})
# Operations per batch at most: a long backlog goes to the worker in several batches.
MAX_BATCH = 100


def event(now: int, event_id: int = -1, **kind: object) -> mpb.HistoryEvent:
    """A history event of Microsoft's dialect (`kind`: one event field and its message)."""
    return mpb.HistoryEvent(eventId=event_id, timestamp=wire.timestamp(now), **kind)  # type: ignore[arg-type]


@dataclass
class Batch:
    """What an entity's next batch is: the inbox rows it consumes and the operations it runs."""

    inbox_ids: list[int]  # the dropped rows, then the operations' rows in order
    operations: list[bytes]  # serialized HistoryEvents, in order
    state: str | None


class Entities:
    """The entity transitions; every method runs inside the caller's transaction."""

    def __init__(self, turns: Turns, max_payload_bytes: int) -> None:
        self.turns = turns
        self.max_payload_bytes = max_payload_bytes

    # ------------------------------------------------------------ entities and their inbox

    def ensure(self, t: StoreTx, entity_id: str, now: int, fx: Effects) -> EntityRow:
        """The entity's row, created (with its instance row) on its first message."""
        name = require_entity_id(entity_id)
        inst = t.get_instance(entity_id)
        if inst is not None and inst.execution_id and t.get_entity(entity_id) is None:
            # A workflow has this ID (one made before such IDs were refused): not an entity's to take.
            raise WorkflowError(
                ErrorCode.FAILED_PRECONDITION, f"{entity_id!r} is a workflow instance, not a durable entity"
            )
        if inst is None or inst.status.is_terminal:
            if inst is not None:
                t.delete_instance(entity_id)
            t.create_instance(
                Instance(
                    instance_id=entity_id,
                    name=name,
                    dialect=DIALECT,
                    status=RuntimeStatus.RUNNING,
                    execution_id="",
                    created_at=now,
                    updated_at=now,
                )
            )
            fx.changed.add(entity_id)
        row = t.get_entity(entity_id)
        if row is None:
            row = EntityRow(entity_id, None, None, None, now)
            t.put_entity(row)
        return row

    def enqueue(
        self, t: StoreTx, entity_id: str, op: mpb.HistoryEvent, visible_at: int, now: int, fx: Effects
    ) -> None:
        """Puts an operation into the entity's inbox, visible at `visible_at` (a delayed signal)."""
        self.ensure(t, entity_id, now, fx)
        t.add_inbox(entity_id, op.SerializeToString(), visible_at)
        if visible_at > now:
            fx.timers.append((visible_at, entity_id, DIALECT))
        else:
            fx.ready[entity_id] = DIALECT

    def signal(
        self,
        t: StoreTx,
        entity_id: str,
        operation: str,
        input: str | None,
        request_id: str,
        scheduled_at: int | None,
        now: int,
        fx: Effects,
    ) -> None:
        """A one-way operation (from a client or another entity), at once or at `scheduled_at`."""
        require_name("entity operation name", operation)
        check_payload_size("entity operation input", input, self.max_payload_bytes)
        if scheduled_at is not None:
            require_timestamp("signal's scheduled time", scheduled_at)
        signaled = mpb.EntityOperationSignaledEvent(requestId=request_id, operation=operation)
        signaled.targetInstanceId.value = entity_id
        if input is not None:
            signaled.input.value = input
        if scheduled_at is not None:
            signaled.scheduledTime.CopyFrom(wire.timestamp(scheduled_at))
        visible_at = max(scheduled_at or now, now)
        self.enqueue(t, entity_id, event(now, entityOperationSignaled=signaled), visible_at, now, fx)

    def next_batch(self, t: StoreTx, entity_id: str, rows: list[InboxRow]) -> Batch:
        """The operations a worker may run now: while the entity is locked, only its holder's calls."""
        entity = t.get_entity(entity_id)
        holder = entity.lock_owner if entity is not None else None
        dropped: list[int] = []
        ids: list[int] = []
        operations: list[bytes] = []
        for row in rows:
            op = mpb.HistoryEvent.FromString(row.event)
            kind = op.WhichOneof("eventType")
            if kind not in OPERATION_EVENTS:
                dropped.append(row.id)  # not an entity's event (e.g. raised at it by mistake)
                continue
            if holder is not None and not (
                kind == "entityOperationCalled" and op.entityOperationCalled.parentInstanceId.value == holder
            ):
                continue  # waits until the lock is released
            ids.append(row.id)
            operations.append(row.event)
            if len(operations) >= MAX_BATCH:
                break
        return Batch(dropped + ids, operations, entity.state if entity is not None else None)

    # ------------------------------------------------------------ messages of an orchestration's turn

    def send(
        self, t: StoreTx, inst: Instance, messages: list[tuple[int, bytes]], now: int, fx: Effects
    ) -> list[bytes]:
        """Applies a turn's `sendEntityMessage` actions (action ID, serialized message); returns the
        history events that confirm them to the worker on replay."""
        confirmed: list[bytes] = []
        for action_id, raw in messages:
            msg = mpb.SendEntityMessageAction.FromString(raw)
            kind = msg.WhichOneof("EntityMessageType")
            if kind == "entityOperationSignaled":
                self._signaled(t, msg.entityOperationSignaled, now, fx)
            elif kind == "entityOperationCalled":
                self._called(t, inst, msg.entityOperationCalled, now, fx)
            elif kind == "entityLockRequested":
                lock = msg.entityLockRequested
                for entity_id in lock.lockSet:
                    self.ensure(t, entity_id, now, fx)
                t.add_lock_request(lock.criticalSectionId, inst.instance_id, list(lock.lockSet))
                self.grant_waiting(t, now, fx)
            elif kind == "entityUnlockSent":
                unlock = msg.entityUnlockSent
                self.unlock(t, unlock.targetInstanceId.value, unlock.criticalSectionId, now, fx)
                self.grant_waiting(t, now, fx)
            else:
                raise WorkflowError(ErrorCode.INVALID_ARGUMENT, "the workflow sent an empty entity message")
            confirmed.append(event(now, action_id, **{kind: getattr(msg, kind)}).SerializeToString())
        return confirmed

    def _signaled(
        self, t: StoreTx, signaled: mpb.EntityOperationSignaledEvent, now: int, fx: Effects
    ) -> None:
        target = signaled.targetInstanceId.value
        require_entity_id(target)
        require_name("entity operation name", signaled.operation)
        check_payload_size("entity operation input", signaled.input.value, self.max_payload_bytes)
        visible_at = wire.micros_or_none(signaled, "scheduledTime") or now
        op = event(now, entityOperationSignaled=signaled)
        self.enqueue(t, target, op, max(visible_at, now), now, fx)

    def _called(
        self, t: StoreTx, inst: Instance, called: mpb.EntityOperationCalledEvent, now: int, fx: Effects
    ) -> None:
        target = called.targetInstanceId.value
        require_entity_id(target)
        require_name("entity operation name", called.operation)
        check_payload_size("entity operation input", called.input.value, self.max_payload_bytes)
        op = mpb.EntityOperationCalledEvent()
        op.CopyFrom(called)
        # The answer goes to this execution of the caller, whatever the worker said.
        op.parentInstanceId.value = inst.instance_id
        op.parentExecutionId.value = inst.execution_id
        self.enqueue(t, target, event(now, entityOperationCalled=op), now, now, fx)

    # ------------------------------------------------------------ locks

    def grant_waiting(self, t: StoreTx, now: int, fx: Effects) -> None:
        """Grants every waiting lock request whose entities are free, oldest first; a request that
        waits keeps its entities from later requests (no overtaking)."""
        requests = t.lock_requests()
        if not requests:
            return
        reserved: set[str] = set()
        granted: list[int] = []
        for req in requests:
            rows = [t.get_entity(entity_id) for entity_id in req.lock_set]
            free = all(r is None or r.locked_by is None for r in rows) and not reserved & set(req.lock_set)
            if not free:
                reserved.update(req.lock_set)
                continue
            granted.append(req.id)
            owner = t.get_instance(req.owner)
            if owner is None or owner.status.is_terminal:
                continue  # the orchestration is gone: nothing to lock for it
            for entity_id, row in zip(req.lock_set, rows, strict=True):
                row = row or self.ensure(t, entity_id, now, fx)
                row.locked_by, row.lock_owner = req.critical_section_id, req.owner
                t.put_entity(row)
            grant = mpb.EntityLockGrantedEvent(criticalSectionId=req.critical_section_id)
            t.add_inbox(req.owner, event(now, entityLockGranted=grant).SerializeToString(), now)
            fx.ready[req.owner] = owner.dialect
        t.delete_lock_requests(granted)

    def unlock(self, t: StoreTx, entity_id: str, critical_section_id: str, now: int, fx: Effects) -> None:
        """Releases the entity's lock if that critical section holds it; what waited may run."""
        row = t.get_entity(entity_id) if is_entity_id(entity_id) else None
        if row is None or row.locked_by != critical_section_id:
            return
        row.locked_by = row.lock_owner = None
        t.put_entity(row)
        fx.ready[entity_id] = DIALECT

    def release_all(self, t: StoreTx, owner: str, now: int, fx: Effects) -> None:
        """The orchestration `owner` finished or is deleted: its locks and lock requests go."""
        if not t.has_entity_locks(owner):
            return  # the common case, in one look-up
        held = t.entities_locked_by(owner)
        asked = [r.id for r in t.lock_requests() if r.owner == owner]
        if not held and not asked:
            return
        for row in held:
            log.info("entity %r: lock of %r released (it finished)", row.instance_id, owner)
            self.unlock(t, row.instance_id, row.locked_by or "", now, fx)
        t.delete_lock_requests(asked)
        self.grant_waiting(t, now, fx)

    def gone(self, t: StoreTx, inst: Instance, now: int, fx: Effects) -> None:
        """Turns' hook: an instance reached a terminal status or is deleted. An orchestration's
        locks and lock requests go; an entity's state goes with it."""
        if inst.dialect != DIALECT:
            return
        if is_entity_id(inst.instance_id):
            t.delete_entity(inst.instance_id)
            self.grant_waiting(t, now, fx)  # its lock went with it
        else:
            self.release_all(t, inst.instance_id, now, fx)

    # ------------------------------------------------------------ a worker's result

    def complete(
        self,
        t: StoreTx,
        entity_id: str,
        inbox_ids: list[int],
        operations: int,
        result: mpb.EntityBatchResult,
        now: int,
        fx: Effects,
    ) -> None:
        """Records a batch's result (of its `operations`, the last of `inbox_ids`): the new state,
        the answers to callers, what it sent. Operations a shorter result leaves out run next."""
        inst = t.get_instance(entity_id)
        if inst is None:
            return  # purged while the batch ran
        state = result.entityState.value if result.HasField("entityState") else None
        check_payload_size("entity state", state, self.max_payload_bytes)
        # No results at all would never progress if run again: such a batch is consumed, as before.
        not_run = operations - len(result.results) if result.results else 0
        consumed = inbox_ids[: len(inbox_ids) - max(not_run, 0)]
        t.delete_inbox(consumed)
        row = t.get_entity(entity_id) or EntityRow(entity_id, None, None, None, now)
        row.state, row.modified_at = state, now
        t.put_entity(row)
        inst.updated_at = now
        t.put_instance(inst)
        fx.changed.add(entity_id)
        for index, info in enumerate(result.operationInfos):
            if info.responseDestination.instanceId and index < len(result.results):
                self._answer(t, info, result.results[index], now, fx)
        for action in result.actions:
            try:
                self._entity_action(t, entity_id, action, now, fx)
            except WorkflowError as err:  # checked before anything is written: the others still go
                log.warning("entity %r: an operation's action was refused: %s", entity_id, err.message)
        if len(inbox_ids) >= MAX_BATCH or len(consumed) < len(inbox_ids):  # the next batch waits
            fx.ready[entity_id] = DIALECT

    def refuse(
        self, t: StoreTx, inbox_ids: list[int], operations: list[bytes], message: str, now: int, fx: Effects
    ) -> None:
        """A batch whose result cannot be recorded (e.g. a state over the payload limit): its
        operations are consumed and each call fails with the reason; the state stays as it was."""
        t.delete_inbox(inbox_ids)
        details = mpb.TaskFailureDetails(errorType="EntityResultRefused", errorMessage=message)
        for raw in operations:
            called = mpb.HistoryEvent.FromString(raw).entityOperationCalled
            if called.parentInstanceId.value:
                destination = mpb.OrchestrationInstance(instanceId=called.parentInstanceId.value)
                destination.executionId.CopyFrom(called.parentExecutionId)
                info = mpb.OperationInfo(requestId=called.requestId, responseDestination=destination)
                failed = mpb.OperationResult(failure=mpb.OperationResultFailure(failureDetails=details))
                self._answer(t, info, failed, now, fx)

    @staticmethod
    def _answer(t: StoreTx, info: mpb.OperationInfo, res: mpb.OperationResult, now: int, fx: Effects) -> None:
        caller_id = info.responseDestination.instanceId
        caller = t.get_instance(caller_id)
        execution = info.responseDestination.executionId.value
        if caller is None or caller.status.is_terminal or (execution and caller.execution_id != execution):
            return
        if res.HasField("failure"):
            failed = mpb.EntityOperationFailedEvent(
                requestId=info.requestId, failureDetails=res.failure.failureDetails
            )
            answer = event(now, entityOperationFailed=failed)
        else:
            done = mpb.EntityOperationCompletedEvent(requestId=info.requestId)
            if res.success.HasField("result"):
                done.output.CopyFrom(res.success.result)
            answer = event(now, entityOperationCompleted=done)
        t.add_inbox(caller_id, answer.SerializeToString(), now)
        fx.ready[caller_id] = caller.dialect

    def _entity_action(
        self, t: StoreTx, entity_id: str, action: mpb.OperationAction, now: int, fx: Effects
    ) -> None:
        kind = action.WhichOneof("operationActionType")
        if kind == "sendSignal":
            s = action.sendSignal
            when = wire.micros(s.scheduledTime) if s.HasField("scheduledTime") else None
            input = s.input.value if s.HasField("input") else None
            self.signal(t, s.instanceId, s.name, input, uuid.uuid4().hex, when, now, fx)
        elif kind == "startNewOrchestration":
            start = action.startNewOrchestration
            require_name("workflow name", start.name)
            instance_id = start.instanceId or wire.new_execution_id()
            validate_new_instance_id(instance_id)  # an entity's ID ("@name@key") is not one
            if t.get_instance(instance_id) is not None:
                log.info("entity %r: workflow %r exists already; not started again", entity_id, instance_id)
                return
            scheduled = wire.micros_or_none(start, "scheduledTime")
            self.turns.create_instance(
                t,
                instance_id,
                start.name,
                DIALECT,
                start.input.value if start.HasField("input") else None,
                start.version.value if start.HasField("version") else None,
                now,
                fx,
                scheduled_start_at=scheduled,
            )
