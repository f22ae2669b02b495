"""Concurrent real HTTP requests against a live server: the database settles every race."""

from __future__ import annotations

import asyncio

import httpx2
from sqlalchemy import Engine

from tests.conftest import LiveServer
from tests.factories import (
    fetch_user,
    fetch_users_by_email,
    insert_user,
    signed_in_http,
    user_form,
)
from webapp.routes.users import DUPLICATE_EMAIL


async def _post_all(
    server: LiveServer, path: str, forms: list[dict[str, str]]
) -> list[httpx2.Response]:
    """Sign in, then send every form at once."""
    http = await signed_in_http(server.url)
    try:
        return list(await asyncio.gather(*(http.post(path, data=form) for form in forms)))
    finally:
        await http.aclose()


def test_duplicate_email_race_creates_exactly_one(
    live_server: LiveServer, db: Engine, admin_id: int
) -> None:
    cases = ["race@example.com", "RACE@example.com", "Race@Example.com", "race@EXAMPLE.COM"]
    forms = [user_form(email=cases[n % len(cases)]) for n in range(20)]
    responses = asyncio.run(_post_all(live_server, "/users", forms))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [303] + [422] * 19, statuses
    for response in responses:
        if response.status_code == 422:
            assert DUPLICATE_EMAIL in response.text
    assert len(fetch_users_by_email(db, "race@example.com")) == 1
    assert live_server.app.state.engine.sync_engine.pool.checkedout() == 0


def test_concurrent_edits_of_one_version_have_one_winner(
    live_server: LiveServer, db: Engine, admin_id: int
) -> None:
    user_id = insert_user(db, first_name="Original")
    forms = []
    for n in range(8):
        form = user_form(first_name=f"Editor{n}", email="edited@example.com", version="1")
        del form["password"], form["password_confirm"]
        forms.append(form)
    responses = asyncio.run(_post_all(live_server, f"/users/{user_id}", forms))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [303] + [409] * 7, statuses
    winner = fetch_user(db, user_id)
    assert winner.version == 2
    assert winner.first_name.startswith("Editor")
    for response in responses:
        if response.status_code == 409:
            assert "Someone else saved this user" in response.text
            assert winner.first_name in response.text  # the losers see the stored values
