"""The pool's queue of idle connections hands them out first come, first served."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.util import greenlet_spawn
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty, Full

from webapp.fair_queue import FairAsyncQueue


async def _take(queue: AsyncAdaptedQueue[str], name: str, got: list[tuple[str, str]]) -> None:
    item = await greenlet_spawn(queue.get, True, 5.0)
    got.append((name, item))


async def _waiting(queue: FairAsyncQueue[str], count: int) -> None:
    while len([w for w in queue._waiters if not w.done()]) < count:
        await asyncio.sleep(0)


async def test_a_returned_connection_goes_to_the_longest_waiter_not_a_newcomer() -> None:
    queue: FairAsyncQueue[str] = FairAsyncQueue(maxsize=2)
    got: list[tuple[str, str]] = []
    first = asyncio.create_task(_take(queue, "first", got))
    await _waiting(queue, 1)
    second = asyncio.create_task(_take(queue, "second", got))
    await _waiting(queue, 2)
    queue.put_nowait("c1")
    # A newcomer, before the first waiter has even woken up, finds nothing to take.
    with pytest.raises(Empty):
        queue.get_nowait()
    queue.put_nowait("c2")
    await asyncio.gather(first, second)
    assert got == [("first", "c1"), ("second", "c2")]
    assert queue.qsize() == 0


async def test_sqlalchemys_own_queue_lets_a_newcomer_jump_the_line() -> None:
    """Why the fair queue exists: the stock one gives the newcomer what a waiter was woken
    for, and the waiter goes to the back of the line."""
    queue: AsyncAdaptedQueue[str] = AsyncAdaptedQueue(maxsize=2)
    got: list[tuple[str, str]] = []
    waiter = asyncio.create_task(_take(queue, "waiter", got))
    await asyncio.sleep(0.01)
    queue.put_nowait("c1")
    assert queue.get_nowait() == "c1"  # taken by the newcomer
    queue.put_nowait("c2")
    await waiter
    assert got == [("waiter", "c2")]


async def test_a_wait_that_times_out_leaves_the_line() -> None:
    queue: FairAsyncQueue[str] = FairAsyncQueue(maxsize=2)
    with pytest.raises(Empty):
        await greenlet_spawn(queue.get, True, 0.05)
    queue.put_nowait("c1")  # nobody is waiting any more: it is kept
    assert queue.qsize() == 1
    assert queue.get_nowait() == "c1"


async def test_a_connection_handed_to_a_waiter_that_gives_up_is_passed_on() -> None:
    queue: FairAsyncQueue[str] = FairAsyncQueue(maxsize=2)
    got: list[tuple[str, str]] = []
    quitter = asyncio.create_task(_take(queue, "quitter", got))
    await _waiting(queue, 1)
    queue.put_nowait("c1")  # handed over...
    quitter.cancel()  # ...but the request is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert got == []
    assert queue.qsize() == 1  # not lost: back among the idle ones
    assert queue.get_nowait() == "c1"


async def test_full_and_lifo_behave_as_the_pool_expects() -> None:
    queue: FairAsyncQueue[str] = FairAsyncQueue(maxsize=2, use_lifo=True)
    queue.put_nowait("a")
    queue.put_nowait("b")
    assert queue.full()
    with pytest.raises(Full):
        queue.put_nowait("c")  # the pool closes a connection it has no room for
    assert queue.get_nowait() == "b"
    assert not queue.empty() and queue.qsize() == 1
