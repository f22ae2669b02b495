"""A form post that leaves fields out is checked as one that sends them empty.

A browser always sends a form's text fields; a script, a hand-made request or a form from
an older page may not. Every console form answers such a post with its "Required." errors
and changes nothing: no user with a blank name or email, no empty password stored.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from tests.factories import (
    ADMIN_EMAIL,
    HTMX,
    csrf_from,
    fetch_user,
    field_error,
    insert_user,
    is_checked,
    user_form,
)
from webapp.models import ApiToken, User


def _users(db: Engine) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(User)).scalar_one())


def test_a_create_without_its_fields_is_refused(client: TestClient, db: Engine) -> None:
    before = _users(db)
    response = client.post("/users", data={})
    assert response.status_code == 422
    for field in ("first_name", "last_name", "email", "password"):
        assert field_error(response.text, field) == "Required.", field
    # Names and email sent, the passwords left out: no user with an empty password.
    form = user_form()
    del form["password"], form["password_confirm"]
    response = client.post("/users", data=form)
    assert response.status_code == 422
    assert field_error(response.text, "password") == "Required."
    assert _users(db) == before


def test_an_edit_without_its_fields_changes_nothing(client: TestClient, db: Engine) -> None:
    user_id = insert_user(db, first_name="Kept", last_name="Intact")
    before = fetch_user(db, user_id)
    response = client.post(f"/users/{user_id}", data={"version": str(before.version)})
    assert response.status_code == 422
    for field in ("first_name", "last_name", "email"):
        assert field_error(response.text, field) == "Required.", field
    assert fetch_user(db, user_id) == before


def test_setting_a_password_without_one_changes_nothing(client: TestClient, db: Engine) -> None:
    user_id = insert_user(db)
    before = fetch_user(db, user_id)
    response = client.post(f"/users/{user_id}/password", data={})
    assert response.status_code == 422
    assert field_error(response.text, "password") == "Required."
    assert fetch_user(db, user_id).password_hash == before.password_hash


def test_changing_the_own_password_without_one_changes_nothing(
    client: TestClient, db: Engine, admin_id: int
) -> None:
    before = fetch_user(db, admin_id).password_hash
    response = client.post("/account/password", data={"current_password": "whatever-it-is"})
    assert response.status_code == 422
    assert field_error(response.text, "password") == "Required."
    assert fetch_user(db, admin_id).password_hash == before


def test_first_run_setup_without_its_fields_makes_no_admin(
    anon_client: TestClient, db: Engine
) -> None:
    token = csrf_from(anon_client.get("/setup").text)
    response = anon_client.post("/setup", data={"csrf_token": token})
    assert response.status_code == 422
    for field in ("first_name", "last_name", "email", "password"):
        assert field_error(response.text, field) == "Required.", field
    assert _users(db) == 0
    assert anon_client.get("/setup").status_code == 200  # still open for a real first admin


def test_a_token_without_a_name_is_refused(client: TestClient, db: Engine) -> None:
    response = client.post("/tokens", data={"expires_in_days": "30"})
    assert response.status_code == 422
    assert field_error(response.text, "name") == "Required."
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ApiToken)).scalar_one() == 0


def test_a_form_shown_again_ticks_only_the_boxes_that_were_ticked(
    client: TestClient, db: Engine
) -> None:
    """Re-shown after an error, a box sent as "no" (a script's way of saying unticked) is
    unticked: sending the form again must not make the user an admin."""
    form = user_form(email="not an email")
    form.update(is_active="no", is_admin="no")
    response = client.post("/users", data=form)
    assert response.status_code == 422
    assert not is_checked(response.text, "is_active")
    assert not is_checked(response.text, "is_admin")
    form.update(is_active="yes", is_admin="on")
    response = client.post("/users", data=form)
    assert is_checked(response.text, "is_active") and is_checked(response.text, "is_admin")
    with db.connect() as conn:
        emails = conn.execute(select(User.email)).scalars().all()
    assert emails == [ADMIN_EMAIL]


def test_a_form_not_sent_as_percent_encoded_utf8_is_refused(client: TestClient, db: Engine) -> None:
    """Raw bytes past ASCII (read as Latin-1 they would be stored as "JosÃ©") and escapes
    that are not UTF-8 (stored as U+FFFD) are a 400 that says so; nothing is stored. The
    same name percent-encoded, as a browser sends it, is stored as typed."""
    before = _users(db)
    fields = user_form(email="jose@example.com")
    del fields["first_name"]
    form = "&".join(f"{k}={quote(v)}" for k, v in fields.items())
    headers = {"content-type": "application/x-www-form-urlencoded"}
    for first_name in ("Jos\xc3\xa9".encode("latin-1"), b"Jos%FF", b"Jos%C3"):
        body = b"first_name=" + first_name + b"&" + form.encode()
        for extra in ({}, HTMX):
            response = client.post("/users", content=body, headers={**headers, **extra})
            assert response.status_code == 400, first_name
            assert "not percent-encoded UTF-8" in response.text
    assert _users(db) == before
    body = ("first_name=Jos%C3%A9&" + form).encode()
    assert client.post("/users", content=body, headers=headers).status_code == 303
    with db.connect() as conn:
        stored = conn.execute(select(User.first_name).where(User.email == "jose@example.com"))
        assert stored.scalar_one() == "José"


def test_activating_without_saying_which_changes_nothing(client: TestClient, db: Engine) -> None:
    """The buttons send active=yes or no; anything else (or nothing) is not taken as "no"."""
    user_id = insert_user(db, first_name="Still", last_name="Active", is_active=True)
    for data in ({}, {"active": "maybe"}, {"active": ""}):
        response = client.post(f"/users/{user_id}/active", data={**data, "next": "/users"})
        assert response.status_code == 303, data
        assert fetch_user(db, user_id).is_active is True, data
    page = client.get("/users")
    assert "Say whether to activate or deactivate: active=yes or no." in page.text


def test_a_value_of_the_wrong_kind_is_explained_in_words(client: TestClient) -> None:
    response = client.post("/users", data=user_form(is_admin="maybe"))
    assert response.status_code == 422
    assert "Ticked or not: send yes or no." in response.text
    assert "Input should be" not in response.text


def test_a_name_stored_before_a_rule_stays_editable(client: TestClient, db: Engine) -> None:
    """A name saved before today's rules (here: a direction control) is kept when an edit
    sends it back unchanged, in the console and through the API; a new such name is not."""
    legacy = "Ada\u202bLovelace"
    user_id = insert_user(db, first_name="Old", last_name=legacy)
    row = fetch_user(db, user_id)
    form = {
        "first_name": "Old",
        "last_name": legacy,
        "email": row.email,
        "version": str(row.version),
    }  # is_active left out: deactivated
    assert client.post(f"/users/{user_id}", data=form).status_code == 303
    after = fetch_user(db, user_id)
    assert (after.last_name, after.is_active) == (legacy, False)
    renamed = {**form, "version": str(after.version), "last_name": "New\u202eName"}
    response = client.post(f"/users/{user_id}", data=renamed)
    assert response.status_code == 422
    assert "reverse the text" in (field_error(response.text, "last_name") or "")
    assert fetch_user(db, user_id).last_name == legacy


def test_an_upper_case_form_type_is_checked_as_well(client: TestClient, db: Engine) -> None:
    before = _users(db)
    body = (
        b"first_name=Jos\xc3\xa9&"
        + "&".join(f"{k}={quote(v)}" for k, v in user_form().items() if k != "first_name").encode()
    )
    headers = {"content-type": "Application/X-WWW-Form-Urlencoded; charset=UTF-8"}
    response = client.post("/users", content=body, headers=headers)
    assert response.status_code == 400
    assert _users(db) == before
