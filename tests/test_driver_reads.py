"""The hot reads sent by the driver itself: the same rows, the same SQL, the same failures."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, literal_column, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.pool import NullPool

from tests.conftest import sync_url
from tests.factories import engine_for_tests, insert_user, make_settings
from webapp import auth, crud, driver_reads
from webapp.db import make_engine
from webapp.keyset import encode_cursor
from webapp.listing import UserListQuery


class Sent:
    """What the engine's ``before_cursor_execute`` listeners hear: SQL and cursor type."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.statements: list[tuple[str, str]] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith("BEGIN"):  # SQLite's, sent as its transaction starts
            self.statements.append((statement, type(cursor).__module__))


def _statements(postgres: bool) -> list[tuple[Any, dict[str, Any]]]:
    """Every statement the console sends this way, with parameters that find rows (the
    whole list's size rides with its page on PostgreSQL only)."""
    found: list[tuple[Any, dict[str, Any]]] = []
    for sort in ("name", "email", "created"):
        for reverse in (False, True):
            for sized in (False, True) if postgres else (False,):
                found.append((crud._whole_list_page(sort, reverse, False, sized), {"limit": 4}))
    after = {"k0": "A", "k1": "A", "k2": 0, "limit": 3}
    found.append((crud._whole_list_page("name", False, True, False), after))
    return found


async def test_the_driver_reads_what_sqlalchemy_reads(database_url: str, db: Engine) -> None:
    for n in range(6):
        insert_user(db, first_name=f"Zoë {n}", last_name="O'Brien", is_active=n % 2 == 0)
    admin = insert_user(db, is_admin=True)
    engine = make_engine(make_settings(database_url))
    postgres = engine.dialect.name == "postgresql"
    sent = Sent(engine)
    try:
        async with AsyncSession(engine) as session:
            connection = await session.connection()
            for stmt, params in [*_statements(postgres), (auth._ACCOUNT, {"user_id": admin})]:
                ours = await driver_reads.fetch_all(connection, stmt, params)
                theirs = (await connection.execute(stmt, params)).all()
                assert [tuple(row) for row in ours] == [tuple(row) for row in theirs], stmt
                assert ours, stmt
    finally:
        await engine.dispose()
    # Each statement twice, the same SQL each time; the driver's cursor on PostgreSQL.
    ours, theirs = sent.statements[0::2], sent.statements[1::2]
    assert [sql for sql, _ in ours] == [sql for sql, _ in theirs]
    assert all(kind.startswith("psycopg") == postgres for _, kind in ours), ours
    assert not any(kind.startswith("psycopg") for _, kind in theirs), theirs


async def test_a_page_of_the_list_reads_the_same_either_way(database_url: str, db: Engine) -> None:
    """crud's list, page after page, on the driver's path, against SQLAlchemy's reading."""
    for n in range(7):
        insert_user(db, last_name=f"Ng{n % 3}", first_name=f"Ann{n}")
    engine = make_engine(make_settings(database_url))
    try:
        async with AsyncSession(engine) as session:
            connection = await session.connection()
            page = await crud.list_users(session, UserListQuery(), 3)
            stmt = crud._whole_list_page("name", False, False, False)
            expected = (await connection.execute(stmt, {"limit": 4})).all()
            assert [row.id for row in page.page.items] == [row.id for row in expected[:3]]
            assert page.page.next_cursor == encode_cursor(
                "name", "n", [expected[2].last_name, expected[2].first_name, expected[2].id]
            )
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_failing_statement_raises_what_sqlalchemy_raises(database_url: str) -> None:
    engine = make_engine(make_settings(database_url))
    errors: list[bool] = []
    event.listen(engine.sync_engine, "handle_error", lambda ctx: errors.append(ctx.is_disconnect))
    try:
        async with AsyncSession(engine) as session:
            connection = await session.connection()
            with pytest.raises(sa_exc.DataError) as raised:
                await driver_reads.fetch_all(connection, select(literal_column("1/0")), {})
            assert "division by zero" in str(raised.value.orig)
            assert raised.value.statement is not None and "1/0" in raised.value.statement
            await session.rollback()
            # The session goes on after its rollback, on a sound connection.
            assert (await session.execute(text("SELECT 2"))).scalar_one() == 2
    finally:
        await engine.dispose()
    assert errors == [False]


async def _backend_pid(connection: AsyncConnection) -> int:
    rows = await driver_reads.fetch_all(connection, _PID, {})
    return int(rows[0][0])


_PID = select(func.pg_backend_pid())


@pytest.mark.direct_postgres
async def test_a_connection_lost_mid_request_is_invalidated(database_url: str) -> None:
    """The server goes away between two statements: the error is SQLAlchemy's disconnect,
    the connection is thrown away, and the next request gets a new one."""
    engine = make_engine(make_settings(database_url, pool_size=1, max_overflow=0))
    disconnects: list[bool] = []
    event.listen(engine.sync_engine, "handle_error", lambda c: disconnects.append(c.is_disconnect))
    outsider = engine_for_tests(sync_url(database_url), poolclass=NullPool)
    try:
        async with AsyncSession(engine) as session:
            connection = await session.connection()
            pid = await _backend_pid(connection)
            with outsider.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
            with pytest.raises(sa_exc.OperationalError) as raised:
                await driver_reads.fetch_all(connection, _PID, {})
            assert raised.value.connection_invalidated
        async with AsyncSession(engine) as session:
            assert await _backend_pid(await session.connection()) != pid
    finally:
        outsider.dispose()
        await engine.dispose()
    assert disconnects == [True]


@pytest.mark.direct_postgres
async def test_a_statement_cancelled_midway_leaves_no_connection_in_doubt(
    database_url: str,
) -> None:
    """A request cancelled while the server works (the client went away): its connection
    is replaced before anyone uses it again, and the next request is served at once."""
    engine = make_engine(make_settings(database_url, pool_size=1, max_overflow=0))
    slow = select(func.pg_sleep(30))
    try:
        pids: list[int] = []

        async def request() -> None:
            async with AsyncSession(engine) as session:
                connection = await session.connection()
                pids.append(await _backend_pid(connection))
                await driver_reads.fetch_all(connection, slow, {})

        task = asyncio.create_task(request())
        while not pids:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with asyncio.timeout(10), AsyncSession(engine) as session:
            assert await _backend_pid(await session.connection()) != pids[0]
    finally:
        await engine.dispose()
