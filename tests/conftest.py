"""Fixtures: one migrated test database per run, a fresh app per test, real connections only.

The database is named by ``TEST_DATABASE_URL`` (PostgreSQL in CI); without it, a SQLite file
in a temporary folder. Every test runs the real app, with its real pool and session
dependency, and starts from an empty ``users`` table.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from tests.factories import (
    ADMIN_EMAIL,
    engine_for_tests,
    insert_user,
    make_settings,
    sign_in,
    through_pgbouncer,
)
from webapp import migrations
from webapp.config import Settings, normalise_database_url
from webapp.main import create_app
from webapp.models import Base


def sync_url(async_url: str) -> str:
    """The same database through a synchronous driver, for the tests' own look-ups."""
    return async_url.replace("sqlite+aiosqlite://", "sqlite://")


POSTGRES_ONLY = "needs PostgreSQL: set TEST_DATABASE_URL=postgresql://... (CI does)"
PGBOUNCER_ONLY = "needs PgBouncer: TEST_DATABASE_URL through it and WEBAPP_PGBOUNCER=true (CI does)"
DIRECT_ONLY = "watches the PostgreSQL server itself, which PgBouncer hides (CI runs it directly)"


def _testing_postgres() -> bool:
    return os.environ.get("TEST_DATABASE_URL", "").startswith("postgres")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that need PostgreSQL carry the ``postgres`` marker (or use ``requires_postgres``).

    They are skipped, with the reason, when the suite runs on SQLite; CI's SQLite pass
    deselects them with ``-m "not postgres"``, having run them in its PostgreSQL pass.
    """
    pgbouncer = through_pgbouncer()
    for item in items:
        needs_postgres = any(item.get_closest_marker(m) for m in ("direct_postgres", "pgbouncer"))
        if needs_postgres or "requires_postgres" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
        if not _testing_postgres() and item.get_closest_marker("postgres"):
            item.add_marker(pytest.mark.skip(reason=POSTGRES_ONLY))
        elif item.get_closest_marker("pgbouncer") and not pgbouncer:
            item.add_marker(pytest.mark.skip(reason=PGBOUNCER_ONLY))
        elif item.get_closest_marker("direct_postgres") and pgbouncer:
            item.add_marker(pytest.mark.skip(reason=DIRECT_ONLY))


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    raw = os.environ.get("TEST_DATABASE_URL")
    if raw:
        url = normalise_database_url(raw)
        _drop_schema(url)  # a run starts from the migrations, whatever an earlier run left
    else:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    migrations.upgrade(url)
    return url


def _drop_schema(url: str) -> None:
    engine = engine_for_tests(sync_url(url))
    try:
        with engine.begin() as conn:
            Base.metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def is_postgres(database_url: str) -> bool:
    return database_url.startswith("postgresql")


@pytest.fixture
def requires_postgres(is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip(POSTGRES_ONLY)


@pytest.fixture(scope="session")
def db(database_url: str) -> Iterator[Engine]:
    """A synchronous engine on the test database, for arranging and checking rows."""
    engine = engine_for_tests(sync_url(database_url))
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _empty_tables(db: Engine) -> Iterator[None]:
    yield
    with db.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def anon_client(app: FastAPI) -> Iterator[TestClient]:
    """Nobody signed in. The context manager runs the lifespan, as in production."""
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


@pytest.fixture
def admin_id(db: Engine) -> int:
    """The admin the ``client`` fixture signs in as."""
    return insert_user(db, first_name="Ada", last_name="Admin", email=ADMIN_EMAIL, is_admin=True)


@pytest.fixture
def client(anon_client: TestClient, admin_id: int) -> TestClient:
    """Signed in as an admin through the real sign-in form; sends the CSRF header, as htmx does."""
    return sign_in(anon_client, ADMIN_EMAIL)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """The app in a real uvicorn on a free loopback port, in a background thread."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(app: FastAPI) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


def project_root() -> Path:
    return Path(__file__).resolve().parent.parent
