"""Results from workers: an activity's result, an orchestration turn's actions, a refused turn.

A result counts only under the current lease's token, and only for the work item of that lease (the
same instance, and for an activity the same task; the execution is the lease's): a stale or duplicate
one (the lease expired, the worker was replaced, the instance was terminated) or one that names
another item (forged) is ignored, and counted in `ignored` and by the observer, so nothing is
applied twice or to the wrong work.
Tokens carry 128 random bits, so one cannot be guessed from another. On a shared store the
transaction that records a result also checks that the store still holds the lease.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from ..protos import dapr_dialect_pb2 as pb
from ..store import StoreTx, StoreUnavailable
from ..workflows import WorkflowError, check_payload_size, runs_execution
from . import wire
from .dispatch import ActivityLease, Dispatch, TurnLease
from .effects import Commit, Effects
from .turns import FAILURE_TYPES, Turns
from .wire import history_event, now_us

log = logging.getLogger("dapr_workflows.engine")


class Completions:
    def __init__(self, dispatch: Dispatch, turns: Turns, commit: Commit, max_payload_bytes: int) -> None:
        self.dispatch = dispatch
        self.turns = turns
        self.commit = commit
        self.max_payload_bytes = max_payload_bytes
        # Results ignored, by reason: "stale" (no current lease has the token: late, duplicate or
        # guessed) and "forged" (the token is another work item's).
        self.ignored: Counter[str] = Counter()

    def _ignore(self, kind: str, token: str, what: str) -> None:
        reason = "forged" if self.dispatch.knows_token(token) else "stale"
        self.ignored[reason] += 1
        self.dispatch.observer.completion_ignored(kind, reason)
        if reason == "forged":
            log.warning("ignored an %s: its completion token belongs to another work item", what)
        else:
            log.info("ignored a stale %s (its lease is gone)", what)

    async def complete_activity(self, response: pb.ActivityResponse) -> None:
        act = self.dispatch.activity_lease(response.completionToken)
        if act is None or (act.instance_id, act.task_id) != (response.instanceId, response.taskId):
            what = f"activity result for {response.instanceId!r} task {response.taskId}"
            self._ignore("activity", response.completionToken, what)
            return
        refused: WorkflowError | None = None
        if response.HasField("result"):
            try:
                check_payload_size("activity result", response.result.value, self.max_payload_bytes)
            except WorkflowError as err:
                # Recorded as the activity's failure (running it again would give the same result);
                # the worker still hears why.
                refused = err
                response = pb.ActivityResponse(
                    instanceId=response.instanceId,
                    taskId=response.taskId,
                    completionToken=response.completionToken,
                    failureDetails=wire.failure_details(FAILURE_TYPES[err.code], err.message),
                )
        fx = Effects()
        self.dispatch.observer.activity_completed(act.token, response.HasField("failureDetails"))
        self.dispatch.end(act)
        try:
            await self.commit(lambda t: _record_activity_result(t, act, response, fx), fx)
        except BaseException:
            self.dispatch.leasing.release_later(lambda t: t.release_activity(act.activity_id, act.token))
            self.dispatch.queue_activity(act.activity_id, act.dialect)
            raise
        if refused is not None:
            raise refused

    async def complete_orchestration(
        self, response: pb.WorkflowResponse, entity_messages: list[tuple[int, bytes]] | None = None
    ) -> None:
        lease = self.dispatch.turn_lease(response.instanceId, response.completionToken)
        if lease is None:
            what = f"orchestration result for {response.instanceId!r}"
            self._ignore("orchestration", response.completionToken, what)
            return
        history = self.dispatch.history
        workers = [worker.dialect for worker in self.dispatch.workers.values()]
        wire.explain_unregistered(response, lease.turn.workflow_name, workers)
        fx = Effects()
        try:
            await self.commit(
                lambda t: _fenced(
                    t,
                    lease,
                    lambda: self.turns.record(
                        t,
                        lease.turn,
                        response,
                        fx,
                        history.get(lease.turn.instance_id),
                        entity_messages,
                        history.patches(lease.turn.instance_id),
                    ),
                ),
                fx,
            )
        except WorkflowError as err:
            if isinstance(err, StoreUnavailable):
                self._offer_turn_again(lease)
                raise
            # The turn cannot be recorded as asked (e.g. an oversized output): fail the instance instead.
            log.warning(
                "workflow %r: %s; failing the instance",
                response.instanceId,
                err.message,
                extra={"instanceID": response.instanceId},
            )
            fx = Effects()
            refused = err
            await self.commit(
                lambda t: _fenced(t, lease, lambda: self.turns.refuse(t, lease.turn, refused, fx)), fx
            )
        except BaseException:
            self._offer_turn_again(lease)
            raise
        self.dispatch.observer.turn_completed(lease.token)
        ended = any(a.WhichOneof("workflowActionType") == "completeWorkflow" for a in response.actions)
        if self.dispatch.is_current(lease):
            self.dispatch.kept.recorded(
                lease.worker_id, lease.turn.instance_id, None if ended else lease.past_count
            )
        self.dispatch.end(lease)
        self.dispatch.settle(lease.turn.instance_id, lease.dialect)

    def _offer_turn_again(self, lease: TurnLease) -> None:
        """Nothing of the turn was recorded: it is offered again (unless the lease is gone already)."""
        if self.dispatch.is_current(lease):
            self.dispatch.release(lease)

    async def refuse_turn(self, instance_id: str, token: str, err: WorkflowError) -> None:
        """A worker's answer that cannot be applied at all (e.g. an action of a feature we lack):
        the instance fails with the reason, instead of the turn coming back after every lease."""
        lease = self.dispatch.turn_lease(instance_id, token)
        if lease is None:
            return
        log.warning(
            "workflow %r: %s; failing the instance",
            instance_id,
            err.message,
            extra={"instanceID": instance_id},
        )
        fx = Effects()
        try:
            await self.commit(
                lambda t: _fenced(t, lease, lambda: self.turns.refuse(t, lease.turn, err, fx)), fx
            )
        except BaseException:
            self._offer_turn_again(lease)  # nothing was recorded: the instance is not lost
            raise
        self.dispatch.end(lease)


def _fenced(t: StoreTx, lease: TurnLease, record: Callable[[], None]) -> None:
    """Records a turn only while the store still holds the lease for it, and gives the lease back in
    the same transaction (an engine whose lease expired and was taken records nothing)."""
    instance_id = lease.turn.instance_id
    if not t.holds_instance(instance_id, lease.token):
        log.info("ignored a turn of %r: another engine took it after its lease expired", instance_id)
        return
    record()
    t.release_instance(instance_id, lease.token)


def _record_activity_result(
    t: StoreTx, act: ActivityLease, response: pb.ActivityResponse, fx: Effects
) -> None:
    """Puts the activity's result into its instance's inbox, if that execution still runs."""
    if not t.holds_activity(act.activity_id, act.token):
        log.info("ignored an activity result: another engine took the activity after its lease expired")
        return
    row = t.get_activity(act.activity_id)
    if row is None:
        return
    t.delete_activity(act.activity_id)
    inst = t.get_instance(row.instance_id)
    if not runs_execution(inst, row.execution_id):
        return
    now = now_us()
    if response.HasField("failureDetails"):
        event = history_event(
            now,
            taskFailed=pb.TaskFailedEvent(
                taskScheduledId=row.task_id, failureDetails=response.failureDetails
            ),
        )
    else:
        done = pb.TaskCompletedEvent(taskScheduledId=row.task_id)
        if response.HasField("result"):
            done.result.CopyFrom(response.result)
        event = history_event(now, taskCompleted=done)
    t.add_inbox(row.instance_id, event.SerializeToString(), now)
    fx.ready[row.instance_id] = inst.dialect
