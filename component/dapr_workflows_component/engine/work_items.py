"""The work items dispatch hands out, and what it knows of each beyond its key.

A work item is an orchestration turn of an instance (`InstanceWork`; in the durabletask dialect
also a durable entity's batch) or one activity (`ActivityWork`). `WorkItems` keeps, for the items
this engine knows of, their label (who may take them: eligibility.py) and their age (the order of
dispatch: work_queue.py), and which instances' next turn is the first of a client's start. All of
it comes with the `Effects` of the commit that created the work; what is missing (work read back
from the store after a restart, or created by another engine sharing it) is learned when the item
is leased (label) or queued (age: the youngest); a durable entity's label is known from its ID.
It also tells `FanIn` (fan_in.py) which activities each instance still waits for.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from ..workflows import is_entity_id, require_entity_id
from .effects import Effects
from .eligibility import ACTIVITY, ANY_APP, ENTITY, ORCHESTRATION, WorkLabel
from .fan_in import HOLD_SECONDS, FanIn

# The dialect whose "@name@key" instances are durable entities.
ENTITY_DIALECT = "durabletask"


@dataclass(frozen=True)
class InstanceWork:
    """The next orchestration turn of an instance."""

    instance_id: str


@dataclass(frozen=True)
class ActivityWork:
    """One scheduled activity."""

    activity_id: int


WorkKey = InstanceWork | ActivityWork


@dataclass(frozen=True)
class Known:
    """What is known of a work item, kept while its lease is given back."""

    label: WorkLabel | None
    age: int | None
    fresh: bool


class WorkItems:
    def __init__(
        self,
        ready: Callable[[str, str], None] | None = None,
        shared: bool = False,
        in_flight: Callable[[], int] = lambda: 0,
        hold_seconds: float = HOLD_SECONDS,
    ) -> None:
        # Turns held for the rest of their instance's activities: on with dispatch to go by, and
        # off when other engines share the store or no hold is wanted.
        enabled = ready is not None and not shared and hold_seconds > 0
        self.fan_in = FanIn(ready or _nothing, in_flight, enabled, hold_seconds)
        self._labels: dict[WorkKey, WorkLabel] = {}
        # Lower is older: an instance's age is taken when it is created (a child's is its
        # parent's) or, for work not created here, when it is first queued.
        self._ages: dict[WorkKey, int] = {}
        self._fresh: set[str] = set()  # instances whose next turn is the first of a client's start
        self._born = itertools.count()

    def label(self, key: WorkKey) -> WorkLabel | None:
        return self._labels.get(key)

    def label_in(self, key: WorkKey, dialect: str) -> WorkLabel | None:
        """The label of an item queued in `dialect`. A durable entity's is known from its ID alone
        (its name), so it is there also for entity work read back from the store after a restart or
        queued by another engine sharing it; entities belong to no app."""
        label = self._labels.get(key)
        if label is None and isinstance(key, InstanceWork) and dialect == ENTITY_DIALECT:
            if is_entity_id(key.instance_id):  # created under require_entity_id: it passes again
                label = self._labels[key] = WorkLabel(ENTITY, require_entity_id(key.instance_id))
        return label

    def set_label(self, key: WorkKey, label: WorkLabel) -> None:
        self._labels[key] = label

    def age(self, key: WorkKey) -> int:
        """The item's age; one not known yet is the youngest from now on."""
        age = self._ages.get(key)
        if age is None:
            age = self._ages[key] = next(self._born)
        return age

    def fresh(self, key: WorkKey) -> bool:
        """Whether the item is a new start's first turn."""
        return isinstance(key, InstanceWork) and key.instance_id in self._fresh

    def started(self, instance_id: str) -> None:
        """The instance's first turn is over."""
        self._fresh.discard(instance_id)

    def known(self, key: WorkKey) -> Known:
        return Known(self._labels.get(key), self._ages.get(key), self.fresh(key))

    def restore(self, key: WorkKey, known: Known) -> None:
        if known.label is not None:
            self._labels[key] = known.label
        if known.age is not None:
            self._ages[key] = known.age
        if known.fresh and isinstance(key, InstanceWork):
            self._fresh.add(key.instance_id)

    def forget(self, key: WorkKey) -> None:
        self._labels.pop(key, None)
        self._ages.pop(key, None)
        if isinstance(key, InstanceWork):
            self._fresh.discard(key.instance_id)
            self.fan_in.forget(key.instance_id)
        else:
            self.fan_in.done(key.activity_id)

    def learn(self, fx: Effects) -> None:
        """The labels and ages of the work a commit created (before it is queued)."""
        for instance_id, work in fx.instance_work.items():
            key = InstanceWork(instance_id)
            app = fx.instance_apps.get(instance_id)
            known = self._labels.get(key)
            if app is None and known is not None:  # a new execution of the instance: the same app
                app = known.app
            if app is not None:
                self._labels[key] = WorkLabel(ORCHESTRATION, work.name, work.version, app)
            if not work.origin:
                self._fresh.add(instance_id)
            if work.origin != instance_id:
                self._ages[key] = self._age_of(work.origin)
        for activity_id, work in fx.activity_work.items():
            act = ActivityWork(activity_id)
            app = fx.activity_apps.get(activity_id, ANY_APP)
            self._labels[act] = WorkLabel(ACTIVITY, work.name, work.version, app)
            self._ages[act] = self._age_of(work.origin)
            self.fan_in.scheduled(activity_id, work.origin)

    def _age_of(self, instance_id: str) -> int:
        """The age of an instance's work; a new one ("" or not seen yet) is the youngest."""
        age = self._ages.get(InstanceWork(instance_id)) if instance_id else None
        return next(self._born) if age is None else age


def _nothing(instance_id: str, dialect: str) -> None:
    pass
