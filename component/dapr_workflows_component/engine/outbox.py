"""Lifecycle events: recorded in the store's outbox with the change they report, then delivered.

Recording happens inside the transaction of the change (`LifecycleOutbox.record`), so an event
exists exactly when its change committed. Delivery (`LifecycleDispatcher`) hands each event to one
connected reader (the input binding's Read streams) again and again until a reader acknowledges it;
only then is it deleted from the outbox. Nothing here knows the reader's wire format.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..store import StoreTx
from ..workflows import Instance, LifecycleEvent, lifecycle_json
from .effects import Effects

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("dapr_workflows.outbox")
# After a failed read of the outbox, how soon it is read again (without waiting for a new event).
FETCH_RETRY_SECONDS = 1.0


class LifecycleOutbox:
    """Writes lifecycle events into the outbox (when the input binding is on)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def record(self, t: StoreTx, kind: LifecycleEvent, inst: Instance, now: int, fx: Effects) -> None:
        """Records a lifecycle event in the outbox, in the transaction of the change it reports."""
        if self.enabled:
            t.add_outbox(json.dumps(lifecycle_json(kind, inst, now)), now)
            fx.outbox = True


@dataclass
class Delivery:
    """One attempt to hand an outbox event to a reader; `message_id` comes back with its answer."""

    message_id: str
    payload: str
    event_type: str
    instance_id: str


@dataclass
class LifecycleStream:
    """One reader (a Read stream from daprd)."""

    name: str
    outgoing: asyncio.Queue[Delivery | None] = field(default_factory=asyncio.Queue)  # None: end
    in_flight: dict[str, int] = field(default_factory=dict)  # message_id -> event ID


@dataclass
class _Pending:
    payload: str
    due: float = 0.0
    attempts: int = 0


class LifecycleDispatcher:
    """Delivers each outbox event to one connected stream, again and again until an app acks it.

    An event is deleted from the outbox only after the reader reports that the app handled it. An
    error answer or a stream that goes away puts the event back, due again after a backoff that
    doubles up to `max_backoff`. Several readers share the events.
    """

    def __init__(self, engine: Engine, window: int = 64, max_backoff: float = 30.0) -> None:
        self.engine = engine
        self.window = window
        self.max_backoff = max_backoff
        self._streams: list[LifecycleStream] = []
        self._pending: dict[int, _Pending] = {}
        self._acked: set[int] = set()  # delivered; their deletion from the outbox is on its way
        self._cursor = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._turn = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stops delivering and ends the streams (their in-flight events stay in the outbox)."""
        if self._task:
            self._task.cancel()
        for stream in self._streams:
            stream.outgoing.put_nowait(None)

    def attach(self, name: str) -> LifecycleStream:
        stream = LifecycleStream(name)
        self._streams.append(stream)
        self._wake.set()
        log.info("input binding %r connected: lifecycle events flow to the app", name)
        return stream

    def detach(self, stream: LifecycleStream) -> None:
        self._streams.remove(stream)
        for event_id in stream.in_flight.values():
            self._retry_later(event_id, "the stream closed before daprd answered")
        log.warning(
            "input binding %r disconnected; %d events will be delivered again. daprd does not reopen "
            "this stream by itself: restart daprd to receive lifecycle events again",
            stream.name,
            len(stream.in_flight),
        )
        self._wake.set()

    def answered(self, stream: LifecycleStream, message_id: str, error: str | None) -> None:
        """The reader's answer to one delivery: `error` is None (or empty) when the app handled it."""
        event_id = stream.in_flight.pop(message_id, None)
        if event_id is None:
            return
        if error:
            self._retry_later(event_id, error)
        else:
            self._pending.pop(event_id, None)
            self._acked.add(event_id)
            asyncio.get_running_loop().create_task(self._delete(event_id))
        self._wake.set()

    async def _delete(self, event_id: int) -> None:
        try:
            await self.engine.ack_lifecycle_event(event_id)
        finally:
            self._acked.discard(event_id)

    def _retry_later(self, event_id: int, why: str) -> None:
        pending = self._pending.get(event_id)
        if pending is None:
            return
        pending.attempts += 1
        delay = min(self.max_backoff, 0.5 * 2 ** (pending.attempts - 1))
        pending.due = time.monotonic() + delay
        log.info("lifecycle event %d not delivered (%s); trying again in %.1fs", event_id, why, delay)

    def _in_flight(self) -> set[int]:
        return {e for s in self._streams for e in s.in_flight.values()}

    async def _run(self) -> None:
        while True:
            if not self._streams:
                # Nobody to deliver to: events wait in the outbox, and so does this loop.
                await self._wake.wait()
            self._wake.clear()
            self.engine.outbox_signal.clear()
            fetch_failed = False
            if len(self._pending) < 10 * self.window:
                try:
                    await self._fetch()
                except Exception as err:  # the store is down: this loop must not end with it
                    log.warning("reading the lifecycle outbox failed; trying again soon: %s", err)
                    fetch_failed = True
            next_due = self._send_due()
            waits = [
                asyncio.ensure_future(self._wake.wait()),
                asyncio.ensure_future(self.engine.outbox_signal.wait()),
            ]
            timeout = None if next_due is None else max(next_due - time.monotonic(), 0.0)
            poll = self.engine.leasing.change_poll_seconds
            if poll is not None:
                # Other engines' events raise no signal here: look again every poll.
                timeout = poll if timeout is None else min(timeout, poll)
            if fetch_failed:
                timeout = FETCH_RETRY_SECONDS if timeout is None else min(timeout, FETCH_RETRY_SECONDS)
            try:
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    async def _fetch(self) -> None:
        """Takes the outbox's next events into `_pending`."""
        if self.engine.leasing.ids_commit_in_order:
            # One engine writes the outbox and IDs commit in order: read on from the last one seen.
            for event_id, payload in await self.engine.lifecycle_events(self._cursor, self.window):
                self._pending[event_id] = _Pending(payload)
                self._cursor = event_id
            return
        # On a shared store a lower ID may commit after a higher one (another transaction, another
        # engine), so read from the start each time; the outbox holds only undelivered events.
        known = len(self._pending) + len(self._acked)
        for event_id, payload in await self.engine.lifecycle_events(0, known + self.window):
            if event_id not in self._pending and event_id not in self._acked:
                self._pending[event_id] = _Pending(payload)

    def _send_due(self) -> float | None:
        """Sends what is due to the streams; returns when the next event falls due, if any waits."""
        if not self._streams:
            return None
        now = time.monotonic()
        busy = self._in_flight()
        next_due: float | None = None
        for event_id, pending in self._pending.items():
            if event_id in busy:
                continue
            if pending.due > now:
                next_due = pending.due if next_due is None else min(next_due, pending.due)
                continue
            stream = self._streams[self._turn % len(self._streams)]
            if len(stream.in_flight) >= self.window:
                break
            self._turn += 1
            message_id = f"{event_id}-{pending.attempts}"
            stream.in_flight[message_id] = event_id
            doc = json.loads(pending.payload)
            stream.outgoing.put_nowait(
                Delivery(message_id, pending.payload, str(doc["type"]), str(doc["instanceID"]))
            )
        return next_due
