"""Whether a connection pooler (PgBouncer) stands between the console and PostgreSQL.

A pooler answers a client's start-up itself, with a backend key of its own (the process id
and secret a client sends to cancel a query), and hands each transaction to one of its
server connections. So a connection whose key names another process than the one serving
it (``pg_backend_pid()``) goes through a pooler. With ``WEBAPP_PGBOUNCER`` unset the console
asks once as it starts (one connection, one round trip) and, behind a pooler, turns off what
transaction pooling breaks: psycopg's prepared statements, and the start-up ``options``
that would carry ``statement_timeout`` (see ``webapp.db.make_engine``).
"""

from __future__ import annotations

import logging
import os

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from webapp.config import Settings

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 2


async def detect(database_url: str) -> bool | None:
    """True through a pooler, False straight to PostgreSQL, None when no connection could
    be made to tell."""
    engine = create_async_engine(
        database_url,
        poolclass=NullPool,
        # Nothing a pooler refuses: no start-up options, no prepared statements.
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "prepare_threshold": None,
            "application_name": f"webapp:{os.getpid()}",  # as every connection of ours
        },
    )
    try:
        async with engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            if driver is None:
                return None
            key_pid = driver.info.backend_pid
            server_pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    except (sa_exc.OperationalError, sa_exc.InterfaceError, OSError):
        return None
    finally:
        await engine.dispose()
    return bool(key_pid != server_pid)


async def resolve(settings: Settings) -> Settings:
    """``settings`` with ``pgbouncer`` decided: as set, else found out (PostgreSQL only)."""
    if settings.pgbouncer is not None:
        return settings
    if settings.is_sqlite:
        return settings.model_copy(update={"pgbouncer": False})
    found = await detect(settings.database_url)
    if found is None:
        log.warning(
            "could not reach the database to see whether PgBouncer stands in between: "
            "going on as if not. Set WEBAPP_PGBOUNCER=true or false to say which."
        )
    elif found:
        log.info(
            "connected through a connection pooler (PgBouncer): prepared statements are "
            "off and WEBAPP_STATEMENT_TIMEOUT is not sent (set statement_timeout on the "
            "database role). Set WEBAPP_PGBOUNCER=true to skip this check."
        )
    return settings.model_copy(update={"pgbouncer": bool(found)})
