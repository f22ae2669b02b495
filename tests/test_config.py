"""Settings: URL normalisation, the environment, one-line errors from the CLI, the dev secret."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.factories import TEST_SECRET, run_webapp
from webapp.config import Settings, SettingsError, load_settings, normalise_database_url


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ``WEBAPP_*`` variable from the outside, and an empty working folder (so no ``.env``)."""
    for name in list(os.environ):
        if name.startswith("WEBAPP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- Database URLs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db:5432/app", "postgresql+psycopg://u:p@db:5432/app"),
        ("postgres://u:p@db:5432/app", "postgresql+psycopg://u:p@db:5432/app"),
        ("postgresql+psycopg2://u:p@db/app", "postgresql+psycopg://u:p@db/app"),
        ("postgresql+psycopg://u:p@db/app", "postgresql+psycopg://u:p@db/app"),
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("  postgres://db/app\n", "postgresql+psycopg://db/app"),
    ],
)
def test_database_urls_are_mapped_to_the_async_drivers(given: str, expected: str) -> None:
    assert normalise_database_url(given) == expected


@pytest.mark.parametrize(
    "url", ["mysql://u:p@db/app", "mysql+aiomysql://db/app", "oracle://db", "db.sqlite", ""]
)
def test_other_databases_are_refused(url: str, clean_env: Path) -> None:
    with pytest.raises(ValueError, match="postgresql:// or sqlite://"):
        normalise_database_url(url)
    with pytest.raises(ValidationError):
        Settings(database_url=url)


# --- Settings from the environment -------------------------------------------------------


def test_defaults(clean_env: Path) -> None:
    settings = Settings()
    assert settings.env == "development"
    assert settings.database_url == "sqlite+aiosqlite:///./webapp.db"
    assert settings.pool_pre_ping is True
    assert settings.pool_recycle > 0
    assert settings.bcrypt_rounds == 12
    assert 1 <= settings.pool_timeout <= 30
    assert settings.pool_size >= 1 and settings.max_overflow >= 0
    assert settings.secret_key is None


def test_values_come_from_webapp_variables(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBAPP_POOL_SIZE", "17")
    monkeypatch.setenv("WEBAPP_MAX_OVERFLOW", "0")
    monkeypatch.setenv("WEBAPP_POOL_TIMEOUT", "0.5")
    monkeypatch.setenv("WEBAPP_POOL_RECYCLE", "-1")
    monkeypatch.setenv("WEBAPP_POOL_PRE_PING", "false")
    monkeypatch.setenv("WEBAPP_BCRYPT_ROUNDS", "4")
    monkeypatch.setenv("WEBAPP_DATABASE_URL", "postgres://app:pw@db.internal/console")
    monkeypatch.setenv("WEBAPP_ENV", "production")
    monkeypatch.setenv("WEBAPP_SECRET_KEY", TEST_SECRET)
    # Variables without the prefix are not settings.
    monkeypatch.setenv("POOL_SIZE", "99")
    settings = Settings()
    assert settings.pool_size == 17
    assert settings.max_overflow == 0
    assert settings.pool_timeout == 0.5
    assert settings.pool_recycle == -1
    assert settings.pool_pre_ping is False
    assert settings.bcrypt_rounds == 4
    assert settings.database_url == "postgresql+psycopg://app:pw@db.internal/console"
    assert not settings.is_sqlite
    assert settings.env == "production"
    assert settings.session_secret() == TEST_SECRET
    # The key never shows in a repr or a log line that prints the settings.
    assert TEST_SECRET not in repr(settings) and TEST_SECRET not in str(settings)


def test_dotenv_in_the_working_folder_is_read_and_the_environment_wins(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / ".env").write_text("WEBAPP_POOL_SIZE=9\nWEBAPP_PER_PAGE=25\n")
    assert Settings().pool_size == 9
    monkeypatch.setenv("WEBAPP_POOL_SIZE", "11")
    settings = Settings()
    assert settings.pool_size == 11 and settings.per_page == 25


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WEBAPP_POOL_SIZE", "0", "WEBAPP_POOL_SIZE: "),
        ("WEBAPP_POOL_SIZE", "lots", "WEBAPP_POOL_SIZE: "),
        ("WEBAPP_POOL_TIMEOUT", "0", "WEBAPP_POOL_TIMEOUT: "),
        ("WEBAPP_BCRYPT_ROUNDS", "3", "WEBAPP_BCRYPT_ROUNDS: "),
        ("WEBAPP_DATABASE_URL", "mysql://x", "WEBAPP_DATABASE_URL: must be a postgresql://"),
        ("WEBAPP_SECRET_KEY", "short", "WEBAPP_SECRET_KEY: must be at least 32 characters"),
    ],
)
def test_load_settings_names_the_bad_setting(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


# --- The CLI on a bad setting: one line, exit 2 ------------------------------------------


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WEBAPP_POOL_SIZE": "0"}, "WEBAPP_POOL_SIZE"),
        ({"WEBAPP_POOL_SIZE": "lots"}, "WEBAPP_POOL_SIZE"),
        ({"WEBAPP_DATABASE_URL": "mysql://x"}, "WEBAPP_DATABASE_URL"),
        ({"WEBAPP_ENV": "production"}, "WEBAPP_SECRET_KEY"),
        ({"WEBAPP_SECRET_KEY": "not-long-enough-s3cret"}, "WEBAPP_SECRET_KEY"),
    ],
    ids=["pool-size-zero", "pool-size-not-a-number", "mysql", "production-no-key", "short-key"],
)
def test_cli_reports_a_bad_setting_in_one_line(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    result = run_webapp("migrate", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    assert "Traceback" not in result.stderr
    # The offending value is named, not echoed (it may be a secret).
    assert "not-long-enough-s3cret" not in result.stderr
    # Nothing was done: no database file appeared.
    assert list(tmp_path.iterdir()) == []


# --- The development secret --------------------------------------------------------------


def test_development_secret_is_made_once_kept_private_and_reused(
    clean_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret_file = clean_env / ".webapp-secret"
    with caplog.at_level(logging.WARNING, logger="webapp.config"):
        key = Settings().session_secret()
    assert len(key) >= 32
    assert secret_file.read_text().strip() == key
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    warnings = [r for r in caplog.records if r.name == "webapp.config"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "WEBAPP_SECRET_KEY" in warnings[0].getMessage()
    assert key not in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="webapp.config"):
        assert Settings().session_secret() == key
    assert caplog.records == []


def test_no_secret_file_when_the_key_is_set(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("WEBAPP_SECRET_KEY", TEST_SECRET)
    with caplog.at_level(logging.WARNING, logger="webapp.config"):
        assert Settings().session_secret() == TEST_SECRET
    assert not (clean_env / ".webapp-secret").exists()
    assert caplog.records == []
