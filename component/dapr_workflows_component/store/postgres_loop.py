"""A PostgreSQL transaction on the event loop's own thread, in a greenlet.

The store's functions are synchronous (the engine calls the transaction's methods one after the
other), so they used to run in a worker thread each: the hand-off there and back, the thread's
wake-ups and the fight for the GIL cost the engine more CPU than the statements did. Here the
function runs in a greenlet on the loop's thread instead; when it has to wait for the server (a
socket to become readable or writable: `wait_for_socket`) or for a coroutine (the pool's
`getconn`: `await_only`), it switches back to the loop, which resumes it once that is done. Other
tasks run meanwhile, as they did beside the thread.

As in a thread, a caller cancelled while its function runs stops waiting, and the function goes on
to its end (its COMMIT or ROLLBACK, the connection back in the pool) by itself: neither a wait for
the server nor an `await_only` is interrupted by the caller's cancellation. Only a wait the function
marks as `cancellable` (a wait before it has taken anything, such as its turn for a connection)
ends with the caller's `CancelledError` raised inside it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import select
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NamedTuple, TypeVar

from greenlet import getcurrent, greenlet  # type: ignore[import-untyped]

T = TypeVar("T")

log = logging.getLogger("dapr_workflows.store")


class _Bridged(greenlet):  # type: ignore[misc]
    """A greenlet started by `run_on_loop`: its parent is the loop's."""


class _Socket(NamedTuple):
    fd: int
    read: bool
    write: bool


class _Cancellable(NamedTuple):
    awaitable: Awaitable[Any]


class _StartHere(NamedTuple):
    coroutine: Coroutine[Any, Any, Any]


# Transactions whose callers were cancelled, finishing by themselves (kept from the collector).
_orphans: set[asyncio.Task[Any]] = set()


def await_only(awaitable: Awaitable[T], cancellable: bool = False) -> T:
    """Waits for `awaitable` on the loop, from inside `run_on_loop`'s function; the caller's
    cancellation does not interrupt it unless `cancellable` (see the module's docstring)."""
    current = getcurrent()
    if not isinstance(current, _Bridged):
        raise RuntimeError("await_only is for functions run by run_on_loop")
    result: T = current.parent.switch(_Cancellable(awaitable) if cancellable else awaitable)
    return result


def await_started_here(coroutine: Coroutine[Any, Any, T]) -> T:
    """`await_only` for a coroutine that mostly ends without waiting and ties nothing to its task
    (no `asyncio.timeout`): started on the caller's task, it gets a task of its own only if it
    waits, which saves a turn of the loop on the way."""
    current = getcurrent()
    if not isinstance(current, _Bridged):
        raise RuntimeError("await_started_here is for functions run by run_on_loop")
    result: T = current.parent.switch(_StartHere(coroutine))
    return result


def wait_for_socket(fd: int, read: bool = True, write: bool = False) -> bool:
    """Waits until `fd` is readable or writable (as asked): on the loop inside `run_on_loop`, else
    blocking. Returns whether it is readable."""
    current = getcurrent()
    if isinstance(current, _Bridged):
        readable: bool = current.parent.switch(_Socket(fd, read, write))
        return readable
    poller = select.poll()
    poller.register(fd, (select.POLLIN if read else 0) | (select.POLLOUT if write else 0))
    return any(events & select.POLLIN for _, events in poller.poll())


async def run_on_loop(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a greenlet on the running loop's thread (see the module's docstring)."""
    child = _Bridged(fn)
    result: T = await _drive(child, child.switch(*args))
    return result


async def _drive(child: greenlet, request: Any) -> Any:
    while not child.dead:
        if isinstance(request, _Socket):  # the most frequent wait: no task of its own
            try:
                readable = await _ready(request)
            except asyncio.CancelledError:
                _finish_alone(child, request)  # which waits for the socket again
                raise
            request = child.switch(readable)
        elif isinstance(request, _Cancellable):
            try:
                value = await request.awaitable
            except BaseException as err:  # the caller's cancellation too
                request = child.throw(err)
            else:
                request = child.switch(value)
        else:
            if isinstance(request, _StartHere):
                try:
                    yielded = request.coroutine.send(None)
                except StopIteration as done:
                    request = child.switch(done.value)
                    continue
                except BaseException as err:  # into the function, which may still clean up
                    request = child.throw(err)
                    continue
                step = asyncio.ensure_future(_go_on(request.coroutine, yielded))
            else:
                step = asyncio.ensure_future(request)
            try:
                await asyncio.shield(step)
            except asyncio.CancelledError:
                if not step.cancelled():  # the caller's: the step goes on, the function after it
                    _finish_alone(child, step)
                    raise
            except Exception:  # the step's own failure, handed to the function below
                pass
            request = _resume(child, step)
    return request


async def _go_on(coroutine: Coroutine[Any, Any, T], yielded: Any) -> T:
    """Runs `coroutine` on from where it yielded `yielded` to the task that started it (as a task
    does: a future to wait for, or None to let the loop go round once)."""
    while True:
        resume: Callable[[], Any]
        try:
            if yielded is None:
                await asyncio.sleep(0)
            else:
                yielded._asyncio_future_blocking = False
                await asyncio.wait([yielded])
        except asyncio.CancelledError as err:  # the loop is closing: the coroutine hears it
            if yielded is not None:
                yielded.cancel()
            resume = functools.partial(coroutine.throw, err)
        else:
            resume = functools.partial(coroutine.send, None)
        try:
            yielded = resume()
        except StopIteration as done:
            result: T = done.value
            return result


def _resume(child: greenlet, step: asyncio.Future[Any]) -> Any:
    """Hands the finished `step`'s outcome to the function; returns its next request."""
    if step.cancelled():
        return child.throw(asyncio.CancelledError())
    err = step.exception()
    if err is not None:  # into the function, which may still clean up
        return child.throw(err)
    return child.switch(step.result())


def _finish_alone(child: greenlet, pending: _Socket | asyncio.Future[Any]) -> None:
    async def finish() -> None:
        if isinstance(pending, _Socket):
            await _drive(child, pending)
        else:
            await asyncio.wait([pending])
            await _drive(child, _resume(child, pending))

    task = asyncio.get_running_loop().create_task(finish())
    _orphans.add(task)
    task.add_done_callback(_forget)


def _forget(task: asyncio.Task[Any]) -> None:
    _orphans.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.debug("a transaction whose caller went away failed: %s", task.exception())


async def _ready(socket: _Socket) -> bool:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[bool] = loop.create_future()
    if socket.read:
        loop.add_reader(socket.fd, _wake, ready, True)
    if socket.write:
        loop.add_writer(socket.fd, _wake, ready, False)
    try:
        return await ready
    finally:
        if socket.read:
            loop.remove_reader(socket.fd)
        if socket.write:
            loop.remove_writer(socket.fd)


def _wake(ready: asyncio.Future[bool], readable: bool) -> None:
    if not ready.done():
        ready.set_result(readable)
