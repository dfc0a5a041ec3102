"""A PostgreSQL transaction on the event loop's own thread, in a greenlet.

The store's functions are synchronous (the engine calls the transaction's methods one after the
other), so they used to run in a worker thread each: the hand-off there and back, the thread's
wake-ups and the fight for the GIL cost the engine more CPU than the statements did. Here the
function runs in a greenlet on the loop's thread instead; when it has to wait for the server (a
socket to become readable or writable: `wait_for_socket`) or for a coroutine (the pool's
`getconn`: `await_only`), it switches back to the loop, which resumes it once that is done. Other
tasks run meanwhile, as they did beside the thread.

As in a thread, a caller cancelled while its transaction waits for the server stops waiting, and
the transaction goes on to its end (its COMMIT or ROLLBACK, the connection back in the pool) by
itself.
"""

from __future__ import annotations

import asyncio
import logging
import select
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

from greenlet import getcurrent, greenlet  # type: ignore[import-untyped]

T = TypeVar("T")

log = logging.getLogger("dapr_workflows.store")


class _Bridged(greenlet):  # type: ignore[misc]
    """A greenlet started by `run_on_loop`: its parent is the loop's."""


class _Socket(NamedTuple):
    fd: int
    write: bool


# Transactions whose callers were cancelled, finishing by themselves (kept from the collector).
_orphans: set[asyncio.Task[Any]] = set()


def await_only(awaitable: Awaitable[T]) -> T:
    """Waits for `awaitable` on the loop, from inside `run_on_loop`'s function."""
    current = getcurrent()
    if not isinstance(current, _Bridged):
        raise RuntimeError("await_only is for functions run by run_on_loop")
    result: T = current.parent.switch(awaitable)
    return result


def wait_for_socket(fd: int, write: bool) -> None:
    """Waits until `fd` is readable (or writable): on the loop inside `run_on_loop`, else blocking."""
    current = getcurrent()
    if isinstance(current, _Bridged):
        current.parent.switch(_Socket(fd, write))
        return
    poller = select.poll()
    poller.register(fd, select.POLLOUT if write else select.POLLIN)
    poller.poll()


async def run_on_loop(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a greenlet on the running loop's thread (see the module's docstring)."""
    child = _Bridged(fn)
    result: T = await _drive(child, child.switch(*args))
    return result


async def _drive(child: greenlet, request: Any) -> Any:
    while not child.dead:
        if isinstance(request, _Socket):
            try:
                await _ready(request)
            except asyncio.CancelledError:
                _finish_alone(child)
                raise
            request = child.switch(None)
            continue
        try:
            value = await request
        except BaseException as err:  # into the function, which may still clean up
            request = child.throw(err)
        else:
            request = child.switch(value)
    return request


def _finish_alone(child: greenlet) -> None:
    async def finish() -> None:
        await _drive(child, child.switch(None))

    task = asyncio.get_running_loop().create_task(finish())
    _orphans.add(task)
    task.add_done_callback(_forget)


def _forget(task: asyncio.Task[Any]) -> None:
    _orphans.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.debug("a transaction whose caller went away failed: %s", task.exception())


async def _ready(socket: _Socket) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    if socket.write:
        loop.add_writer(socket.fd, _wake, ready)
    else:
        loop.add_reader(socket.fd, _wake, ready)
    try:
        await ready
    finally:
        if socket.write:
            loop.remove_writer(socket.fd)
        else:
            loop.remove_reader(socket.fd)


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)
