"""A saturated pool, and connections killed under the console (idle and busy)."""

from __future__ import annotations

import asyncio
import math
import os
import time

import pytest

from tests.factories import signed_in_http
from tests.faults.cluster import PgCluster, TableLock
from tests.faults.conftest import ServeFactory
from tests.faults.figures import Figures
from tests.faults.load import Load, answered_since, ok, refused
from tests.pool_helpers import pool_figures, wait_for

pytestmark = pytest.mark.faults

# The full run is 30 s (FAULTS_SATURATION_SECONDS=30); CI keeps it short.
SATURATION_SECONDS = float(os.environ.get("FAULTS_SATURATION_SECONDS", "10"))
POOL_SIZE, MAX_OVERFLOW, POOL_TIMEOUT = 3, 2, 1.0
MARGIN = 3.0  # scheduling on a loaded 2-core machine, on top of the pool timeout


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * 0.99) - 1)]


async def test_saturation(cluster: PgCluster, serve: ServeFactory, figures: Figures) -> None:
    server = serve(
        pool_size=str(POOL_SIZE), max_overflow=str(MAX_OVERFLOW), pool_timeout=str(POOL_TIMEOUT)
    )
    clients = 10 * (POOL_SIZE + MAX_OVERFLOW)
    http = await signed_in_http(server.url)
    load = Load(http, figures, creates=False).start(clients)
    began = time.monotonic()
    try:
        while time.monotonic() - began < SATURATION_SECONDS:
            # A slow spell: every pooled connection waits inside the database, the pool runs
            # dry, and the requests queued behind it give up after the pool timeout.
            lock = await asyncio.to_thread(TableLock(cluster).acquire)
            figures.fault("users table locked (every query slow)")
            locked = time.monotonic()
            try:
                await load.until(
                    answered_since(locked, refused, 20),
                    30,
                    "requests turned away while the pool is dry",
                )
            finally:
                await asyncio.to_thread(lock.release)
            freed = time.monotonic()
            await load.until(
                answered_since(freed, ok, 2 * clients),
                30,
                "answers once the slow spell is over",
            )
    finally:
        outcomes = await load.stop()
    try:
        figures_after = await wait_for(http, lambda f: f["pool"]["in_use"] == 0, timeout=30)
        health = await http.get("/health")
    finally:
        await http.aclose()

    statuses = {o.status for o in outcomes}
    assert statuses <= {200, 503}, sorted(map(str, statuses))
    turned_away = [o.elapsed for o in outcomes if o.status == 503]
    assert turned_away
    slowest_refusal = p99(turned_away)
    assert slowest_refusal < POOL_TIMEOUT + MARGIN, slowest_refusal
    pool = figures_after["pool"]
    # Each 503 is one request that waited the whole pool timeout, and each is counted.
    assert pool["timeouts"] == len(turned_away)
    assert pool["in_use"] == 0 and pool["waiting"] == 0
    assert health.status_code == 200 and "Requests are being turned away" in health.text
    figures.notes.append(
        f"saturation: {clients} clients for {SATURATION_SECONDS:g} s against a pool of "
        f"{POOL_SIZE}+{MAX_OVERFLOW}: {len(outcomes):,} requests, {len(turned_away):,} 503s "
        f"(p99 {slowest_refusal:.2f} s, pool timeout {POOL_TIMEOUT:g} s), "
        f"{pool['timeouts']:,} timeouts counted"
    )


async def test_killed_connections(
    cluster: PgCluster, serve: ServeFactory, figures: Figures
) -> None:
    # The pool's timeout is not under test here: long enough that a slow first burst on a
    # busy machine (templates compiled, connections opened) never turns into 503s.
    server = serve(pool_size="3", max_overflow="0", pool_timeout="15")
    http = await signed_in_http(server.url)
    try:

        async def burst(n: int) -> list[int]:
            responses = await asyncio.gather(*(http.get("/users") for _ in range(n)))
            for response in responses:
                figures.answer(response.status_code)
            return [r.status_code for r in responses]

        assert (await http.get("/users")).status_code == 200  # the page's first drawing
        assert await burst(12) == [200] * 12  # every pooled connection opened and idle
        before = (await wait_for(http, lambda f: f["pool"]["idle"] == 3))["pool"]
        idle = cluster.app_backends(server.pid, state="idle")
        assert len(idle) >= 3
        terminated = cluster.terminate(idle)
        figures.fault("idle connection terminated", terminated)
        # Pre-ping finds each dead connection at checkout and replaces it: no request fails.
        assert await burst(12) == [200] * 12
        after_idle = (await pool_figures(http))["pool"]
        assert after_idle["disconnects"] > before["disconnects"]
        assert after_idle["invalidations"] > before["invalidations"]

        # Busy: three requests wait inside the database (a locked table) when killed.
        lock = await asyncio.to_thread(TableLock(cluster).acquire)
        try:
            busy_requests = [asyncio.create_task(http.get("/users")) for _ in range(3)]
            deadline = time.monotonic() + 30
            while len(busy := cluster.app_backends(server.pid, state="active")) < 3:
                assert time.monotonic() < deadline, "the requests never reached the database"
                await asyncio.sleep(0.05)
            figures.fault("busy connection terminated", cluster.terminate(busy))
            killed = await asyncio.gather(*busy_requests)
        finally:
            await asyncio.to_thread(lock.release)
        for response in killed:
            figures.answer(response.status_code)
            # The request whose query was cut off is told to try again, never a 500.
            assert response.status_code in (200, 503), response.status_code
        assert await burst(12) == [200] * 12
        pool = (await wait_for(http, lambda f: f["pool"]["in_use"] == 0))["pool"]
        assert pool["invalidations"] >= after_idle["invalidations"] + 3
    finally:
        await http.aclose()
    figures.notes.append(
        f"killed connections: {terminated} idle and 3 busy terminated; "
        f"{pool['invalidations']} invalidations, {pool['disconnects']} disconnects counted"
    )
