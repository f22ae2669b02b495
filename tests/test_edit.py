"""Editing a user: the form, saving, conflicts, password, activation, deletion, escaping."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from html import unescape
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import Engine, Update, text, update

from tests.factories import (
    HTMX,
    PASSWORD,
    fetch_user,
    fetch_users_by_email,
    field_error,
    flash_texts,
    input_value,
    insert_user,
    is_checked,
    path_of,
    template_name,
    user_form,
    verifies,
)
from webapp.models import User

DUPLICATE_EMAIL = "Another user already has this email address."
LONG_AGO = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
NEW_PASSWORD = "a brand new secret"
SCRIPT = "<script>alert(1)</script>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored in UTC); PostgreSQL aware ones."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def open_form(client: TestClient, user_id: int) -> dict[str, str]:
    """GET the edit page and return what a browser would post back unchanged."""
    page = client.get(f"/users/{user_id}")
    assert page.status_code == 200
    form: dict[str, str] = {}
    for name in ("first_name", "last_name", "email", "version"):
        value = input_value(page.text, name)
        assert value is not None, name
        form[name] = value
    for box in ("is_active", "is_admin"):
        if is_checked(page.text, box):
            form[box] = "yes"
    return form


def bump(user_id: int, **values: Any) -> Update:
    """An UPDATE as another process would write it: new values, next version, new time."""
    return (
        update(User)
        .where(User.id == user_id)
        .values(version=User.version + 1, updated_at=datetime.now(UTC), **values)
    )


def change_row(db: Engine, user_id: int, **values: Any) -> None:
    """Change a row behind the app's back (committed at once)."""
    with db.begin() as conn:
        conn.execute(bump(user_id, **values))


@contextmanager
def row_held_by_another_writer(db: Engine, user_id: int, **values: Any) -> Iterator[None]:
    """Another transaction changes the row and holds it (uncommitted) for the ``with`` block.

    It commits on the way out, while a request the block started may be waiting for it:
    on PostgreSQL that request read the row before and its write now finds it changed.
    """
    with db.connect() as conn, conn.begin():
        changed = conn.execute(bump(user_id, **values))
        if changed.rowcount != 1:
            raise RuntimeError(f"user {user_id} is not there to hold")
        yield


def in_background(request: Callable[[], Response]) -> Callable[[], Response]:
    """Start ``request`` in a thread; the returned function waits for its response."""
    answers: list[Response] = []
    thread = threading.Thread(target=lambda: answers.append(request()), daemon=True)
    thread.start()

    def result() -> Response:
        thread.join(timeout=30)
        if not answers:
            raise RuntimeError("the request did not finish")
        return answers[0]

    return result


def wait_until_blocked(db: Engine) -> None:
    """PostgreSQL: wait until one of this app's connections waits for a row lock.

    SQLite takes the write lock before the first read (BEGIN IMMEDIATE), so there the
    request simply queues behind the other writer; a short pause lets it get that far.
    """
    if db.dialect.name != "postgresql":
        time.sleep(0.3)
        return
    # The app names its connections after its process (webapp/db.py): this process here.
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = :name AND wait_event_type = 'Lock'"
    ).bindparams(name=f"webapp:{os.getpid()}")
    deadline = time.monotonic() + 10
    while True:
        # One transaction per look: pg_stat_activity is a snapshot for a whole transaction.
        with db.connect() as conn:
            if conn.execute(query).scalar_one():
                return
        if time.monotonic() > deadline:
            raise RuntimeError("the request never waited for the row")
        time.sleep(0.02)


def conflict_panel(html: str) -> str | None:
    match = re.search(r'<div class="conflict" role="alert">(.*?)</div>', html, re.S)
    return unescape(match.group(1)) if match else None


def result_count(html: str) -> str:
    match = re.search(r'<p class="result-count">(.*?)</p>', html, re.S)
    assert match is not None
    return " ".join(match.group(1).split())


# --- The edit page -----------------------------------------------------------------------


def test_edit_page_shows_the_stored_values_and_version(client: TestClient, db: Engine) -> None:
    user_id = insert_user(
        db,
        first_name="Grace",
        last_name="Hopper",
        email="Grace@Navy.example",
        is_active=False,
        is_admin=True,
        version=7,
    )
    response = client.get(f"/users/{user_id}")
    assert response.status_code == 200
    assert template_name(response) == "users/edit.html"
    html = response.text
    assert input_value(html, "first_name") == "Grace"
    assert input_value(html, "last_name") == "Hopper"
    assert input_value(html, "email") == "Grace@Navy.example"
    assert '<input type="hidden" name="version" value="7">' in html
    assert not is_checked(html, "is_active") and is_checked(html, "is_admin")
    assert 'id="password-form"' in html
    assert "$2b$" not in html


@pytest.mark.parametrize("path", ["/users/{missing}", "/users/abc", "/users/1.5"])
def test_unknown_or_malformed_id_is_a_404_page(client: TestClient, db: Engine, path: str) -> None:
    missing = insert_user(db) + 1000
    response = client.get(path.format(missing=missing))
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert template_name(response) == "error.html"
    assert "<html" in response.text and "Not Found" in response.text


@pytest.mark.parametrize("path", ["/users/{missing}", "/users/abc"])
def test_a_404_is_json_for_json_clients(client: TestClient, db: Engine, path: str) -> None:
    missing = insert_user(db) + 1000
    response = client.get(path.format(missing=missing), headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"status", "title", "detail"}
    assert body["status"] == 404 and body["title"] == "Not Found"
    assert isinstance(body["detail"], str) and body["detail"]


def test_a_404_for_htmx_is_a_notice_in_the_flash_region(client: TestClient) -> None:
    response = client.get("/users/999999", headers=HTMX)
    assert response.status_code == 404
    assert template_name(response) == "_error_notice.html"
    assert "<html" not in response.text
    assert response.headers["HX-Retarget"] == "#flashes"


# --- Saving ------------------------------------------------------------------------------


def test_successful_edit(client: TestClient, db: Engine) -> None:
    user_id = insert_user(db, version=4, created_at=LONG_AGO, updated_at=LONG_AGO)
    before = fetch_user(db, user_id)
    form = open_form(client, user_id)
    assert form["version"] == "4"
    form.update(first_name=" Ada ", last_name="Lovelace", email="ada@engine.example")
    form.pop("is_active")  # untick
    form["is_admin"] = "yes"

    response = client.post(f"/users/{user_id}", data=form)

    assert response.status_code == 303
    assert path_of(response.headers["location"]) == f"/users/{user_id}"
    row = fetch_user(db, user_id)
    assert (row.first_name, row.last_name, row.email) == ("Ada", "Lovelace", "ada@engine.example")
    assert (row.is_active, row.is_admin) == (False, True)
    assert row.version == 5
    assert as_utc(row.updated_at) > LONG_AGO
    assert as_utc(row.created_at) == LONG_AGO
    assert row.password_hash == before.password_hash
    page = client.get(response.headers["location"])
    assert "Saved Ada Lovelace." in flash_texts(page.text)
    assert input_value(page.text, "version") == "5"


def test_successful_edit_with_htmx_redirects_the_whole_page(client: TestClient, db: Engine) -> None:
    user_id = insert_user(db)
    form = open_form(client, user_id) | {"last_name": "Viahtmx"}
    response = client.post(f"/users/{user_id}", data=form, headers=HTMX)
    assert response.status_code == 204
    assert path_of(response.headers["HX-Redirect"]) == f"/users/{user_id}"
    assert fetch_user(db, user_id).last_name == "Viahtmx"


def test_changing_only_the_letter_case_of_the_own_email_is_fine(
    client: TestClient, db: Engine
) -> None:
    user_id = insert_user(db, email="grace@navy.example")
    form = open_form(client, user_id) | {"email": "GRACE@navy.example"}
    assert client.post(f"/users/{user_id}", data=form).status_code == 303
    assert fetch_user(db, user_id).email == "GRACE@navy.example"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        pytest.param("first_name", "  ", "Required.", id="first-blank"),
        pytest.param("last_name", "x" * 101, "At most 100 characters", id="last-101"),
        pytest.param("last_name", "Bell\x07", "control characters", id="last-bel"),
        pytest.param("email", "a@b", "period", id="email-no-dot"),
        pytest.param("email", "", "Required.", id="email-blank"),
    ],
)
@pytest.mark.parametrize("headers", [{}, HTMX], ids=["page", "htmx"])
def test_invalid_edit_keeps_the_values_and_changes_nothing(
    client: TestClient,
    db: Engine,
    field: str,
    value: str,
    message: str,
    headers: dict[str, str],
) -> None:
    user_id = insert_user(db, first_name="Grace", last_name="Hopper", updated_at=LONG_AGO)
    before = fetch_user(db, user_id)
    form = open_form(client, user_id) | {"first_name": "Typed", "last_name": "Typed2"}
    form[field] = value

    response = client.post(f"/users/{user_id}", data=form, headers=headers)

    assert response.status_code == 422
    expected = "users/_edit_form.html" if headers else "users/edit.html"
    assert template_name(response) == expected
    assert ("<html" in response.text) is not bool(headers)
    error = field_error(response.text, field)
    assert error is not None and message in error, error
    for name in ("first_name", "last_name", "email", "version"):
        assert input_value(response.text, name) == form[name], name
    assert conflict_panel(response.text) is None
    assert fetch_user(db, user_id) == before


def test_edit_with_a_mangled_version_is_refused(client: TestClient, db: Engine) -> None:
    user_id = insert_user(db)
    before = fetch_user(db, user_id)
    form = open_form(client, user_id) | {"first_name": "Changed", "version": "abc"}
    response = client.post(f"/users/{user_id}", data=form)
    assert response.status_code == 422
    assert "The form was incomplete; reload the page and try again." in response.text
    assert "marked below" not in response.text  # no field of the form is marked
    assert fetch_user(db, user_id) == before


def test_email_of_another_user_in_another_case_is_refused(client: TestClient, db: Engine) -> None:
    other = insert_user(db, email="Taken@Example.com")
    user_id = insert_user(db, first_name="Grace", email="grace@example.com")
    before = fetch_user(db, user_id), fetch_user(db, other)
    form = open_form(client, user_id) | {"first_name": "Typed", "email": "taken@EXAMPLE.com"}

    response = client.post(f"/users/{user_id}", data=form)

    assert response.status_code == 422
    assert field_error(response.text, "email") == DUPLICATE_EMAIL
    assert input_value(response.text, "email") == "taken@EXAMPLE.com"
    assert input_value(response.text, "first_name") == "Typed"
    assert input_value(response.text, "version") == form["version"]
    assert (fetch_user(db, user_id), fetch_user(db, other)) == before
    # The same form, fixed, saves: the refusal left nothing half-done.
    fixed = form | {"email": "grace.typed@example.com"}
    assert client.post(f"/users/{user_id}", data=fixed).status_code == 303
    assert fetch_user(db, user_id).email == "grace.typed@example.com"


def test_editing_a_deleted_user_is_a_404(client: TestClient, db: Engine) -> None:
    user_id = insert_user(db)
    form = open_form(client, user_id)
    assert client.post(f"/users/{user_id}/delete").status_code == 303
    response = client.post(f"/users/{user_id}", data=form)
    assert response.status_code == 404
    assert "deleted" in response.text
    assert fetch_user(db, user_id) is None


# --- Conflicts ---------------------------------------------------------------------------


def _change_directly(client: TestClient, db: Engine, user_id: int) -> None:
    change_row(db, user_id, first_name="Theirs", email="theirs@example.com", is_admin=True)


def _change_by_another_post(client: TestClient, db: Engine, user_id: int) -> None:
    form = open_form(client, user_id)
    form |= {"first_name": "Theirs", "email": "theirs@example.com", "is_admin": "yes"}
    assert client.post(f"/users/{user_id}", data=form).status_code == 303


@pytest.mark.parametrize("change", [_change_directly, _change_by_another_post])
@pytest.mark.parametrize("headers", [{}, HTMX], ids=["page", "htmx"])
def test_a_stale_form_is_refused_then_can_overwrite_on_purpose(
    client: TestClient, db: Engine, change: Any, headers: dict[str, str]
) -> None:
    user_id = insert_user(db, first_name="Original", last_name="Hopper", version=3)
    mine = open_form(client, user_id)
    assert mine["version"] == "3"
    change(client, db, user_id)
    theirs = fetch_user(db, user_id)
    assert theirs.version == 4

    mine |= {"first_name": "Mine", "last_name": "Typed"}
    response = client.post(f"/users/{user_id}", data=mine, headers=headers)

    assert response.status_code == 409
    expected = "users/_edit_form.html" if headers else "users/edit.html"
    assert template_name(response) == expected
    panel = conflict_panel(response.text)
    assert panel is not None
    assert "Theirs Hopper" in panel and "theirs@example.com" in panel and "Admin" in panel
    assert "Mine" not in panel
    # What I typed is still in the form, now armed with the current version.
    assert input_value(response.text, "first_name") == "Mine"
    assert input_value(response.text, "last_name") == "Typed"
    assert input_value(response.text, "email") == mine["email"]
    assert input_value(response.text, "version") == "4"
    assert fetch_user(db, user_id) == theirs  # their change is intact

    again = mine | {"version": input_value(response.text, "version") or ""}
    overwrite = client.post(f"/users/{user_id}", data=again, headers=headers)

    assert overwrite.status_code == (204 if headers else 303)
    row = fetch_user(db, user_id)
    assert (row.first_name, row.last_name, row.email) == ("Mine", "Typed", mine["email"])
    assert row.is_admin is False
    assert row.version == 5


def test_a_conflict_form_is_itself_stale_if_the_row_moves_again(
    client: TestClient, db: Engine
) -> None:
    user_id = insert_user(db)
    mine = open_form(client, user_id) | {"first_name": "Mine"}
    change_row(db, user_id, first_name="Second")
    first = client.post(f"/users/{user_id}", data=mine)
    assert first.status_code == 409
    change_row(db, user_id, first_name="Third")
    again = mine | {"version": input_value(first.text, "version") or ""}
    second = client.post(f"/users/{user_id}", data=again)
    assert second.status_code == 409
    assert "Third" in (conflict_panel(second.text) or "")
    assert fetch_user(db, user_id).first_name == "Third"


def test_an_edit_racing_another_writer_is_a_conflict(client: TestClient, db: Engine) -> None:
    """The other writer commits between the app's read and its write (PostgreSQL), or just
    before the app's read (SQLite): either way a 409 with the stored values, nothing lost."""
    user_id = insert_user(db, first_name="Original")
    mine = open_form(client, user_id) | {"first_name": "Mine"}
    with row_held_by_another_writer(db, user_id, first_name="Theirs"):
        response = in_background(lambda: client.post(f"/users/{user_id}", data=mine))
        wait_until_blocked(db)
    answer = response()

    assert answer.status_code == 409
    assert "Theirs" in (conflict_panel(answer.text) or "")
    assert input_value(answer.text, "first_name") == "Mine"
    assert input_value(answer.text, "version") == "2"
    row = fetch_user(db, user_id)
    assert (row.first_name, row.version) == ("Theirs", 2)


# --- Password ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        pytest.param(
            {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD + "?"},
            "password_confirm",
            "do not match",
            id="mismatch",
        ),
        pytest.param(
            {"password": "short", "password_confirm": "short"},
            "password",
            "At least 8 characters",
            id="too-short",
        ),
        pytest.param(
            {"password": "€" * 25, "password_confirm": "€" * 25},
            "password",
            "bytes",
            id="too-many-bytes",
        ),
    ],
)
@pytest.mark.parametrize("headers", [{}, HTMX], ids=["page", "htmx"])
def test_invalid_new_password_changes_nothing(
    client: TestClient,
    db: Engine,
    form: dict[str, str],
    field: str,
    message: str,
    headers: dict[str, str],
) -> None:
    user_id = insert_user(db)
    before = fetch_user(db, user_id)

    response = client.post(f"/users/{user_id}/password", data=form, headers=headers)

    assert response.status_code == 422
    if headers:
        assert template_name(response) == "users/_password_form.html"
        assert response.text.lstrip().startswith('<form id="password-form"')
        assert "<html" not in response.text
    else:
        assert template_name(response) == "users/edit.html"
        assert "<html" in response.text
    error = field_error(response.text, field)
    assert error is not None and message in error, error
    for secret in set(form.values()):
        assert secret not in response.text
    assert "$2b$" not in response.text
    assert fetch_user(db, user_id) == before


def test_setting_a_password(client: TestClient, db: Engine) -> None:
    user_id = insert_user(db, first_name="Grace", last_name="Hopper")
    old_hash = fetch_user(db, user_id).password_hash
    assert verifies(PASSWORD, old_hash)

    form = {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}
    response = client.post(f"/users/{user_id}/password", data=form)

    assert response.status_code == 303
    assert path_of(response.headers["location"]) == f"/users/{user_id}"
    new_hash = fetch_user(db, user_id).password_hash
    assert new_hash != old_hash and new_hash.startswith("$2b$")
    assert verifies(NEW_PASSWORD, new_hash)
    assert not verifies(PASSWORD, new_hash)
    page = client.get(response.headers["location"])
    assert "Set a new password for Grace Hopper." in flash_texts(page.text)
    assert "$2b$" not in page.text and NEW_PASSWORD not in page.text


def test_setting_a_password_for_a_missing_user_is_a_404(client: TestClient) -> None:
    form = {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}
    assert client.post("/users/999999/password", data=form).status_code == 404


# --- Activate / deactivate ---------------------------------------------------------------


def test_deactivate_redirects_to_next(client: TestClient, db: Engine) -> None:
    user_id = insert_user(db, first_name="Grace", last_name="Hopper", is_active=True)
    response = client.post(f"/users/{user_id}/active", data={"active": "no", "next": "/users?q=x"})
    assert response.status_code == 303
    assert response.headers["location"] == "/users?q=x"
    assert fetch_user(db, user_id).is_active is False
    page = client.get("/users")
    assert "Deactivated Grace Hopper." in flash_texts(page.text)


@pytest.mark.parametrize(
    ("initially", "active", "shown", "button"),
    [(True, "no", "Inactive", "Activate"), (False, "yes", "Active", "Deactivate")],
    ids=["deactivate", "activate"],
)
def test_toggling_active_with_htmx_answers_the_row(
    client: TestClient, db: Engine, initially: bool, active: str, shown: str, button: str
) -> None:
    user_id = insert_user(db, first_name="Grace", last_name="Hopper", is_active=initially)
    form = {"active": active, "next": "/users?q=x"}
    response = client.post(f"/users/{user_id}/active", data=form, headers=HTMX)

    assert response.status_code == 200
    assert template_name(response) == "users/_row.html"
    assert "<html" not in response.text
    assert response.text.lstrip().startswith(f'<tr id="user-{user_id}"')
    assert f'<span class="badge {"ok" if shown == "Active" else "muted"}">{shown}</span>' in (
        response.text
    )
    assert f">{button}</button>" in response.text
    assert 'name="next" value="/users?q=x"' in response.text
    assert fetch_user(db, user_id).is_active is (active == "yes")


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example/",
        "//evil.example",
        "///evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "/\t/evil.example",
        "",
    ],
)
def test_an_off_site_next_is_ignored(client: TestClient, db: Engine, next_url: str) -> None:
    user_id = insert_user(db, is_active=True)
    response = client.post(f"/users/{user_id}/active", data={"active": "no", "next": next_url})
    assert response.status_code == 303
    assert response.headers["location"] == "/users"
    assert fetch_user(db, user_id).is_active is False


# --- Delete ------------------------------------------------------------------------------


def test_delete_asks_first_and_changes_nothing(client: TestClient, db: Engine) -> None:
    user_id = insert_user(db, first_name="Grace", last_name="Hopper", email="g@navy.example")
    before = fetch_user(db, user_id)
    response = client.get(f"/users/{user_id}/delete", params={"next": "/users?q=gr"})
    assert response.status_code == 200
    assert template_name(response) == "users/delete.html"
    assert "Delete Grace Hopper?" in response.text and "g@navy.example" in response.text
    actions = re.findall(r'<form method="post" action="([^"]*)"', response.text)
    paths = [path_of(unescape(url)) for url in actions]
    assert paths == ["/logout", f"/users/{user_id}/delete"]  # the sign-out form, then this
    assert input_value(response.text, "next") == "/users?q=gr"
    assert fetch_user(db, user_id) == before


def test_delete_confirmation_of_a_missing_user_is_a_404(client: TestClient) -> None:
    assert client.get("/users/999999/delete").status_code == 404


def test_delete_removes_the_row_and_redirects(client: TestClient, db: Engine) -> None:
    user_id = insert_user(db, first_name="Grace", last_name="Hopper")
    keep = insert_user(db)
    response = client.post(f"/users/{user_id}/delete", data={"next": "/users?q=hop"})
    assert response.status_code == 303
    assert response.headers["location"] == "/users?q=hop"
    assert fetch_user(db, user_id) is None
    assert fetch_user(db, keep) is not None
    page = client.get("/users")
    assert "Deleted Grace Hopper." in flash_texts(page.text)
    assert f'id="user-{user_id}"' not in page.text


def test_delete_with_htmx_answers_the_refreshed_table(client: TestClient, db: Engine) -> None:
    gone = insert_user(db)
    kept = [insert_user(db), insert_user(db)]
    # Three users and the signed-in admin.
    assert result_count(client.get("/users", headers=HTMX).text) == "4 users"

    response = client.post(f"/users/{gone}/delete", data={"next": "/users"}, headers=HTMX)

    assert response.status_code == 200
    assert template_name(response) == "users/_table.html"
    assert "<html" not in response.text
    assert response.text.lstrip().startswith('<section id="user-table"')
    assert result_count(response.text) == "3 users"
    assert f'id="user-{gone}"' not in response.text
    assert all(f'id="user-{uid}"' in response.text for uid in kept)
    assert any(text.startswith("Deleted") for text in flash_texts(response.text))
    assert fetch_user(db, gone) is None


def test_delete_with_htmx_keeps_the_search_of_next(client: TestClient, db: Engine) -> None:
    gone = insert_user(db, last_name="Findme1")
    kept = insert_user(db, last_name="Findme2")
    other = insert_user(db, last_name="Elsewhere")
    response = client.post(f"/users/{gone}/delete", data={"next": "/users?q=findme"}, headers=HTMX)
    assert result_count(response.text) == "1 user matches your search"
    assert f'id="user-{kept}"' in response.text and f'id="user-{other}"' not in response.text


@pytest.mark.parametrize("headers", [{}, HTMX], ids=["page", "htmx"])
def test_deleting_an_already_deleted_user_is_not_an_error(
    client: TestClient, db: Engine, headers: dict[str, str]
) -> None:
    user_id = insert_user(db)
    keep = insert_user(db)
    assert client.post(f"/users/{user_id}/delete").status_code == 303
    client.get("/users")  # shows (and so clears) the "Deleted" flash

    response = client.post(f"/users/{user_id}/delete", headers=headers)

    if headers:
        assert response.status_code == 200
        assert template_name(response) == "users/_table.html"
        texts = flash_texts(response.text)
    else:
        assert response.status_code == 303
        assert path_of(response.headers["location"]) == "/users"
        texts = flash_texts(client.get(response.headers["location"]).text)
    assert texts == ["That user was already deleted."]
    assert fetch_user(db, keep) is not None


def test_a_delete_racing_an_edit_does_not_claim_the_user_is_gone(
    client: TestClient, db: Engine, requires_postgres: None
) -> None:
    """PostgreSQL only: the app reads version 1, the other writer commits version 2 while
    the DELETE waits for the row, so the DELETE matches nothing. The user still exists."""
    user_id = insert_user(db, first_name="Grace", last_name="Hopper")
    with row_held_by_another_writer(db, user_id, first_name="Renamed"):
        response = in_background(
            lambda: client.post(f"/users/{user_id}/delete", data={"next": "/users"}, headers=HTMX)
        )
        wait_until_blocked(db)
    answer = response()

    row = fetch_user(db, user_id)
    assert row is not None and row.first_name == "Renamed"  # not deleted: it changed
    assert f'id="user-{user_id}"' in answer.text  # the refreshed table still lists it
    flashes = flash_texts(answer.text)
    assert not any("already deleted" in text for text in flashes), flashes


# --- Escaping ----------------------------------------------------------------------------


def test_markup_in_a_name_is_escaped_everywhere(client: TestClient, db: Engine) -> None:
    user_id = insert_user(db, first_name=SCRIPT, last_name="Hopper")
    pages = {
        "list": client.get("/users"),
        "list fragment": client.get("/users", headers=HTMX),
        "edit": client.get(f"/users/{user_id}"),
        "delete": client.get(f"/users/{user_id}/delete"),
        "row": client.post(f"/users/{user_id}/active", data={"active": "no"}, headers=HTMX),
    }
    for name, page in pages.items():
        assert page.status_code == 200, name
        assert SCRIPT not in page.text, name
        assert ESCAPED_SCRIPT in page.text, name
    assert input_value(pages["edit"].text, "first_name") == SCRIPT  # the value round-trips


def test_markup_typed_into_the_create_form_is_stored_as_typed_and_escaped(
    client: TestClient, db: Engine
) -> None:
    response = client.post("/users", data=user_form(first_name=SCRIPT, email="xss@example.com"))
    assert response.status_code == 303
    listing = client.get(response.headers["location"])
    assert SCRIPT not in listing.text and ESCAPED_SCRIPT in listing.text
    assert any(text.startswith(f"Created {SCRIPT}") for text in flash_texts(listing.text))
    [row] = fetch_users_by_email(db, "xss@example.com")
    assert row.first_name == SCRIPT
    assert f'id="user-{row.id}"' in listing.text
