"""Durable entities on the engine's parts: their work items, their results, the client calls.

An entity's batch is leased like an orchestration turn (its instance's lease: one batch at a time
per entity, given back when the worker disconnects, abandons it or lets it expire); dispatch
asks `lease` for the work item of an entity's key. The state machine is `entities.py`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..protos import durabletask_dialect_pb2 as mpb
from ..store import Store, StoreTx, StoreUnavailable
from ..workflows import WorkflowError, check_caller_payload, is_entity_id, require_entity_id
from .completions import _fenced
from .dispatch import Dispatch, InstanceWork, TurnLease
from .effects import Commit, Effects
from .entities import DIALECT, Entities
from .turns import END_OF_TIME_US, Turn, Turns
from .wire import now_us

log = logging.getLogger("dapr_workflows.engine")


@dataclass
class EntityInfo:
    """What a client sees of an entity (GetEntity, QueryEntities)."""

    instance_id: str
    modified_at: int
    backlog: int  # operations waiting in its inbox
    locked_by: str | None
    state: str | None


@dataclass
class EntityPage:
    entities: list[EntityInfo]
    continuation_token: str | None


class EntityService:
    def __init__(
        self, store: Store, dispatch: Dispatch, turns: Turns, commit: Commit, max_payload_bytes: int
    ) -> None:
        self.store = store
        self.dispatch = dispatch
        self.commit = commit
        self.max_payload_bytes = max_payload_bytes
        self.machine = machine = Entities(turns, max_payload_bytes)
        turns.entity_messages = machine.send
        turns.instance_gone = machine.gone
        dispatch.entity_lease = self.lease

    # ------------------------------------------------------------ work items

    async def lease(self, key: InstanceWork, worker_id: int) -> bytes | None:
        """The entity's next batch as a work item for the worker, or None when nothing may run now."""
        d = self.dispatch
        entity_id = key.instance_id
        now = now_us()
        machine = self.machine

        def take(tx: StoreTx, token: str) -> tuple[str, list[int], list[bytes], str | None] | None:
            inst = tx.get_instance(entity_id)
            if inst is None or inst.status.is_terminal:
                tx.release_instance(entity_id, token)
                return None
            batch = machine.next_batch(tx, entity_id, tx.inbox(entity_id, now))
            if not batch.operations:
                tx.release_instance(entity_id, token)
                return None
            return inst.name, batch.inbox_ids, batch.operations, batch.state

        token, taken = await d.lease_instance(key, take)
        if taken is None:
            d.settle(entity_id, DIALECT)  # a message may have come while the store was read
            return None
        name, inbox_ids, operations, state = taken
        lease = TurnLease(Turn(entity_id, "", inbox_ids, operations, name), DIALECT, token, worker_id)
        d.hold(lease, d.settings.orchestration_lease_seconds)
        request = mpb.EntityRequest(instanceId=entity_id)
        if state is not None:
            request.entityState.value = state
        for op in operations:
            request.operationRequests.add().ParseFromString(op)
        return mpb.WorkItem(entityRequestV2=request, completionToken=token).SerializeToString()

    async def complete(self, result: mpb.EntityBatchResult) -> None:
        """A worker's result of a batch; one under a token no current lease has is ignored."""
        d = self.dispatch
        lease = d.lease_of(result.completionToken)
        if not isinstance(lease, TurnLease) or not is_entity_id(lease.turn.instance_id):
            log.info("ignored a stale entity result (its lease is gone)")
            return
        fx = Effects()
        turn = lease.turn
        try:
            await self.commit(
                lambda t: _fenced(
                    t,
                    lease,
                    lambda: self.machine.complete(
                        t, turn.instance_id, turn.inbox_ids, len(turn.new_events), result, now_us(), fx
                    ),
                ),
                fx,
            )
        except WorkflowError as err:
            if not isinstance(err, StoreUnavailable):
                # E.g. a state over the limit: the batch fails as a whole and is not offered again.
                log.warning("entity %r: %s; its batch is dropped", turn.instance_id, err.message)
                fx = Effects()
                refused = err.message
                await self.commit(
                    lambda t: _fenced(
                        t,
                        lease,
                        lambda: self.machine.refuse(
                            t, turn.inbox_ids, turn.new_events, refused, now_us(), fx
                        ),
                    ),
                    fx,
                )
                d.end(lease)
            elif d.is_current(lease):
                d.release(lease)
            raise
        except BaseException:
            if d.is_current(lease):
                d.release(lease)
            raise
        d.end(lease)
        d.settle(turn.instance_id, DIALECT)

    # ------------------------------------------------------------ client calls

    async def signal(
        self, entity_id: str, operation: str, input: str | None, request_id: str, scheduled_at: int | None
    ) -> None:
        require_entity_id(entity_id)
        check_caller_payload("entity operation input", input, self.max_payload_bytes)
        fx = Effects()
        now = now_us()
        await self.commit(
            lambda t: self.machine.signal(t, entity_id, operation, input, request_id, scheduled_at, now, fx),
            fx,
        )

    @staticmethod
    def _info(t: StoreTx, entity_id: str) -> EntityInfo | None:
        row = t.get_entity(entity_id)
        if row is None:
            return None
        backlog = len(t.inbox(entity_id, END_OF_TIME_US))
        return EntityInfo(entity_id, row.modified_at, backlog, row.locked_by, row.state)

    async def get(self, entity_id: str) -> EntityInfo | None:
        require_entity_id(entity_id)
        return await self.store.read(lambda t: self._info(t, entity_id))

    async def query(
        self,
        id_prefix: str | None,
        modified_from: int | None,
        modified_to: int | None,
        include_transient: bool,
        page_size: int,
        after: str | None,
    ) -> EntityPage:
        """Entities in ID order; without `include_transient`, those with operations waiting are
        left out (as the SDK's reference backend does)."""

        def read(t: StoreTx) -> EntityPage:
            found: list[EntityInfo] = []
            cursor = after
            while True:
                rows = t.query_entities(id_prefix, modified_from, modified_to, cursor, page_size)
                for row in rows:
                    info = self._info(t, row.instance_id)
                    if info is not None and (include_transient or info.backlog == 0):
                        found.append(info)
                        if len(found) == page_size:  # more may follow: the next page says
                            return EntityPage(found, row.instance_id)
                if len(rows) < page_size:
                    return EntityPage(found, None)
                cursor = rows[-1].instance_id

        return await self.store.read(read)

    async def clean(self, remove_empty: bool, release_orphaned_locks: bool) -> tuple[int, int]:
        """Deletes entities with no state and nothing waiting, and frees locks whose orchestration
        is gone; returns (entities removed, locks released)."""
        fx = Effects()

        def tx(t: StoreTx) -> tuple[int, int]:
            removed = released = 0
            now = now_us()
            after: str | None = None
            while rows := t.query_entities(None, None, None, after, 500):
                after = rows[-1].instance_id
                for row in rows:
                    owner = t.get_instance(row.lock_owner) if row.lock_owner else None
                    if (
                        release_orphaned_locks
                        and row.lock_owner
                        and (owner is None or owner.status.is_terminal)
                    ):
                        self.machine.unlock(t, row.instance_id, row.locked_by or "", now, fx)
                        row.locked_by = row.lock_owner = None
                        released += 1
                    waiting = t.inbox(row.instance_id, END_OF_TIME_US)
                    if remove_empty and row.state is None and row.locked_by is None and not waiting:
                        inst = t.get_instance(row.instance_id)
                        if inst is not None:
                            self.machine.turns.delete(t, inst, fx)
                        t.delete_entity(row.instance_id)
                        removed += 1
            if released:
                self.machine.grant_waiting(t, now, fx)
            return removed, released

        return await self.commit(tx, fx)
