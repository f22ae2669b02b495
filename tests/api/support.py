"""Helpers for the API tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from httpx2 import Response
from sqlalchemy import Engine, insert, select

from webapp import tokens
from webapp.models import ApiToken, AuditEvent, utcnow

BEARER = "Authorization"
PROBLEM = "application/problem+json"


def insert_token(
    db: Engine, user_id: int, *, name: str = "tests", expires_at: datetime | None = None
) -> str:
    """Store a token as the console would (its hash only); returns the token itself."""
    secret = tokens.new_secret()
    with db.begin() as conn:
        conn.execute(
            insert(ApiToken).values(
                user_id=user_id,
                name=name,
                token_hash=tokens.digest(secret),
                prefix=secret[: tokens.PREFIX_SHOWN],
                created_at=utcnow(),
                expires_at=expires_at,
            )
        )
    return secret


def problem(response: Response, status: int) -> dict[str, Any]:
    """Check that ``response`` is a problem document with ``status``; return it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    return body


def field_errors(body: dict[str, Any]) -> dict[str, str]:
    return {error["field"]: error["message"] for error in body["errors"]}


def audit_rows(db: Engine) -> list[Any]:
    with db.connect() as conn:
        return list(conn.execute(select(AuditEvent.__table__).order_by(AuditEvent.id)).all())


def actions(db: Engine) -> list[str]:
    return [row.action for row in audit_rows(db)]


def new_user(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.com",
        "password": "correct horse battery",
        "is_active": True,
        "is_admin": False,
    }
    body.update(overrides)
    return body
