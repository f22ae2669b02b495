"""The audit trail: recorded in the caller's transaction, read by the audit page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, false, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from webapp.models import MAX_ID, AuditEvent, User
from webapp.pagination import Page

ACTIONS: dict[str, str] = {
    "user.create": "Created user",
    "user.update": "Updated user",
    "user.delete": "Deleted user",
    "user.activate": "Activated user",
    "user.deactivate": "Deactivated user",
    "user.password_set": "Set password",
    "auth.sign_in": "Signed in",
    "auth.sign_in_failed": "Sign-in failed",
    "auth.sign_out": "Signed out",
    "auth.lockout": "Locked out",
    "token.create": "Created API token",
    "token.revoke": "Revoked API token",
    "token.auth_failed": "API token refused",
}
# Never recorded, whatever a caller passes: the trail must not become a store of secrets.
SECRET_FIELDS = frozenset({"password", "password_confirm", "password_hash", "current_password"})


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting, and from where; ``user`` is None for the anonymous (sign-in, setup)."""

    user_id: int | None
    email: str | None
    address: str | None

    @classmethod
    def of(cls, user: Person | None, address: str | None) -> Actor:
        return cls(user.id if user else None, user.email if user else None, address)


class Person(Protocol):
    """Anyone who acts: a ``User``, or the signed-in admin's plain copy."""

    @property
    def id(self) -> int: ...

    @property
    def email(self) -> str: ...


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``{field: [old, new]}`` for the fields that changed, secrets left out."""
    return {
        field: [before.get(field), value]
        for field, value in after.items()
        if field not in SECRET_FIELDS and before.get(field) != value
    }


def record(
    session: AsyncSession,
    actor: Actor,
    action: str,
    *,
    target: User | None = None,
    target_email: str | None = None,
    changes: Mapping[str, list[Any]] | None = None,
) -> None:
    """Add an audit row to the session: it commits or rolls back with the change it records."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    safe = {k: v for k, v in (changes or {}).items() if k not in SECRET_FIELDS}
    session.add(
        AuditEvent(
            action=action,
            actor_id=actor.user_id,
            actor_email=actor.email,
            target_id=target.id if target is not None else None,
            target_email=target.email if target is not None else target_email,
            address=actor.address,
            changes=safe or None,
        )
    )


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """The audit page's filters. Malformed values are dropped, never an error."""

    actor: str = ""
    target: str = ""
    action: str = ""
    page: int = 1

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> AuditQuery:
        try:
            page = max(1, min(int(params.get("page", "1")), 10**9))
        except ValueError:
            page = 1
        action = params.get("action", "")
        return cls(
            actor=_who_given(params.get("actor", "")),
            target=_who_given(params.get("target", "")),
            action=action if action in ACTIONS else "",
            page=page,
        )

    def params(self, **changes: str | int) -> dict[str, str]:
        query = replace(self, **changes)  # type: ignore[arg-type]
        out = {
            "actor": query.actor,
            "target": query.target,
            "action": query.action,
            "page": str(query.page) if query.page != 1 else "",
        }
        return {k: v for k, v in out.items() if v}


def _who_given(value: str) -> str:
    """A filter's user as typed, without NUL characters (no text column can hold one, and
    PostgreSQL refuses them even to compare)."""
    return value.replace("\x00", "").strip()[:254]


def _who(
    id_column: InstrumentedAttribute[int | None],
    email_column: InstrumentedAttribute[str | None],
    value: str,
) -> ColumnElement[bool]:
    """A user given by id ("42") or by email (any case). An id past the column's range
    names no one."""
    if value.isascii() and value.isdigit():
        number = int(value)
        return id_column == number if number <= MAX_ID else false()
    return func.lower(email_column) == value.lower()


async def list_events(session: AsyncSession, query: AuditQuery, per_page: int) -> Page[AuditEvent]:
    conditions: list[ColumnElement[bool]] = []
    if query.actor:
        conditions.append(_who(AuditEvent.actor_id, AuditEvent.actor_email, query.actor))
    if query.target:
        conditions.append(_who(AuditEvent.target_id, AuditEvent.target_email, query.target))
    if query.action:
        conditions.append(AuditEvent.action == query.action)
    where = and_(*conditions) if conditions else None

    count = select(func.count(AuditEvent.id))
    total = (await session.execute(count if where is None else count.where(where))).scalar_one()
    pages = max(1, -(-total // per_page))
    number = min(query.page, pages)
    stmt = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    if where is not None:
        stmt = stmt.where(where)
    items: Sequence[AuditEvent] = (
        await session.scalars(stmt.offset((number - 1) * per_page).limit(per_page))
    ).all()
    return Page(items=items, number=number, per_page=per_page, total=total)
