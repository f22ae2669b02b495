"""PostgreSQL restarted under load, and down when the console starts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import Engine, select

from tests.factories import ADMIN_EMAIL, PASSWORD, csrf_from, signed_in_http
from tests.faults.cluster import PgCluster
from tests.faults.conftest import ServeFactory
from tests.faults.figures import Figures
from tests.faults.load import UNAVAILABLE_TEXT, Load, answered_since, anything, ok, refused
from tests.faults.server import create_admin, webapp_env
from tests.pool_helpers import JSON, wait_for
from webapp.models import User

pytestmark = pytest.mark.faults

CLIENTS = 32
POOL_TIMEOUT = 5.0
HANG_MARGIN = 5.0  # a loaded 2-core machine: scheduling, not waiting on the database
RECOVERY_SECONDS = 5.0  # "within a few seconds of the database returning"


async def test_database_restart_under_load(
    cluster: PgCluster, serve: ServeFactory, db: Engine, figures: Figures
) -> None:
    server = serve(pool_size="5", max_overflow="5", pool_timeout=str(POOL_TIMEOUT))
    http = await signed_in_http(server.url)
    load = Load(http, figures, creates=True).start(CLIENTS)
    ups: list[float] = []
    downs: list[float] = []
    try:
        await load.until(lambda run: run.count(ok) >= 100, 60, "the first answers")
        for mode in ("fast", "immediate"):
            down = time.monotonic()
            downs.append(down)
            await asyncio.to_thread(cluster.stop, mode)
            figures.fault(f"PostgreSQL {mode} shutdown")
            await load.until(
                answered_since(down, refused, 20),
                30,
                "503s during the outage",
            )
            await asyncio.to_thread(cluster.start)
            up = time.monotonic()
            ups.append(up)
            await load.until(
                answered_since(up + RECOVERY_SECONDS, anything, 100),
                60,
                "answers after the recovery window",
            )
    finally:
        outcomes = await load.stop()
    try:
        pool = (await wait_for(http, lambda f: f["pool"]["in_use"] == 0, timeout=30))["pool"]
    finally:
        await http.aclose()

    statuses = {o.status for o in outcomes}
    assert statuses <= {200, 303, 503}, sorted(map(str, statuses))
    turned_away = [o for o in outcomes if o.status == 503]
    assert turned_away and all(o.unavailable_text for o in turned_away)
    slowest = max(o.elapsed for o in outcomes)
    assert slowest < POOL_TIMEOUT + HANG_MARGIN, f"a request took {slowest:.1f} s"
    # Each recovery window ends where the next outage begins.
    for up, end in zip(ups, [*downs[1:], float("inf")], strict=True):
        late = [
            o
            for o in outcomes
            if up + RECOVERY_SECONDS < o.started and o.started + o.elapsed < end and not ok(o)
        ]
        assert not late, [(round(o.started - up, 2), o.path, o.status) for o in late[:5]]
    recovered = max(
        (
            o.started + o.elapsed - up
            for up, end in zip(ups, [*downs[1:], float("inf")], strict=True)
            for o in turned_away
            if up - 1 <= o.started and o.started + o.elapsed < end
        ),
        default=0.0,
    )

    creates = [o for o in outcomes if o.kind == "create"]
    assert {o.status for o in creates} <= {303, 503}
    with db.connect() as conn:
        stored = set(conn.scalars(select(User.email).where(User.email.like("load-%"))))
    lost = [o.email for o in creates if o.status == 303 and o.email not in stored]
    phantom = [o.email for o in creates if o.status == 503 and o.email in stored]
    figures.rows_checked += len(creates)
    figures.lost += len(lost)
    figures.phantom += len(phantom)
    figures.notes.append(
        f"restart under load: {len(outcomes):,} requests, {len(turned_away):,} 503s, "
        f"{sum(o.status == 303 for o in creates):,} users created; slowest answer "
        f"{slowest:.2f} s; last 503 {recovered:.2f} s after PostgreSQL was back"
    )
    assert not lost and not phantom, (lost, phantom)
    assert pool["in_use"] == 0 and pool["disconnects"] >= 1


async def test_database_down_at_start(
    cluster: PgCluster, serve: ServeFactory, figures: Figures, tmp_path: Path
) -> None:
    create_admin(webapp_env(cluster.url), tmp_path)  # to sign in once the database is back
    cluster.stop("fast")
    figures.fault("PostgreSQL down at start")
    server = serve(admin=False)
    async with httpx2.AsyncClient(base_url=server.url, timeout=30) as http:
        ready = await http.get("/readyz")
        token = csrf_from((await http.get("/login")).text)  # the form needs no database
        sign_in = {"email": ADMIN_EMAIL, "password": PASSWORD, "csrf_token": token}
        page = await http.post("/login", data=sign_in)
        as_json = await http.post("/login", data=sign_in, headers=JSON)
        for response in (ready, page, as_json):
            figures.answer(response.status_code)
        assert ready.status_code == 503
        assert page.status_code == 503 and UNAVAILABLE_TEXT in page.text
        assert page.headers["retry-after"]
        assert as_json.status_code == 503 and as_json.json()["status"] == 503
        cluster.start()
        deadline = time.monotonic() + 30
        while (status := (await http.get("/readyz")).status_code) != 200:
            figures.answer(status)
            assert time.monotonic() < deadline, "never ready after the database came up"
            await asyncio.sleep(0.2)
        figures.answer(status)
    http = await signed_in_http(server.url)
    try:
        users = await http.get("/users")
        figures.answer(users.status_code)
        assert users.status_code == 200
    finally:
        await http.aclose()
