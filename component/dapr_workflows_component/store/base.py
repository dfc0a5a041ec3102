"""The store interface: the engine runs every state change as one function inside one transaction."""

from __future__ import annotations

import abc
import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from ..workflows import ErrorCode, Instance, InstanceQuery, RuntimeStatus, WorkflowError
from .entity_base import EntityTx

T = TypeVar("T")


class StoreUnavailable(WorkflowError):
    """The store cannot be reached (a database server that is down): the change was not recorded
    (or, if the connection broke during the commit, its outcome is unknown), and the same call may
    succeed later. Callers answer UNAVAILABLE; the engine offers the work again."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.UNAVAILABLE, message)


@dataclass
class InboxRow:
    """An event waiting for the instance's next orchestration turn (a timer waits until visible_at)."""

    id: int
    instance_id: str
    visible_at: int
    event: bytes  # a serialized HistoryEvent


@dataclass
class ActivityRow:
    """A scheduled activity, kept until its result is recorded."""

    id: int
    instance_id: str
    execution_id: str
    dialect: str
    task_id: int
    request: bytes  # a serialized ActivityRequest, ready to send


class StoreTx(EntityTx):
    """Operations available inside one transaction (those of durable entities: `EntityTx`)."""

    # instances
    @abc.abstractmethod
    def get_instance(self, instance_id: str) -> Instance | None: ...

    @abc.abstractmethod
    def put_instance(self, instance: Instance) -> None:
        """Inserts or replaces the instance row."""

    def create_instance(self, instance: Instance) -> None:
        """Inserts a new instance row. On a shared store, another engine's transaction that created
        the same ID first makes this transaction run again (and then see that instance)."""
        self.put_instance(instance)

    @abc.abstractmethod
    def delete_instance(self, instance_id: str) -> None:
        """Deletes the instance with its history, inbox and activities."""

    @abc.abstractmethod
    def child_ids(self, instance_id: str) -> list[str]: ...

    @abc.abstractmethod
    def query(self, query: InstanceQuery) -> list[Instance]: ...

    def count_by_status(self, query: InstanceQuery) -> dict[RuntimeStatus, int]:
        """How many instances match the query (its order, cursor and limit aside), by status."""
        counts: dict[RuntimeStatus, int] = {}
        for inst in self.query(dataclasses.replace(query, after=None, after_id=None, limit=2**62)):
            counts[inst.status] = counts.get(inst.status, 0) + 1
        return counts

    def put_instances(self, instances: list[Instance]) -> None:
        """Inserts or replaces many instance rows (imports, benchmarks)."""
        for inst in instances:
            self.put_instance(inst)

    # history
    @abc.abstractmethod
    def history(self, instance_id: str) -> list[bytes]: ...

    @abc.abstractmethod
    def append_history(self, instance_id: str, first_seq: int, events: list[bytes]) -> None: ...

    @abc.abstractmethod
    def clear_history(self, instance_id: str) -> None: ...

    # inbox
    @abc.abstractmethod
    def add_inbox(self, instance_id: str, event: bytes, visible_at: int) -> None:
        """Adds an event; its ID (`inbox` gives it) orders it after those added before it. No ID is
        returned: a shared store sends the row without waiting for an answer."""

    @abc.abstractmethod
    def inbox(self, instance_id: str, visible_before: int) -> list[InboxRow]: ...

    @abc.abstractmethod
    def delete_inbox(self, row_ids: list[int]) -> None: ...

    @abc.abstractmethod
    def clear_inbox(self, instance_id: str) -> None: ...

    # activities
    @abc.abstractmethod
    def add_activity(
        self, instance_id: str, execution_id: str, dialect: str, task_id: int, request: bytes
    ) -> int: ...

    @abc.abstractmethod
    def get_activity(self, activity_id: int) -> ActivityRow | None: ...

    @abc.abstractmethod
    def delete_activity(self, activity_id: int) -> bool: ...

    @abc.abstractmethod
    def clear_activities(self, instance_id: str) -> list[int]:
        """Deletes the instance's pending activities and returns their IDs."""

    # lifecycle events waiting for the input binding (the outbox)
    @abc.abstractmethod
    def add_outbox(self, payload: str, created_at: int) -> None:
        """Adds a lifecycle event (no ID returned, as for `add_inbox`; `outbox` gives it)."""

    @abc.abstractmethod
    def outbox(self, after_id: int, limit: int) -> list[tuple[int, str]]: ...

    @abc.abstractmethod
    def delete_outbox(self, event_id: int) -> bool: ...

    @abc.abstractmethod
    def expire_outbox(self, created_before: int) -> int: ...

    def outbox_count(self) -> int:
        """How many lifecycle events wait in the outbox."""
        return len(self.outbox(0, 2**62))

    # recovery after a restart
    @abc.abstractmethod
    def ready_instances(self, now: int) -> list[tuple[str, str]]:
        """(instance_id, dialect) of instances with an inbox event visible now."""

    @abc.abstractmethod
    def future_timers(self, now: int) -> list[tuple[int, str, str]]:
        """(visible_at, instance_id, dialect) of every inbox event that becomes visible later."""

    @abc.abstractmethod
    def all_activities(self) -> list[tuple[int, str]]:
        """(activity_id, dialect) of every pending activity."""

    # Leases in the store, for stores several engines share (`Store.shared`). An exclusive store's
    # engine holds its leases in memory only, so there these always succeed and write nothing.
    # A token is "<engine>-<number>": an engine may claim again what one of its own tokens holds
    # (it knows that it gave that lease up; the store may not have heard yet).
    def claim_instance(self, instance_id: str, token: str, seconds: float) -> bool:
        """Takes the instance's orchestration lease unless another engine's live lease holds it."""
        return True

    def holds_instance(self, instance_id: str, token: str) -> bool:
        """True while `token` is the instance's lease, also after it lapsed if nobody claimed it since
        (checked before a turn is recorded)."""
        return True

    def release_instance(self, instance_id: str, token: str) -> None:
        """Gives up the lease if `token` still holds it."""
        return None

    def claim_activity(self, activity_id: int, token: str, seconds: float) -> ActivityRow | None:
        """Takes the activity's lease unless another engine's live lease holds it; None when taken
        or gone."""
        return self.get_activity(activity_id)

    def holds_activity(self, activity_id: int, token: str) -> bool:
        return True

    def release_activity(self, activity_id: int, token: str) -> None:
        return None

    def renew_leases(self, tokens: list[str], seconds: float) -> None:
        """Extends the leases held under `tokens` (instances and activities) by `seconds` from now."""
        return None

    def release_leases(self, tokens: list[str]) -> None:
        """Gives up every lease held under `tokens` (an engine that shuts down)."""
        return None

    def claimable_instances(self, now: int, limit: int, dialects: list[str]) -> list[tuple[str, str]]:
        """(instance_id, dialect) of running instances of `dialects` with an event visible now and no
        live lease, those waiting longest first. Suspended instances are left out: what they take
        (a resume, a termination) is announced, and a resume makes them running again."""
        return []

    def claimable_activities(self, limit: int, dialects: list[str]) -> list[tuple[int, str]]:
        """(activity_id, dialect) of activities of `dialects` with no live lease, oldest first."""
        return []

    def announce(
        self, ready: list[tuple[str, str]], activities: list[tuple[int, str]], changed: list[str]
    ) -> None:
        """Tells the other engines, when this transaction commits, what became ready or changed."""
        return None

    # Concurrency limits over the engines sharing a store (engine/concurrency.py); an exclusive
    # store's engine counts its leases in memory.
    def count_leased(
        self, kind: str, name: str, exclude: str | int, locks: list[str], engine: str
    ) -> tuple[int, int, list[str]]:
        """Takes the `locks` in order (held until the transaction ends), then counts the items of
        `kind` ("workflow": instances, "activity": activities) but `exclude` (an instance ID or an
        activity ID) that hold a live lease: all, and those named `name`; and gives the locks for
        which another engine has waited longer than `engine` (`wait_for_slot`). `engine` no longer
        waits for the locks (unless the transaction rolls back). An activity `exclude` is recorded
        as named `name`."""
        return 0, 0, []

    def wait_for_slot(self, lock: str, engine: str, seconds: float) -> None:
        """Records that `engine` waits for `lock`'s slots, since when it first did, for `seconds`."""
        return None


class Announcement(NamedTuple):
    """What another engine's commit made ready ("instance", "activity") or changed ("changed"), or
    "resync": announcements may have been missed (the listener reconnected)."""

    kind: str
    dialect: str
    key: str  # an instance ID, or an activity ID in decimal


class Store(abc.ABC):
    description: str
    # True when several engines use the store at once: leases are claimed in the store, other
    # engines' commits arrive through `listen`, and nothing read earlier may be cached.
    shared: bool = False
    # True when `fn` runs in the caller's own thread and task, so it sees the caller's context
    # variables without being handed them.
    runs_in_caller: bool = False

    @abc.abstractmethod
    async def run(self, fn: Callable[[StoreTx], T]) -> T:
        """Runs `fn` in one transaction: all of its changes commit together or not at all.

        A shared store may run `fn` again after a deadlock or a serialization failure, so `fn`
        changes nothing outside the transaction but what repeating it leaves the same.
        """

    async def read(self, fn: Callable[[StoreTx], T]) -> T:
        """Runs `fn`, which only reads, on a consistent view of the store."""
        return await self.run(fn)

    async def run_claim(self, fn: Callable[[StoreTx], T]) -> T:
        """Runs `fn`, which claims a lease and reads what it leases, as `run` does. A shared store
        may commit what `fn` sent by its first answer in that same round trip; if `fn` needs a second
        one, it runs `fn` again in a transaction of its own. So the writes before `fn`'s first
        answer must be ones that may commit twice (a claim with the same token), and `fn` must not
        raise after that answer to undo them."""
        return await self.run(fn)

    async def listen(self, on_announcement: Callable[[Announcement], None]) -> None:
        """Calls `on_announcement` for other engines' announcements until cancelled (shared stores)."""
        return None

    async def lost(self) -> str:
        """Returns, with the reason, once the store cannot be used any more and the engine must
        stop (a SQLite file deleted or replaced under it); never, for a store that cannot be lost."""
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable")

    @abc.abstractmethod
    async def close(self) -> None: ...
