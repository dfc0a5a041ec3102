"""Which worker may take which work item: one rule, for both dialects.

A work item is described by a `WorkLabel`: its kind (orchestration, activity, entity), its name, its
version and the app it is for. A worker by an `Eligibility`: the app it serves (multi-app routing,
from its stream's `dapr-app-id`) and the work-item filters it sent (durabletask's
`GetWorkItemsRequest.workItemFilters`). `may_take` is the rule; dispatch.py applies it to lanes of
queued work (work_queue.py).

Apps: work of no app goes to any worker; work of an app goes to that app's workers, and to workers
that did not say their app only while no worker of that app is connected.

Filters, as durabletask's reference backend (`durabletask.testing`) applies them: a worker that sent
none takes every kind of work; one that sent them takes, of each kind, only the names it listed, and
of a name listed with versions only those versions (work without a version counts as ""). So with
strict versioning (the SDK lists the worker's version with each name) an orchestration whose version
no connected worker has waits, PENDING, instead of failing on a worker of another version.
One difference: the SDK schedules activities without a version of their own but lists the worker's
version for them too, so the reference backend never gives a strict worker its activities; here an
activity without a version is matched by the version of the orchestration that scheduled it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from ..protos import durabletask_dialect_pb2 as mpb

ORCHESTRATION = "orchestration"
ACTIVITY = "activity"
ENTITY = "entity"

# The app of work that any app's worker may take.
ANY_APP = ""


@dataclass(frozen=True)
class WorkLabel:
    """What a work item is, as far as who may take it goes."""

    kind: str
    name: str
    version: str | None = None
    app: str = ANY_APP


@dataclass(frozen=True)
class WorkFilters:
    """The work a worker said it handles: per kind, the names and, for each, the versions it takes
    (empty: any version). A kind with no names takes nothing of that kind."""

    names: Mapping[str, Mapping[str, frozenset[str]]] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        orchestrations: Iterable[tuple[str, Iterable[str]]] = (),
        activities: Iterable[tuple[str, Iterable[str]]] = (),
        entities: Iterable[str] = (),
    ) -> WorkFilters:
        def by_name(pairs: Iterable[tuple[str, Iterable[str]]]) -> dict[str, frozenset[str]]:
            out: dict[str, frozenset[str]] = {}
            for name, versions in pairs:
                out[name] = out.get(name, frozenset()) | frozenset(versions)
            return out

        return cls(
            {
                ORCHESTRATION: by_name(orchestrations),
                ACTIVITY: by_name(activities),
                ENTITY: {name: frozenset() for name in entities},
            }
        )

    @classmethod
    def from_request(cls, req: mpb.GetWorkItemsRequest) -> WorkFilters | None:
        """The filters of a durabletask `GetWorkItemsRequest`; None when it sent none."""
        if not req.HasField("workItemFilters"):
            return None
        f = req.workItemFilters
        return cls.of(
            ((o.name, o.versions) for o in f.orchestrations),
            ((a.name, a.versions) for a in f.activities),
            (e.name for e in f.entities),
        )

    def accepts(self, item: WorkLabel) -> bool:
        versions = self.names.get(item.kind, {}).get(item.name)
        if versions is None:
            return False
        return not versions or (item.version or "") in versions

    def entity_names(self) -> frozenset[str]:
        """The entities the worker handles (for the entity dispatch)."""
        return frozenset(self.names.get(ENTITY, {}))


@dataclass(frozen=True)
class Eligibility:
    """What a worker takes: its app (None: it did not say) and its filters (None: it sent none)."""

    app: str | None = None
    filters: WorkFilters | None = None


def may_take(worker: Eligibility, item: WorkLabel | None, served_apps: Collection[str]) -> bool:
    """Whether the worker may take the item; `served_apps`: the apps that the connected workers of
    its dialect said they serve. An item not known yet (None) goes to any worker, which learns what
    it is while leasing it and gives it back if it may not take it."""
    if item is None:
        return True
    if item.app:
        if worker.app is not None:
            if worker.app != item.app:
                return False
        elif item.app in served_apps:
            return False
    return worker.filters is None or worker.filters.accepts(item)


def describe(item: WorkLabel) -> str:
    """The workers an item waits for, for the log: "of app 'a' that handles activity 'x'"."""
    app = f"of app {item.app!r} " if item.app else ""
    version = f" version {item.version!r}" if item.version else ""
    return f"{app}that handles {item.kind} {item.name!r}{version}"
