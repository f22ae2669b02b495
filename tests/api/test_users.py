"""The API's user operations: the console's rules, presented as JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update

from tests.api.support import actions, audit_rows, field_errors, new_user, problem
from tests.factories import PASSWORD, fetch_user, insert_user, verifies
from webapp.forms import NAME_MAX
from webapp.models import User

SECRET_KEYS = {"password", "password_hash", "hash"}


def _no_secrets(body: Any) -> None:
    text = str(body)
    assert "$2b$" not in text
    items = body["items"] if isinstance(body, dict) and "items" in body else [body]
    for item in items:
        assert not SECRET_KEYS & set(item)


# --- Get --------------------------------------------------------------------------------


def test_get_a_user_with_its_etag(api: TestClient, db: Engine) -> None:
    user_id = insert_user(db, first_name="Grace", last_name="Hopper", email="grace@example.com")
    response = api.get(f"/api/v1/users/{user_id}")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == user_id and body["email"] == "grace@example.com"
    assert body["first_name"] == "Grace" and body["is_active"] is True
    assert response.headers["etag"] == f'"{body["version"]}"'
    assert body["created_at"].endswith("Z")  # always in UTC with its zone, on SQLite too
    _no_secrets(body)


def test_get_a_missing_user_is_a_404_problem(api: TestClient) -> None:
    body = problem(api.get("/api/v1/users/999999"), 404)
    assert body["type"] == "urn:webapp:problem:not-found"


def test_a_malformed_id_is_a_422_problem_naming_it(api: TestClient) -> None:
    body = problem(api.get("/api/v1/users/abc"), 422)
    assert body["errors"][0]["field"] == "user_id"
    assert body["errors"][0]["location"] == "path"


def test_unknown_paths_and_methods_are_problems(api: TestClient) -> None:
    problem(api.get("/api/v1/nothing"), 404)
    problem(api.put("/api/v1/users"), 405)


# --- Create -----------------------------------------------------------------------------


def test_create_a_user(api: TestClient, db: Engine, admin_id: int) -> None:
    response = api.post("/api/v1/users", json=new_user(email="Ada@Example.com"))
    assert response.status_code == 201, response.text
    body = response.json()
    _no_secrets(body)
    assert response.headers["location"] == f"/api/v1/users/{body['id']}"
    assert response.headers["etag"] == f'"{body["version"]}"'
    row = fetch_user(db, body["id"])
    assert row.email == "Ada@Example.com" and row.email_key == "ada@example.com"
    assert verifies("correct horse battery", row.password_hash)
    # The same audit trail as the console's, with the token's owner as the actor.
    (event,) = audit_rows(db)
    assert event.action == "user.create" and event.actor_id == admin_id
    assert event.target_id == body["id"]
    assert "password" not in str(event.changes)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("first_name", "   ", "Required."),
        ("last_name", "x" * (NAME_MAX + 1), f"At most {NAME_MAX} characters"),
        ("last_name", "bad\x07name", "control characters"),
        ("email", "not-an-email", "@"),
        ("password", "short", "At least 8 characters."),
        ("password", "é" * 40, "At most 72 bytes"),
    ],
)
def test_create_applies_the_console_rules_by_field(
    api: TestClient, db: Engine, field: str, value: str, message: str
) -> None:
    body = problem(api.post("/api/v1/users", json=new_user(**{field: value})), 422)
    assert body["type"] == "urn:webapp:problem:validation"
    assert message in field_errors(body)[field]
    assert actions(db) == []


def test_create_refuses_a_malformed_body(api: TestClient) -> None:
    missing = problem(api.post("/api/v1/users", json={"first_name": "Ada"}), 422)
    assert {"last_name", "email", "password"} <= set(field_errors(missing))
    extra = problem(api.post("/api/v1/users", json=new_user(role="root")), 422)
    assert "role" in field_errors(extra)
    wrong_type = problem(api.post("/api/v1/users", json=new_user(is_admin="maybe")), 422)
    assert "is_admin" in field_errors(wrong_type)
    not_json = api.post("/api/v1/users", content=b"{", headers={"content-type": "application/json"})
    problem(not_json, 422)
    problem(api.post("/api/v1/users", json=[1, 2]), 422)


def test_duplicate_email_whatever_the_case_is_a_409_naming_the_field(
    api: TestClient, db: Engine
) -> None:
    insert_user(db, email="ada@example.com")
    body = problem(api.post("/api/v1/users", json=new_user(email="ADA@example.COM")), 409)
    assert body["type"] == "urn:webapp:problem:duplicate-email"
    assert field_errors(body) == {"email": "Another user already has this email address."}


# --- Update -----------------------------------------------------------------------------


def _etag(api: TestClient, user_id: int) -> str:
    return api.get(f"/api/v1/users/{user_id}").headers["etag"]


def _fields(**overrides: Any) -> dict[str, Any]:
    body = {
        "first_name": "Grace",
        "last_name": "Hopper",
        "email": "grace@example.com",
        "is_active": True,
        "is_admin": False,
    }
    body.update(overrides)
    return body


def test_put_with_if_match(api: TestClient, db: Engine, admin_id: int) -> None:
    user_id = insert_user(db, email="grace@example.com", first_name="Grace", last_name="Hopper")
    tag = _etag(api, user_id)
    response = api.put(
        f"/api/v1/users/{user_id}", json=_fields(last_name="Brewster"), headers={"If-Match": tag}
    )
    assert response.status_code == 200, response.text
    assert response.json()["last_name"] == "Brewster"
    assert response.headers["etag"] != tag
    assert response.headers["etag"] == f'"{response.json()["version"]}"'
    (event,) = audit_rows(db)
    assert event.action == "user.update" and event.actor_id == admin_id
    assert event.changes == {"last_name": ["Hopper", "Brewster"]}
    # The old ETag is now stale: 412, with the current version, and nothing changes.
    stale = api.put(
        f"/api/v1/users/{user_id}", json=_fields(last_name="Other"), headers={"If-Match": tag}
    )
    body = problem(stale, 412)
    assert body["type"] == "urn:webapp:problem:precondition-failed"
    assert body["current_version"] == response.json()["version"]
    assert stale.headers["etag"] == response.headers["etag"]
    assert fetch_user(db, user_id).last_name == "Brewster"


@pytest.mark.parametrize("header", ['W/"1"', "garbage", '"999"'])
def test_a_weak_or_foreign_etag_never_matches(api: TestClient, db: Engine, header: str) -> None:
    user_id = insert_user(db, email="grace@example.com")
    response = api.put(f"/api/v1/users/{user_id}", json=_fields(), headers={"If-Match": header})
    problem(response, 412)


def test_if_match_star_and_lists(api: TestClient, db: Engine) -> None:
    user_id = insert_user(db, email="grace@example.com")
    star = api.put(f"/api/v1/users/{user_id}", json=_fields(), headers={"If-Match": "*"})
    assert star.status_code == 200
    listed = api.patch(
        f"/api/v1/users/{user_id}",
        json={"first_name": "G"},
        headers={"If-Match": f'"77", {star.headers["etag"]}'},
    )
    assert listed.status_code == 200


def test_put_with_a_stale_version_in_the_body_is_a_409(api: TestClient, db: Engine) -> None:
    user_id = insert_user(db, email="grace@example.com")
    with db.begin() as conn:  # someone else saved meanwhile
        conn.execute(update(User).where(User.id == user_id).values(version=2, first_name="X"))
    body = problem(api.put(f"/api/v1/users/{user_id}", json=_fields(version=1)), 409)
    assert body["type"] == "urn:webapp:problem:stale-version"
    assert body["current_version"] == 2
    ok = api.put(f"/api/v1/users/{user_id}", json=_fields(version=2))
    assert ok.status_code == 200 and ok.json()["version"] == 3


def test_an_update_without_a_version_is_refused_with_428(api: TestClient, db: Engine) -> None:
    user_id = insert_user(db, email="grace@example.com")
    body = problem(api.put(f"/api/v1/users/{user_id}", json=_fields()), 428)
    assert body["type"] == "urn:webapp:problem:precondition-required"
    problem(api.patch(f"/api/v1/users/{user_id}", json={"first_name": "G"}), 428)


def test_patch_changes_only_what_it_names(api: TestClient, db: Engine) -> None:
    user_id = insert_user(db, email="grace@example.com", first_name="Grace")
    response = api.patch(
        f"/api/v1/users/{user_id}",
        json={"email": "GRACE@navy.mil", "first_name": None},
        headers={"If-Match": _etag(api, user_id)},
    )
    assert response.status_code == 200, response.text
    assert response.json()["email"] == "GRACE@navy.mil"
    assert response.json()["first_name"] == "Grace"
    assert audit_rows(db)[-1].changes == {"email": ["grace@example.com", "GRACE@navy.mil"]}


def test_update_validation_duplicates_and_missing_users(api: TestClient, db: Engine) -> None:
    user_id = insert_user(db, email="grace@example.com")
    insert_user(db, email="taken@example.com")
    tag = {"If-Match": _etag(api, user_id)}
    invalid = problem(api.patch(f"/api/v1/users/{user_id}", json={"email": "x"}, headers=tag), 422)
    assert "email" in field_errors(invalid)
    duplicate = api.patch(
        f"/api/v1/users/{user_id}", json={"email": "Taken@example.com"}, headers=tag
    )
    assert field_errors(problem(duplicate, 409)) == {
        "email": "Another user already has this email address."
    }
    problem(api.put("/api/v1/users/999999", json=_fields(version=1)), 404)
    problem(api.patch("/api/v1/users/999999", json={}, headers={"If-Match": "*"}), 404)


def test_safety_rails_are_409(api: TestClient, db: Engine, admin_id: int) -> None:
    demote_self = api.patch(
        f"/api/v1/users/{admin_id}", json={"is_admin": False}, headers={"If-Match": "*"}
    )
    body = problem(demote_self, 409)
    assert body["type"] == "urn:webapp:problem:safety-rail"
    assert "your own account" in body["detail"]
    assert fetch_user(db, admin_id).is_admin is True


# --- Password ---------------------------------------------------------------------------


def test_set_someone_elses_password(api: TestClient, db: Engine) -> None:
    user_id = insert_user(db)
    response = api.post(
        f"/api/v1/users/{user_id}/password",
        json={"password": "a new password", "must_change": True},
    )
    assert response.status_code == 200, response.text
    _no_secrets(response.json())
    assert response.json()["must_change_password"] is True
    row = fetch_user(db, user_id)
    assert verifies("a new password", row.password_hash) and row.must_change_password
    assert actions(db) == ["user.password_set"]


def test_own_password_needs_the_current_one(api: TestClient, db: Engine, admin_id: int) -> None:
    url = f"/api/v1/users/{admin_id}/password"
    missing = problem(api.post(url, json={"password": "a new password"}), 422)
    assert field_errors(missing) == {"current_password": "Required, to set your own password."}
    for not_it in ("nope nope", PASSWORD + "\x00", "\ud800 half a character"):
        # As JSON escapes (a lone surrogate cannot be sent as UTF-8).
        body = json.dumps({"password": "a new password", "current_password": not_it})
        wrong = api.post(url, content=body, headers={"content-type": "application/json"})
        assert "not your current password" in field_errors(problem(wrong, 422))["current_password"]
    body = json.dumps({"password": "\ud800 and more", "current_password": PASSWORD})
    surrogate = api.post(url, content=body, headers={"content-type": "application/json"})
    assert "lone surrogate" in field_errors(problem(surrogate, 422))["password"]
    ok = api.post(
        url, json={"password": "a new password", "current_password": PASSWORD, "must_change": True}
    )
    assert ok.status_code == 200
    assert ok.json()["must_change_password"] is False  # never for yourself
    assert verifies("a new password", fetch_user(db, admin_id).password_hash)
    # A password change does not revoke the admin's tokens.
    assert api.get("/api/v1/users").status_code == 200


def test_password_rules_and_preconditions(api: TestClient, db: Engine) -> None:
    user_id = insert_user(db)
    short = problem(api.post(f"/api/v1/users/{user_id}/password", json={"password": "x"}), 422)
    assert field_errors(short) == {"password": "At least 8 characters."}
    stale = api.post(
        f"/api/v1/users/{user_id}/password",
        json={"password": "a new password"},
        headers={"If-Match": '"42"'},
    )
    problem(stale, 412)
    problem(api.post("/api/v1/users/999999/password", json={"password": "a new password"}), 404)


# --- Activate, deactivate, delete -------------------------------------------------------


def test_deactivate_and_activate(api: TestClient, db: Engine, admin_id: int) -> None:
    user_id = insert_user(db)
    off = api.post(f"/api/v1/users/{user_id}/deactivate")
    assert off.status_code == 200 and off.json()["is_active"] is False
    assert off.headers["etag"] == f'"{off.json()["version"]}"'
    on = api.post(f"/api/v1/users/{user_id}/activate", headers={"If-Match": off.headers["etag"]})
    assert on.status_code == 200 and on.json()["is_active"] is True
    assert actions(db) == ["user.deactivate", "user.activate"]
    assert {row.actor_id for row in audit_rows(db)} == {admin_id}
    problem(api.post(f"/api/v1/users/{user_id}/activate", headers={"If-Match": '"1"'}), 412)
    problem(api.post("/api/v1/users/999999/deactivate"), 404)
    rail = problem(api.post(f"/api/v1/users/{admin_id}/deactivate"), 409)
    assert rail["type"] == "urn:webapp:problem:safety-rail"


def test_the_last_admin_cannot_be_removed(api: TestClient, db: Engine, admin_id: int) -> None:
    other = insert_user(db, is_admin=True)
    assert api.post(f"/api/v1/users/{other}/deactivate").status_code == 200
    # Only the caller is an active admin now; removing them is refused either way.
    assert problem(api.delete(f"/api/v1/users/{admin_id}"), 409)["type"].endswith("safety-rail")


def test_delete(api: TestClient, db: Engine) -> None:
    user_id = insert_user(db)
    problem(api.delete(f"/api/v1/users/{user_id}", headers={"If-Match": '"9"'}), 412)
    response = api.delete(f"/api/v1/users/{user_id}", headers={"If-Match": '"1"'})
    assert response.status_code == 204 and response.content == b""
    assert fetch_user(db, user_id) is None
    assert actions(db) == ["user.delete"]
    problem(api.delete(f"/api/v1/users/{user_id}"), 404)


def test_a_patch_keeps_a_name_stored_before_a_rule(api: TestClient, db: Engine) -> None:
    """PATCH checks the fields it merges with the stored ones: a stored name that a later
    rule refuses (a direction control) does not make every other change a 422."""
    user_id = insert_user(db, last_name="Ada\u202bLovelace")
    response = api.patch(f"/api/v1/users/{user_id}", json={"is_active": False, "version": 1})
    assert response.status_code == 200, response.text
    assert fetch_user(db, user_id).is_active is False
