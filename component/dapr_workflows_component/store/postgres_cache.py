"""What the PostgreSQL store keeps between statements and between transactions.

`HistoryCache`: instances' histories kept by one engine between transactions, each under the
instance's `history_version` it was read or written at. Other engines write to the same histories, so
a cached history is used only when the instance row, read in the same transaction, still carries
that version: every history write sets a new random version in the same statement (see
`postgres_schema.py`), and the writer holds the row's lock until it commits.

`TxMemo`: what one transaction already read under its row locks (or in its snapshot), so that the
engine's next calls for the same rows cost no round trip: the instance row a claim or a lease check
returned, the instance's inbox and history fetched in the same round trip, an activity row.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from ..workflows import Instance
from .base import ActivityRow, InboxRow
from .sql import INSTANCE_FIELDS, row_instance

# The same bounds as the engine's own cache of histories on SQLite (engine/settings.py).
DEFAULT_SIZE = 10_000
DEFAULT_BYTES = 64 * 1024 * 1024


class HistoryCache:
    """Bounded by count and by bytes, least recently stored dropped first; used by the store's
    transactions interleaved on the loop (and any thread), hence the lock."""

    def __init__(self, size: int = DEFAULT_SIZE, max_bytes: int = DEFAULT_BYTES) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[UUID, list[bytes], int]] = OrderedDict()
        self._lock = threading.Lock()

    def version(self, instance_id: str) -> UUID | None:
        with self._lock:
            entry = self._entries.get(instance_id)
            return entry[0] if entry is not None else None

    def get(self, instance_id: str, version: UUID | None) -> list[bytes] | None:
        """The history cached at `version`, or None (nothing cached, or at another version)."""
        with self._lock:
            entry = self._entries.get(instance_id)
            if entry is None or version is None or entry[0] != version:
                return None
            return entry[1]

    def put(self, instance_id: str, version: UUID | None, events: list[bytes]) -> None:
        weight = sum(len(event) for event in events)
        with self._lock:
            self._drop(instance_id)
            if version is None or weight > self.max_bytes:
                return
            self._entries[instance_id] = (version, events, weight)
            self.bytes += weight
            while len(self._entries) > self.size or self.bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def forget(self, instance_id: str) -> None:
        with self._lock:
            self._drop(instance_id)

    def _drop(self, instance_id: str) -> None:
        entry = self._entries.pop(instance_id, None)
        if entry is not None:
            self.bytes -= entry[2]

    def __len__(self) -> int:
        return len(self._entries)


@dataclasses.dataclass
class TxMemo:
    # Instance rows as read under this transaction's lock (or snapshot), with their history version.
    instances: dict[str, tuple[Instance | None, UUID | None]] = dataclasses.field(default_factory=dict)
    # An instance's inbox rows with visible_at up to the bound, fetched with its claim.
    inboxes: dict[str, tuple[int, list[InboxRow]]] = dataclasses.field(default_factory=dict)
    # An instance's history as it stands in this transaction.
    histories: dict[str, list[bytes]] = dataclasses.field(default_factory=dict)
    # Histories this transaction wrote: the version it set and the whole history (None: unknown),
    # cached when it commits.
    written: dict[str, tuple[UUID, list[bytes] | None]] = dataclasses.field(default_factory=dict)
    # Instances this transaction deleted or finished: their histories are dropped when it commits.
    dropped: set[str] = dataclasses.field(default_factory=set)
    activities: dict[int, ActivityRow | None] = dataclasses.field(default_factory=dict)
    # Inbox rows to delete, held back to go in one statement (`PostgresTx.flush`).
    inbox_deletes: list[int] = dataclasses.field(default_factory=list)

    def remember_row(self, instance_id: str, row: Sequence[Any] | None) -> None:
        """An instance row read with its history version (the column after the instance's)."""
        if row is not None:
            width = len(INSTANCE_FIELDS)
            self.instances[instance_id] = (row_instance(row[:width]), row[width])

    def remember_history(
        self, cache: HistoryCache, instance_id: str, cached: UUID | None, fetched: list[bytes] | None
    ) -> None:
        """The history of a remembered row, after a statement that fetched it unless `cached`, the
        version cached before the statement, is the row's."""
        version = self.instances[instance_id][1]
        if version is not None and version == cached:
            events = cache.get(instance_id, version)  # None if replaced since: read later
        else:
            events = fetched or []
            cache.put(instance_id, version, events)
        if events is not None:
            self.histories[instance_id] = events

    def committed(self, cache: HistoryCache) -> None:
        for instance_id, (version, events) in self.written.items():
            if events is None:
                cache.forget(instance_id)
            else:
                cache.put(instance_id, version, events)
        for instance_id in self.dropped:
            cache.forget(instance_id)
