"""The store interface: the engine runs every state change as one function inside one transaction."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..workflows import Instance, InstanceQuery

T = TypeVar("T")


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


class StoreTx(abc.ABC):
    """Operations available inside one transaction."""

    # instances
    @abc.abstractmethod
    def get_instance(self, instance_id: str) -> Instance | None: ...

    @abc.abstractmethod
    def put_instance(self, instance: Instance) -> None:
        """Inserts or replaces the instance row."""

    @abc.abstractmethod
    def delete_instance(self, instance_id: str) -> None:
        """Deletes the instance with its history, inbox and activities."""

    @abc.abstractmethod
    def child_ids(self, instance_id: str) -> list[str]: ...

    @abc.abstractmethod
    def query(self, query: InstanceQuery) -> list[Instance]: ...

    # history
    @abc.abstractmethod
    def history(self, instance_id: str) -> list[bytes]: ...

    @abc.abstractmethod
    def append_history(self, instance_id: str, first_seq: int, events: list[bytes]) -> None: ...

    @abc.abstractmethod
    def clear_history(self, instance_id: str) -> None: ...

    # inbox
    @abc.abstractmethod
    def add_inbox(self, instance_id: str, event: bytes, visible_at: int) -> int: ...

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
    def add_outbox(self, payload: str, created_at: int) -> int: ...

    @abc.abstractmethod
    def outbox(self, after_id: int, limit: int) -> list[tuple[int, str]]: ...

    @abc.abstractmethod
    def delete_outbox(self, event_id: int) -> bool: ...

    @abc.abstractmethod
    def expire_outbox(self, created_before: int) -> int: ...

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


class Store(abc.ABC):
    description: str

    @abc.abstractmethod
    async def run(self, fn: Callable[[StoreTx], T]) -> T:
        """Runs `fn` in one transaction: all of its changes commit together or not at all."""

    async def read(self, fn: Callable[[StoreTx], T]) -> T:
        """Runs `fn`, which only reads, on a consistent view of the store."""
        return await self.run(fn)

    @abc.abstractmethod
    async def close(self) -> None: ...
