"""Who may use the API: bearer tokens, the console's session (with CSRF), and throttling."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, func, select, update

from tests.api.support import BEARER, actions, audit_rows, insert_token, new_user, problem
from tests.factories import ADMIN_EMAIL, insert_user, make_settings, sign_in
from tests.test_access import routes, snapshot, url_of
from webapp.main import create_app
from webapp.models import ApiToken, User, utcnow


def _bearer(token: str) -> dict[str, str]:
    return {BEARER: f"Bearer {token}"}


@pytest.fixture
def target(db: Engine) -> int:
    return insert_user(db, first_name="Target", last_name="User")


def test_every_api_route_refuses_the_anonymous_with_a_401_problem(
    app: FastAPI, anon_client: TestClient, admin_id: int, target: int, db: Engine
) -> None:
    api_routes = list(routes(app, api=True))
    assert len(api_routes) >= 10
    before = snapshot(db)
    for method, route in api_routes:
        response = anon_client.request(method, url_of(route, target), json=new_user())
        body = problem(response, 401)
        assert body["type"] == "urn:webapp:problem:unauthorized", (method, route.path)
        assert response.headers["www-authenticate"].startswith("Bearer"), route.path
    assert snapshot(db) == before


def test_every_api_route_refuses_a_bad_token(
    app: FastAPI, anon_client: TestClient, admin_id: int, target: int, db: Engine
) -> None:
    settings = make_settings(
        app.state.settings.database_url,
        login_max_failures=1000,
        login_address_max_failures=1000,
        login_slowdown_seconds=0,
    )
    with TestClient(create_app(settings)) as client:
        for method, route in routes(app, api=True):
            for header in ("Bearer wat_wrong", "Bearer ", "Basic YTpi", "wat_token"):
                response = client.request(
                    method, url_of(route, target), json=new_user(), headers={BEARER: header}
                )
                assert 'error="invalid_token"' in response.headers["www-authenticate"]
                problem(response, 401)


def test_a_token_acts_as_its_owner_and_records_its_use(
    api: TestClient, db: Engine, admin_id: int
) -> None:
    with db.connect() as conn:
        assert conn.execute(select(ApiToken.last_used_at)).scalar_one() is None
    assert api.get("/api/v1/users").status_code == 200
    with db.connect() as conn:
        used = conn.execute(select(ApiToken.last_used_at)).scalar_one()
    assert used is not None
    created = api.post("/api/v1/users", json=new_user())
    assert created.status_code == 201  # no cookie, no CSRF header: the token is enough
    assert audit_rows(db)[-1].actor_id == admin_id
    assert "set-cookie" not in created.headers


@pytest.mark.parametrize(
    "change",
    [{"is_admin": False}, {"is_active": False}],
    ids=["demoted", "deactivated"],
)
def test_a_token_stops_working_when_its_owner_is_no_longer_an_active_admin(
    api: TestClient, db: Engine, admin_id: int, change: dict[str, bool]
) -> None:
    insert_user(db, is_admin=True)
    assert api.get("/api/v1/users").status_code == 200
    with db.begin() as conn:
        conn.execute(update(User).where(User.id == admin_id).values(**change))
    body = problem(api.get("/api/v1/users"), 401)
    assert "no longer an active admin" in body["detail"]
    assert actions(db)[-1] == "token.auth_failed"
    assert audit_rows(db)[-1].target_id == admin_id


def test_deleting_an_admin_deletes_their_tokens(
    anon_client: TestClient, db: Engine, admin_id: int
) -> None:
    other = insert_user(db, is_admin=True)
    insert_token(db, other)
    token = insert_token(db, admin_id)
    response = anon_client.delete(f"/api/v1/users/{other}", headers=_bearer(token))
    assert response.status_code == 204
    with db.connect() as conn:
        owners = conn.execute(select(ApiToken.user_id)).scalars().all()
    assert owners == [admin_id]


def test_an_expired_token_is_refused(anon_client: TestClient, db: Engine, admin_id: int) -> None:
    token = insert_token(db, admin_id, expires_at=utcnow() - timedelta(seconds=1))
    body = problem(anon_client.get("/api/v1/users", headers=_bearer(token)), 401)
    assert "expired" in body["detail"]
    fresh = insert_token(db, admin_id, expires_at=utcnow() + timedelta(days=1))
    assert anon_client.get("/api/v1/users", headers=_bearer(fresh)).status_code == 200


@pytest.fixture
def quick_app(database_url: str) -> Iterator[TestClient]:
    """Throttling as configured, without the slow-down's sleeps."""
    app = create_app(make_settings(database_url, login_slowdown_seconds=0))
    with TestClient(app) as client:
        yield client


def test_failures_are_throttled_per_address_like_sign_in(
    quick_app: TestClient, db: Engine, admin_id: int
) -> None:
    good = insert_token(db, admin_id)
    for _ in range(5):  # WEBAPP_LOGIN_MAX_FAILURES
        problem(quick_app.get("/api/v1/users", headers=_bearer("wat_guess")), 401)
    locked = quick_app.get("/api/v1/users", headers=_bearer("wat_guess"))
    body = problem(locked, 429)
    assert body["type"] == "urn:webapp:problem:throttled"
    assert 800 < int(locked.headers["retry-after"]) <= 900
    # A lock refuses every token from the address, or guessing would go on behind it.
    problem(quick_app.get("/api/v1/users", headers=_bearer(good)), 429)
    assert actions(db) == ["token.auth_failed"] * 5 + ["auth.lockout"]
    # The address's failures count towards its sign-in limit too.
    from webapp.models import LoginThrottle

    with db.connect() as conn:
        counts = dict(conn.execute(select(LoginThrottle.key, LoginThrottle.failures)).all())
    assert counts == {"token:testclient": 5, "ip:testclient": 5}
    # When the lock has passed, a good token works again.
    with db.begin() as conn:
        conn.execute(delete(LoginThrottle))
    assert quick_app.get("/api/v1/users", headers=_bearer(good)).status_code == 200


# --- The console's session --------------------------------------------------------------


def test_the_console_session_works_with_the_csrf_header(client: TestClient, db: Engine) -> None:
    assert client.get("/api/v1/users").status_code == 200
    token = client.headers.pop("X-CSRF-Token")
    refused = problem(client.post("/api/v1/users", json=new_user()), 403)
    assert "did not come from this console" in refused["detail"]
    forged = client.post("/api/v1/users", json=new_user(), headers={"X-CSRF-Token": "forged"})
    problem(forged, 403)
    with db.connect() as conn:
        assert conn.execute(select(func.count(User.id))).scalar_one() == 1
    ok = client.post("/api/v1/users", json=new_user(), headers={"X-CSRF-Token": token})
    assert ok.status_code == 201


def test_a_bearer_header_is_judged_alone_never_with_the_cookie(
    client: TestClient, db: Engine, admin_id: int
) -> None:
    """A signed-in browser that also sends a bad token is refused: no fallback to the cookie."""
    client.headers.pop("X-CSRF-Token")
    refused = client.post("/api/v1/users", json=new_user(), headers=_bearer("wat_bad"))
    problem(refused, 401)
    refused_get = client.get("/api/v1/users", headers={BEARER: "Basic YTpi"})
    problem(refused_get, 401)
    good = insert_token(db, admin_id)
    ok = client.post("/api/v1/users", json=new_user(), headers=_bearer(good))
    assert ok.status_code == 201  # the token's request needs no CSRF token


def test_the_console_routes_still_need_csrf_with_a_bearer_header(
    client: TestClient, db: Engine, admin_id: int, target: int
) -> None:
    client.headers.pop("X-CSRF-Token")
    good = insert_token(db, admin_id)
    response = client.post(f"/users/{target}/active", data={"active": "no"}, headers=_bearer(good))
    assert response.status_code == 403


def test_a_session_that_must_change_its_password_is_refused(
    client: TestClient, db: Engine, admin_id: int
) -> None:
    with db.begin() as conn:
        conn.execute(update(User).where(User.id == admin_id).values(must_change_password=True))
    problem(client.get("/api/v1/users"), 403)


def test_an_ended_session_gets_a_401_problem_not_a_redirect(
    app: FastAPI, db: Engine, admin_id: int
) -> None:
    with TestClient(app, follow_redirects=False) as browser:
        sign_in(browser, ADMIN_EMAIL)
        with db.begin() as conn:
            conn.execute(update(User).where(User.id == admin_id).values(is_active=False))
        insert_user(db, is_admin=True)
        response = browser.get("/api/v1/users", headers={"Accept": "text/html"})
        problem(response, 401)
        assert "location" not in response.headers


def test_tokens_are_stored_hashed(api: TestClient, db: Engine, token: str) -> None:
    with db.connect() as conn:
        row = conn.execute(select(ApiToken.__table__)).one()
    assert token not in str(tuple(row))
    assert re.fullmatch(r"[0-9a-f]{64}", row.token_hash)
    assert token.startswith(row.prefix) and len(row.prefix) < len(token) // 3
