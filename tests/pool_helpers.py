"""Helpers for the pool tests: routes that hold a real connection until told to let go."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2
from fastapi import FastAPI
from sqlalchemy import text

from tests.conftest import LiveServer
from tests.factories import make_settings
from webapp import deps
from webapp.deps import SessionDep
from webapp.main import create_app

JSON = {"Accept": "application/json"}


def skip_sign_in(app: FastAPI) -> FastAPI:
    """The pool tests call ``/health*`` with plain HTTP clients, without signing in.

    So the guard of ``/health*`` is switched off here (FastAPI's own override); the guard
    itself, and that it takes no pooled connection, is tested in tests/test_health.py.
    """
    for name in ("admin_for_health", "require_admin"):
        guard = getattr(deps, name, None)
        if guard is not None:
            app.dependency_overrides[guard] = _nobody
    return app


def _nobody() -> None:
    return None


class Holder:
    """Adds ``GET /test/hold/{name}``: takes a connection, keeps it until ``release()``."""

    def __init__(self, app: FastAPI) -> None:
        self.gate = asyncio.Event()  # bound to the server's loop at first wait
        self.loop: asyncio.AbstractEventLoop | None = None

        async def hold(name: str, session: SessionDep) -> dict[str, str]:
            self.loop = asyncio.get_running_loop()
            await session.execute(text("SELECT 1"))  # the connection is checked out now
            await self.gate.wait()
            return {"held": name}

        app.add_api_route("/test/hold/{name}", hold)

    def release(self) -> None:
        assert self.loop is not None, "nothing is held"
        self.loop.call_soon_threadsafe(self.gate.set)

    def release_early(self) -> None:
        """Hold nothing: every request returns at once (call before the server starts)."""
        self.gate.set()


async def pool_figures(http: httpx2.AsyncClient) -> dict[str, Any]:
    response = await http.get("/health/pool.json")
    assert response.status_code == 200, (response.status_code, response.text)
    figures: dict[str, Any] = response.json()
    return figures


async def wait_for(
    http: httpx2.AsyncClient,
    condition: Callable[[dict[str, Any]], bool],
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Poll ``/health/pool.json`` until ``condition`` holds (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        figures = await pool_figures(http)
        if condition(figures):
            return figures
        if time.monotonic() > deadline:
            raise AssertionError(f"condition never held; last figures: {figures['pool']}")
        await asyncio.sleep(0.05)


def started(coro: Awaitable[httpx2.Response]) -> asyncio.Task[httpx2.Response]:
    return asyncio.ensure_future(coro)


@dataclass(frozen=True, slots=True)
class Starved:
    held: httpx2.Response  # the request that kept the pool's one connection for 2 s
    starved: httpx2.Response  # the request that asked for a connection meanwhile
    waited: float  # seconds the starved request took
    checked_out: int  # connections still out once both had answered


def starve_the_pool(database_url: str, path: str, headers: Mapping[str, str]) -> Starved:
    """A pool of one connection (no overflow, 0.5 s timeout): one request holds it for 2 s
    while another asks for ``path``."""
    app = create_app(make_settings(database_url, pool_size=1, max_overflow=0, pool_timeout=0.5))

    async def hold(session: SessionDep) -> dict[str, bool]:
        await session.execute(text("SELECT 1"))
        await asyncio.sleep(2)
        return {"held": True}

    app.add_api_route("/test/hold", hold)

    async def scenario(base: str) -> tuple[httpx2.Response, httpx2.Response, float]:
        async with httpx2.AsyncClient(base_url=base, timeout=10) as http:
            holder = asyncio.create_task(http.get("/test/hold"))
            await asyncio.sleep(0.3)
            started = time.perf_counter()
            starved = await http.get(path, headers=dict(headers))
            waited = time.perf_counter() - started
            return await holder, starved, waited

    with LiveServer(app) as server:
        held, starved, waited = asyncio.run(scenario(server.url))
        checked_out = app.state.engine.sync_engine.pool.checkedout()
    return Starved(held, starved, waited, checked_out)
