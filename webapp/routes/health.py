"""The health page and its JSON: this worker's pool and the database server, live.

For signed-in admins (the router is included behind ``CurrentAdmin``): the page names routes,
database users and hosts. The public probes are in ``routes/probes.py``.
"""

from __future__ import annotations

import os
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from webapp import health_view
from webapp.pool_monitor import PoolMonitor, PoolSnapshot
from webapp.server_stats import Probe, ServerStats
from webapp.templating import render

router = APIRouter()

POLL_SECONDS = 3


async def _figures(request: Request) -> tuple[PoolSnapshot, ServerStats]:
    state = request.app.state
    monitor: PoolMonitor = state.pool_monitor
    # The pool first: the server look-up takes a moment, and the pool is what is polled for.
    pool = monitor.snapshot()
    probe: Probe = state.probe
    return pool, await probe.stats()


@router.get("/health", name="health")
async def health(request: Request) -> Response:
    pool, server = await _figures(request)
    engine = request.app.state.engine
    context = {
        "pool": pool,
        "server": server,
        "alerts": health_view.alerts(pool, server),
        "chart": health_view.chart(pool),
        "database_url": engine.url.render_as_string(hide_password=True),
        "through_pgbouncer": request.app.state.settings.pgbouncer,
        "dialect": engine.dialect.name,
        "poll_seconds": POLL_SECONDS,
        "pid": os.getpid(),
        "updated": time.strftime("%H:%M:%S"),
    }
    return render(request, "health.html", context, fragment="_pool.html")


@router.get("/health/pool.json", name="pool_json")
async def pool_json(request: Request) -> JSONResponse:
    pool, server = await _figures(request)
    return JSONResponse(health_view.to_json(pool, server))
