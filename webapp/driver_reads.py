"""The console's hottest reads, sent by the database driver itself on the request's connection.

Every console page checks who is signed in, and the list reads a page of rows. On PostgreSQL,
SQLAlchemy's execution layer (cache look-up, execution context, result rows, a greenlet hop
each way) cost more CPU than psycopg's own execution of these statements: about 0.45 ms
more per statement on the benchmark's machine, for a page that costs a few ms in all.

So a statement built once (at import, or by a cached builder) is compiled by SQLAlchemy once,
to the very text SQLAlchemy itself would send, and psycopg sends it on the connection the
request's session already holds. The session, its transaction, the pool, its events and the
pool monitor see nothing different; ``before_cursor_execute`` listeners hear the statement
(with psycopg's own cursor). A failure goes through SQLAlchemy's own handling: it is
wrapped (``OperationalError`` and the rest, as the error pages expect), the ``handle_error``
listeners hear of it, and a dead connection is invalidated. Other drivers (SQLite's) run the
statement through SQLAlchemy as before.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import PoolProxiedConnection

DIRECT_DRIVERS = frozenset({"psycopg"})
EXPLAIN = "EXPLAIN (FORMAT JSON) "


async def fetch_all(
    connection: AsyncConnection,
    stmt: Select[Any],
    params: Mapping[str, Any],
    *,
    plan_each_time: bool = False,
    explain: bool = False,
) -> Sequence[Sequence[Any]]:
    """All rows of ``stmt`` (built once, never per request: each statement is compiled and
    kept) with ``params``, as tuples.

    psycopg prepares a statement on the server once it has sent it a few times, and
    PostgreSQL may then run it with a generic plan, made for any parameters: right for the
    list's pages, whose best plan is the same for every key. With ``plan_each_time`` the
    statement is never prepared, and PostgreSQL plans it for the values it is sent: for a
    search, whose best plan depends on its words (a generic plan read the whole trigram
    index for a one-letter search: 0.6 s at a million users, where its own plan takes
    milliseconds). With ``explain``, the rows are its plan's (EXPLAIN (FORMAT JSON)).
    """
    dialect = connection.dialect
    if dialect.driver not in DIRECT_DRIVERS:
        if explain:
            raise ValueError(f"EXPLAIN is read through psycopg only, not {dialect.driver}")
        found: Sequence[Sequence[Any]] = (await connection.execute(stmt, params)).all()
        return found
    text, defaults, names = _text(stmt, dialect, _literals(stmt, dialect, params))
    if explain:
        text = EXPLAIN + text
    values = defaults | {name: params[name] for name in names}
    pooled = await _pooled(connection)
    driver = pooled.driver_connection
    assert driver is not None  # the session's connection is checked out
    sync_connection = connection.sync_connection
    try:
        async with driver.cursor() as cursor:
            if sync_connection is not None and (
                sync_connection._has_events or sync_connection.engine._has_events
            ):
                # Listeners (a test's, a tracer's) still see every statement sent.
                sync_connection.dispatch.before_cursor_execute(
                    sync_connection, cursor, text, values, None, False
                )
            await cursor.execute(text, values, prepare=False if plan_each_time else None)
            rows: list[tuple[Any, ...]] = await cursor.fetchall()
            return rows
    except Exception as error:
        # Raises what SQLAlchemy would have raised, after doing what it would have done.
        await connection.run_sync(_handle_error, error, text, values)
        raise  # not reached: _handle_error always raises
    except BaseException as error:
        # Cancelled while the server may still be answering: the connection's state is
        # unknown, so it is replaced at its next checkout (closing it now would need a wait).
        pooled.invalidate(error, soft=True)
        raise


async def plan(
    connection: AsyncConnection, stmt: Select[Any], params: Mapping[str, Any]
) -> dict[str, Any]:
    """PostgreSQL's plan for ``stmt`` with ``params``, its top node as EXPLAIN (FORMAT JSON)
    gives it ("Plan Rows": the rows it expects): planned for these values, never run.
    PostgreSQL (psycopg) only."""
    rows = await fetch_all(connection, stmt, params, plan_each_time=True, explain=True)
    found = rows[0][0]
    if isinstance(found, str):
        found = json.loads(found)
    top: dict[str, Any] = found[0]["Plan"]
    return top


async def _pooled(connection: AsyncConnection) -> PoolProxiedConnection:
    """The pool's connection under ``connection``. ``get_raw_connection`` spawns a greenlet
    for it each time (in case it must reconnect), and a greenlet costs a memory map and its
    unmapping; a connection that is open and valid hands it over as it is."""
    sync_connection = connection.sync_connection
    if sync_connection is not None and not (sync_connection.closed or sync_connection.invalidated):
        return sync_connection.connection  # no I/O: see Connection.connection
    return await connection.get_raw_connection()


def _handle_error(
    sync_connection: Connection, error: Exception, text: str, values: dict[str, Any]
) -> None:
    sync_connection._handle_dbapi_exception(error, text, values, None, None)


@functools.lru_cache(maxsize=512)
def _compiled(stmt: Select[Any], dialect: Dialect) -> Any:
    return stmt.compile(dialect=dialect)


def _literals(
    stmt: Select[Any], dialect: Dialect, params: Mapping[str, Any]
) -> tuple[tuple[str, Any], ...]:
    """The values written into the SQL rather than sent beside it (``literal_execute``)."""
    compiled = _compiled(stmt, dialect)
    return tuple(sorted((b.key, params[b.key]) for b in compiled.literal_execute_params))


@functools.lru_cache(maxsize=1024)
def _text(
    stmt: Select[Any], dialect: Dialect, literals: tuple[tuple[str, Any], ...]
) -> tuple[str, dict[str, Any], tuple[str, ...]]:
    """The SQL SQLAlchemy sends for ``stmt`` with these literal values, the values it sends
    for parameters the statement carries itself, and the names of those the caller gives."""
    compiled = _compiled(stmt, dialect)
    # Expanding the statement needs a value for every parameter; only the literal ones show.
    given = {b.key for b in compiled.binds.values() if b.value is None and b.callable is None}
    placeholders = dict.fromkeys(given) | dict(literals)
    state = compiled.construct_expanded_state(placeholders, escape_names=False)
    defaults = {k: v for k, v in state.parameters.items() if k not in given}
    return state.statement, defaults, tuple(k for k in state.parameters if k in given)
