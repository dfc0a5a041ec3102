"""What dispatch hands out: a work item's state, the lease a worker holds on it, and the worker.

The state machine and its invariants are dispatch.py's (its docstring); these are its records.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field

from .eligibility import Eligibility, WorkFilters
from .signals import Signal
from .turns import Turn
from .work_items import ActivityWork, InstanceWork


class WorkState(enum.Enum):
    QUEUED = "queued"  # in its dialect's queue, offered to the next worker that asks
    CLAIMING = "claiming"  # taken by a worker; the store is being read (and, if shared, locked)
    LEASED = "leased"  # held by a worker under a token until it completes, gives up or expires


@dataclass
class TurnLease:
    turn: Turn
    dialect: str
    token: str
    worker_id: int
    expiry: asyncio.TimerHandle | None = None
    past_count: int = 0  # committed events the worker replays (it keeps them, if stateful)

    @property
    def key(self) -> InstanceWork:
        return InstanceWork(self.turn.instance_id)


@dataclass
class ActivityLease:
    activity_id: int
    dialect: str
    token: str
    worker_id: int
    expiry: asyncio.TimerHandle | None = None
    # What the activity is: a result must name the same instance and task as its token's lease.
    instance_id: str = ""
    task_id: int = -1

    @property
    def key(self) -> ActivityWork:
        return ActivityWork(self.activity_id)


Lease = TurnLease | ActivityLease


@dataclass
class Worker:
    """A connected worker's stream: what it holds, and how much it may hold."""

    dialect: str
    capacity: int
    held: int = 0
    freed: Signal = field(default_factory=Signal)
    peer: str = ""  # its connection, when known (stalls.py)
    app_id: str | None = None  # the app it serves (`dapr-app-id`); None: it did not say
    filters: WorkFilters | None = None  # the work it said it handles; None: all

    @property
    def eligibility(self) -> Eligibility:
        return Eligibility(self.app_id, self.filters)
