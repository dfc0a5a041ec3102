"""Instances' histories kept in memory between turns, bounded by count and by bytes.

A history holds the instance's input and every result it got, so a few instances with large payloads
can weigh more than thousands of small ones: the cache drops the least recently stored histories
until both bounds hold. A history larger than the byte bound alone is not kept (it is read from the
store for each turn).

With each history the cache may keep the patches it records (patches.py), read from exactly that list
of events: a turn's patch check then reads no event (a list is never changed once stored: a later
history is a new list, stored with its own patches or none).
"""

from __future__ import annotations

from ..telemetry.observer import EngineObserver


class HistoryCache:
    def __init__(
        self, size: int, max_bytes: int, enabled: bool, observer: EngineObserver | None = None
    ) -> None:
        self.size = size
        self.max_bytes = max_bytes
        # Off when another engine may append to a history at any time (a shared store).
        self.enabled = enabled
        self.observer = observer or EngineObserver()
        self._cache: dict[str, tuple[list[bytes], int, list[str] | None]] = {}
        self.bytes = 0

    def get(self, instance_id: str) -> list[bytes] | None:
        entry = self._cache.get(instance_id)
        return entry[0] if entry is not None else None

    def patches(self, instance_id: str) -> list[str] | None:
        """The patches the cached history records, if known (None: read them from its events)."""
        entry = self._cache.get(instance_id)
        return entry[2] if entry is not None else None

    def remember(self, instance_id: str, events: list[bytes], patches: list[str] | None = None) -> None:
        """Keeps `events` as the instance's history; `patches`, if given, are those it records."""
        if not self.enabled:
            return
        self.forget(instance_id)
        weight = sum(len(event) for event in events)
        if weight > self.max_bytes:
            return
        self._cache[instance_id] = (events, weight, patches)
        self.bytes += weight
        self.observer.history_cached(instance_id, events)
        while len(self._cache) > self.size or self.bytes > self.max_bytes:
            self.forget(next(iter(self._cache)))

    def forget(self, instance_id: str) -> None:
        entry = self._cache.pop(instance_id, None)
        if entry is not None:
            self.bytes -= entry[1]
            self.observer.history_cached(instance_id, None)

    def __len__(self) -> int:
        return len(self._cache)
