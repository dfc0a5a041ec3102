"""Persistence behind one interface. `open_store(url)` picks the implementation from the URL."""

from __future__ import annotations

from .base import (
    ActivityRow,
    Announcement,
    InboxRow,
    Store,
    StoreTx,
    StoreUnavailable,
)
from .entity_base import EntityRow, LockRequestRow
from .sqlite import SQLiteStore


def open_store(url: str) -> Store:
    """Opens the store a URL names.

    - `sqlite:///relative/path.db`, `sqlite:////absolute/path.db` or `sqlite://:memory:`: one engine's
      own file (option `sync=full` to survive a power cut as well as a killed process).
    - `postgresql://user:password@host:port/dbname` (or `postgres://`): a database several engines
      share, in libpq's URL form with its query options (`sslmode=require`, ...), plus `pool_size`
      (connections per engine, default 8) and `pool_timeout` (seconds a transaction waits for a
      connection before failing, default 10).
    """
    if url.startswith("sqlite://"):
        return SQLiteStore.from_url(url)
    if url.startswith(("postgresql://", "postgres://")):
        # Imported here so that SQLite users do not load the PostgreSQL driver.
        from .postgres import PostgresStore

        return PostgresStore.from_url(url)
    raise ValueError(f"unsupported store URL {url!r}: expected sqlite:///PATH or postgresql://...")


__all__ = [
    "ActivityRow",
    "Announcement",
    "EntityRow",
    "InboxRow",
    "LockRequestRow",
    "SQLiteStore",
    "Store",
    "StoreTx",
    "StoreUnavailable",
    "open_store",
]
