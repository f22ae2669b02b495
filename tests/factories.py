"""Test data and small helpers shared by the tests."""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
from fastapi.testclient import TestClient
from httpx2 import Response
from passlib.context import CryptContext
from sqlalchemy import Engine, create_engine, insert, make_url, select, text
from sqlalchemy.pool import NullPool

from webapp.config import Settings
from webapp.models import User, email_key

ADMIN_EMAIL = "admin@example.com"
TEST_SECRET = "test-secret-key-that-is-long-enough-for-the-check"
HTMX = {"HX-Request": "true"}
PASSWORD = "correct horse battery"


def _cursor_of(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


# List cursors of well-formed JSON that no database or clock can take, with the sort each
# is for: a lone surrogate in a name, times that leave the calendar once in UTC, arrays
# nested past Python's recursion limit (2,048 characters: the longest cursor read).
HOSTILE_CURSORS = [
    ("name", _cursor_of({"s": "name", "d": "n", "k": ["\ud800", "x", 1]})),
    ("email", _cursor_of({"s": "email", "d": "p", "k": ["\udfff@example.com"]})),
    ("created", _cursor_of({"s": "created", "d": "n", "k": ["0001-01-01T00:00:00+05:00", 1]})),
    ("-created", _cursor_of({"s": "-created", "d": "n", "k": ["9999-12-31T23:59:59-05:00", 1]})),
    ("name", base64.urlsafe_b64encode(b"[" * 1536).decode()),
]

_hasher = CryptContext(schemes=["bcrypt"], bcrypt__rounds=4)
_numbers = itertools.count(1)


def through_pgbouncer() -> bool:
    """CI runs the PostgreSQL tests a second time through PgBouncer in transaction mode."""
    return os.environ.get("WEBAPP_PGBOUNCER", "").lower() in ("1", "true", "yes")


def engine_for_tests(url: Any, **kwargs: Any) -> Engine:
    """A synchronous engine for the tests' own look-ups; behind PgBouncer, like the app,
    without server-side prepared statements."""
    if through_pgbouncer() and str(url).startswith("postgresql"):
        kwargs["connect_args"] = {"prepare_threshold": None, **kwargs.get("connect_args", {})}
    return create_engine(url, **kwargs)


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
    row.setdefault("email_key", email_key(row["email"]))
    with db.begin() as conn:
        user_id: int = conn.execute(insert(User).values(**row).returning(User.id)).scalar_one()
    return user_id


def fetch_user(db: Engine, user_id: int) -> Any:
    with db.connect() as conn:
        return conn.execute(select(User.__table__).where(User.id == user_id)).one_or_none()


def fetch_users_by_email(db: Engine, email: str) -> list[Any]:
    with db.connect() as conn:
        stmt = select(User.__table__).where(User.email_key == email_key(email))
        return list(conn.execute(stmt).all())


# --- Reading rendered pages -------------------------------------------------------------
# Small, strict look-ups in the HTML the templates produce (see templates/_macros.html).


def template_name(response: Response) -> str:
    """Which template rendered ``response`` (Starlette's TestClient records it)."""
    name: str = response.template.name  # type: ignore[attr-defined]
    return name


def field_error(html: str, field: str) -> str | None:
    """The text of the ``field-error`` paragraph beside ``field``, or None if there is none."""
    pattern = rf'<p class="field-error" id="{re.escape(field)}-error">(.*?)</p>'
    match = re.search(pattern, html, re.S)
    return unescape(match.group(1)) if match else None


def input_tag(html: str, name: str) -> str | None:
    """The first ``<input>`` tag named ``name``."""
    match = re.search(rf'<input\b[^>]*\bname="{re.escape(name)}"[^>]*>', html)
    return match.group(0) if match else None


def input_value(html: str, name: str) -> str | None:
    """The (unescaped) ``value`` of the first ``<input>`` named ``name``."""
    tag = input_tag(html, name)
    match = re.search(r'\bvalue="([^"]*)"', tag) if tag else None
    return unescape(match.group(1)) if match else None


def is_checked(html: str, name: str) -> bool:
    tag = input_tag(html, name)
    assert tag is not None, f"no input named {name!r}"
    return re.search(r"\bchecked\b", tag) is not None


def flash_texts(html: str) -> list[str]:
    """The flash messages on a page or beside a fragment."""
    return [unescape(t) for t in re.findall(r'<p class="flash flash-\w+"[^>]*>(.*?)</p>', html)]


def path_of(url: str) -> str:
    """``/users?q=x`` from ``http://testserver/users?q=x`` (redirects may be absolute)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def verifies(password: str, password_hash: str) -> bool:
    return bool(_verifier.verify(password, password_hash))


_verifier = CryptContext(schemes=["bcrypt"])


def sync_engine(async_url: str) -> Engine:
    """A synchronous engine on the database an app URL names (psycopg 3 serves both)."""
    url = make_url(async_url)
    if url.drivername == "sqlite+aiosqlite":
        url = url.set(drivername="sqlite")
    return engine_for_tests(url, poolclass=NullPool)


@contextmanager
def fresh_database(db: Engine, tmp_path: Path) -> Iterator[str]:
    """A new, empty database of the test database's kind; yields its app (async) URL.

    SQLite: a new file in ``tmp_path``. PostgreSQL: a throw-away database on the same
    server, dropped (connections and all) on the way out.
    """
    if db.dialect.name == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    name = f"webapp_mig_{secrets.token_hex(6)}"
    admin = engine_for_tests(db.url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield db.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_webapp(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``webapp <args>`` in a child process, as a shell would, not attached to a TTY.

    The child sees no ``WEBAPP_*`` variable from this process, only those in ``env`` (and
    ``WEBAPP_PGBOUNCER``: how the database is reached is the run's, not the test's, choice).
    """
    child_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WEBAPP_") or k == "WEBAPP_PGBOUNCER"
    }
    child_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "webapp.cli", *args],
        cwd=cwd,
        env=child_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- Signing in -------------------------------------------------------------------------

_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = _CSRF_INPUT.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> TestClient:
    """Sign in through the real form; afterwards the client sends the session's CSRF header."""
    token = csrf_from(client.get("/login").text)
    response = client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token}
    )
    assert response.status_code == 303, response.text
    client.headers["X-CSRF-Token"] = csrf_from(client.get("/account/password").text)
    return client


def with_csrf(client: TestClient) -> TestClient:
    """An anonymous client that sends its session's CSRF token, as the console's pages do."""
    client.headers["X-CSRF-Token"] = csrf_from(client.get("/login").text)
    return client


async def signed_in_http(base_url: str, email: str = ADMIN_EMAIL) -> httpx2.AsyncClient:
    """A real HTTP client signed in through the form, sending the CSRF header."""
    http = httpx2.AsyncClient(base_url=base_url, timeout=30)
    token = csrf_from((await http.get("/login")).text)
    response = await http.post(
        "/login", data={"email": email, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 303, response.text
    http.headers["X-CSRF-Token"] = csrf_from((await http.get("/account/password")).text)
    return http
