"""The pool monitor, on a real engine with real concurrent requests through a real server."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid

import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import LiveServer, sync_url
from tests.factories import engine_for_tests, make_settings, through_pgbouncer
from tests.pool_helpers import JSON, Holder, pool_figures, skip_sign_in, started, wait_for
from webapp.deps import SessionDep
from webapp.main import create_app
from webapp.timings import Window


def _app(database_url: str, **overrides: object) -> FastAPI:
    return skip_sign_in(create_app(make_settings(database_url, **overrides)))


async def test_held_connections_and_waiters_are_counted_exactly(database_url: str) -> None:
    app = _app(database_url, pool_size=2, max_overflow=1, pool_timeout=20)
    holder = Holder(app)
    with LiveServer(app) as server:
        async with httpx2.AsyncClient(base_url=server.url, timeout=30) as http:
            holders = [started(http.get(f"/test/hold/h{i}")) for i in range(3)]
            # Counted as in use from the moment a connection is being opened for a request.
            full = await wait_for(http, lambda f: f["pool"]["in_use"] == 3)
            full = await wait_for(http, lambda f: f["pool"]["waiting"] == 0)
            assert full["pool"]["in_use"] == 3
            assert (full["pool"]["idle"], full["pool"]["overflow_in_use"]) == (0, 1)

            waiters = [started(http.get(f"/test/hold/w{i}")) for i in range(2)]
            stuck = await wait_for(http, lambda f: f["pool"]["waiting"] == 2)
            assert stuck["pool"]["in_use"] == 3  # exactly: never more than size + overflow
            assert any(a["title"] == "Every database connection is in use" for a in stuck["alerts"])
            assert "2 requests are waiting now" in str(stuck["alerts"])

            holder.release()
            answers = await asyncio.gather(*holders, *waiters)
            assert [r.status_code for r in answers] == [200] * 5
            calm = await wait_for(http, lambda f: f["pool"]["in_use"] == 0)
    pool = calm["pool"]
    assert (pool["waiting"], pool["timeouts"], pool["leaks"]) == (0, 0, [])
    assert pool["checkouts"] == 5
    assert pool["hold"]["count"] == 5 and pool["wait"]["count"] == 5
    # The two that queued waited at least until the release; the figures say so.
    assert pool["wait"]["max"] > 0 and pool["hold"]["max"] >= pool["hold"]["p50"] > 0


async def test_a_request_beyond_the_pool_gets_503_in_time_and_is_counted(
    database_url: str,
) -> None:
    timeout = 1.0
    app = _app(database_url, pool_size=1, max_overflow=1, pool_timeout=timeout)
    holder = Holder(app)
    with LiveServer(app) as server:
        async with httpx2.AsyncClient(base_url=server.url, timeout=30) as http:
            holders = [started(http.get(f"/test/hold/h{i}")) for i in range(2)]
            await wait_for(http, lambda f: (f["pool"]["in_use"], f["pool"]["waiting"]) == (2, 0))
            began = time.monotonic()
            refused = await http.get("/test/hold/late", headers=JSON)
            took = time.monotonic() - began
            counted = await pool_figures(http)
            holder.release()
            assert [r.status_code for r in await asyncio.gather(*holders)] == [200, 200]
    assert refused.status_code == 503
    assert refused.headers["retry-after"].isdigit()
    assert refused.json()["status"] == 503
    assert timeout * 0.9 <= took < timeout + 1.5  # fails fast: the pool timeout, no hang
    assert counted["pool"]["timeouts"] == 1 and counted["pool"]["timeouts_recent"] == 1
    assert any(a["title"] == "Requests are being turned away" for a in counted["alerts"])


async def test_a_leak_is_reported_with_its_route_until_returned(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = _app(database_url, leak_threshold=0.3, pool_timeout=10)
    holder = Holder(app)
    caplog.set_level(logging.WARNING, logger="webapp.pool_monitor")
    with LiveServer(app) as server:
        async with httpx2.AsyncClient(base_url=server.url, timeout=30) as http:
            held = started(http.get("/test/hold/slow"))
            leaking = await wait_for(http, lambda f: bool(f["pool"]["leaks"]))
            [leak] = leaking["pool"]["leaks"]
            assert leak["route"] == "GET /test/hold/{name}"
            assert leak["age_seconds"] >= 0.3
            again = await pool_figures(http)  # still listed, still logged only once
            assert again["pool"]["leaks"][0]["age_seconds"] >= leak["age_seconds"]
            page = await http.get("/health")
            assert "GET /test/hold/{name}" in page.text and "Held too long" in page.text

            holder.release()
            assert (await held).status_code == 200
            returned = await wait_for(http, lambda f: f["pool"]["in_use"] == 0)
    assert returned["pool"]["leaks"] == []
    reported = [r.getMessage() for r in caplog.records if "possible connection leak" in r.message]
    assert len(reported) == 1
    assert "GET /test/hold/{name}" in reported[0] and "threshold 0.3 s" in reported[0]
    assert any("was returned after" in r.getMessage() for r in caplog.records)


async def test_nothing_stays_checked_out_after_a_mixed_load(
    database_url: str, is_postgres: bool
) -> None:
    app = _app(database_url, pool_size=2, max_overflow=1, pool_timeout=0.5)

    async def work(kind: str, session: SessionDep) -> dict[str, str]:
        await session.execute(text("SELECT 1"))
        if kind == "crash":
            raise RuntimeError("boom")
        if kind == "bad-sql":
            await session.execute(text("SELECT * FROM no_such_table"))
        await asyncio.sleep(0.3 if kind == "slow" else 0)  # 12 x 0.3 s on 3: some time out
        return {"ok": kind}

    app.add_api_route("/test/work/{kind}", work)
    kinds = ["ok", "slow", "crash", "bad-sql"] * 12
    with LiveServer(app) as server:
        async with httpx2.AsyncClient(base_url=server.url, timeout=30) as http:
            answers = await asyncio.gather(
                *(http.get(f"/test/work/{k}", headers=JSON) for k in kinds)
            )
            figures = await pool_figures(http)
    codes = {r.status_code for r in answers}
    assert {200, 500, 503} == codes
    pool = figures["pool"]
    assert (pool["in_use"], pool["waiting"], pool["leaks"]) == (0, 0, [])
    # A 503 is a timeout, except for bad SQL, which SQLite reports as an OperationalError.
    refused = [k for k, r in zip(kinds, answers, strict=True) if r.status_code == 503]
    assert sum(k != "bad-sql" for k in refused) <= pool["timeouts"] <= len(refused)
    assert pool["timeouts"] > 0
    assert pool["checkouts"] == pool["hold"]["count"]  # every one handed out came back
    if is_postgres and not through_pgbouncer():  # PgBouncer's server connections are its own
        ours = [
            a
            for a in figures["server"]["activity"]
            if a["application_name"] == f"webapp:{os.getpid()}"
        ]
        assert {a["state"] for a in ours} <= {"idle"}  # none left in a transaction
        assert sum(a["connections"] for a in ours) == pool["idle"]


@pytest.mark.direct_postgres
async def test_pg_stat_activity_matches_what_the_test_opened(database_url: str) -> None:
    app = _app(database_url, pool_size=3, max_overflow=2, pool_timeout=10, workers=2, hosts=3)
    holder = Holder(app)
    other = f"pool-test-{uuid.uuid4().hex[:8]}"
    outsider = engine_for_tests(
        sync_url(database_url), poolclass=NullPool, connect_args={"application_name": other}
    )
    with LiveServer(app) as server, outsider.connect() as c1, outsider.connect() as c2:
        c1.execute(text("SELECT 1"))  # in a transaction, then idle: "idle in transaction"
        assert c2 is not None  # connected, never used: "idle"
        async with httpx2.AsyncClient(base_url=server.url, timeout=30) as http:
            held = [started(http.get(f"/test/hold/h{i}")) for i in range(2)]
            await wait_for(http, lambda f: (f["pool"]["in_use"], f["pool"]["waiting"]) == (2, 0))
            figures = await pool_figures(http)
            holder.release()
            await asyncio.gather(*held)
    server_figures = figures["server"]
    by_state = {
        (a["application_name"], a["state"]): a["connections"] for a in server_figures["activity"]
    }
    ours = f"webapp:{os.getpid()}"
    # The two held by requests: GETs read outside a transaction (autocommit), so the server
    # shows them idle between statements, beside the pool's idle ones; none in a transaction.
    assert by_state.get((ours, "idle in transaction"), 0) == 0
    assert by_state[(ours, "idle")] == figures["pool"]["idle"] + 2
    assert by_state[(other, "idle in transaction")] == 1
    assert by_state[(other, "idle")] == 1
    age, name = server_figures["oldest_idle_in_transaction"]
    assert age >= 0 and name in (ours, other)
    with outsider.connect() as conn:
        limit = int(conn.execute(text("SHOW max_connections")).scalar_one())
    outsider.dispose()
    room = server_figures["headroom"]
    assert server_figures["max_connections"] == limit
    # The pool's 5 and the health probe's one.
    assert (room["planned"], room["per_worker"]) == (3 * 2 * 6, 6)
    assert room["available"] == limit - room["superuser_reserved"] - 5
    assert server_figures["connections"] >= 2 + 2 + 1


@pytest.mark.direct_postgres
async def test_statement_timeout_frees_the_connection(database_url: str) -> None:
    app = _app(database_url, statement_timeout=0.3)

    async def runaway(session: SessionDep) -> None:
        await session.execute(text("SELECT pg_sleep(30)"))

    app.add_api_route("/test/runaway", runaway)
    with LiveServer(app) as server:
        async with httpx2.AsyncClient(base_url=server.url, timeout=30) as http:
            began = time.monotonic()
            response = await http.get("/test/runaway", headers=JSON)
            took = time.monotonic() - began
            figures = await pool_figures(http)
    assert response.status_code == 503 and took < 5
    assert figures["pool"]["in_use"] == 0


@pytest.mark.postgres
def test_start_up_warns_once_when_workers_could_exceed_the_server(
    database_url: str, caplog: pytest.LogCaptureFixture, db: Engine
) -> None:
    from fastapi.testclient import TestClient

    caplog.set_level(logging.WARNING, logger="webapp.server_stats")
    with db.connect() as conn:
        limit = int(conn.execute(text("SHOW max_connections")).scalar_one())
    workers = limit // 5 + 1  # x (3 + 2) connections each: more than the server allows
    app = _app(database_url, workers=workers)
    with TestClient(app) as client:
        alerts = client.get("/health/pool.json").json()["alerts"]
        client.get("/health/pool.json")
    warned = [r.getMessage() for r in caplog.records if "may open" in r.getMessage()]
    assert len(warned) == 1 and f"{workers} worker(s)" in warned[0]
    assert any(
        a["title"] == "Configured for more connections than the server allows" for a in alerts
    )


def test_window_percentiles_are_nearest_rank_to_within_two_percent() -> None:
    window = Window(seconds=60)
    for ms in range(1, 101):
        window.add(ms / 1000, now=time.monotonic())
    timings = window.timings()
    assert timings.count == 100 and timings.max == 100.0  # the longest exactly
    for shown, exact in ((timings.p50, 50), (timings.p95, 95), (timings.p99, 99)):
        assert abs(shown - exact) <= exact * 0.02, (shown, exact)
    old = Window(seconds=1)
    old.add(5.0, now=time.monotonic() - 2)  # older than the window: forgotten
    assert old.timings().count == 0 and old.count() == 0


def test_a_busy_window_spans_its_whole_time() -> None:
    """Five minutes of a pool at 500 checkouts a second: every one still counted, the
    slow minute at the start included, and the oldest slices forgotten as time moves on."""
    window = Window(seconds=300)
    start = 1_000_000.0
    for i in range(150_000):
        at = start + i / 500
        window.add(0.2 if i < 30_000 else 0.001, now=at)  # the first minute was slow
    now = start + 300
    timings = window.timings(now=now)
    assert timings.count == window.count(now=now) == 150_000
    assert timings.max == 200.0 and abs(timings.p50 - 1.0) <= 0.02
    assert abs(timings.p95 - 200) <= 4  # a fifth of them waited 200 ms
    later = window.timings(now=now + 61)  # the slow minute has left the window
    assert later.max == 1.0 and later.count == 120_000
