"""Test data and small helpers shared by the tests."""

from __future__ import annotations

import itertools
from typing import Any

from passlib.context import CryptContext
from sqlalchemy import Engine, func, insert, select

from webapp.config import Settings
from webapp.models import User

TEST_SECRET = "test-secret-key-that-is-long-enough-for-the-check"
HTMX = {"HX-Request": "true"}
PASSWORD = "correct horse battery"

_hasher = CryptContext(schemes=["bcrypt"], bcrypt__rounds=4)
_numbers = itertools.count(1)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "bcrypt_rounds": 4,
        "secret_key": TEST_SECRET,
        "pool_size": 3,
        "max_overflow": 2,
        "pool_timeout": 2.0,
    }
    values.update(overrides)
    return Settings(**values)


def user_form(**overrides: str) -> dict[str, str]:
    """A valid create-user form post; ``overrides`` change or (with "") blank fields."""
    n = next(_numbers)
    form = {
        "first_name": "Ada",
        "last_name": f"Lovelace{n}",
        "email": f"ada{n}@example.com",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
        "is_active": "yes",
    }
    form.update(overrides)
    return form


def insert_user(db: Engine, **fields: Any) -> int:
    """Insert a user directly, as another process would; returns its id."""
    n = next(_numbers)
    row: dict[str, Any] = {
        "first_name": "Grace",
        "last_name": f"Hopper{n}",
        "email": f"grace{n}@example.com",
        "password_hash": _hasher.hash(PASSWORD),
        "is_active": True,
        "is_admin": False,
        "version": 1,
    }
    row.update(fields)
    with db.begin() as conn:
        user_id: int = conn.execute(insert(User).values(**row).returning(User.id)).scalar_one()
    return user_id


def fetch_user(db: Engine, user_id: int) -> Any:
    with db.connect() as conn:
        return conn.execute(select(User.__table__).where(User.id == user_id)).one_or_none()


def fetch_users_by_email(db: Engine, email: str) -> list[Any]:
    with db.connect() as conn:
        stmt = select(User.__table__).where(func.lower(User.email) == email.lower())
        return list(conn.execute(stmt).all())
