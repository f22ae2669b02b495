"""A form post that leaves fields out is checked as one that sends them empty.

A browser always sends a form's text fields; a script, a hand-made request or a form from
an older page may not. Every console form answers such a post with its "Required." errors
and changes nothing: no user with a blank name or email, no empty password stored.
"""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from tests.factories import (
    ADMIN_EMAIL,
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
