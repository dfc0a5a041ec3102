"""How many new starts' first turns one worker holds at once (`--worker-max-new-starts`).

A worker's stream may hold up to `--worker-max-in-flight` work items, and Dapr's and durabletask's
Python workers run only a few of them at a time (a small thread pool per kind) and queue the rest
in their own process, first come first served. So a new start's first turn sent early waits there
ahead of the later turns and activities of instances that started before it, and the engine's
order (oldest work first, work_queue.py) is undone at the worker: under a burst every instance
then waits behind about a window's worth of items at each step, and completions come late.

The rule: a worker holds at most `limit` first turns at once; while it does, it takes only
continuing work. A first turn is short (the workflow's code up to its first wait), so a worker
with nothing else to run gets its next new starts at once; a worker busy with continuing work gets
new ones only as fast as it works off its first turns, which keeps the instances it runs at once
few while it is the bottleneck. Work that runs long at the worker (an activity waiting on I/O)
does not slow its first turns, so it still gets as many instances in flight as its window allows.
No starvation: every first turn held ends (answered, abandoned, expired or its worker gone).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable


class NewStarts:
    """Per worker, the new starts' first turns it holds; `limit` 0: no limit of their own."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 0)
        self._holder: dict[Hashable, int] = {}  # key -> the worker holding it
        self._held: Counter[int] = Counter()  # worker -> first turns it holds

    def has_room(self, worker_id: int) -> bool:
        """Whether the worker may take one more new start's first turn."""
        return self.limit == 0 or self._held[worker_id] < self.limit

    def held(self, worker_id: int) -> int:
        return self._held[worker_id]

    def hold(self, key: Hashable, worker_id: int) -> None:
        """The worker leased the first turn `key`."""
        if key not in self._holder:
            self._holder[key] = worker_id
            self._held[worker_id] += 1

    def end(self, key: Hashable) -> bool:
        """The lease of `key` ended; True when it was a first turn whose worker was full of them
        (it may take new starts again: wake it)."""
        worker_id = self._holder.pop(key, None)
        if worker_id is None:
            return False
        was_full = not self.has_room(worker_id)
        self._held[worker_id] -= 1
        if self._held[worker_id] <= 0:
            del self._held[worker_id]
        return was_full
