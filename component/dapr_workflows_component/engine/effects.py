"""What a committed transaction asks of the in-memory side (queues, timers, caches, waiters)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, TypeVar

from ..store import StoreTx

T = TypeVar("T")


class NewWork(NamedTuple):
    """What a new execution or activity is: workers' filters match its name and version
    (eligibility.py), and it is dispatched as work of `origin` (the instance of an activity, the
    parent of a child, the instance itself for a new execution; "" for a client's start: new work)."""

    name: str
    version: str | None
    origin: str


@dataclass
class Effects:
    """Collected while a transaction runs, applied only after it committed."""

    ready: dict[str, str] = field(default_factory=dict)  # instance_id -> dialect
    activities: list[tuple[int, str]] = field(default_factory=list)
    timers: list[tuple[int, str, str]] = field(default_factory=list)  # (visible_at, instance, dialect)
    changed: set[str] = field(default_factory=set)  # instances whose status may have changed
    dropped: set[str] = field(default_factory=set)  # instances whose lease and cache are void
    finished: set[str] = field(default_factory=set)  # instances that will have no more turns
    cancelled_activities: list[int] = field(default_factory=list)
    instance_apps: dict[str, str] = field(default_factory=dict)  # the app each new instance runs on
    activity_apps: dict[int, str] = field(default_factory=dict)  # the app each new activity is for
    instance_work: dict[str, NewWork] = field(default_factory=dict)  # each new execution
    activity_work: dict[int, NewWork] = field(default_factory=dict)  # each new activity
    history: dict[str, list[bytes]] = field(default_factory=dict)  # new full history per instance
    patches: dict[str, list[str]] = field(default_factory=dict)  # the patches each of those records
    stalled: dict[str, str] = field(default_factory=dict)  # instance_id -> dialect, for a new worker
    outbox: bool = False  # lifecycle events were recorded
    notes: list[Callable[[], None]] = field(default_factory=list)  # observer calls after the commit

    def reset(self) -> None:
        """Forgets what an attempt recorded: a shared store may run a transaction again."""
        fresh = Effects()
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(fresh, f.name))


class Commit(Protocol):
    """Runs `fn` in one store transaction, then applies the effects it collected in `fx`."""

    async def __call__(self, fn: Callable[[StoreTx], T], fx: Effects) -> T: ...
