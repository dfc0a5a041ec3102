"""One dialect's queued work, in the order dispatch offers it: oldest work first.

Queued items are kept in lanes: items alike for the take rule (the same `WorkLabel`, or not known
yet) and of the same kind of order, new starts' first turns ("fresh") apart from all other work
("continuing": later turns, activities, children's turns, work recovered from the store). A take
asks the rule once per lane and looks at each lane's head, so it costs the number of lanes (the
distinct names, versions and apps waiting) plus a heap operation, not a scan of the queued items;
and items a worker may not take never hold up those it may.

The order:
- Continuing work before new starts, oldest first: an item's age is its instance's (a child's is
  its parent's, an activity's its instance's), ties in the order queued. So under a burst the
  instances that started first finish first, and completions stream out.
- New starts in the order they were queued.
- Bounded unfairness: while a worker could take both, at most `new_start_every - 1` continuing
  items in a row go before a new start; a new start thus waits at most `new_start_every` takes per
  new start queued before it, however much continuing work keeps coming.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .eligibility import WorkLabel

K = TypeVar("K", bound=Hashable)

# Of every this many takes while both kinds wait, at least one is a new start.
NEW_START_EVERY = 4


def _never(key: object) -> bool:
    return False


@dataclass
class _Lane(Generic[K]):
    label: WorkLabel | None
    fresh: bool
    heap: list[tuple[int, int, K]] = field(default_factory=list)  # (age, order queued, key)


class WorkQueue(Generic[K]):
    def __init__(self, new_start_every: int = NEW_START_EVERY) -> None:
        self.new_start_every = max(new_start_every, 1)
        self._lanes: dict[tuple[WorkLabel | None, bool], _Lane[K]] = {}
        self._lane_of: dict[K, _Lane[K]] = {}
        self._order = itertools.count()
        self._continuing_in_a_row = 0

    def __len__(self) -> int:
        return len(self._lane_of)

    def __contains__(self, key: object) -> bool:
        return key in self._lane_of

    def __iter__(self) -> Iterator[K]:
        return iter(self._lane_of)

    def put(self, key: K, label: WorkLabel | None, age: int, fresh: bool = False) -> bool:
        """Queues the key (a new start if `fresh`, else continuing work of that age: lower goes
        first); True when nothing alike was waiting (its lane is new)."""
        if key in self._lane_of:
            return False
        lane = self._lanes.get((label, fresh))
        created = lane is None
        if lane is None:
            lane = self._lanes[(label, fresh)] = _Lane(label, fresh)
        order = next(self._order)
        heapq.heappush(lane.heap, (order if fresh else age, order, key))
        self._lane_of[key] = lane
        return created

    def take(
        self,
        may_take: Callable[[WorkLabel | None], bool],
        avoid: Callable[[K], bool] = _never,
        new_starts: bool = True,
    ) -> K | None:
        """Removes and returns the next key a worker may take; `avoid` names keys it should leave
        to others if it can; new starts only if `new_starts` (new_starts.py). None when it may take
        nothing queued."""
        best: dict[bool, tuple[tuple[int, int, K], _Lane[K]]] = {}
        for lane in self._lanes.values():
            if (lane.fresh and not new_starts) or not may_take(lane.label):
                continue
            head = self._head(lane, avoid)
            if head is None:
                continue
            current = best.get(lane.fresh)
            if current is None or head[:2] < current[0][:2]:
                best[lane.fresh] = (head, lane)
        fresh, continuing = best.get(True), best.get(False)
        if fresh is not None and continuing is not None:
            if self._continuing_in_a_row + 1 >= self.new_start_every:
                chosen, self._continuing_in_a_row = fresh, 0
            else:
                chosen, self._continuing_in_a_row = continuing, self._continuing_in_a_row + 1
        else:
            chosen_or_none = fresh or continuing
            if chosen_or_none is None:
                return None
            chosen = chosen_or_none
        entry, lane = chosen
        self._remove(lane, entry)
        return entry[2]

    @staticmethod
    def _head(lane: _Lane[K], avoid: Callable[[K], bool]) -> tuple[int, int, K] | None:
        if not avoid(lane.heap[0][2]):
            return lane.heap[0]
        # Rare (work whose lease ran out on this worker): look past what it should avoid.
        return min((e for e in lane.heap if not avoid(e[2])), default=None)

    def _remove(self, lane: _Lane[K], entry: tuple[int, int, K]) -> None:
        if lane.heap[0] is entry:
            heapq.heappop(lane.heap)
        else:
            lane.heap.remove(entry)
            heapq.heapify(lane.heap)
        del self._lane_of[entry[2]]
        if not lane.heap:
            del self._lanes[(lane.label, lane.fresh)]
