"""A first-come, first-served queue of idle connections for the async pool.

SQLAlchemy's async pool keeps its idle connections in an ``asyncio.Queue``, which lets a
newcomer take a connection that was just given back even while others are waiting for one:
the waiter that was woken for it finds the queue empty and goes to the back of the line.
Under a steady load above the pool's size some requests lose that race again and again,
which is the long tail of the list's latency (p99 three times p50). Here a returned
connection goes straight to the longest waiter, and nobody takes one while others wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Generic, TypeVar

from sqlalchemy.util import await_
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty, Full

T = TypeVar("T")


class FairAsyncQueue(AsyncAdaptedQueue[T], Generic[T]):
    """``AsyncAdaptedQueue`` without barging: hand-off to waiters in the order they came."""

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self._items: deque[T] = deque()
        self._waiters: deque[asyncio.Future[T]] = deque()

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._items)

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: T) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # not timed out or cancelled meanwhile
                waiter.set_result(item)
                return
        if self.full():
            raise Full()
        self._items.append(item)

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        # The pool only ever puts without blocking: a connection coming back never waits.
        self.put_nowait(item)

    def get_nowait(self) -> T:
        if not self._items or self._has_waiters():
            raise Empty()
        return self._items.pop() if self.use_lifo else self._items.popleft()

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        try:
            return self.get_nowait()
        except Empty:
            if not block:
                raise
        return await_(self._wait(timeout))

    async def _wait(self, timeout: float | None) -> T:
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        handed = False
        try:
            async with asyncio.timeout(timeout):
                item = await waiter
            handed = True
            return item
        except TimeoutError:
            raise Empty() from None
        finally:
            if not handed:
                if waiter.done() and not waiter.cancelled():
                    # Handed a connection just as the wait ended: pass it on, never drop it.
                    self.put_nowait(waiter.result())
                else:
                    waiter.cancel()
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)

    def _has_waiters(self) -> bool:
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()
        return bool(self._waiters)
