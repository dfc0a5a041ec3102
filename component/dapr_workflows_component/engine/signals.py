"""`Signal`: a flag that coroutines wait on, with a timeout, as cheaply as asyncio allows.

A worker's stream waits for work (or for room, or for the engine closing) before every work item
it takes. With `asyncio.Event`, a wait for one of two events with a timeout costs two tasks and
`asyncio.wait`'s bookkeeping; here it costs one future and one timer.
"""

from __future__ import annotations

import asyncio


def _time_out(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Signal:
    """A flag like `asyncio.Event` (`set`, `clear`, `is_set`, `wait`), and `wait_any` over several."""

    __slots__ = ("_flag", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._waiters: set[asyncio.Future[None]] = set()

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)

    def clear(self) -> None:
        self._flag = False

    async def wait(self) -> bool:
        """Until the flag is set (`asyncio.Event.wait`)."""
        while not self._flag:
            await wait_any((self,), None)
        return True


async def wait_any(signals: tuple[Signal, ...], timeout: float | None) -> None:
    """Until one of `signals` is set or `timeout` seconds passed (None: no limit)."""
    if any(s._flag for s in signals):
        return
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    for s in signals:
        s._waiters.add(fut)
    timer = loop.call_later(max(timeout, 0.0), _time_out, fut) if timeout is not None else None
    try:
        await fut
    finally:
        if timer is not None:
            timer.cancel()
        for s in signals:
            s._waiters.discard(fut)
