"""The retention policy (`--retention`): finished instances are purged once they are older than
their status's retention, in the background and in bounded batches.

Every run looks at the whole store, so instances that finished before the policy was set are
purged too. Each batch is one transaction that skips rows another engine's transaction holds
(PostgreSQL's `FOR UPDATE SKIP LOCKED`), so engines sharing a database split the work instead of
doing it twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..management_rules import RetentionPolicy
from ..workflows import InstanceQuery, RuntimeStatus

if TYPE_CHECKING:
    from . import Engine

log = logging.getLogger("dapr_workflows.retention")

BATCH_SIZE = 500
# How often the store is looked at: a quarter of the shortest retention, within these bounds.
MIN_INTERVAL_SECONDS = 0.5
MAX_INTERVAL_SECONDS = 60.0


@dataclass
class RetentionStats:
    """What retention has done since the engine started (read by metrics)."""

    purged: int = 0
    purged_by_status: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    runs: int = 0
    failures: int = 0
    last_run_at: float | None = None  # time.time() of the last finished run


# The retention each engine runs, for whoever reports on the engine (metrics).
_RUNNING: weakref.WeakKeyDictionary[Engine, Retention] = weakref.WeakKeyDictionary()


def retention_stats(engine: Engine) -> RetentionStats | None:
    """The counters of the engine's retention; None when it has no retention policy."""
    retention = _RUNNING.get(engine)
    return retention.stats if retention is not None else None


class Retention:
    def __init__(self, engine: Engine, policy: RetentionPolicy, batch_size: int = BATCH_SIZE) -> None:
        self.engine = engine
        self.policy = policy
        self.batch_size = batch_size
        self.stats = RetentionStats()
        if policy:
            _RUNNING[engine] = self
        shortest = min(policy.seconds.values(), default=MAX_INTERVAL_SECONDS)
        self.interval = min(MAX_INTERVAL_SECONDS, max(MIN_INTERVAL_SECONDS, shortest / 4))

    async def run_once(self) -> int:
        """Purges every instance past its retention now; returns how many."""
        total = 0
        for status, seconds in sorted(self.policy.seconds.items()):
            total += await self._purge_status(status, time.time_ns() // 1000 - int(seconds * 1_000_000))
        self.stats.runs += 1
        self.stats.last_run_at = time.time()
        return total

    async def _purge_status(self, status: RuntimeStatus, cutoff: int) -> int:
        total = 0
        while True:
            query = InstanceQuery(
                statuses=frozenset({status}),
                completed_to=cutoff,
                order="completed",
                limit=self.batch_size,
                skip_locked=True,
            )
            purged = await self.engine.purge_batch(query)
            if not purged:
                return total
            total += len(purged)
            self.stats.batches += 1
            self.stats.purged += len(purged)
            by_status = self.stats.purged_by_status
            by_status[status.name] = by_status.get(status.name, 0) + len(purged)
            self.engine.observer.retention_purged(len(purged), status.name)
            log.info(
                "retention: purged %d %s instances past their retention (%s%s)",
                len(purged),
                status.name,
                ", ".join(purged[:5]),
                ", ..." if len(purged) > 5 else "",
            )
            if len(purged) < self.batch_size:
                return total
            await asyncio.sleep(0)  # a long backlog does not hold up the engine's other work

    async def run(self) -> None:
        """Runs until cancelled; a failed run (a store that is down) is logged and tried again.
        Without a policy, returns at once."""
        if not self.policy:
            return
        log.info("retention: %s (checked every %gs)", self.policy.describe(), self.interval)
        while True:
            try:
                await self.run_once()
            except Exception as err:  # any store error: one that stopped the loop would purge nothing again
                self.stats.failures += 1
                log.warning("retention: this run failed and is tried again later: %s", err)
            await asyncio.sleep(self.interval)
