"""Who is signed in, CSRF tokens, and sign-in throttling kept in the database."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import bindparam, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from webapp import driver_reads
from webapp.config import Settings
from webapp.crud import Rider
from webapp.models import MAX_ID, LoginThrottle, User, email_key, utcnow

_USER = "uid"
_STAMP = "stamp"
_CSRF = "csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class SignInRequired(Exception):
    """No signed-in admin: send the visitor to the sign-in page, then back to ``next_url``."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class SetupRequired(Exception):
    """No admin exists yet: the one-time setup page is the only page."""


class PasswordChangeRequired(Exception):
    """An admin set this user's password: they choose their own before anything else."""


class CsrfError(Exception):
    """A state-changing request without this session's CSRF token."""


# --- The signed session cookie ----------------------------------------------------------


class Account(NamedTuple):
    """What the sign-in check reads of the signed-in user, on every request: one light row
    (no ORM object to build) on the request's own connection."""

    id: int
    first_name: str
    last_name: str
    email: str
    password_hash: str
    is_active: bool
    is_admin: bool
    must_change_password: bool


_ACCOUNT = select(*(getattr(User, name) for name in Account._fields)).where(
    User.id == bindparam("user_id")
)


async def load_account(session: AsyncSession, user_id: int) -> Account | None:
    if not 0 < user_id <= MAX_ID:
        return None
    connection = await session.connection()
    rows = await driver_reads.fetch_all(connection, _ACCOUNT, {"user_id": user_id})
    return Account._make(rows[0]) if rows else None


def account_rider(user_id: int) -> Rider | None:
    """``load_account``'s read, to send with a list's page (``crud.list_users``); None for
    an id no user can have."""
    if not 0 < user_id <= MAX_ID:
        return None
    return Rider(_ACCOUNT, {"user_id": user_id})


def account_of(row: tuple[object, ...] | None) -> Account | None:
    return Account._make(row) if row is not None else None


@dataclass(frozen=True, slots=True)
class SignedIn:
    """Who is signed in, as templates (and the audit trail) see it: plain values."""

    id: int
    first_name: str
    last_name: str
    email: str

    @classmethod
    def of(cls, user: User | Account) -> SignedIn:
        return cls(user.id, user.first_name, user.last_name, user.email)


def _stamp(user: User | Account) -> str:
    # Changes with the password hash, so changing a password signs out every other session.
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


def sign_in(request: Request, user: User) -> None:
    # A fresh session (and CSRF token) at sign-in: nothing planted before it survives.
    request.session.clear()
    request.session.update({_USER: user.id, _STAMP: _stamp(user), _CSRF: _new_token()})


def sign_out(request: Request) -> None:
    request.session.clear()


def signed_in_user_id(request: Request) -> int | None:
    value = request.session.get(_USER)
    return value if isinstance(value, int) else None


def session_is_current(request: Request, user: User | Account) -> bool:
    stamp = request.session.get(_STAMP)
    return isinstance(stamp, str) and hmac.compare_digest(stamp, _stamp(user))


def refresh_stamp(request: Request, user: User) -> None:
    """Keep this session valid after the user changed their own password."""
    request.session[_STAMP] = _stamp(user)


def may_use_console(user: User | Account | None) -> bool:
    return user is not None and user.is_active and user.is_admin


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


# --- CSRF -------------------------------------------------------------------------------


def _new_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_token(request: Request) -> str:
    token = request.session.get(_CSRF)
    if not isinstance(token, str):
        token = _new_token()
        request.session[_CSRF] = token
    return token


def csrf_matches(request: Request, submitted: object) -> bool:
    expected = request.session.get(_CSRF)
    return (
        isinstance(expected, str)
        and isinstance(submitted, str)
        and hmac.compare_digest(expected.encode(), submitted.encode())
    )


# --- Throttling -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FailureOutcome:
    failures: int  # the account's failures in the current window
    locked_until: datetime | None  # set when this failure locked the account or address
    delay: float  # seconds to wait before answering


def throttle_keys(email: str, address: str | None) -> tuple[str, str | None]:
    account = f"email:{email_key(email)}"[:300]
    return account, (f"ip:{address}" if address else None)


def _as_aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes; they were written in UTC.
    return value if value.tzinfo else value.replace(tzinfo=utcnow().tzinfo)


async def locked_until(session: AsyncSession, keys: tuple[str, str | None]) -> datetime | None:
    """The latest lock still in force on the account or the address, if any."""
    now = utcnow()
    wanted = [k for k in keys if k]
    rows = (
        await session.scalars(
            select(LoginThrottle.locked_until).where(LoginThrottle.key.in_(wanted))
        )
    ).all()
    locks = [_as_aware(t) for t in rows if t is not None and _as_aware(t) > now]
    return max(locks, default=None)


async def record_failure(
    session: AsyncSession, settings: Settings, keys: tuple[str, str | None]
) -> FailureOutcome:
    """Count a failure against the account and the address, atomically, in the database."""
    now = utcnow()
    window = timedelta(seconds=settings.login_lockout_seconds)
    limits = (settings.login_max_failures, settings.login_address_max_failures)
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    account_failures = 0
    newly_locked: datetime | None = None
    for key, limit in zip(keys, limits, strict=True):
        if key is None:
            continue
        stmt = dialect.insert(LoginThrottle).values(key=key, failures=1, last_failure_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=[LoginThrottle.key],
            set_={
                # A quiet spell as long as the lockout starts the count afresh.
                "failures": case(
                    (LoginThrottle.last_failure_at < now - window, 1),
                    else_=LoginThrottle.failures + 1,
                ),
                "last_failure_at": now,
            },
        )
        await session.execute(stmt)
        row = await session.get(LoginThrottle, key, populate_existing=True)
        assert row is not None
        if key == keys[0]:
            account_failures = row.failures
        current_lock = _as_aware(row.locked_until) if row.locked_until else None
        if row.failures >= limit and (current_lock is None or current_lock <= now):
            row.locked_until = newly_locked = now + window
    slow_after = settings.login_slowdown_after
    delay = 0.0
    if account_failures >= slow_after:
        delay = min(settings.login_slowdown_seconds * 2 ** (account_failures - slow_after), 8.0)
    return FailureOutcome(account_failures, newly_locked, delay)


async def reset_failures(session: AsyncSession, account_key: str) -> None:
    await session.execute(delete(LoginThrottle).where(LoginThrottle.key == account_key))
