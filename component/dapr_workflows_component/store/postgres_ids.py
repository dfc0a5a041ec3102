"""Activity IDs taken from the table's sequence ahead of the rows that use them (PostgreSQL store).

The engine needs a new activity's ID in the transaction that schedules it (to dispatch it after the
commit). An `INSERT ... RETURNING id` would make that transaction wait for the answer: a round trip
of its own for each turn that schedules activities. Instead the store takes IDs from the column's
sequence in blocks, one round trip per block, and inserts each row with its ID, queued with the
statements nobody waits for. A sequence never hands a value out twice, whatever rolls back, so IDs
stay unique across engines; an ID left unused (a transaction rolled back, an engine stopped) is a
gap, as a rolled-back insert leaves one anyway. IDs need not grow, even within one engine (two of its
transactions may each take a block, and the blocks interleave); a lower ID may commit after a higher
one, as it may with the column's own default. Nothing but the sweep's order depends on it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from psycopg.rows import TupleRow

# IDs taken per round trip: a block lasts that many scheduled activities.
BLOCK = 256

NEXT_IDS = "SELECT nextval(pg_get_serial_sequence('activities', 'id')) FROM generate_series(1, ?)"


class ActivityIds:
    """The IDs one store has taken and not used yet (shared by its transactions on the loop)."""

    def __init__(self, block: int = BLOCK) -> None:
        self.block = block
        self._free: deque[int] = deque()

    def take(self, query: Callable[[str, Sequence[Any]], list[TupleRow]]) -> int:
        """The next free ID; `query` runs a statement in the caller's transaction when the block
        is used up (the values it takes are the store's whatever that transaction does)."""
        if not self._free:
            # Taken in order and kept in order: transactions interleaved on the loop may both
            # refill, and each ID is still used once.
            self._free.extend(sorted(int(row[0]) for row in query(NEXT_IDS, (self.block,))))
        return self._free.popleft()
