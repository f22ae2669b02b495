"""Fixtures for the API: a personal token of the signed-in admin, a client that sends it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.api.support import BEARER, insert_token


@pytest.fixture
def token(db: Engine, admin_id: int) -> str:
    """A valid personal token of the ``admin_id`` admin."""
    return insert_token(db, admin_id)


@pytest.fixture
def api(anon_client: TestClient, token: str) -> TestClient:
    """A client that authenticates with the bearer token only: no cookie, no CSRF header."""
    anon_client.headers[BEARER] = f"Bearer {token}"
    return anon_client
