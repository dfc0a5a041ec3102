"""The wait/wake side of dispatch: per dialect, the queued keys and the signal that wakes the
workers' streams waiting for one.

Which key a worker may take, and what its state is, is dispatch.py's; this keeps the queues
(work_queue.py: the order) and lets a stream wait until something it may take could be there: a
key queued, a worker's app or filters changed, a concurrency slot freed (concurrency.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from .eligibility import WorkLabel
from .signals import Signal, wait_any
from .work_items import WorkKey
from .work_queue import WorkQueue


class ReadyQueues:
    def __init__(self, closing: Signal) -> None:
        self.closing = closing
        # Per dialect, the queued keys, in the order they are offered (work_queue.py).
        self._queues: dict[str, WorkQueue[WorkKey]] = {}
        # Set (and replaced) when a dialect's queue gets a key or its workers change.
        self._wake: dict[str, Signal] = {}

    def start(self, dialects: Iterable[str]) -> None:
        for dialect in dialects:
            self._queues[dialect] = WorkQueue()
            self._wake[dialect] = Signal()

    def knows(self, dialect: str) -> bool:
        return dialect in self._queues

    def put(self, key: WorkKey, dialect: str, label: WorkLabel | None, age: int, fresh: bool) -> bool:
        """Queues the key and wakes the dialect's streams; whether it is the first of its label
        waiting (work_queue.py)."""
        first_of_its_kind = self._queues[dialect].put(key, label, age, fresh)
        self.notify(dialect)
        return first_of_its_kind

    def notify(self, dialect: str) -> None:
        """Wakes the dialect's streams waiting for a key: what they may take may have changed."""
        wake = self._wake.get(dialect)
        if wake is not None:
            wake.set()
            self._wake[dialect] = Signal()

    async def take(
        self, dialect: str, pick: Callable[[WorkQueue[WorkKey]], WorkKey | None], timeout: float
    ) -> WorkKey | None:
        """The key `pick` takes from the dialect's queue, tried again each time the dialect's
        streams are woken; None when the time ran out or the engine closes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        queue = self._queues[dialect]
        while True:
            wake = self._wake[dialect]
            key = pick(queue)
            if key is not None:
                return key
            if not await self.wait_any(wake, deadline - loop.time()):
                return None

    async def wait_any(self, event: Signal, timeout: float) -> bool:
        """Waits for `event` or the engine closing; False when the time ran out or the engine closes."""
        await wait_any((event, self.closing), timeout)
        return event.is_set() and not self.closing.is_set()
