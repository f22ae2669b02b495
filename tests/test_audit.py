"""The audit trail: one row per action, in the same transaction, with diffs and no secrets."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from tests.factories import (
    ADMIN_EMAIL,
    HTMX,
    PASSWORD,
    fetch_user,
    insert_user,
    template_name,
    user_form,
)
from webapp.models import AuditEvent


def events(db: Engine) -> list[Any]:
    with db.connect() as conn:
        return list(conn.execute(select(AuditEvent.__table__).order_by(AuditEvent.id)).all())


def test_every_change_is_recorded_with_who_what_and_from_where(
    client: TestClient, db: Engine, admin_id: int
) -> None:
    start = len(events(db))  # the fixture's sign-in
    client.post("/users", data=user_form(first_name="Grace", email="grace@example.com"))
    [user_id] = [e.target_id for e in events(db) if e.action == "user.create"]
    version = fetch_user(db, user_id).version
    client.post(
        f"/users/{user_id}",
        data={
            "first_name": "Grace",
            "last_name": "Hopper",
            "email": "grace@navy.example",
            "is_active": "yes",
            "version": str(version),
        },
    )
    client.post(
        f"/users/{user_id}/password",
        data={
            "password": "new password!",
            "password_confirm": "new password!",
            "must_change": "yes",
        },
    )
    client.post(f"/users/{user_id}/active", data={"active": "no"})
    client.post(f"/users/{user_id}/active", data={"active": "yes"})
    client.post(f"/users/{user_id}/delete", data={})
    client.post("/logout")

    trail = events(db)[start:]
    assert [e.action for e in trail] == [
        "user.create",
        "user.update",
        "user.password_set",
        "user.deactivate",
        "user.activate",
        "user.delete",
        "auth.sign_out",
    ]
    for event in trail:
        assert event.actor_id == admin_id and event.actor_email == ADMIN_EMAIL
        assert event.address == "testclient"
        assert event.at is not None
    assert all(e.target_id == user_id for e in trail[:6])
    assert trail[5].target_email == "grace@navy.example"  # kept after the user is gone
    create, update = trail[0], trail[1]
    assert create.changes["email"] == [None, "grace@example.com"]
    assert update.changes == {
        "last_name": [create.changes["last_name"][1], "Hopper"],
        "email": ["grace@example.com", "grace@navy.example"],
    }
    assert trail[2].changes == {"must_change_password": [False, True]}
    assert trail[3].changes == {"is_active": [True, False]}


def test_no_password_or_hash_is_ever_recorded(
    client: TestClient, db: Engine, anon_client: TestClient
) -> None:
    client.post(
        "/users",
        data=user_form(
            email="secret@example.com", password="s3cret-pass-1", password_confirm="s3cret-pass-1"
        ),
    )
    user_id = next(e.target_id for e in events(db) if e.action == "user.create")
    client.post(
        f"/users/{user_id}/password",
        data={"password": "s3cret-pass-2", "password_confirm": "s3cret-pass-2"},
    )
    stored_hash = fetch_user(db, user_id).password_hash
    dump = json.dumps([list(map(str, e)) for e in events(db)])
    for secret in ("s3cret-pass-1", "s3cret-pass-2", PASSWORD, stored_hash, "$2b$"):
        assert secret not in dump


def test_a_refused_change_leaves_no_audit_row(client: TestClient, db: Engine) -> None:
    insert_user(db, email="taken@example.com")
    before = len(events(db))
    assert client.post("/users", data=user_form(email="TAKEN@example.com")).status_code == 422
    assert client.post("/users", data=user_form(email="bad")).status_code == 422
    assert len(events(db)) == before


def test_audit_page_lists_newest_first_and_filters(
    client: TestClient, db: Engine, admin_id: int
) -> None:
    a = insert_user(db, email="a@example.com")
    b = insert_user(db, email="b@example.com")
    client.post(f"/users/{a}/active", data={"active": "no"})
    client.post(f"/users/{b}/active", data={"active": "no"})
    client.post(f"/users/{b}/active", data={"active": "yes"})

    page = client.get("/audit")
    assert template_name(page) == "audit/list.html"
    rows = page.text.split('id="event-')[1:]
    assert "Activated user" in rows[0] and "b@example.com" in rows[0]  # newest first
    assert "Signed in" in rows[-1]

    by_target = client.get(f"/audit?target={a}", headers=HTMX)
    assert template_name(by_target) == "audit/_table.html"
    assert "1 event" in by_target.text and "a@example.com" in by_target.text
    by_email = client.get("/audit?target=B@EXAMPLE.COM")
    assert "2 events" in by_email.text
    by_action = client.get("/audit?action=user.activate")
    assert "1 event" in by_action.text
    by_actor = client.get(f"/audit?actor={ADMIN_EMAIL}&action=auth.sign_in")
    assert "1 event" in by_actor.text
    assert "No events match." in client.get("/audit?actor=nobody@example.com").text
    assert client.get("/audit?action=not.an.action&page=zz").status_code == 200
    # An id past the columns' 32-bit range, or digits of another script: no one, no error
    # (PostgreSQL refuses to compare the one, Python's int() reads the other).
    for who in ("99999999999999999999", str(2**31), "²", "١٢"):
        for role in ("actor", "target"):
            found = client.get("/audit", params={role: who})
            assert found.status_code == 200, (role, who)
            assert "No events match." in found.text, (role, who)
    # A NUL, which PostgreSQL refuses even to compare, is dropped like the list's search's.
    with_nul = client.get("/audit", params={"target": "b@example.com\x00"})
    assert with_nul.status_code == 200 and "2 events" in with_nul.text


def test_audit_pages(client: TestClient, db: Engine) -> None:
    user_id = insert_user(db)
    for n in range(60):
        client.post(f"/users/{user_id}/active", data={"active": "no" if n % 2 == 0 else "yes"})
    first = client.get("/audit")
    assert "61 events · showing 1–50" in first.text and 'rel="next"' in first.text
    second = client.get("/audit?page=2")
    assert "showing 51–61" in second.text and "Signed in" in second.text


def test_edit_page_links_to_the_users_history(client: TestClient, db: Engine) -> None:
    user_id = insert_user(db)
    assert f'href="/audit?target={user_id}"' in client.get(f"/users/{user_id}").text


def test_no_route_edits_or_deletes_audit_rows(app: FastAPI) -> None:
    for route in iter_route_contexts(app.routes):
        if "audit" in (route.path_format or ""):
            assert (route.methods or set()) <= {"GET", "HEAD"}, route.path_format
