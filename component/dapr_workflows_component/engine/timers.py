"""Durable timers, in memory: when a timer's inbox row becomes visible, its instance is ready.

The timer rows themselves are in the store (an inbox event visible from its fire time); this heap
only says when to look, and is rebuilt from the store at start-up.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Iterable

from .wire import now_us

# How long the loop sleeps when no timer is set (a new timer wakes it at once).
_IDLE_SECONDS = 3600.0

TimerEntry = tuple[int, str, str]  # (visible_at in microseconds, instance ID, dialect)


class Timers:
    """A heap of (due time, instance, dialect); `on_due(instance_id, dialect)` runs when one is due."""

    def __init__(self, on_due: Callable[[str, str], None]) -> None:
        self._on_due = on_due
        self._heap: list[TimerEntry] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def add(self, entries: Iterable[TimerEntry]) -> None:
        added = False
        for entry in entries:
            heapq.heappush(self._heap, entry)
            added = True
        if added:
            self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task:
            self._task.cancel()

    def fire_due(self, now: int) -> float:
        """Fires every timer due at `now`; returns the seconds until the next one."""
        while self._heap and self._heap[0][0] <= now:
            _, instance_id, dialect = heapq.heappop(self._heap)
            self._on_due(instance_id, dialect)
        return (self._heap[0][0] - now) / 1e6 if self._heap else _IDLE_SECONDS

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()
            delay = self.fire_due(now_us())
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=max(delay, 0.0) + 0.001)
            except asyncio.TimeoutError:
                pass
