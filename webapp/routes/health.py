"""The health page: this process's pool and the database's round trip, refreshed by htmx."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import exc as sa_exc

from webapp.db import pool_stats, round_trip_ms
from webapp.deps import EngineDep, SettingsDep
from webapp.templating import render

router = APIRouter()


@router.get("/health", name="health")
async def health(request: Request, engine: EngineDep, settings: SettingsDep) -> Response:
    rtt: float | None = None
    db_error: str | None = None
    try:
        rtt = await round_trip_ms(engine)
    except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as exc:
        # Named by kind only: driver messages can carry host names and user names.
        db_error = type(exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc).__name__
    context = {
        "stats": pool_stats(engine, settings),
        "rtt_ms": rtt,
        "db_error": db_error,
        "database_url": engine.url.render_as_string(hide_password=True),
        "dialect": engine.dialect.name,
    }
    return render(request, "health.html", context, fragment="_pool.html")
