"""Concurrency limits, as Dapr 1.18 has them: how many workflow turns and activities run at once.

A *gate* caps the work items of one kind that are leased to workers at once (a workflow turn in
flight; an activity in flight): all of the kind, on every engine sharing the store
(`--max-concurrent-workflows`, Dapr's `globalMaxConcurrentWorkflowInvocations`), those of one name
(`workflowConcurrencyLimits`, `activityConcurrencyLimits`, also on every engine), or all of the kind
on this engine alone (Dapr's per-sidecar `maxConcurrentWorkflowInvocations`). An item goes out only
while every gate it is under has room. Otherwise it stays QUEUED, the items behind it (other names)
go past it, and it goes out as soon as a slot frees: the end of a lease wakes the takers at once.

Where the count comes from:
- One engine alone (SQLite): its leases are all there are, so `Limiter` counts them in memory, from
  the moment an item is taken (CLAIMING) until its lease ends.
- Engines sharing PostgreSQL: the live leases in the store are the count. The transaction that
  claims an item takes each shared gate's advisory lock (claims under one gate take turns across
  the engines, until each commits), counts the live leases under the gate, and raises `Throttled`
  when it is full, which rolls the claim back. A killed engine's leases stop counting when they
  expire (`--store-lease-seconds`), so its slots come back by themselves. Slots freed on another
  engine are not announced: a gate the store refused is tried again after a short backoff
  (`RETRY_FIRST_SECONDS` doubling to `RETRY_MAX_SECONDS`), or at once when a lease of it ends here.
- Between engines, turns: an engine refused under a gate records that it waits (a row per gate and
  engine, kept alive by its retries for `WAIT_SECONDS`), and a claim under a gate defers to engines
  that have waited longer than the claiming engine; an engine served loses its place (its row goes).
  So an engine whose own leases keep ending cannot keep the slots from the others.

An item's name is known once the item has been read from the store (the workflow name of the
instance, the activity name of its request). Until then only the gates of its kind apply to it
before it is taken; the gate of its name is checked when it is read, and an item refused then waits
with its name known.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..store import ActivityRow, StoreTx
from ..workflows import ErrorCode, WorkflowError, is_entity_id
from .wire import activity_name

log = logging.getLogger("dapr_workflows.engine")

WORKFLOW = "workflow"
ACTIVITY = "activity"
KINDS = (WORKFLOW, ACTIVITY)
# A durable entity's batch (durabletask's "@name@key") is under no limit: Dapr's limits know workflows
# and activities only.
ENTITY = "entity"

# A gate the shared store refused is tried again after this long, doubling up to the maximum.
RETRY_FIRST_SECONDS = 0.02
RETRY_MAX_SECONDS = 0.1
# How long an engine's "I wait for this gate" outlives its last refused claim.
WAIT_SECONDS = 1.0
# Waiting items logged one by one per gate and interval; the rest are summed up in one line.
WAIT_LOG_LINES_PER_GATE = 20
WAIT_LOG_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True)
class ConcurrencyLimits:
    """The caps (0: none). `workflows`/`activities` and the per-name caps hold for all the engines
    sharing the store; `engine_workflows`/`engine_activities` for this engine alone."""

    workflows: int = 0
    activities: int = 0
    engine_workflows: int = 0
    engine_activities: int = 0
    workflow_names: Mapping[str, int] = field(default_factory=dict)
    activity_names: Mapping[str, int] = field(default_factory=dict)

    def gates(self) -> list[Gate]:
        """Every gate these limits set."""
        gates: list[Gate] = []
        for kind, every, engine, names in (
            (WORKFLOW, self.workflows, self.engine_workflows, self.workflow_names),
            (ACTIVITY, self.activities, self.engine_activities, self.activity_names),
        ):
            if every > 0:
                gates.append(Gate(kind, None, every, shared=True))
            if engine > 0:
                gates.append(Gate(kind, None, engine, shared=False))
            gates += [Gate(kind, name, cap, shared=True) for name, cap in sorted(names.items()) if cap > 0]
        return gates

    def summary(self) -> str:
        """The limits, for the log."""
        return "; ".join(gate.label for gate in self.gates()) or "none"


@dataclass(frozen=True)
class Gate:
    kind: str  # WORKFLOW or ACTIVITY
    name: str | None  # the workflow or activity name; None: every item of the kind
    cap: int
    shared: bool  # counted over the engines sharing the store (else this engine's alone)

    @property
    def label(self) -> str:
        """The setting that made the gate, as the flags and the file name it."""
        plural = "workflows" if self.kind == WORKFLOW else "activities"
        if self.name is not None:
            return f"{self.kind}ConcurrencyLimits {self.name}={self.cap}"
        if self.shared:
            return f"--max-concurrent-{plural}={self.cap}"
        return f"maxConcurrent{self.kind.capitalize()}Invocations={self.cap} (this engine)"

    @property
    def lock_key(self) -> str:
        """The name of the gate's advisory lock in a shared store."""
        return f"dapr-workflows concurrency {self.kind} {self.name or ''}"


class Throttled(WorkflowError):
    """The item cannot go out now: `gate` is full. It waits, queued; this is no failure."""

    def __init__(self, gate: Gate, name: str, running: int, in_store: bool) -> None:
        super().__init__(ErrorCode.UNAVAILABLE, f"{gate.label}: {running} running")
        self.gate = gate
        self.name = name
        self.running = running
        self.in_store = in_store


class Leasing(Protocol):
    """What the limiter needs of the lease policy (leasing.py)."""

    shared: bool

    def release_later(self, release: Callable[[StoreTx], None]) -> None: ...


class Limiter:
    """The gates of one engine, counted in memory; with a shared store, also checked in the store.

    `leasing` says whether the store is shared, and runs a transaction in the background (with a
    shared store, to record that this engine, `engine_id`, waits for a gate). When a slot may have
    freed, `notify` is called with each of `dialects`: the takers of that dialect look at its queue
    again. `workflow_key` is the type of the keys of workflow turns (any other key is an activity's).
    """

    def __init__(
        self,
        limits: ConcurrencyLimits,
        leasing: Leasing,
        engine_id: str,
        notify: Callable[[str], None],
        dialects: Sequence[str],
        workflow_key: type,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run_later = leasing.release_later
        self._engine_id = engine_id
        self.enabled = bool(limits.gates())
        self._in_store = leasing.shared
        self._notify = notify
        self._dialects = tuple(dialects)
        self._workflow_key = workflow_key
        self._clock = clock
        self._kind_gates: dict[str, list[Gate]] = {kind: [] for kind in (*KINDS, ENTITY)}
        self._named: dict[str, dict[str, Gate]] = {kind: {} for kind in (*KINDS, ENTITY)}
        for gate in limits.gates():
            if gate.name is None:
                self._kind_gates[gate.kind].append(gate)
            else:
                self._named[gate.kind][gate.name] = gate
        self._held: dict[Hashable, list[Gate]] = {}  # taken or leased keys -> the gates they count in
        self._counts: Counter[Gate] = Counter()
        self._names: dict[Hashable, str] = {}  # names of waiting keys (learned when refused)
        self._logged: set[Hashable] = set()  # waiting keys whose wait was logged
        self._wait_lines: dict[Gate, tuple[float, int]] = {}  # per gate: interval start, lines
        # Gates the shared store refused: not tried again before the time, and the next backoff.
        self._blocked: dict[Gate, float] = {}
        self._backoff: dict[Gate, float] = {}

    # ------------------------------------------------------------ before a key is taken

    def admits(self, key: Hashable) -> bool:
        """Whether a queued key may be taken now: each gate it is known to be under has room."""
        if not self.enabled:
            return True
        kind = self._kind(key)
        name = self._names.get(key)
        for gate in self._gates(kind, name):
            running = self._full(gate)
            if running is not None:
                self._log_wait(key, kind, name, gate, running)
                return False
        return True

    def reserve(self, key: Hashable) -> None:
        """The key was taken: it counts under the gates it is known to be under until it is freed."""
        if self.enabled:
            gates = self._gates(self._kind(key), self._names.get(key))
            self._held[key] = gates
            self._counts.update(gates)

    # ------------------------------------------------------------ once it is read

    def check_store(self, tx: StoreTx, key: Hashable, name: str) -> None:
        """In the transaction that claims the key (the store's thread): raises `Throttled` when a
        shared gate of the key is full in the store. Does nothing without a shared store."""
        if not self._in_store or not self.enabled:
            return
        kind = self._kind(key)
        gates = [gate for gate in self._gates(kind, name) if gate.shared]
        if not gates:
            return
        item: str | int = (
            str(getattr(key, "instance_id", "")) if kind == WORKFLOW else int(getattr(key, "activity_id", -1))
        )
        locks = [gate.lock_key for gate in gates]
        every, named, preceded = tx.count_leased(kind, name, item, locks, self._engine_id)
        for gate in gates:
            running = every if gate.name is None else named
            if running >= gate.cap or gate.lock_key in preceded:
                # Full, or the free slot is another engine's turn: it waited longer.
                raise Throttled(gate, name, max(running, gate.cap), in_store=True)

    def activity_check(self, key: Hashable) -> Callable[[StoreTx, ActivityRow], None] | None:
        """`check_store` for an activity's claim, which reads its name from the claimed row."""
        if not self._in_store or not self.enabled:
            return None
        return lambda tx, row: self.check_store(tx, key, activity_name(row.request))

    def admit(self, key: Hashable, name: str) -> None:
        """The taken key was read and is `name`: raises `Throttled` when the gate of its name is
        full here (one engine alone; a shared store's count was checked in `check_store`)."""
        if not self.enabled:
            return
        held = self._held.get(key)
        gate = self._named[self._kind(key)].get(name)
        if held is not None and gate is not None and gate not in held:
            if not self._in_store and self._counts[gate] >= gate.cap:
                raise Throttled(gate, name, self._counts[gate], in_store=False)
            held.append(gate)
            self._counts[gate] += 1
        self._names.pop(key, None)
        self._logged.discard(key)

    def admit_activity(self, key: Hashable, request: bytes) -> None:
        if self.enabled:
            self.admit(key, activity_name(request))

    def refused(self, key: Hashable, throttled: Throttled) -> None:
        """A taken key was refused (`admit` or `check_store`): it waits with its name known."""
        self._names[key] = throttled.name
        gate = throttled.gate
        if throttled.in_store:
            delay = self._backoff.get(gate, RETRY_FIRST_SECONDS)
            until = self._blocked[gate] = self._clock() + delay
            self._backoff[gate] = min(delay * 2, RETRY_MAX_SECONDS)
            self._schedule_wake(delay, gate, until)
            lock, engine = gate.lock_key, self._engine_id
            self._run_later(lambda t: t.wait_for_slot(lock, engine, WAIT_SECONDS))
        self._log_wait(key, self._kind(key), throttled.name, gate, throttled.running)

    # ------------------------------------------------------------ after

    def taken(self, key: Hashable, leased: bool, queued: bool) -> None:
        """The attempt to lease a taken key is over: unless leased, it counts no more; unless
        queued again, what was learned about it is forgotten."""
        if not self.enabled or leased:
            return
        self._release(key, lease_ended=False)
        if not queued:
            self._names.pop(key, None)
            self._logged.discard(key)

    def free(self, key: Hashable) -> None:
        """The key's lease ended: its slots are free."""
        if self.enabled:
            self._names.pop(key, None)
            self._logged.discard(key)
            self._release(key, lease_ended=True)

    def forget(self, key: Hashable) -> None:
        """The key's work is gone (purged, finished, cancelled), maybe while it waited queued:
        what was learned about its wait goes with it (a queued key may never be taken again)."""
        self._names.pop(key, None)
        self._logged.discard(key)

    def running(self, kind: str, name: str | None = None) -> int:
        """Items of the kind (and name) taken or leased here, as a gate of theirs counts them."""
        counts = [n for gate, n in self._counts.items() if gate.kind == kind and gate.name == name]
        return max(counts, default=0)

    def waiting_logged(self) -> int:
        return len(self._logged)

    def waiting_named(self) -> int:
        """Waiting keys whose name is known (learned when refused)."""
        return len(self._names)

    # ------------------------------------------------------------ inside

    def _kind(self, key: Hashable) -> str:
        if not isinstance(key, self._workflow_key):
            return ACTIVITY
        return ENTITY if is_entity_id(str(getattr(key, "instance_id", ""))) else WORKFLOW

    def _gates(self, kind: str, name: str | None) -> list[Gate]:
        gates = list(self._kind_gates[kind])
        named = self._named[kind].get(name) if name is not None else None
        if named is not None:
            gates.append(named)
        return gates

    def _full(self, gate: Gate) -> int | None:
        """How many run under the gate when it is full (here, or in the store when it refused
        lately); None while it has room."""
        if self._counts[gate] >= gate.cap:
            return self._counts[gate]
        until = self._blocked.get(gate)
        return gate.cap if until is not None and self._clock() < until else None

    def _release(self, key: Hashable, lease_ended: bool) -> None:
        gates = self._held.pop(key, None)
        if not gates:
            return
        self._counts.subtract(gates)
        if lease_ended:
            for gate in gates:
                # The lease is being given back in the store too: a slot frees there, try at once.
                self._blocked.pop(gate, None)
                self._backoff.pop(gate, None)
        self._wake_takers()

    def _wake_takers(self) -> None:
        for dialect in self._dialects:
            self._notify(dialect)

    def _schedule_wake(self, delay: float, gate: Gate, until: float) -> None:
        try:
            asyncio.get_running_loop().call_later(delay, self._unblock, gate, until)
        except RuntimeError:  # no loop (unit tests drive the clock themselves)
            pass

    def _unblock(self, gate: Gate, until: float) -> None:
        """The backoff of a refused gate is over. The block ends here, not by the clock: a loop's
        timer may fire before the clock reaches `until` (uvloop's count whole milliseconds), and a
        taker woken then would find the gate still blocked and wait, unwoken, for its next ping."""
        if self._blocked.get(gate) == until:
            del self._blocked[gate]
        self._wake_takers()

    def _log_wait(self, key: Hashable, kind: str, name: str | None, gate: Gate, running: int) -> None:
        if key in self._logged:
            return
        self._logged.add(key)
        # A full gate with thousands queued behind it would log a line per item: a few lines per
        # gate per interval name the first items, one more says the rest are not listed.
        now = self._clock()
        since, lines = self._wait_lines.get(gate, (now, 0))
        if now - since >= WAIT_LOG_INTERVAL_SECONDS:
            since, lines = now, 0
        self._wait_lines[gate] = (since, lines + 1)
        if lines == WAIT_LOG_LINES_PER_GATE:
            log.info(
                "more items wait for %s; they are not logged one by one for %.0fs",
                gate.label,
                WAIT_LOG_INTERVAL_SECONDS,
            )
        if lines >= WAIT_LOG_LINES_PER_GATE:
            return
        if kind == WORKFLOW:
            instance_id = str(getattr(key, "instance_id", key))
            what = f"workflow {instance_id!r}" + (f" ({name})" if name else "")
            extra = {"instanceID": instance_id}
        else:
            number = getattr(key, "activity_id", key)
            what = f"activity {name!r} (#{number})" if name else f"activity #{number}"
            extra = {}
        where = "" if gate.shared or not self._in_store else " on this engine"
        log.info(
            "%s waits, queued: %s reached (%d running%s); it goes out when one ends",
            what,
            gate.label,
            running,
            where,
            extra=extra,
        )
