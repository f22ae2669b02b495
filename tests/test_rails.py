"""Safety rails: nobody locks themselves, or everyone, out of the console."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from tests.conftest import LiveServer
from tests.factories import (
    ADMIN_EMAIL,
    HTMX,
    fetch_user,
    flash_texts,
    insert_user,
    make_settings,
    signed_in_http,
)
from webapp import crud
from webapp.audit import Actor
from webapp.db import make_engine, make_sessionmaker
from webapp.models import User

SELF = "You cannot deactivate, demote or delete your own account."


def _edit_form(row: object, **changes: str) -> dict[str, str]:
    form = {
        "first_name": row.first_name,  # type: ignore[attr-defined]
        "last_name": row.last_name,  # type: ignore[attr-defined]
        "email": row.email,  # type: ignore[attr-defined]
        "version": str(row.version),  # type: ignore[attr-defined]
        "is_active": "yes",
        "is_admin": "yes",
    }
    form.update(changes)
    return {k: v for k, v in form.items() if v}


@pytest.mark.parametrize(
    "change", [{"is_active": ""}, {"is_admin": ""}], ids=["deactivate", "demote"]
)
def test_you_cannot_deactivate_or_demote_yourself_by_editing(
    client: TestClient, db: Engine, admin_id: int, change: dict[str, str]
) -> None:
    before = fetch_user(db, admin_id)
    response = client.post(f"/users/{admin_id}", data=_edit_form(before, **change))
    assert response.status_code == 409
    assert SELF in response.text
    assert fetch_user(db, admin_id) == before
    # Editing your own name is fine.
    ok = client.post(f"/users/{admin_id}", data=_edit_form(before, first_name="Adeline"))
    assert ok.status_code == 303
    assert fetch_user(db, admin_id).first_name == "Adeline"


def test_you_cannot_deactivate_or_delete_yourself_from_the_list(
    client: TestClient, db: Engine, admin_id: int
) -> None:
    before = fetch_user(db, admin_id)
    row = client.post(f"/users/{admin_id}/active", data={"active": "no"}, headers=HTMX)
    assert row.status_code == 200
    assert any(SELF in text for text in flash_texts(row.text))
    assert "Active" in row.text
    deleted = client.post(f"/users/{admin_id}/delete", data={"next": "/users"})
    assert deleted.status_code == 303
    assert any(SELF in text for text in flash_texts(client.get("/users").text))
    assert fetch_user(db, admin_id) == before


def test_other_admins_can_be_deactivated_demoted_and_deleted(
    client: TestClient, db: Engine
) -> None:
    other = insert_user(db, is_admin=True)
    assert client.post(f"/users/{other}/active", data={"active": "no"}).status_code == 303
    assert not fetch_user(db, other).is_active
    assert client.post(f"/users/{other}/delete", data={}).status_code == 303
    assert fetch_user(db, other) is None


async def test_the_last_active_admin_cannot_be_removed(database_url: str, db: Engine) -> None:
    """From outside the console (the command line has no signed-in admin), the rail holds."""
    last = insert_user(db, is_admin=True)
    insert_user(db, is_admin=True, is_active=False)  # an inactive admin does not count
    engine = make_engine(make_settings(database_url))
    outsider = Actor(None, None, "command line")
    try:
        for change in ("deactivate", "delete"):
            async with make_sessionmaker(engine)() as session:
                user = await crud.get_user(session, last)
                assert user is not None
                with pytest.raises(crud.SafetyRailError, match="last active admin"):
                    if change == "deactivate":
                        await crud.set_active(session, outsider, user, False)
                    else:
                        await crud.delete_user(session, outsider, user)
    finally:
        await engine.dispose()
    assert fetch_user(db, last).is_active


def test_two_admins_removing_each_other_at_once_leave_one(
    live_server: LiveServer, db: Engine, admin_id: int
) -> None:
    """The check and the change are one locked step: one of the two must be refused."""
    other = insert_user(db, email="other-admin@example.com", is_admin=True)

    async def both() -> list[int]:
        mine = await signed_in_http(live_server.url, ADMIN_EMAIL)
        theirs = await signed_in_http(live_server.url, "other-admin@example.com")
        try:
            answers = await asyncio.gather(
                mine.post(f"/users/{other}/active", data={"active": "no"}),
                theirs.post(f"/users/{admin_id}/active", data={"active": "no"}),
            )
            return [a.status_code for a in answers]
        finally:
            await mine.aclose()
            await theirs.aclose()

    statuses = asyncio.run(both())
    assert all(status in (303, 503) for status in statuses), statuses
    with db.connect() as conn:
        active_admins = conn.execute(
            select(func.count()).where(User.is_admin.is_(True), User.is_active.is_(True))
        ).scalar_one()
    assert active_admins == 1
