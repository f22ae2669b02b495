"""The schema, as the ORM sees it. Alembic migrations are the source of truth for the database."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Any

import idna
from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    false,
    func,
    literal_column,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# The id columns are 32-bit integers: a larger id in a URL or a filter names nothing, and
# must not reach PostgreSQL, which refuses the comparison itself ("integer out of range").
MAX_ID = 2**31 - 1


def utcnow() -> datetime:
    return datetime.now(UTC)


def email_key(email: str) -> str:
    """What makes two addresses the same one: letter case is ignored, in every alphabet;
    an accented letter is one letter however it was typed (Unicode's composed form, NFC:
    "é", not "e" and a combining accent); a domain's DNS spelling ("xn--bcher-kva") is read
    as its letters ("bücher"). Migration 0007 brought the stored keys to this.

    Lowered here rather than by the database's lower(), which on SQLite folds A-Z only.
    """
    key = email.strip().lower()
    if key.isascii() and "xn--" not in key:  # nearly every address: nothing more to do
        return key
    key = unicodedata.normalize("NFC", key)
    local, at, domain = key.rpartition("@")
    if not at:
        return key
    return local + at + ".".join(map(_domain_label, domain.split(".")))


def _domain_label(label: str) -> str:
    if label.startswith("xn--"):
        try:
            # IDNA 2008, as email_validator checks domains (Python's own codec is IDNA 2003,
            # which reads "xn--fa-hia" as "fass", not "faß", and refuses it).
            return str(idna.decode(label))
        except idna.IDNAError:  # not a valid DNS spelling: kept as it is
            pass
    return label


def _email_key_default(context: Any) -> str:
    return email_key(context.get_current_parameters()["email"])


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(254))
    # Kept by _keep_email_key for the ORM; the default covers Core inserts (seed, tests).
    email_key: Mapped[str] = mapped_column(String(254), default=_email_key_default)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Set when an admin sets someone's password: that user must choose their own next.
    must_change_password: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow, server_default=func.now()
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False)

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        # Emails are stored as typed but unique regardless of case, enforced by the database.
        Index("uq_users_email_key", email_key, unique=True),
        Index("ix_users_name", last_name, first_name, id),
        Index("ix_users_created_at", created_at, id),
    )

    @validates("email")
    def _keep_email_key(self, _key: str, email: str) -> str:
        self.email_key = email_key(email)
        return email

    def __repr__(self) -> str:  # never include the hash
        return f"User(id={self.id!r}, email={self.email!r})"

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


def search_text() -> ColumnElement[str]:
    """What a search looks in: first name, last name and email, lowered, a space between
    (a search word has none, so it never matches across two fields). PostgreSQL keeps one
    trigram index of exactly this expression (migration 0005): change both or neither."""
    space = literal_column("' '", String)
    return func.lower(User.first_name) + space + func.lower(User.last_name) + space + User.email_key


class LoginThrottle(Base):
    """Failed sign-ins per account ("email:<key>") and per address ("ip:<addr>").

    In the database, not in memory, so the limits hold across every worker and host.
    """

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEvent(Base):
    """Who did what to whom, when and from where; written in the transaction it records.

    Actor and target are kept by id and by email as they were then, without foreign keys,
    so the trail outlives the users it names.
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    action: Mapped[str] = mapped_column(String(40))
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor_email: Mapped[str | None] = mapped_column(String(254))
    target_id: Mapped[int | None] = mapped_column(Integer)
    target_email: Mapped[str | None] = mapped_column(String(254))
    address: Mapped[str | None] = mapped_column(String(64))
    # For updates: {"field": [old, new]}; never a password or a hash.
    changes: Mapped[dict[str, list[Any]] | None] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_audit_events_at", at, id),
        Index("ix_audit_events_actor", actor_id, at),
        Index("ix_audit_events_target", target_id, at),
        Index("ix_audit_events_action", action, at),
    )


class ApiToken(Base):
    """A personal API token of an admin. Only its SHA-256 is stored; the token is shown once.

    A fast hash is right here: the token is 256 random bits, so there is nothing to guess
    that a slow hash would protect, and every API request looks it up.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64))
    # The token's first characters, so its owner can tell their tokens apart.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("uq_api_tokens_token_hash", token_hash, unique=True),
        Index("ix_api_tokens_user_id", user_id, id),
    )

    def __repr__(self) -> str:  # never include the hash
        return f"ApiToken(id={self.id!r}, prefix={self.prefix!r})"
