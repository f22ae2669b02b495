"""Personal API tokens: made, listed, revoked and looked up. Only a token's SHA-256 is kept."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from webapp import audit
from webapp.audit import Actor
from webapp.models import MAX_ID, ApiToken, User, utcnow

TOKEN_PREFIX = "wat_"  # "webapp API token": recognisable in a leaked config or a log
PREFIX_SHOWN = len(TOKEN_PREFIX) + 6
TOKEN_MAX = 200  # no real token is longer; anything longer is refused before hashing
NAME_MAX = 100
# Writing the last-use time once a minute is precise enough, and spares a write per request.
LAST_USE_RESOLUTION = timedelta(minutes=1)


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def as_aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes; they were written in UTC.
    return value if value.tzinfo else value.replace(tzinfo=utcnow().tzinfo)


def is_expired(token: ApiToken, now: datetime | None = None) -> bool:
    return token.expires_at is not None and as_aware(token.expires_at) <= (now or utcnow())


def _label(token: ApiToken) -> str:
    return f"{token.name} ({token.prefix}…)"


async def create_token(
    session: AsyncSession, actor: Actor, owner: User, name: str, expires_at: datetime | None
) -> tuple[ApiToken, str]:
    """A new token for ``owner``; returns the row and the token itself, to show once."""
    secret = new_secret()
    token = ApiToken(
        user_id=owner.id,
        name=name,
        token_hash=digest(secret),
        prefix=secret[:PREFIX_SHOWN],
        expires_at=expires_at,
    )
    session.add(token)
    await session.flush()
    audit.record(
        session, actor, "token.create", target=owner, changes={"token": [None, _label(token)]}
    )
    return token, secret


async def list_tokens(session: AsyncSession, owner_id: int) -> Sequence[ApiToken]:
    stmt = select(ApiToken).where(ApiToken.user_id == owner_id).order_by(ApiToken.id.desc())
    return (await session.scalars(stmt)).all()


async def get_token(session: AsyncSession, owner_id: int, token_id: int) -> ApiToken | None:
    """One of ``owner_id``'s tokens; another admin's token is as good as absent."""
    if not 0 < token_id <= MAX_ID:  # beyond the column's range: none, not a database error
        return None
    token = await session.get(ApiToken, token_id)
    return token if token is not None and token.user_id == owner_id else None


async def revoke_token(session: AsyncSession, actor: Actor, owner: User, token: ApiToken) -> None:
    await session.execute(delete(ApiToken).where(ApiToken.id == token.id))
    audit.record(
        session, actor, "token.revoke", target=owner, changes={"token": [_label(token), None]}
    )


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a presented token turned out to be: its row and owner, if it exists at all."""

    token: ApiToken | None
    owner: User | None


async def look_up(session: AsyncSession, secret: str) -> Lookup:
    # By hash: the database compares digests, so timing reveals nothing about a token.
    if not secret or len(secret) > TOKEN_MAX:
        return Lookup(None, None)
    stmt = (
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == digest(secret))
    )
    row = (await session.execute(stmt)).one_or_none()
    return Lookup(row[0], row[1]) if row else Lookup(None, None)


async def mark_used(session: AsyncSession, token: ApiToken) -> None:
    now = utcnow()
    if token.last_used_at is not None and as_aware(token.last_used_at) > now - LAST_USE_RESOLUTION:
        return
    stmt = (
        update(ApiToken)
        .where(
            ApiToken.id == token.id,
            or_(
                ApiToken.last_used_at.is_(None),
                ApiToken.last_used_at < now - LAST_USE_RESOLUTION,
            ),
        )
        .values(last_used_at=now)
    )
    await session.execute(stmt)
