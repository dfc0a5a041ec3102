"""What a store transaction offers for durable entities (entity_sql.py has the SQL both stores share)."""

from __future__ import annotations

import abc
from dataclasses import dataclass


@dataclass
class EntityRow:
    """A durable entity's state and lock (its messages wait in the inbox of its instance row)."""

    instance_id: str  # "@name@key"
    state: str | None  # the serialized state; None: the entity has none
    locked_by: str | None  # the critical section that holds the lock
    lock_owner: str | None  # the orchestration instance of that critical section
    modified_at: int


@dataclass
class LockRequestRow:
    """A critical section waiting until every entity of its lock set is free."""

    id: int
    critical_section_id: str
    owner: str  # the orchestration instance that asked
    lock_set: list[str]


class EntityTx(abc.ABC):
    """The durable-entity operations of a store transaction."""

    @abc.abstractmethod
    def get_entity(self, instance_id: str) -> EntityRow | None: ...

    @abc.abstractmethod
    def put_entity(self, entity: EntityRow) -> None:
        """Inserts or replaces the entity's row."""

    @abc.abstractmethod
    def delete_entity(self, instance_id: str) -> None: ...

    @abc.abstractmethod
    def query_entities(
        self,
        id_prefix: str | None,
        modified_from: int | None,
        modified_to: int | None,
        after: str | None,
        limit: int,
    ) -> list[EntityRow]:
        """Entities in ID order (after `after`), filtered by ID prefix and modification time."""

    @abc.abstractmethod
    def entities_locked_by(self, owner: str) -> list[EntityRow]: ...

    @abc.abstractmethod
    def has_entity_locks(self, owner: str) -> bool:
        """Whether the orchestration holds or waits for any entity lock (one indexed look-up)."""

    @abc.abstractmethod
    def add_lock_request(self, critical_section_id: str, owner: str, lock_set: list[str]) -> int: ...

    @abc.abstractmethod
    def lock_requests(self) -> list[LockRequestRow]:
        """Every waiting critical section, oldest first."""

    @abc.abstractmethod
    def delete_lock_requests(self, ids: list[int]) -> None: ...
