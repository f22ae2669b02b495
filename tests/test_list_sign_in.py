"""The user list's sign-in check, read in the statement that reads the list's page.

``require_admin_with_user_list`` gives ``require_admin``'s verdict on an account row that
came back with the page (``crud.Rider``): these tests hold it to the same verdicts, show that
nothing of a page reaches a visitor it turns away, and that the rider changes no page.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, event, update
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import insert_user, make_settings
from webapp import auth, crud
from webapp.db import make_engine
from webapp.listing import UserListQuery
from webapp.models import User


class Sent:
    """The statements the app's engine sends (SQLite's BEGIN aside)."""

    def __init__(self, app: FastAPI) -> None:
        self.engine = app.state.engine.sync_engine
        self.statements: list[str] = []
        event.listen(self.engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith("BEGIN"):
            self.statements.append(statement)

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)


@pytest.fixture
def sent(client: TestClient, app: FastAPI) -> Iterator[Sent]:
    """Listening from after the sign-in on (the ``client`` fixture has run the lifespan)."""
    listener = Sent(app)
    yield listener
    listener.close()


def _account_reads(statements: list[str]) -> list[str]:
    """Statements that read the sign-in check's columns."""
    return [s for s in statements if "password_hash" in s]


def test_the_list_reads_its_admin_in_the_statement_that_reads_its_page(
    client: TestClient, db: Engine, sent: Sent, is_postgres: bool
) -> None:
    for n in range(3):
        insert_user(db, first_name=f"Listed{n}")
    for path in ("/users", "/users?sort=-created", "/users?q=listed", "/users?active=yes"):
        sent.statements.clear()
        response = client.get(path)
        assert response.status_code == 200, path
        assert "Listed2" in response.text, path
        reads = _account_reads(sent.statements)
        assert len(reads) == 1, (path, sent.statements)
        assert "ORDER BY" in reads[0] and "LIMIT" in reads[0], (path, reads)
    sent.statements.clear()
    client.get("/users")
    # On PostgreSQL the whole list's size rides along too: one round trip for the page.
    assert len(sent.statements) == (1 if is_postgres else 2), sent.statements


def test_a_page_with_no_rows_still_checks_its_admin(
    client: TestClient, db: Engine, sent: Sent, admin_id: int
) -> None:
    insert_user(db, first_name="Someone", email="other-admin@example.com", is_admin=True)
    empty = client.get("/users?q=nobody-by-this-name")
    assert empty.status_code == 200
    assert "Someone" not in empty.text
    assert len(_account_reads(sent.statements)) == 2  # the page's, then the check's own
    with db.begin() as conn:
        conn.execute(update(User).where(User.id == admin_id).values(is_admin=False))
    refused = client.get("/users?q=nobody-by-this-name")
    assert refused.status_code == 303
    assert refused.headers["location"].startswith("/login")


@pytest.mark.parametrize(
    "change",
    [
        {"is_admin": False},
        {"is_active": False},
        {"password_hash": "$2b$04$" + "x" * 53},  # changed elsewhere: this session has ended
        {"must_change_password": True},
        None,  # deleted
    ],
)
def test_a_full_page_is_never_shown_to_an_admin_who_may_no_longer_see_it(
    client: TestClient, db: Engine, admin_id: int, change: dict[str, object] | None
) -> None:
    # Another admin: with none left, the console would ask for its first-run setup instead.
    insert_user(db, first_name="Secret", last_name="Person", is_admin=True)
    assert "Secret" in client.get("/users").text
    with db.begin() as conn:
        if change is None:
            conn.execute(delete(User).where(User.id == admin_id))
        else:
            conn.execute(update(User).where(User.id == admin_id).values(**change))
    expected = "/account/password" if change == {"must_change_password": True} else "/login"
    for path in ("/users", "/users?sort=email", "/users?q=secret"):
        response = client.get(path)
        assert response.status_code == 303, (change, path)
        assert response.headers["location"].startswith(expected), (change, path)
        assert "Secret" not in response.text, (change, path)


async def test_a_rider_changes_no_page_and_comes_back_with_every_kind(
    database_url: str, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(7):
        insert_user(db, first_name=f"Ann{n % 3}", last_name=f"Smith{n % 2}", is_active=n != 3)
    admin = insert_user(db, first_name="Rider", is_admin=True)
    account = auth.account_rider(admin)
    missing = auth.account_rider(admin + 1000)
    assert account is not None and missing is not None
    engine = make_engine(make_settings(database_url))
    try:
        async with AsyncSession(engine) as session:
            queries = [
                UserListQuery(),
                UserListQuery(sort="-created"),
                UserListQuery(sort="email", active="yes"),
                UserListQuery(q="smith1"),
                UserListQuery(q="ann0 smith"),
                UserListQuery(q="no such person"),
            ]
            for query in list(queries):  # the pages after and before: cursors both ways
                first = await crud.list_users(session, query, 3)
                if first.page.next_cursor:
                    later = UserListQuery.from_params(
                        {**query.params(), "cursor": first.page.next_cursor}
                    )
                    queries.append(later)
                    second = await crud.list_users(session, later, 3)
                    if second.page.prev_cursor:
                        queries.append(
                            UserListQuery.from_params(
                                {**query.params(), "cursor": second.page.prev_cursor}
                            )
                        )
            assert len(queries) > 10
            # A search past the sorting limit walks the index: the rider rides the first read.
            monkeypatch.setattr(crud, "MATCHES_FIRST_UP_TO", 2)
            queries.append(UserListQuery(q="smith"))
            for query in queries:
                alone = await crud.list_users(session, query, 3)
                ridden = await crud.list_users(session, query, 3, account)
                nobody = await crud.list_users(session, query, 3, missing)
                for listed in (ridden, nobody):
                    assert listed.page == alone.page, query
                    assert listed.count == alone.count, query
                assert alone.ridden is None
                assert nobody.ridden is None, query
                assert ridden.ridden is not None, query
                assert auth.Account._make(ridden.ridden) == await auth.load_account(session, admin)
    finally:
        await engine.dispose()


def test_an_id_no_user_can_have_reads_nothing(client: TestClient, db: Engine) -> None:
    assert auth.account_rider(0) is None
    assert auth.account_rider(2**31) is None
    assert auth.account_rider(1) is not None
