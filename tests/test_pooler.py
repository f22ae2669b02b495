"""Finding out at start-up whether PgBouncer stands between the console and PostgreSQL."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.factories import make_settings, through_pgbouncer
from webapp import pooler

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/test"


@pytest.mark.postgres
async def test_a_pooler_is_found_when_there_is_one_and_only_then(database_url: str) -> None:
    """CI runs the PostgreSQL tests straight to the server and again through PgBouncer in
    transaction mode: each pass must find what it runs on."""
    assert await pooler.detect(database_url) is through_pgbouncer()
    settings = await pooler.resolve(make_settings(database_url, pgbouncer=None))
    assert settings.pgbouncer is through_pgbouncer()


async def test_with_no_database_to_ask_it_goes_on_as_if_none_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    unreachable = make_settings(UNREACHABLE, pgbouncer=None)
    assert await pooler.detect(unreachable.database_url) is None
    with caplog.at_level(logging.WARNING, logger="webapp.pooler"):
        settings = await pooler.resolve(unreachable)
    assert settings.pgbouncer is False
    assert "WEBAPP_PGBOUNCER" in caplog.text


async def test_what_the_settings_say_is_not_asked_again(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    with caplog.at_level(logging.INFO, logger="webapp.pooler"):
        for given in (True, False):
            settings = await pooler.resolve(make_settings(UNREACHABLE, pgbouncer=given))
            assert settings.pgbouncer is given
        sqlite_url = f"sqlite+aiosqlite:///{tmp_path}/x.db"
        sqlite = await pooler.resolve(make_settings(sqlite_url, pgbouncer=None))
    assert sqlite.pgbouncer is False
    assert caplog.text == ""  # no look-up, so nothing to report
