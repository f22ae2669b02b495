"""Hostile input, property-based (hypothesis), against the in-process app on the suite's
database: never a 500, a refusal changes nothing, every error is shown, a body too large
gets a 413, and search wildcards match literally."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, func, select

from tests.factories import csrf_from, insert_user
from tests.faults.figures import Figures
from webapp.forms import (
    PasswordChange,
    PasswordSet,
    TokenCreate,
    UserCreate,
    UserUpdate,
    parse_form,
)
from webapp.models import ApiToken, User

pytestmark = pytest.mark.faults

EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,  # no .hypothesis folder in the checkout; every run explores afresh
)
ODDITIES = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x07\x1b[31m",
    "\r\n",
    "\u202eevil",
    "\ufeff",
    "\u200b",
    "ﬀ",
    "İ",
    "ß",
    "👩‍💻",
    "%",
    "_",
    "\\",
    "%_\\",
    "' OR 1=1 --",
    "<script>x</script>",
    "{{7*7}}",
    "-1",
    "0",
    "1",
    "2",
    "99999999999999999999",
    "1e3",
    "yes",
    "no",
    "true",
    "on",
    "null",
    "a@b.c",
    "ada@example.com",
    "x@example.com\x00",
    "password1",
    "correct horse battery",
]
text_values = st.one_of(
    st.sampled_from(ODDITIES),
    st.text(max_size=40),
    st.integers(min_value=73, max_value=20_000).map(lambda n: "x" * n),  # past every limit
)
CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=latin-1",
    "multipart/form-data; boundary=nope",
    "application/json",
    "text/plain",
]
USER_FIELDS = [
    "first_name",
    "last_name",
    "email",
    "password",
    "password_confirm",
    "is_active",
    "is_admin",
    "version",
    "current_password",
    "must_change",
    "active",
    "next",
    "junk",
]


def form_pairs(fields: list[str]) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Any of the fields, missing or repeated (duplicated fields), with odd values."""
    return st.lists(st.tuples(st.sampled_from(fields), text_values), max_size=12)


def _post(
    client: TestClient,
    figures: Figures,
    path: str,
    pairs: list[tuple[str, str]],
    content_type: str = CONTENT_TYPES[0],
) -> Any:
    body = urlencode(pairs).encode() if "json" not in content_type else b'{"email": 1}'
    response = client.post(path, content=body, headers={"content-type": content_type})
    figures.answer(response.status_code)
    return response


def _rows(db: Engine) -> list[Any]:
    with db.connect() as conn:
        return list(conn.execute(select(User.__table__).order_by(User.id)).all())


# A hidden field's error has no place beside it: the form says what to do instead.
HIDDEN_FIELD_MESSAGES = {"version": "The form was incomplete; reload the page and try again."}


def _shown(response: Any, messages: dict[str, str]) -> None:
    for field, message in messages.items():
        message = HIDDEN_FIELD_MESSAGES.get(field, message)
        assert html.escape(message) in response.text, (field, message)


def _expected_errors(model: Any, pairs: list[tuple[str, str]], content_type: str) -> dict[str, str]:
    if not content_type.startswith("application/x-www-form-urlencoded"):
        pairs = []  # the body is not a form the console reads: every field is missing
    return parse_form(model, dict(pairs))[1]


@given(pairs=form_pairs(USER_FIELDS), content_type=st.sampled_from(CONTENT_TYPES))
@EXAMPLES
def test_create_form(
    client: TestClient,
    db: Engine,
    figures: Figures,
    pairs: list[tuple[str, str]],
    content_type: str,
) -> None:
    before = _rows(db)
    response = _post(client, figures, "/users", pairs, content_type)
    assert response.status_code in (303, 400, 422), response.status_code
    after = _rows(db)
    figures.rows_checked += len(after)
    if response.status_code == 303:
        assert len(after) == len(before) + 1
        return
    assert after == before
    if response.status_code == 422:
        errors = _expected_errors(UserCreate, pairs, content_type)
        _shown(response, errors or {"email": "Another user already has this email address."})


@given(pairs=form_pairs(USER_FIELDS), content_type=st.sampled_from(CONTENT_TYPES))
@EXAMPLES
def test_edit_form(
    client: TestClient,
    db: Engine,
    figures: Figures,
    pairs: list[tuple[str, str]],
    content_type: str,
) -> None:
    user_id = insert_user(db)
    before = _rows(db)
    response = _post(client, figures, f"/users/{user_id}", pairs, content_type)
    assert response.status_code in (303, 400, 409, 422), response.status_code
    after = _rows(db)
    figures.rows_checked += len(after)
    if response.status_code != 303:
        assert after == before
    if response.status_code == 422:
        _shown(response, _expected_errors(UserUpdate, pairs, content_type))


@given(pairs=form_pairs(USER_FIELDS), content_type=st.sampled_from(CONTENT_TYPES))
@EXAMPLES
def test_password_form(
    client: TestClient,
    db: Engine,
    figures: Figures,
    pairs: list[tuple[str, str]],
    content_type: str,
) -> None:
    user_id = insert_user(db)
    before = _rows(db)
    response = _post(client, figures, f"/users/{user_id}/password", pairs, content_type)
    assert response.status_code in (303, 400, 422), response.status_code
    after = _rows(db)
    figures.rows_checked += len(after)
    if response.status_code != 303:
        assert after == before
    if response.status_code == 422:
        _shown(response, _expected_errors(PasswordSet, pairs, content_type))


@given(pairs=form_pairs(USER_FIELDS), action=st.sampled_from(["active", "delete"]))
@EXAMPLES
def test_row_actions(
    client: TestClient, db: Engine, figures: Figures, pairs: list[tuple[str, str]], action: str
) -> None:
    user_id = insert_user(db)
    response = _post(client, figures, f"/users/{user_id}/{action}", pairs)
    assert response.status_code == 303, response.status_code
    location = response.headers["location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\")), location


@given(pairs=form_pairs(["email", "password", "csrf_token", "next", "junk"]))
@EXAMPLES
def test_sign_in_form(
    anon_client: TestClient,
    admin_id: int,
    db: Engine,
    figures: Figures,
    pairs: list[tuple[str, str]],
) -> None:
    before = _rows(db)
    response = _post(anon_client, figures, "/login", pairs)
    assert response.status_code < 500, response.status_code
    assert _rows(db) == before  # a refused sign-in changes no user


def _tokens(db: Engine) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ApiToken)).scalar_one())


@given(
    pairs=form_pairs(["current_password", "password", "password_confirm", "junk"]),
    content_type=st.sampled_from(CONTENT_TYPES),
)
@EXAMPLES
def test_own_password_form(
    client: TestClient,
    db: Engine,
    figures: Figures,
    pairs: list[tuple[str, str]],
    content_type: str,
) -> None:
    before = _rows(db)
    response = _post(client, figures, "/account/password", pairs, content_type)
    assert response.status_code in (303, 400, 422), response.status_code
    if response.status_code != 303:
        assert _rows(db) == before
    if response.status_code == 422:
        errors = _expected_errors(PasswordChange, pairs, content_type)
        if errors:
            _shown(response, errors)
        else:  # the form was well made; the current password was wrong, or reused
            assert (
                "This is not your current password." in response.text
                or "different from the current one" in response.text
            )


@given(
    pairs=form_pairs(["name", "expires_in_days", "junk"]),
    content_type=st.sampled_from(CONTENT_TYPES),
)
@EXAMPLES
def test_token_form(
    client: TestClient,
    db: Engine,
    figures: Figures,
    pairs: list[tuple[str, str]],
    content_type: str,
) -> None:
    before = _tokens(db)
    response = _post(client, figures, "/tokens", pairs, content_type)
    assert response.status_code in (201, 400, 422), response.status_code
    if response.status_code != 201:
        assert _tokens(db) == before
    if response.status_code == 422:
        _shown(response, _expected_errors(TokenCreate, pairs, content_type))


@given(pairs=form_pairs(USER_FIELDS), content_type=st.sampled_from(CONTENT_TYPES))
@EXAMPLES
def test_setup_form(
    anon_client: TestClient,
    db: Engine,
    figures: Figures,
    pairs: list[tuple[str, str]],
    content_type: str,
) -> None:
    """No admin yet: the one-time setup form takes the same odd input as the others."""
    with db.begin() as conn:
        conn.execute(delete(User))
    with_csrf_for_setup(anon_client)
    response = _post(anon_client, figures, "/setup", pairs, content_type)
    assert response.status_code in (303, 400, 422), response.status_code
    rows = _rows(db)
    if response.status_code == 303:
        assert len(rows) == 1 and rows[0].is_admin
    else:
        assert rows == []
    if response.status_code == 422:
        form = {**dict(pairs), "is_active": "yes", "is_admin": "yes"}
        if not content_type.startswith("application/x-www-form-urlencoded"):
            form = {"is_active": "yes", "is_admin": "yes"}
        _shown(response, parse_form(UserCreate, form)[1])


def with_csrf_for_setup(client: TestClient) -> None:
    """The setup page hands out the session's CSRF token while no admin exists."""
    page = client.get("/setup")
    assert page.status_code == 200, page.status_code
    client.headers["X-CSRF-Token"] = csrf_from(page.text)


# Long, but the whole URL stays under the 64 KiB an HTTP client will send.
query_values = st.one_of(
    st.sampled_from(ODDITIES),
    st.text(max_size=40),
    st.integers(min_value=201, max_value=4000).map(lambda n: "x" * n),
)
QUERY_KEYS = [
    "q",
    "sort",
    "active",
    "admin",
    "page",
    "cursor",
    "per_page",
    "action",
    "actor",
    "target",
    "next",
    "junk",
]


@given(
    params=st.lists(st.tuples(st.sampled_from(QUERY_KEYS), query_values), max_size=8),
    path=st.sampled_from(
        [
            "/users",
            "/audit",
            "/users/new",
            "/users/1/delete",
            "/login",
            "/users/0",
            "/users/-1",
            "/users/99999999999999999999",
            "/users/%00",
            "/health",
        ]
    ),
)
@EXAMPLES
def test_query_parameters(
    client: TestClient, figures: Figures, params: list[tuple[str, str]], path: str
) -> None:
    response = client.get(f"{path}?{urlencode(params)}")
    figures.answer(response.status_code)
    assert response.status_code in (200, 400, 404, 422), response.status_code


def test_bodies_over_the_limit_get_413_and_change_nothing(
    client: TestClient, db: Engine, figures: Figures
) -> None:
    limit = client.app.state.settings.max_body_bytes  # type: ignore[attr-defined]
    before = _rows(db)
    huge = {"first_name": "x" * limit, "last_name": "y", "email": "big@example.com"}
    declared = client.post("/users", data=huge)

    def chunks() -> Any:  # no Content-Length: refused as it grows
        yield b"first_name="
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    streamed = client.post(
        "/users", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    as_json = client.post("/users", data=huge, headers={"Accept": "application/json"})
    for response in (declared, streamed, as_json):
        figures.answer(response.status_code)
        assert response.status_code == 413
    assert "This request is too large" in declared.text and "Nothing was changed" in declared.text
    assert as_json.json()["status"] == 413
    assert _rows(db) == before
    assert client.app.state.engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


WILD = "ab%_\\ "


@given(
    names=st.lists(st.text(alphabet=WILD, min_size=1, max_size=6), min_size=1, max_size=8),
    q=st.text(alphabet=WILD, min_size=1, max_size=5),
)
@EXAMPLES
def test_search_wildcards_match_literally(
    client: TestClient, db: Engine, figures: Figures, names: list[str], q: str
) -> None:
    with db.begin() as conn:
        conn.execute(User.__table__.delete().where(User.email.like("w-%")))
    for n, name in enumerate(names):
        insert_user(db, first_name=name, last_name="Z", email=f"w-{n}-row@example.com")
    response = client.get("/users", params={"q": q})
    figures.answer(response.status_code)
    assert response.status_code == 200
    terms = q.split()
    shown = set(map(int, re.findall(r"w-(\d+)-row@", response.text)))
    expected = {
        n
        for n, name in enumerate(names)
        if all(
            any(t.lower() in f.lower() for f in (name, "Z", f"w-{n}-row@example.com"))
            for t in terms
        )
    }
    figures.rows_checked += len(names)
    assert shown == expected, (names, q)
