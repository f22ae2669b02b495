"""The floor: the least a Python stack does to serve the console's page 1.

Plain Starlette, a psycopg pool and Jinja2, served by uvicorn like the console. It runs the
same SQL for the rows as the console's ``crud.list_users`` on page 1 (SQLAlchemy's statement,
written out) and renders the same 50-row table (``templates/users/_table.html`` and
``_rows.html``: same columns, same markup, drawn the same way, Jinja2's autoescaping) in a bare
page; tests/test_bench_floor.py keeps the rows byte for byte the console's. No sign-in.

By default it counts nothing (``BENCH_FLOOR_COUNT=none``): the floor is the least work, and
what the console spends on its count (a bounded count and the planner's estimate), its
sign-in check and its pool's pre-ping is the console's own cost. ``exact`` and ``estimate``
are there to compare. Change the SQL here when the console's query changes, or the ratio
means nothing.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, LiteralString

import jinja2
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from bench.config import BENCH_DIR

PER_PAGE = 50
# The console's page-1 statement without its count: the same columns (never the hash), the
# same order, and the limit written in, as the console writes it (so PostgreSQL reuses the
# prepared statement's plan for both).
ROWS_SQL: LiteralString = (
    "SELECT users.id, users.first_name, users.last_name, users.email, users.email_key, "
    "users.is_active, users.is_admin, users.must_change_password, users.created_at, "
    "users.updated_at, users.version \n"
    "FROM users ORDER BY users.last_name, users.first_name, users.id \n"
    " LIMIT 51"
)
COUNT_SQL: dict[str, LiteralString | None] = {
    "exact": "SELECT count(users.id) AS count_1 \nFROM users",
    "estimate": "SELECT reltuples::bigint FROM pg_class WHERE oid = 'users'::regclass",
    "none": None,
}


def format_datetime(value: datetime) -> str:
    """The console's ``datetime`` filter."""
    return value.astimezone(UTC).isoformat(" ", "minutes")[:16] + " UTC"


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(BENCH_DIR), autoescape=True, auto_reload=False
    )
    env.filters["datetime"] = format_datetime
    return env


def create_app() -> Starlette:
    dsn = os.environ["BENCH_FLOOR_DSN"]
    count_sql = COUNT_SQL[os.environ.get("BENCH_FLOOR_COUNT", "none")]
    # The console's pool in the bench: 10 connections, kept (BENCH_POOL_SIZE).
    size = int(os.environ.get("BENCH_POOL_SIZE", "10"))
    pool = AsyncConnectionPool(
        dsn, min_size=size, max_size=size, open=False, kwargs={"application_name": "floor"}
    )
    template = _templates().get_template("floor.html")

    async def users(request: Request) -> Response:
        async with pool.connection() as conn:
            total = None
            if count_sql is not None:
                row = await (await conn.execute(count_sql)).fetchone()
                total = int(row[0]) if row else 0
            cursor = conn.cursor(row_factory=namedtuple_row)
            await cursor.execute(ROWS_SQL)
            items: list[Any] = (await cursor.fetchall())[:PER_PAGE]
        return HTMLResponse(template.render(items=items, total=total, per_page=PER_PAGE))

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await pool.open(wait=True)
        try:
            yield
        finally:
            await pool.close()

    return Starlette(routes=[Route("/users", users), Route("/healthz", healthz)], lifespan=lifespan)
