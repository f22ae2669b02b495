"""Who is calling the API with ``Authorization: Bearer <token>``; throttled like sign-in.

Failures are counted per address in the same table as failed sign-ins (and also against the
address's sign-in count): a client that keeps sending bad tokens is slowed down, then locked
out for ``WEBAPP_LOGIN_LOCKOUT_SECONDS``. A lock refuses every token from that address, valid
or not, or it would not stop anyone guessing.
"""

from __future__ import annotations

import asyncio
import math

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from webapp import audit, auth, problems, tokens
from webapp.audit import Actor
from webapp.config import Settings
from webapp.models import User, utcnow
from webapp.problems import ApiProblem

UNKNOWN = "The token is not valid: it was never issued, was revoked, or is mistyped."


def authorization(request: Request) -> str | None:
    return request.headers.get("authorization")


def has_bearer(request: Request) -> bool:
    scheme, _, _ = (authorization(request) or "").partition(" ")
    return scheme.lower() == "bearer"


def _secret(request: Request) -> str | None:
    scheme, _, value = (authorization(request) or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def unauthorized(detail: str, *, error: str | None = None) -> ApiProblem:
    challenge = 'Bearer realm="webapp"' + (f', error="{error}"' if error else "")
    return ApiProblem(
        401, detail, kind=problems.UNAUTHORIZED, headers={"WWW-Authenticate": challenge}
    )


def throttle_keys(address: str | None) -> tuple[str, str]:
    where = address or "unknown"
    return f"token:{where}"[:300], f"ip:{where}"[:300]


def _refusal(found: tokens.Lookup) -> str | None:
    """Why a presented token does not let its bearer in, or None if it does."""
    if found.token is None or found.owner is None:
        return UNKNOWN
    if tokens.is_expired(found.token):
        return "The token has expired. Create a new one on the API tokens page."
    if not auth.may_use_console(found.owner):
        return "The token's owner is no longer an active admin."
    return None


async def token_owner(request: Request, session: AsyncSession, settings: Settings) -> User:
    address = auth.client_address(request)
    keys = throttle_keys(address)
    locked = await auth.locked_until(session, keys)
    if locked is not None:
        seconds = max(1, math.ceil((locked - utcnow()).total_seconds()))
        raise ApiProblem(
            429,
            f"Too many failed authentications from this address. Try again in {seconds} s.",
            kind=problems.THROTTLED,
            headers={"Retry-After": str(seconds)},
        )
    secret = _secret(request)
    found = await tokens.look_up(session, secret or "")
    reason = _refusal(found) if secret is not None else "Send Authorization: Bearer <token>."
    if reason is None and found.token is not None and found.owner is not None:
        await tokens.mark_used(session, found.token)
        return found.owner

    outcome = await auth.record_failure(session, settings, keys)
    anonymous = Actor(None, None, address)
    changes = {"token": [None, f"{found.token.prefix}…"]} if found.token is not None else None
    audit.record(session, anonymous, "token.auth_failed", target=found.owner, changes=changes)
    if outcome.locked_until is not None:
        audit.record(session, anonymous, "auth.lockout", target_email=f"address {address}")
    await session.commit()
    if outcome.delay:
        await asyncio.sleep(outcome.delay)  # the connection is back in the pool meanwhile
    raise unauthorized(reason or UNKNOWN, error="invalid_token")
