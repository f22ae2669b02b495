"""The API tokens page: create (shown once, stored hashed), list, revoke; all audited."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from tests.api.support import BEARER, actions, audit_rows, insert_token, problem
from tests.factories import field_error, insert_user, template_name
from webapp.models import ApiToken, utcnow
from webapp.tokens import as_aware, digest

TOKEN = re.compile(r'id="new-token"[^>]*value="(wat_[A-Za-z0-9_-]+)"')


def _create(client: TestClient, name: str = "nightly sync", days: str = "30") -> str:
    response = client.post("/tokens", data={"name": name, "expires_in_days": days})
    assert response.status_code == 201, response.text
    match = TOKEN.search(response.text)
    assert match, "the new token is shown"
    return match.group(1)


def test_create_a_token_shown_once_and_stored_hashed(
    client: TestClient, db: Engine, admin_id: int
) -> None:
    secret = _create(client)
    with db.connect() as conn:
        row = conn.execute(select(ApiToken.__table__)).one()
    assert row.token_hash == digest(secret) and row.user_id == admin_id
    assert row.name == "nightly sync"
    lifetime = as_aware(row.expires_at) - utcnow()
    assert timedelta(days=29) < lifetime <= timedelta(days=30)
    page = client.get("/tokens")
    assert template_name(page) == "tokens/list.html"
    assert secret not in page.text and row.prefix in page.text and "nightly sync" in page.text
    assert "never" in page.text  # not used yet
    # It works, and its use shows on the page.
    assert client.get("/api/v1/users", headers={BEARER: f"Bearer {secret}"}).status_code == 200
    assert "never</span></td>" not in client.get("/tokens").text.split("nightly sync")[1][:400]
    assert actions(db) == ["auth.sign_in", "token.create"]
    event = audit_rows(db)[1]
    assert event.actor_id == admin_id and secret not in str(event.changes)


def test_a_token_that_never_expires(client: TestClient, db: Engine) -> None:
    _create(client, days="0")
    with db.connect() as conn:
        assert conn.execute(select(ApiToken.expires_at)).scalar_one() is None


def test_the_form_checks_its_input(client: TestClient, db: Engine) -> None:
    blank = client.post("/tokens", data={"name": "  ", "expires_in_days": "30"})
    assert blank.status_code == 422
    assert field_error(blank.text, "name") == "Required."
    odd = client.post("/tokens", data={"name": "x", "expires_in_days": "12"})
    assert odd.status_code == 422 and "offered lifetimes" in odd.text
    with db.connect() as conn:
        assert conn.execute(select(ApiToken.id)).all() == []


def test_revoke(client: TestClient, db: Engine) -> None:
    secret = _create(client)
    with db.connect() as conn:
        token_id = conn.execute(select(ApiToken.id)).scalar_one()
    response = client.post(f"/tokens/{token_id}/revoke")
    assert response.status_code == 303 and response.headers["location"] == "/tokens"
    assert "It no longer works." in client.get("/tokens").text
    problem(client.get("/api/v1/users", headers={BEARER: f"Bearer {secret}"}), 401)
    assert actions(db)[1:4] == ["token.create", "token.revoke", "token.auth_failed"]
    assert client.post(f"/tokens/{token_id}/revoke").status_code == 404


def test_an_admin_sees_and_revokes_only_their_own_tokens(client: TestClient, db: Engine) -> None:
    other = insert_user(db, is_admin=True)
    insert_token(db, other, name="someone else's")
    with db.connect() as conn:
        token_id = conn.execute(select(ApiToken.id)).scalar_one()
    assert "someone else" not in client.get("/tokens").text
    assert client.post(f"/tokens/{token_id}/revoke").status_code == 404
    with db.connect() as conn:
        assert conn.execute(select(ApiToken.id)).scalar_one() == token_id


def test_the_audit_page_lists_token_actions(client: TestClient) -> None:
    _create(client)
    page = client.get("/audit", params={"action": "token.create"})
    assert "Created API token" in page.text


def test_revoking_an_id_beyond_the_column_is_a_404_not_an_error(client: TestClient) -> None:
    for token_id in ("0", "2147483648", "99999999999999999999"):
        response = client.post(f"/tokens/{token_id}/revoke")
        assert response.status_code == 404, token_id
