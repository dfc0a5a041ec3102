"""Persistence behind one interface. `open_store(url)` picks the implementation from the URL."""

from __future__ import annotations

from .base import ActivityRow, Announcement, InboxRow, Store, StoreTx
from .sqlite import SQLiteStore


def open_store(url: str) -> Store:
    """Opens `sqlite:///relative/path.db`, `sqlite:////absolute/path.db` or `sqlite://:memory:`."""
    if url.startswith("sqlite://"):
        return SQLiteStore.from_url(url)
    if url.startswith(("postgresql://", "postgres://")):
        raise ValueError("the PostgreSQL store is not available in this version; use a sqlite:/// URL")
    raise ValueError(f"unsupported store URL {url!r}: expected sqlite:///PATH")


__all__ = ["ActivityRow", "Announcement", "InboxRow", "SQLiteStore", "Store", "StoreTx", "open_store"]
