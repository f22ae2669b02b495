"""Sign-in throttling, counted in the database so it holds across workers and hosts."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from tests.factories import ADMIN_EMAIL, PASSWORD, csrf_from, make_settings
from webapp.main import create_app
from webapp.models import AuditEvent


def _attempt(client: TestClient, email: str, password: str) -> int:
    token = csrf_from(client.get("/login").text)
    data = {"email": email, "password": password, "csrf_token": token}
    return client.post("/login", data=data).status_code


@pytest.fixture
def two_instances(database_url: str, admin_id: int) -> Iterator[tuple[TestClient, TestClient]]:
    """Two apps, each with its own engine and pool, sharing one database: two workers."""
    settings = make_settings(
        database_url,
        login_max_failures=3,
        login_address_max_failures=100,
        login_slowdown_seconds=0,
        login_lockout_seconds=60,
    )
    first: FastAPI = create_app(settings)
    second: FastAPI = create_app(settings)
    with (
        TestClient(first, follow_redirects=False) as one,
        TestClient(second, follow_redirects=False) as two,
    ):
        yield one, two


def test_lockout_holds_across_instances(
    two_instances: tuple[TestClient, TestClient], db: Engine
) -> None:
    one, two = two_instances
    assert _attempt(one, ADMIN_EMAIL, "wrong 1") == 401
    assert _attempt(two, ADMIN_EMAIL, "wrong 2") == 401
    assert _attempt(one, ADMIN_EMAIL, "wrong 3") == 401  # the third failure locks the account
    # Now even the right password is refused, on either instance, without being checked.
    for client in (two, one):
        token = csrf_from(client.get("/login").text)
        response = client.post(
            "/login", data={"email": ADMIN_EMAIL, "password": PASSWORD, "csrf_token": token}
        )
        assert response.status_code == 429
        assert "Too many failed sign-ins. Try again in 1 minute." in response.text
    # Letter case does not make a new account to guess at.
    assert _attempt(two, ADMIN_EMAIL.upper(), PASSWORD) == 429
    with db.connect() as conn:
        actions = conn.execute(select(AuditEvent.action).order_by(AuditEvent.id)).scalars().all()
    assert actions.count("auth.sign_in_failed") == 3
    assert actions.count("auth.lockout") == 1
    assert "auth.sign_in" not in actions


def test_success_resets_the_account_count(two_instances: tuple[TestClient, TestClient]) -> None:
    one, two = two_instances
    assert _attempt(one, ADMIN_EMAIL, "wrong") == 401
    assert _attempt(two, ADMIN_EMAIL, "wrong") == 401
    assert _attempt(one, ADMIN_EMAIL, PASSWORD) == 303
    assert _attempt(two, ADMIN_EMAIL, "wrong") == 401
    assert _attempt(one, ADMIN_EMAIL, "wrong") == 401
    assert _attempt(two, ADMIN_EMAIL, PASSWORD) == 303  # 2 failures since: not locked


def test_unknown_emails_count_against_the_address(database_url: str, admin_id: int) -> None:
    settings = make_settings(database_url, login_address_max_failures=4, login_slowdown_seconds=0)
    with TestClient(create_app(settings), follow_redirects=False) as client:
        for n in range(4):
            assert _attempt(client, f"guess{n}@example.com", "x") == 401
        # The address is locked: even a real admin cannot sign in from it for a while.
        assert _attempt(client, ADMIN_EMAIL, PASSWORD) == 429


def test_repeated_failures_slow_down(database_url: str, admin_id: int) -> None:
    settings = make_settings(
        database_url,
        login_slowdown_after=2,
        login_slowdown_seconds=0.3,
        login_max_failures=10,
    )
    with TestClient(create_app(settings), follow_redirects=False) as client:
        assert _attempt(client, ADMIN_EMAIL, "wrong") == 401
        started = time.monotonic()
        assert _attempt(client, ADMIN_EMAIL, "wrong") == 401  # the second failure waits
        assert time.monotonic() - started >= 0.3
        # The wait happens with the connection back in the pool.
        assert client.app.state.engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
