"""Settings, read from the environment (prefix ``WEBAPP_``) and a local ``.env`` file."""

from __future__ import annotations

import logging
import os
import secrets
import time
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./webapp.db"
DEV_SECRET_FILE = Path(".webapp-secret")


class SettingsError(Exception):
    """A setting is wrong; the message is one line that names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WEBAPP_", env_file=".env", extra="ignore", frozen=True
    )

    env: Literal["development", "production"] = "development"
    database_url: str = DEFAULT_DATABASE_URL
    pool_size: int = Field(default=5, ge=1, le=1000)
    max_overflow: int = Field(default=5, ge=0, le=1000)
    pool_timeout: float = Field(default=5.0, gt=0, le=300)
    pool_recycle: int = Field(default=1800, ge=-1)
    pool_pre_ping: bool = True
    # Pool monitoring (see README, "Reading the health page").
    leak_threshold: float = Field(default=10.0, gt=0, le=3600)
    statement_timeout: float = Field(default=30.0, ge=0, le=86400)  # 0: no limit
    workers: int = Field(default=1, ge=1, le=1000)  # per host; `webapp serve --workers` sets it
    hosts: int = Field(default=1, ge=1, le=1000)
    connection_reserve: int = Field(default=5, ge=0, le=10000)
    metrics_token: SecretStr | None = None
    # Behind PgBouncer in transaction mode a server connection changes between transactions,
    # so psycopg's server-side prepared statements must be off. None: found out at start-up
    # (webapp.pooler.resolve), which every user of the settings below the app's lifespan
    # and the commands' start sees as True or False.
    pgbouncer: bool | None = None
    bcrypt_rounds: int = Field(default=12, ge=4, le=31)
    hash_concurrency: int = Field(default=2, ge=1, le=64)
    secret_key: SecretStr | None = None
    per_page: int = Field(default=50, ge=1, le=500)
    # Larger request bodies get a 413 before they are read into memory.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    session_max_age: int = Field(default=8 * 3600, ge=60)
    setup_enabled: bool = True
    login_max_failures: int = Field(default=5, ge=1)
    login_address_max_failures: int = Field(default=50, ge=1)
    login_lockout_seconds: int = Field(default=900, ge=1)
    login_slowdown_after: int = Field(default=3, ge=1)
    login_slowdown_seconds: float = Field(default=1.0, ge=0, le=10)

    @field_validator("database_url")
    @classmethod
    def _normalise_url(cls, url: str) -> str:
        return normalise_database_url(url)

    @field_validator("secret_key")
    @classmethod
    def _secret_long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return key

    @model_validator(mode="after")
    def _secret_required_in_production(self) -> Settings:
        if self.env == "production" and self.secret_key is None:
            raise ValueError("WEBAPP_SECRET_KEY is required when WEBAPP_ENV=production")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def session_secret(self) -> str:
        """The cookie-signing key; in development one is made once and kept in a local file."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        key = secrets.token_urlsafe(48)
        try:
            # O_EXCL: of several workers starting together, exactly one writes the key, and
            # the file is private from the moment it exists.
            fd = os.open(DEV_SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _read_secret_file()
        with os.fdopen(fd, "w") as file:
            file.write(key + "\n")
        log.warning(
            "WEBAPP_SECRET_KEY is not set: generated a development key in %s. "
            "Set WEBAPP_SECRET_KEY in production.",
            DEV_SECRET_FILE,
        )
        return key


def _read_secret_file() -> str:
    # Another process may have created the file a moment ago and not written it yet.
    for _ in range(50):
        key = DEV_SECRET_FILE.read_text().strip()
        if key:
            return key
        time.sleep(0.02)
    raise SettingsError(f"WEBAPP_SECRET_KEY: {DEV_SECRET_FILE} is empty; delete it or set the key")


def normalise_database_url(url: str) -> str:
    """Map plain ``postgresql://``/``postgres://`` URLs to the async psycopg driver."""
    url = url.strip()
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    if not url.startswith(("postgresql+psycopg://", "sqlite+aiosqlite://")):
        raise ValueError("must be a postgresql:// or sqlite:// URL")
    return url


def describe_error(error: ValidationError) -> str:
    """One line naming the first bad setting, e.g. ``WEBAPP_POOL_SIZE: ...``."""
    first = error.errors()[0]
    loc = first.get("loc") or ()
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if not loc:
        return message
    return f"WEBAPP_{str(loc[0]).upper()}: {message}"


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(describe_error(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
