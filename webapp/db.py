"""The process's one pooled engine (watched by ``pool_monitor``) and the per-request session."""

from __future__ import annotations

import os
import select
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from starlette.requests import Request

from webapp.config import Settings
from webapp.pool_monitor import MonitoredQueuePool, current_route

SQLITE_BUSY_TIMEOUT_MS = 5000
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# How the next SQLite transaction begins. A request that may write takes the write lock up
# front (BEGIN IMMEDIATE): a transaction that reads first and writes later could otherwise be
# refused at its first write ("database is locked") when another writer got in between.
_sqlite_begin: ContextVar[str] = ContextVar("sqlite_begin", default="BEGIN")

# On PostgreSQL a pooled connection rests in autocommit, the mode of every page's reads
# (make_read_sessionmaker), and a session that may write takes a transaction at this level
# for as long as it holds the connection (make_sessionmaker). SQLAlchemy sets a connection's
# mode at checkout and sets it back at checkin: four calls into the driver, each across the
# greenlet bridge, about 0.23 ms of CPU. Every page paid that when the reads switched to
# autocommit; now only the writes, far fewer, switch.
WRITE_ISOLATION = "READ COMMITTED"  # PostgreSQL's default, which the writes always ran at


def make_engine(settings: Settings) -> AsyncEngine:
    """Build the pooled engine. Called once per process, from the app's lifespan.

    On PostgreSQL its connections autocommit unless a session from ``make_sessionmaker``
    holds them: ``engine.begin()`` on it is no transaction (see WRITE_ISOLATION).
    """
    connect_args: dict[str, Any] = {}
    at_rest: dict[str, Any] = {}
    if not settings.is_sqlite:
        at_rest["isolation_level"] = "AUTOCOMMIT"
        # Lets pg_stat_activity tell this worker's connections from every other's.
        connect_args["application_name"] = f"webapp:{os.getpid()}"
        if settings.pgbouncer:
            connect_args["prepare_threshold"] = None
        elif settings.statement_timeout:
            # A runaway query is cancelled by the server instead of holding its connection.
            # PgBouncer refuses the "options" start-up parameter: see the README.
            timeout_ms = int(settings.statement_timeout * 1000)
            connect_args["options"] = f"-c statement_timeout={timeout_ms}"
    engine = create_async_engine(
        settings.database_url,
        poolclass=MonitoredQueuePool,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_recycle=settings.pool_recycle,
        # PostgreSQL's connections are checked without a round trip (check_socket).
        pool_pre_ping=settings.pool_pre_ping and settings.is_sqlite,
        connect_args=connect_args,
        **at_rest,
    )
    if settings.is_sqlite:
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
    elif settings.pool_pre_ping:
        event.listen(engine.sync_engine, "checkout", check_socket)
    return engine


def check_socket(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Pre-ping without the round trip: a pooled PostgreSQL connection sits idle with nothing
    left to read, so a readable socket means the server has gone (it closed the connection,
    or sent its last words before shutting down). The pool then opens another in its place.

    ``SELECT 1`` on every checkout cost a round trip per request, a tenth of a list page's
    CPU; a dead server is found here as surely, when it closed the connection (a restart, a
    terminated backend, PgBouncer going away). One that vanished without a word is found
    by the first statement, as before.
    """
    conn = dbapi_connection.driver_connection
    if conn.closed or conn.broken:
        raise DisconnectionError("the connection is closed")
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        raise DisconnectionError("the connection's socket is gone") from None
    if readable:
        raise DisconnectionError("the server closed the connection, or is closing it")


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
    """Sessions that may write: one transaction from their first statement to their commit
    or rollback (on PostgreSQL at WRITE_ISOLATION, whatever mode the pool's connections
    rest in)."""
    if engine.dialect.name == "postgresql":
        engine = engine.execution_options(isolation_level=WRITE_ISOLATION)
    return _sessionmaker(engine)


def make_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for GET and HEAD, which change nothing: on PostgreSQL each statement is its
    own transaction (autocommit, as ``make_engine``'s connections rest), which spares two
    round trips a page (BEGIN and COMMIT) on the same pool. SQLite keeps its transactions:
    they are what take its locks."""
    return _sessionmaker(engine)


def _sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Objects stay readable after commit, so templates never trigger a lazy load.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def session_scope(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request: commit on success, roll back on error, always release.

    The session takes a connection from the pool at its first statement and gives it
    back when its commit or rollback ends, whatever happened in the route (see ``_close``):
    a commit that fails is rolled back there.
    """
    safe = request.method in SAFE_METHODS
    state = request.app.state
    factory: async_sessionmaker[AsyncSession] = (
        state.read_sessionmaker if safe else state.sessionmaker
    )
    begin = _sqlite_begin.set("BEGIN" if safe else "BEGIN IMMEDIATE")
    # Names the holder of this request's connection in the pool monitor's leak reports.
    route = getattr(request.scope.get("route"), "path", None) or request.url.path
    holder = current_route.set(f"{request.method} {route}")
    session = factory()
    closed = False
    try:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        # One trip into SQLAlchemy's synchronous side for both: each trip is a greenlet,
        # and each greenlet maps and unmaps memory for its stack of Python frames.
        await session.run_sync(_commit_and_close)
        closed = True
    finally:
        try:
            if not closed:
                await _close(session)
        finally:
            _sqlite_begin.reset(begin)
            current_route.reset(holder)


def _commit_and_close(session: Session) -> None:
    session.commit()
    session.close()


async def _close(session: AsyncSession) -> None:
    """Close a request's session once its rollback (or a failed commit) is over.

    Either gave the connection back to the pool, so closing is bookkeeping, done here and
    now. ``async with`` would close in a task of its own, shielded from cancellation: two
    more turns of the event loop, each waiting behind every other request's work. That is
    kept for a session still in a transaction (its rollback or commit failed, or was
    cancelled), whose connection must go back whatever happens.
    """
    if session.in_transaction():
        async with session:
            pass
    else:
        await session.close()
