"""Stateful-history workers: what each stream keeps of each instance's committed history.

A worker that advertises the stateful-history capability keeps, per stream, the committed history
of each instance it ran; its next turn then carries only the events after them
(`cachedHistory.eventCount`). The engine sends a delta only when it is sure of what the stream
keeps: a count recorded on this stream for this instance, never more than the history has.
"""

from __future__ import annotations


class KeptHistories:
    """Per worker stream: how many committed events of each instance its worker keeps."""

    def __init__(self) -> None:
        self._kept: dict[int, dict[str, int]] = {}

    def keep(self, worker_id: int) -> None:
        """The worker's stream keeps histories between turns."""
        self._kept.setdefault(worker_id, {})

    def drop_worker(self, worker_id: int) -> None:
        """The stream is gone: a reconnect starts from full histories."""
        self._kept.pop(worker_id, None)

    def base(self, worker_id: int, instance_id: str, committed: int) -> int:
        """How many of the instance's `committed` events the worker keeps: the turn's history is
        sent from there on. 0: the full history (not a stateful stream, nothing or not surely the
        same kept)."""
        kept = self._kept.get(worker_id, {}).get(instance_id, 0)
        return kept if 0 < kept <= committed else 0

    def recorded(self, worker_id: int, instance_id: str, count: int | None) -> None:
        """The worker's turn was recorded: it now keeps `count` events (None: the turn ended the
        execution, and the worker drops what it kept)."""
        kept = self._kept.get(worker_id)
        if kept is None:
            return
        if count is None:
            kept.pop(instance_id, None)
        else:
            kept[instance_id] = count

    def forget(self, instance_id: str) -> None:
        """What any stream kept of the instance is void (it finished, was purged, or restarted)."""
        for kept in self._kept.values():
            kept.pop(instance_id, None)
