"""Fixtures of the unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from dapr_workflows_component.store import SQLiteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    """A SQLite store on a file of its own."""
    s = SQLiteStore(str(tmp_path / "store.db"))
    yield s
    asyncio.run(s.close())
