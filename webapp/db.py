"""The process's one pooled engine, the per-request session, and what the pool reports."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import QueuePool
from starlette.requests import Request

from webapp.config import Settings

SQLITE_BUSY_TIMEOUT_MS = 5000
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# How the next SQLite transaction begins. A request that may write takes the write lock up
# front (BEGIN IMMEDIATE): a transaction that reads first and writes later could otherwise be
# refused at its first write ("database is locked") when another writer got in between.
_sqlite_begin: ContextVar[str] = ContextVar("sqlite_begin", default="BEGIN")


def make_engine(settings: Settings) -> AsyncEngine:
    """Build the pooled engine. Called once per process, from the app's lifespan."""
    connect_args: dict[str, Any] = {}
    if not settings.is_sqlite:
        # Lets pg_stat_activity tell this worker's connections from every other's.
        connect_args["application_name"] = f"webapp:{os.getpid()}"
        if settings.pgbouncer:
            connect_args["prepare_threshold"] = None
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_recycle=settings.pool_recycle,
        pool_pre_ping=settings.pool_pre_ping,
        connect_args=connect_args,
    )
    if settings.is_sqlite:
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own implicit BEGIN is switched off; _sqlite_on_begin says when and how.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside a writer; the busy timeout makes writers queue, not fail.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    conn.exec_driver_sql(_sqlite_begin.get())


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Objects stay readable after commit, so templates never trigger a lazy load.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def session_scope(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request: commit on success, roll back on error, always release.

    The session takes a connection from the pool at its first statement and gives it
    back when the ``async with`` block closes it, whatever happened in the route.
    """
    factory: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    begin = _sqlite_begin.set("BEGIN" if request.method in SAFE_METHODS else "BEGIN IMMEDIATE")
    try:
        async with factory() as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            await session.commit()
    finally:
        _sqlite_begin.reset(begin)


@dataclass(frozen=True, slots=True)
class PoolStats:
    size: int
    max_overflow: int
    checked_out: int
    idle: int
    overflow: int
    timeout: float

    @property
    def maximum(self) -> int:
        return self.size + self.max_overflow

    @property
    def overflow_in_use(self) -> int:
        return max(self.overflow, 0)


def pool_stats(engine: AsyncEngine, settings: Settings) -> PoolStats:
    pool = engine.sync_engine.pool
    if not isinstance(pool, QueuePool):  # pragma: no cover - we always build a QueuePool
        raise TypeError(f"unexpected pool class {type(pool).__name__}")
    return PoolStats(
        size=pool.size(),
        max_overflow=settings.max_overflow,
        checked_out=pool.checkedout(),
        idle=pool.checkedin(),
        overflow=pool.overflow(),
        timeout=pool.timeout(),
    )


async def round_trip_ms(engine: AsyncEngine) -> float:
    """Time one ``SELECT 1`` on a pooled connection, in milliseconds."""
    async with engine.connect() as conn:
        started = time.perf_counter()
        await conn.execute(text("SELECT 1"))
        return (time.perf_counter() - started) * 1000
