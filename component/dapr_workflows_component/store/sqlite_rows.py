"""Inbox and activity rows as the SQLite file holds them, kept by its only writer.

The connection that owns the file writes every inbox and activity row through `_SQLiteTx`, so the
rows it saw (read or wrote) stay true until it changes them itself. Taking a turn or an activity
then reads them from here instead of running a statement. An instance's inbox is kept only whole
(every row of it, whatever its visibility time): it is read once from the file (after a restart, or
once dropped from here), then kept up to date by each write. A rollback forgets everything
(`forget_all`, instance rows too), as the rows seen during it may not be the file's.
"""

from __future__ import annotations

from typing import Any

from .base import ActivityRow, InboxRow

# Instances whose inbox is kept, and activity rows kept, at most this many each (all are dropped
# when full: the next read of each fills it again); a row whose event or request is larger than
# ROW_BYTES is not kept (its instance's inbox is then read from the file), nor more than
# INSTANCE_ROWS rows of one inbox; the kept inboxes' events hold at most INBOX_BYTES in all (past
# it, all are dropped too): suspended instances' inboxes may grow, and memory must not with them.
MAX_ENTRIES = 4096
ROW_BYTES = 16 * 1024
INSTANCE_ROWS = 64
INBOX_BYTES = 16 * 1024 * 1024


class RowCache:
    """A cache of the file's rows. Every one is a RowCache, so that one hook (`forget_all`) drops
    them all after a rollback or a failed COMMIT: a cache it missed would serve rows the file does
    not hold."""

    def forget(self) -> None:
        raise NotImplementedError


def forget_all(owner: object) -> None:
    """Forgets every row cache `owner` keeps (each of its attributes that is a RowCache)."""
    for value in vars(owner).values():
        if isinstance(value, RowCache):
            value.forget()


class InstanceRows(dict[str, tuple[Any, ...]], RowCache):
    """Instance rows (the table's columns, in order) by instance ID."""

    def forget(self) -> None:
        self.clear()


class InboxRows(RowCache):
    """Each kept instance's whole inbox, by row ID in ID order (the order of the file's reads)."""

    def __init__(self) -> None:
        self._by_instance: dict[str, dict[int, InboxRow]] = {}
        self._instance_of: dict[int, str] = {}
        self._bytes = 0

    def rows(self, instance_id: str) -> list[InboxRow] | None:
        """The instance's whole inbox; None when not kept (read it from the file, then `load`)."""
        kept = self._by_instance.get(instance_id)
        return None if kept is None else list(kept.values())

    def load(self, instance_id: str, rows: list[InboxRow]) -> None:
        """The instance's whole inbox, as just read from the file in ID order."""
        self.drop(instance_id)
        if len(rows) > INSTANCE_ROWS or any(len(r.event) > ROW_BYTES for r in rows):
            return
        size = sum(len(r.event) for r in rows)
        if len(self._by_instance) >= MAX_ENTRIES or self._bytes + size > INBOX_BYTES:
            self.forget()
        self._by_instance[instance_id] = {r.id: r for r in rows}
        self._bytes += size
        for r in rows:
            self._instance_of[r.id] = instance_id

    def added(self, row: InboxRow) -> None:
        """A row was inserted (its ID is above every other: IDs only grow)."""
        kept = self._by_instance.get(row.instance_id)
        if kept is None:
            return
        if len(kept) >= INSTANCE_ROWS or len(row.event) > ROW_BYTES:
            self.drop(row.instance_id)
            return
        if self._bytes + len(row.event) > INBOX_BYTES:
            self.forget()
            return
        kept[row.id] = row
        self._bytes += len(row.event)
        self._instance_of[row.id] = row.instance_id

    def deleted(self, row_ids: list[int]) -> None:
        for row_id in row_ids:
            instance_id = self._instance_of.pop(row_id, None)
            if instance_id is not None:
                row = self._by_instance[instance_id].pop(row_id, None)
                self._bytes -= len(row.event) if row is not None else 0

    def drop(self, instance_id: str) -> None:
        """The instance's inbox is no longer kept (its rows were deleted, or are not all known)."""
        kept = self._by_instance.pop(instance_id, None)
        if kept:
            for row_id, row in kept.items():
                self._instance_of.pop(row_id, None)
                self._bytes -= len(row.event)

    def forget(self) -> None:
        self._by_instance.clear()
        self._instance_of.clear()
        self._bytes = 0

    @property
    def kept_bytes(self) -> int:
        return self._bytes


class ActivityRows(RowCache):
    """Activity rows by ID."""

    def __init__(self) -> None:
        self._rows: dict[int, ActivityRow] = {}

    def get(self, activity_id: int) -> ActivityRow | None:
        return self._rows.get(activity_id)

    def keep(self, row: ActivityRow) -> None:
        if len(row.request) > ROW_BYTES:
            return
        if len(self._rows) >= MAX_ENTRIES:
            self._rows.clear()
        self._rows[row.id] = row

    def deleted(self, activity_ids: list[int]) -> None:
        for activity_id in activity_ids:
            self._rows.pop(activity_id, None)

    def forget(self) -> None:
        self._rows.clear()
