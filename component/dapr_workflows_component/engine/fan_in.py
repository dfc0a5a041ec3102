"""Fan-in: while workers have other work, the turn of an instance that still waits for some of its
activities is held until the last of them is done (for `--fan-in-hold-seconds` at most).

A workflow that schedules several activities at once gets their results one by one. Offered at once,
the first result makes a turn that sees it alone, and the results that come while that turn runs make
another: about three turns for a fan-out of ten, each a work item, a replay in the worker, a
completion call and a transaction, where two would do. While the workers hold other work, they have
enough to do anyway, so such a turn waits for the rest of the results instead.

What is held is only the offer of the turn: every result is committed to the instance's inbox as it
comes, and the turn sees all that arrived. Idle (workers hold nothing but the instance's own
activities), nothing is held, so a lone workflow runs as before, whatever waits queued that no worker
can take. A workflow waiting for the first of several results, or for a timer racing an
activity, gets its turn at most the hold's time later, and only under load; after a hold ran out the
instance is not held again until it schedules more activities. A turn in flight is not affected
(events arriving meanwhile are queued when it ends, as always).

Only the activities this engine created and leases are known here, so the hold is off on a store that
engines may share, which PostgreSQL always is (another engine may complete an activity without this
engine hearing of it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# The longest a ready turn waits for the rest of its instance's outstanding activities.
HOLD_SECONDS = 0.1


class FanIn:
    def __init__(
        self,
        ready: Callable[[str, str], None],
        in_flight: Callable[[], int],
        enabled: bool,
        hold_seconds: float = HOLD_SECONDS,
    ) -> None:
        self._ready = ready  # offers the instance's turn (dispatch's mark_ready)
        self._in_flight = in_flight  # how many work items workers hold
        self.enabled = enabled
        self.hold_seconds = hold_seconds
        self._outstanding: dict[str, set[int]] = {}  # instance -> its activities queued or leased
        self._owner: dict[int, str] = {}  # activity -> its instance
        self._held: dict[str, tuple[str, asyncio.TimerHandle]] = {}  # instance -> (dialect, time limit)
        self._ran_out: set[str] = set()  # held for the longest already since it last scheduled

    def scheduled(self, activity_id: int, instance_id: str) -> None:
        """A commit created the instance's activity."""
        if not self.enabled:
            return
        self._owner[activity_id] = instance_id
        self._outstanding.setdefault(instance_id, set()).add(activity_id)
        self._ran_out.discard(instance_id)

    def done(self, activity_id: int) -> None:
        """The activity is no longer outstanding (its result came, it was cancelled or given back);
        the last one of its instance offers the held turn."""
        instance_id = self._owner.pop(activity_id, None)
        if instance_id is None:
            return
        outstanding = self._outstanding.get(instance_id)
        if outstanding is not None:
            outstanding.discard(activity_id)
            if outstanding:
                return
            del self._outstanding[instance_id]
        self._ran_out.discard(instance_id)
        held = self._held.pop(instance_id, None)
        if held is not None:
            held[1].cancel()
            self._ready(instance_id, held[0])

    def forget(self, instance_id: str) -> None:
        """The instance finished or is gone: nothing of it is held or waited for."""
        for activity_id in self._outstanding.pop(instance_id, ()):
            self._owner.pop(activity_id, None)
        self._ran_out.discard(instance_id)
        held = self._held.pop(instance_id, None)
        if held is not None:
            held[1].cancel()

    def holds(self, instance_id: str, dialect: str) -> bool:
        """Whether the instance's ready turn waits here instead of being queued now."""
        if instance_id in self._held:
            return True
        outstanding = self._outstanding.get(instance_id)
        if not outstanding or instance_id in self._ran_out or not self._busy(len(outstanding)):
            return False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop to keep the time limit: no hold
            return False
        self._held[instance_id] = (dialect, loop.call_later(self.hold_seconds, self._run_out, instance_id))
        return True

    def _busy(self, outstanding: int) -> bool:
        """Whether workers have other work to do than the instance's activities: more work items
        held than the instance has outstanding. Queued work does not count: some of it may be work
        no connected worker can take (another app's, one outside every worker's filters), and
        workers with room take what they can, so takeable queued work soon shows as held."""
        return self._in_flight() > outstanding

    def is_held(self, instance_id: str) -> bool:
        return instance_id in self._held

    def __len__(self) -> int:
        """The instances whose turn is held."""
        return len(self._held)

    def _run_out(self, instance_id: str) -> None:
        held = self._held.pop(instance_id, None)
        if held is not None:
            self._ran_out.add(instance_id)
            self._ready(instance_id, held[0])
