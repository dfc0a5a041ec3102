"""A store whose transactions are timed for the observer: the engine and the stores stay as they are."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..store import Announcement, Store, StoreTx, StoreUnavailable
from ..workflows import WorkflowError
from .observer import EngineObserver

T = TypeVar("T")


def _in_callers_context(fn: Callable[[StoreTx], T]) -> Callable[[StoreTx], T]:
    """`fn`, run with the caller's context variables (a store may run it in a thread of its own):
    the observer's trace-context hooks inside a transaction see the span of the call that made it."""
    context = contextvars.copy_context()
    return lambda t: context.run(fn, t)


def _as_is(fn: Callable[[StoreTx], T]) -> Callable[[StoreTx], T]:
    return fn


class ObservedStore(Store):
    """Passes every call to `store`, and tells `observer` how long each transaction took and
    whether the store failed it (a change refused by a rule of workflows.py is no store error)."""

    def __init__(self, store: Store, observer: EngineObserver) -> None:
        self.inner = store
        self.observer = observer
        self.description = store.description
        self.shared = store.shared
        self.runs_in_caller = store.runs_in_caller
        self._in_context = _as_is if store.runs_in_caller else _in_callers_context

    async def run(self, fn: Callable[[StoreTx], T]) -> T:
        return await self._observed(self.inner.run, fn)

    async def read(self, fn: Callable[[StoreTx], T]) -> T:
        return await self._observed(self.inner.read, fn)

    async def run_claim(self, fn: Callable[[StoreTx], T]) -> T:
        return await self._observed(self.inner.run_claim, fn)

    async def _observed(
        self, call: Callable[[Callable[[StoreTx], T]], Awaitable[T]], fn: Callable[[StoreTx], T]
    ) -> T:
        start = time.perf_counter()
        try:
            result = await call(self._in_context(fn))
        except BaseException as err:
            self._record(start, err)
            raise
        self._record(start, None)
        return result

    def _record(self, start: float, err: BaseException | None) -> None:
        if isinstance(err, asyncio.CancelledError):
            return  # the caller went away; the store did nothing wrong
        failed = err is not None and (isinstance(err, StoreUnavailable) or not isinstance(err, WorkflowError))
        self.observer.store_transaction(time.perf_counter() - start, failed)

    async def listen(self, on_announcement: Callable[[Announcement], None]) -> None:
        await self.inner.listen(on_announcement)

    async def lost(self) -> str:
        return await self.inner.lost()

    async def close(self) -> None:
        await self.inner.close()


__all__ = ["ObservedStore"]
