"""Every route of the app, enumerated: who may use it, CSRF on every POST, headers on every page.

The routes are read from the app itself, so a route added later cannot escape these tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update

from tests.factories import ADMIN_EMAIL, PASSWORD, csrf_from, insert_user, sign_in, with_csrf
from webapp.models import Base, User

# Reachable without signing in, on purpose (see the README): the sign-in and first-run
# pages, and the machine endpoints that load balancers and Prometheus call.
PUBLIC = {"login", "login_submit", "setup", "setup_submit", "healthz", "readyz", "metrics"}
SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def is_api(route: RouteContext) -> bool:
    """The JSON API and its schema answer 401 problems, not redirects: see tests/api/."""
    path = route.path_format or ""
    return path.startswith("/api/") or path == "/openapi.json"


def routes(
    app: FastAPI, *, public: bool = False, api: bool = False
) -> Iterator[tuple[str, RouteContext]]:
    """Every (method, route) of the app, through included routers, as FastAPI sees them:
    the console's (the default) or the API's."""
    for route in iter_route_contexts(app.routes):
        if (
            isinstance(route.original_route, APIRoute)
            and (route.name in PUBLIC) == public
            and is_api(route) == api
        ):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield method, route


def url_of(route: RouteContext, user_id: int) -> str:
    return re.sub(r"\{[^}]+\}", str(user_id), route.path_format or "")


def snapshot(db: Engine) -> dict[str, object]:
    """Row counts of every table and every user's version: what a refused request must not move."""
    with db.connect() as conn:
        counts: dict[str, object] = {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in Base.metadata.sorted_tables
        }
        counts["versions"] = conn.execute(select(User.id, User.version).order_by(User.id)).all()
    return counts


@pytest.fixture
def target(db: Engine) -> int:
    return insert_user(db, first_name="Target", last_name="User")


def test_the_app_has_console_routes_of_every_kind(app: FastAPI) -> None:
    methods = {method for method, _ in routes(app)}
    assert {"GET", "POST"} <= methods
    assert len(list(routes(app))) >= 12


def test_every_console_route_refuses_an_anonymous_client(
    app: FastAPI, anon_client: TestClient, admin_id: int, target: int, db: Engine
) -> None:
    with_csrf(anon_client)  # a valid token, so only the missing sign-in can refuse
    before = snapshot(db)
    for method, route in routes(app):
        response = anon_client.request(method, url_of(route, target), data={"active": "no"})
        assert response.status_code == 303, (method, route.path)
        assert response.headers["location"].startswith("/login"), (method, route.path)
    assert snapshot(db) == before


def test_every_console_route_refuses_a_non_admin(
    app: FastAPI, admin_id: int, target: int, db: Engine
) -> None:
    """Signed in as an admin who is then demoted: the very next request is refused."""
    insert_user(db, is_admin=True, is_active=False)  # an admin exists: no first-run setup
    for method, route in routes(app):
        with db.begin() as conn:
            conn.execute(update(User).where(User.id == admin_id).values(is_admin=True))
        with TestClient(app, follow_redirects=False) as client:
            sign_in(client, ADMIN_EMAIL)
            with db.begin() as conn:
                conn.execute(update(User).where(User.id == admin_id).values(is_admin=False))
            before = snapshot(db)
            response = client.request(method, url_of(route, target), data={"active": "no"})
            assert response.status_code == 303, (method, route.path)
            assert response.headers["location"].startswith("/login"), (method, route.path)
            assert snapshot(db) == before, (method, route.path)


def test_every_post_route_refuses_a_missing_or_wrong_csrf_token(
    app: FastAPI, client: TestClient, target: int, db: Engine
) -> None:
    posts = [route for method, route in routes(app) if method == "POST"]
    posts += [route for method, route in routes(app, public=True) if method == "POST"]
    assert len(posts) >= 8
    token = client.headers.pop("X-CSRF-Token")
    before = snapshot(db)
    for route in posts:
        url = url_of(route, target)
        form = {"active": "no", "first_name": "Changed", "next": "/users"}
        for attempt in ({}, {"csrf_token": "forged"}, {"csrf_token": ""}):
            response = client.post(url, data={**form, **attempt})
            assert response.status_code == 403, (route.path, attempt)
            assert "did not come from this console" in response.text
        wrong_header = client.post(url, data=form, headers={"X-CSRF-Token": token + "x"})
        assert wrong_header.status_code == 403, route.path
    assert snapshot(db) == before
    # The genuine token still works afterwards.
    ok = client.post(f"/users/{target}/active", data={"active": "no", "csrf_token": token})
    assert ok.status_code == 303


def test_security_headers_on_every_page(app: FastAPI, client: TestClient, target: int) -> None:
    gets = [route for method, route in routes(app) if method == "GET"]
    for route in gets:
        response = client.get(url_of(route, target))
        assert response.status_code < 500, route.path
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value, (route.path, name)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert response.headers["cache-control"] == "no-store", route.path
    login = TestClient(app).get("/login")
    assert login.headers["x-frame-options"] == "DENY"
    static = client.get("/static/htmx.min.js")
    assert static.headers["x-content-type-options"] == "nosniff"
    assert static.headers.get("cache-control") != "no-store"  # static files may be cached


def test_no_inline_script_or_style_in_any_page(
    app: FastAPI, client: TestClient, target: int
) -> None:
    for method, route in routes(app):
        if method != "GET":
            continue
        html = client.get(url_of(route, target)).text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), route.path
        assert " style=" not in html and "<style" not in html, route.path
        assert not re.search(r"\shx-on[:-]", html), route.path


def test_session_cookie_flags(app: FastAPI, admin_id: int) -> None:
    for base_url, secure in (("http://testserver", False), ("https://testserver", True)):
        with TestClient(app, base_url=base_url, follow_redirects=False) as client:
            token = csrf_from(client.get("/login").text)
            response = client.post(
                "/login",
                data={
                    "email": ADMIN_EMAIL,
                    "password": PASSWORD,
                    "csrf_token": token,
                },
            )
            cookie = response.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=lax" in cookie
            assert ("secure" in cookie) is secure, base_url
