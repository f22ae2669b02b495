"""Concurrent clients that browse and create users, recording every answer."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx2

from tests.factories import user_form
from tests.faults.figures import Figures

UNAVAILABLE_TEXT = "The database is busy or unavailable right now"
BROWSE = ("/users", "/users?q=load", "/users?sort=-created", "/users/new", "/users?active=yes")


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str  # "browse" or "create"
    path: str
    started: float  # monotonic
    elapsed: float
    status: int | None  # None: no answer (a transport error or the client's timeout)
    email: str | None = None
    unavailable_text: bool = False


class Load:
    """``clients`` tasks that send requests back to back until ``stop()``."""

    def __init__(self, http: httpx2.AsyncClient, figures: Figures, *, creates: bool) -> None:
        self.http, self.figures, self.creates = http, figures, creates
        self.outcomes: list[Outcome] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, clients: int) -> Load:
        self._tasks = [asyncio.create_task(self._client(n)) for n in range(clients)]
        return self

    async def stop(self) -> list[Outcome]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.outcomes

    async def _client(self, n: int) -> None:
        for i in itertools.count():
            if self._stop.is_set():
                return
            if self.creates and i % 3 == n % 3:
                email = f"load-{uuid.uuid4().hex}@example.com"
                await self._send("create", "POST", "/users", email, user_form(email=email))
            else:
                await self._send("browse", "GET", BROWSE[(n + i) % len(BROWSE)])

    async def _send(
        self, kind: str, method: str, path: str, email: str | None = None, data: Any = None
    ) -> None:
        started = time.monotonic()
        status: int | None
        try:
            response = await self.http.request(method, path, data=data)
            status = response.status_code
            unavailable = UNAVAILABLE_TEXT in response.text
        except httpx2.TransportError:
            status, unavailable = None, False
        self.figures.answer(status)
        elapsed = time.monotonic() - started
        self.outcomes.append(Outcome(kind, path, started, elapsed, status, email, unavailable))

    def count(self, condition: Callable[[Outcome], bool]) -> int:
        return sum(1 for o in self.outcomes if condition(o))

    async def until(self, condition: Callable[[Load], bool], timeout: float, what: str) -> None:
        """Wait for a condition on what has been answered so far (never a fixed sleep)."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.05)


def ok(outcome: Outcome) -> bool:
    return outcome.status in (200, 303)


def answered_since(
    moment: float, condition: Callable[[Outcome], bool], at_least: int
) -> Callable[[Load], bool]:
    """For ``Load.until``: at least so many answers meeting ``condition`` sent after ``moment``."""
    return lambda run: run.count(lambda o: o.started > moment and condition(o)) >= at_least


def anything(_outcome: Outcome) -> bool:
    return True


def refused(outcome: Outcome) -> bool:
    return outcome.status == 503
