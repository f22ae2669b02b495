"""Alembic environment: the URL comes from the webapp settings, never from a file."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from webapp.config import normalise_database_url
from webapp.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    # webapp.migrations puts the URL here; a bare `alembic` run falls back to the settings.
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return normalise_database_url(url)
    from webapp.config import get_settings

    return get_settings().database_url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    url = _url()
    # Named in pg_stat_activity as every connection of the console's is.
    named = {"application_name": f"webapp:{os.getpid()}"} if url.startswith("postgresql") else {}
    engine = create_async_engine(url, poolclass=pool.NullPool, connect_args=named)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
