"""Management calls of the workflow component interface: start, get, events, suspend, resume,
terminate, purge, query, history, restart, rerun and rewind, and the waits on an instance's status.

Each change is one store transaction; its rules (what is allowed, with which error code) are those
of `workflows.py`, its writes those of the state machine in `turns.py`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Callable

from ..protos import dapr_dialect_pb2 as pb
from ..store import Store, StoreTx
from ..workflows import (
    TERMINAL_STATUSES,
    ErrorCode,
    Instance,
    InstanceQuery,
    LifecycleEvent,
    ReusePolicy,
    RuntimeStatus,
    StartRequest,
    WorkflowError,
    check_caller_payload,
    check_event_allowed,
    check_not_entity,
    check_payload_size,
    check_purge_allowed,
    check_rerun_allowed,
    check_restart_allowed,
    check_resume_allowed,
    check_rewind_allowed,
    check_start,
    check_start_allowed,
    check_suspend_allowed,
    not_found,
    require_event_name,
    require_instance_id,
    validate_new_instance_id,
)
from . import wire
from .effects import Commit, Effects
from .rerun import plan_rerun
from .rewind import plan_rewind
from .turns import Turns
from .wire import history_event, now_us

log = logging.getLogger("dapr_workflows.engine")

# A query limit above any number of instances a store holds: the query returns them all.
ALL_INSTANCES = 2**31


class InstanceWatch:
    """Callers waiting for an instance's status to change, woken after each commit that changed it."""

    def __init__(self) -> None:
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

    def wake(self, instance_id: str) -> None:
        for fut in self._waiters.pop(instance_id, ()):
            if not fut.done():
                fut.set_result(None)

    async def wait(self, instance_id: str, poll_seconds: float | None) -> None:
        """Until the instance changed (or, if given, `poll_seconds` passed)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(instance_id, []).append(fut)
        try:
            if poll_seconds is not None:
                await asyncio.wait_for(fut, timeout=poll_seconds)
            else:
                await fut
        except asyncio.TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(instance_id)
            if waiters and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._waiters[instance_id]

    def cancel_all(self) -> None:
        for waiters in self._waiters.values():
            for fut in waiters:
                if not fut.done():
                    fut.cancel()


class Management:
    def __init__(
        self,
        store: Store,
        turns: Turns,
        commit: Commit,
        watch: InstanceWatch,
        max_payload_bytes: int,
        change_poll_seconds: float | None,
    ) -> None:
        self.store = store
        self.turns = turns
        self.commit = commit
        self.watch = watch
        self.max_payload_bytes = max_payload_bytes
        # Other engines' changes arrive as announcements; polling covers one that was missed.
        self.change_poll_seconds = change_poll_seconds

    async def start_workflow(self, req: StartRequest) -> str:
        check_start(req, self.max_payload_bytes)
        fx = Effects()

        def tx(t: StoreTx) -> None:
            existing = t.get_instance(req.instance_id)
            check_start_allowed(req.instance_id, existing, req.reuse.replaceable)
            if existing is not None:
                self.turns.delete(t, existing, fx)
            self.turns.create_instance(
                t,
                req.instance_id,
                req.name,
                req.dialect,
                req.input,
                req.version,
                now_us(),
                fx,
                scheduled_start_at=req.scheduled_start_at,
                tags=req.tags,
                router=pb.TaskRouter(targetAppID=req.app_id) if req.app_id else None,
            )

        await self.commit(tx, fx)
        log.info("started workflow %r (%s)", req.instance_id, req.name, extra={"instanceID": req.instance_id})
        return req.instance_id

    async def get_instance(self, instance_id: str) -> Instance | None:
        return await self.store.read(lambda t: t.get_instance(instance_id))

    async def require_instance(self, instance_id: str) -> Instance:
        require_instance_id(instance_id)
        inst = await self.get_instance(instance_id)
        if inst is None:
            raise not_found(instance_id)
        return inst

    async def _change(
        self, instance_id: str, change: Callable[[StoreTx, Instance, int, Effects], None]
    ) -> None:
        """Runs a management change on an existing instance in one transaction."""
        require_instance_id(instance_id)
        fx = Effects()

        def tx(t: StoreTx) -> None:
            inst = t.get_instance(instance_id)
            if inst is None:
                raise not_found(instance_id)
            check_not_entity(inst)
            change(t, inst, now_us(), fx)

        await self.commit(tx, fx)

    async def raise_event(self, instance_id: str, name: str, data: str | None) -> None:
        require_event_name(name)
        check_caller_payload("event payload", data, self.max_payload_bytes)

        def change(t: StoreTx, inst: Instance, now: int, fx: Effects) -> None:
            check_event_allowed(inst)
            self.turns.deliver_event(t, inst.instance_id, name, data, now, fx)

        await self._change(instance_id, change)

    async def suspend(self, instance_id: str, reason: str | None = None) -> None:
        def change(t: StoreTx, inst: Instance, now: int, fx: Effects) -> None:
            if check_suspend_allowed(inst):
                event = history_event(
                    now, executionSuspended=pb.ExecutionSuspendedEvent(input=wire.string_value(reason))
                )
                self._set_status(t, inst, now, fx, RuntimeStatus.SUSPENDED, LifecycleEvent.SUSPENDED, event)

        await self._change(instance_id, change)
        log.info("suspended workflow %r", instance_id, extra={"instanceID": instance_id})

    async def resume(self, instance_id: str, reason: str | None = None) -> None:
        def change(t: StoreTx, inst: Instance, now: int, fx: Effects) -> None:
            if check_resume_allowed(inst):
                event = history_event(
                    now, executionResumed=pb.ExecutionResumedEvent(input=wire.string_value(reason))
                )
                self._set_status(t, inst, now, fx, RuntimeStatus.RUNNING, LifecycleEvent.RESUMED, event)

        await self._change(instance_id, change)
        log.info("resumed workflow %r", instance_id, extra={"instanceID": instance_id})

    def _set_status(
        self,
        t: StoreTx,
        inst: Instance,
        now: int,
        fx: Effects,
        status: RuntimeStatus,
        lifecycle: LifecycleEvent,
        event: pb.HistoryEvent,
    ) -> None:
        """Suspend or resume: the new status, its lifecycle event, and the history event for the worker."""
        inst.status = status
        inst.updated_at = now
        t.put_instance(inst)
        self.turns.outbox.record(t, lifecycle, inst, now, fx)
        t.add_inbox(inst.instance_id, event.SerializeToString(), now)
        fx.ready[inst.instance_id] = inst.dialect
        fx.changed.add(inst.instance_id)

    async def terminate(self, instance_id: str, output: str | None = None, recursive: bool = True) -> None:
        check_caller_payload("terminate output", output, self.max_payload_bytes)

        def change(t: StoreTx, inst: Instance, now: int, fx: Effects) -> None:
            self.turns.terminate(t, inst, output, recursive, now, fx)

        await self._change(instance_id, change)

    async def purge(self, instance_id: str, recursive: bool = True, force: bool = False) -> int:
        """Deletes a terminal instance (and, recursively, its children); returns how many were deleted."""
        require_instance_id(instance_id)
        fx = Effects()

        def purge_tree(t: StoreTx, inst: Instance) -> int:
            check_purge_allowed(inst, force)
            count = 1
            if recursive:
                for child_id in t.child_ids(inst.instance_id):
                    child = t.get_instance(child_id)
                    if child is not None:
                        count += purge_tree(t, child)
            self.turns.delete(t, inst, fx)
            return count

        def tx(t: StoreTx) -> int:
            inst = t.get_instance(instance_id)
            if inst is None:
                raise not_found(instance_id)
            return purge_tree(t, inst)

        count = await self.commit(tx, fx)
        log.info("purged workflow %r (%d instances)", instance_id, count)
        return count

    async def purge_where(self, query: InstanceQuery, recursive: bool = True) -> int:
        """Purges every terminal instance that matches the query (the caller's query is not changed)."""
        terminal = frozenset(s for s in (query.statuses or RuntimeStatus) if s.is_terminal)
        total = 0
        for inst in await self.query(dataclasses.replace(query, statuses=terminal, limit=ALL_INSTANCES)):
            try:
                total += await self.purge(inst.instance_id, recursive)
            except WorkflowError as err:
                if err.code != ErrorCode.NOT_FOUND:  # a child purged with its parent
                    raise
        return total

    async def purge_batch(self, query: InstanceQuery) -> list[str]:
        """Purges, in one transaction, the finished instances the query finds (not their children);
        with `query.skip_locked`, those another engine's transaction holds are left to it."""
        fx = Effects()

        def tx(t: StoreTx) -> list[str]:
            purged = []
            for inst in t.query(query):
                if inst.status.is_terminal:
                    self.turns.delete(t, inst, fx)
                    purged.append(inst.instance_id)
            return purged

        return await self.commit(tx, fx)

    async def query(self, query: InstanceQuery) -> list[Instance]:
        return await self.store.read(lambda t: t.query(query))

    async def history(self, instance_id: str) -> list[bytes]:
        require_instance_id(instance_id)

        def tx(t: StoreTx) -> list[bytes]:
            if t.get_instance(instance_id) is None:
                raise not_found(instance_id)
            return t.history(instance_id)

        return await self.store.read(tx)

    async def wait_for(self, instance_id: str, done: Callable[[Instance], bool]) -> Instance | None:
        """Waits until `done(instance)` holds; None if the instance does not exist (or is purged)."""
        while True:
            inst = await self.get_instance(instance_id)
            if inst is None or done(inst):
                return inst
            await self.watch.wait(instance_id, self.change_poll_seconds)

    async def restart(self, instance_id: str, new_instance_id: bool) -> str:
        """Starts a finished instance again with its name and input (durabletask's RestartInstance)."""
        inst = await self.require_instance(instance_id)
        check_restart_allowed(inst)
        return await self.start_workflow(
            StartRequest(
                name=inst.name,
                instance_id=uuid.uuid4().hex if new_instance_id else instance_id,
                input=inst.input,
                version=inst.version,
                tags=inst.tags,
                reuse=ReusePolicy(TERMINAL_STATUSES),
                dialect=inst.dialect,
            )
        )

    async def rerun_from_event(
        self,
        source_id: str,
        event_id: int,
        new_id: str | None,
        new_input: str | None,
        overwrite_input: bool,
        new_child_id: str | None = None,
    ) -> str:
        """Runs a finished instance again from an activity, timer or child workflow, under a new ID.

        The new instance replays the source's history up to that event; the event's work and
        everything after it run again (an activity with `new_input` as its input if asked, a child
        under `new_child_id` if given). Results of earlier work that arrived later are carried over
        (see `rerun.plan_rerun`). The error codes are those Dapr's SDK documents for this call.
        """
        if new_child_id is not None:
            validate_new_instance_id(new_child_id)
        target_id = new_id or uuid.uuid4().hex
        validate_new_instance_id(target_id)
        check_payload_size("activity input", new_input, self.max_payload_bytes)
        fx = Effects()

        def tx(t: StoreTx) -> None:
            src = t.get_instance(source_id)
            if src is None:
                raise not_found(source_id)
            check_rerun_allowed(src)
            check_start_allowed(target_id, t.get_instance(target_id), frozenset())
            now = now_us()
            inst = Instance(
                instance_id=target_id,
                name=src.name,
                dialect=src.dialect,
                status=RuntimeStatus.PENDING,
                execution_id=wire.new_execution_id(),
                created_at=now,
                updated_at=now,
                version=src.version,
                input=src.input,
                tags=src.tags,
                rerun={
                    "task_id": event_id,
                    "input": new_input if overwrite_input else None,
                    "child_id": new_child_id,
                },
            )
            plan = plan_rerun(
                source_id,
                t.history(source_id),
                event_id,
                target_id,
                inst.execution_id,
                overwrite_input,
                new_child_id,
            )
            t.put_instance(inst)
            t.append_history(target_id, 0, plan.kept)
            for event in plan.inbox:
                t.add_inbox(target_id, event, now)
            fx.history[target_id] = plan.kept
            fx.ready[target_id] = inst.dialect
            fx.changed.add(target_id)

        await self.commit(tx, fx)
        log.info("rerunning workflow %r from event %d as %r", source_id, event_id, target_id)
        return target_id

    async def rewind(self, instance_id: str, reason: str | None = None) -> None:
        """Runs a failed instance on from where it failed (durabletask's RewindInstance): its failed
        activities run again, its failed children are rewound (a purged one is created again), the
        successful results stay (see `rewind.plan_rewind`). One transaction for the whole tree."""

        def change(t: StoreTx, inst: Instance, now: int, fx: Effects) -> None:
            check_rewind_allowed(inst, reason)
            self._rewind(t, inst, reason, None, now, fx)

        await self._change(instance_id, change)
        log.info("rewound workflow %r", instance_id, extra={"instanceID": instance_id})

    def _rewind(
        self,
        t: StoreTx,
        inst: Instance,
        reason: str | None,
        parent_execution_id: str | None,
        now: int,
        fx: Effects,
    ) -> None:
        execution_id = wire.new_execution_id()
        plan = plan_rewind(t.history(inst.instance_id), execution_id, now, reason, parent_execution_id)
        inst.status = RuntimeStatus.RUNNING
        inst.execution_id = execution_id
        inst.output = None
        inst.failure = None
        inst.completed_at = None
        inst.updated_at = now
        if parent_execution_id:
            inst.parent_execution_id = parent_execution_id
        t.put_instance(inst)
        t.clear_history(inst.instance_id)
        t.append_history(inst.instance_id, 0, plan.history)
        t.clear_inbox(inst.instance_id)
        t.add_inbox(inst.instance_id, plan.marker, now)
        fx.history[inst.instance_id] = plan.history
        fx.ready[inst.instance_id] = inst.dialect
        fx.changed.add(inst.instance_id)
        fx.finished.discard(inst.instance_id)
        for child in plan.children:
            existing = t.get_instance(child.instance_id)
            if existing is None:
                parent = pb.ParentInstanceInfo(
                    taskScheduledId=child.task_id,
                    name=wire.string_value(inst.name),
                    workflowInstance=pb.WorkflowInstance(
                        instanceId=inst.instance_id, executionId=wire.string_value(execution_id)
                    ),
                )
                self.turns.create_instance(
                    t,
                    child.instance_id,
                    child.name,
                    inst.dialect,
                    child.input,
                    child.version,
                    now,
                    fx,
                    parent=parent,
                    parent_execution_id=execution_id,
                )
            elif existing.parent_instance_id != inst.instance_id:
                continue  # the ID now belongs to another instance: leave it be
            elif existing.status == RuntimeStatus.FAILED:
                self._rewind(t, existing, reason, execution_id, now, fx)
            elif not existing.status.is_terminal:
                # Still running: its result goes to the parent's new execution.
                existing.parent_execution_id = execution_id
                t.put_instance(existing)
