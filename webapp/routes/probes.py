"""Probes for machines: liveness, readiness, Prometheus metrics.

Public on purpose: load balancers, orchestrators and Prometheus cannot sign in, and these
answers carry no personal data, route names, users or hosts. ``/metrics`` takes a bearer token
when ``WEBAPP_METRICS_TOKEN`` is set.
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from webapp.deps import SettingsDep
from webapp.metrics import CONTENT_TYPE, PoolMetrics
from webapp.pool_monitor import PoolMonitor
from webapp.server_stats import Probe

router = APIRouter()


@router.get("/healthz", name="healthz")
async def healthz() -> JSONResponse:
    """Alive: the process answers. No database, so a database outage never restarts us."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz", name="readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready: one round trip to the database, on the probe connection, within ~2 s."""
    probe: Probe = request.app.state.probe
    stats = await probe.stats(detail=False)
    if not stats.reachable:
        return JSONResponse(
            {"status": "unavailable", "database": stats.error},
            status_code=503,
            headers={"Retry-After": "2"},
        )
    return JSONResponse({"status": "ok", "round_trip_ms": round(stats.round_trip_ms or 0, 2)})


@router.get("/metrics", name="metrics")
async def metrics(request: Request, settings: SettingsDep) -> Response:
    if settings.metrics_token is not None:
        expected = f"Bearer {settings.metrics_token.get_secret_value()}"
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), expected.encode()):
            return Response(
                "a bearer token is required\n",
                status_code=401,
                media_type="text/plain",
                headers={"WWW-Authenticate": "Bearer"},
            )
    monitor: PoolMonitor = request.app.state.pool_monitor
    monitor.publish()  # this worker's gauges as they are now
    sink: PoolMetrics = request.app.state.pool_metrics
    return Response(sink.exposition(), media_type=CONTENT_TYPE)
