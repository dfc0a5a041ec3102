"""Stalled workers: a worker process that holds work and has not been heard from for a while.

Workers are told apart by their connection (the gRPC peer): the streams of one SDK worker share a
channel with its completions. A peer is heard from with every call it makes and every stream it
opens. One that holds work it was given `stall_seconds` ago and has not been heard from since is
stalled: while another worker of its dialect can take work, it gets nothing more, and its workflow
turns are offered to others at once (a turn is a replay, so running it again is harmless, and the
late answer is ignored as stale). Its activities stay with it: an activity may rightly run for a long
time, and running it twice would repeat its side effects; if the peer is frozen or gone, the gRPC
keepalive drops its connection and everything it held is offered again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("dapr_workflows.engine")


@dataclass
class _Peer:
    waiting_since: float | None = None  # when it was given work it has not been heard from since
    stalled: bool = False
    heard: asyncio.Event = field(default_factory=asyncio.Event)
    check: asyncio.TimerHandle | None = None


class StallWatch:
    def __init__(self, stall_seconds: float, on_stall: Callable[[str], None]) -> None:
        self.stall_seconds = stall_seconds
        self.on_stall = on_stall
        self._peers: dict[str, _Peer] = {}

    def heard(self, peer: str) -> None:
        """The peer made a call or opened a stream: it is alive."""
        state = self._peers.get(peer)
        if state is None:
            return
        state.waiting_since = None
        if state.check is not None:
            state.check.cancel()
            state.check = None
        if state.stalled:
            state.stalled = False
            log.info("worker %s is heard from again; it gets work again", peer)
        state.heard.set()

    def connected(self, peer: str) -> None:
        self._peers.setdefault(peer, _Peer())
        self.heard(peer)

    def gave(self, peer: str) -> None:
        """The peer was given a work item."""
        state = self._peers.get(peer)
        if state is None or state.waiting_since is not None:
            return
        loop = asyncio.get_running_loop()
        state.waiting_since = loop.time()
        state.check = loop.call_later(self.stall_seconds, self._check, peer)

    def _check(self, peer: str) -> None:
        state = self._peers.get(peer)
        if state is None or state.waiting_since is None or state.stalled:
            return
        state.check = None
        state.stalled = True
        state.heard.clear()
        self.on_stall(peer)

    def is_stalled(self, peer: str) -> bool:
        state = self._peers.get(peer)
        return state is not None and state.stalled

    async def wait_heard(self, peer: str, timeout: float) -> None:
        state = self._peers.get(peer)
        if state is None:
            return
        try:
            await asyncio.wait_for(state.heard.wait(), max(timeout, 0.0))
        except asyncio.TimeoutError:
            pass

    def forget(self, peer: str) -> None:
        state = self._peers.pop(peer, None)
        if state is not None and state.check is not None:
            state.check.cancel()
