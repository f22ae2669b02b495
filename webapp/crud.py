"""Every query the console runs. Takes an ``AsyncSession``; knows nothing of HTTP or templates."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from webapp.forms import UserCreate, UserFields
from webapp.listing import UserListQuery
from webapp.models import User, email_key
from webapp.pagination import Page

# PostgreSQL names the index (uq_users_email_key), SQLite the column (users.email_key).
EMAIL_UNIQUE_MARK = "email_key"


class DuplicateEmailError(Exception):
    """Another user already has this email, in any letter case."""


class StaleUserError(Exception):
    """The user changed (or went away) since the form was opened."""

    def __init__(self, current: User | None) -> None:
        super().__init__("user changed since it was read")
        self.current = current


_SORTS: dict[str, tuple[Any, ...]] = {
    "name": (User.last_name, User.first_name, User.id),
    "-name": (User.last_name.desc(), User.first_name.desc(), User.id.desc()),
    "email": (User.email_key,),
    "-email": (User.email_key.desc(),),
    "created": (User.created_at, User.id),
    "-created": (User.created_at.desc(), User.id.desc()),
}


def _filters(query: UserListQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    # Every word must appear in one of the fields, so "ada lovelace" finds Ada Lovelace.
    # autoescape makes %, _ and the escape character match literally.
    for term in query.terms:
        conditions.append(
            or_(
                User.first_name.icontains(term, autoescape=True),
                User.last_name.icontains(term, autoescape=True),
                User.email.icontains(term, autoescape=True),
            )
        )
    if query.active:
        conditions.append(User.is_active.is_(query.active == "yes"))
    if query.admin:
        conditions.append(User.is_admin.is_(query.admin == "yes"))
    return conditions


def _filtered(stmt: Select[Any], query: UserListQuery) -> Select[Any]:
    conditions = _filters(query)
    return stmt.where(and_(*conditions)) if conditions else stmt


async def list_users(session: AsyncSession, query: UserListQuery, per_page: int) -> Page[User]:
    total = (await session.execute(_filtered(select(func.count(User.id)), query))).scalar_one()
    pages = max(1, -(-total // per_page))
    number = min(query.page, pages)
    stmt = (
        _filtered(select(User), query)
        .order_by(*_SORTS[query.sort])
        .offset((number - 1) * per_page)
        .limit(per_page)
    )
    items = (await session.scalars(stmt)).all()
    return Page(items=items, number=number, per_page=per_page, total=total)


async def get_user(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    stmt = select(User).where(User.email_key == email_key(email))
    return (await session.scalars(stmt)).one_or_none()


async def count_users(session: AsyncSession) -> int:
    return (await session.execute(select(func.count(User.id)))).scalar_one()


async def _flush(session: AsyncSession, user: User) -> None:
    """Write pending changes, turning the database's refusals into domain errors.

    After a refusal the transaction is rolled back, so the session stays usable for the
    page that explains what went wrong.
    """
    user_id = user.id  # read now: after a failed flush, touching the object needs a rollback
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        if EMAIL_UNIQUE_MARK in str(exc.orig):
            raise DuplicateEmailError from None
        raise
    except StaleDataError:
        await session.rollback()
        raise StaleUserError(await session.get(User, user_id, populate_existing=True)) from None


async def create_user(session: AsyncSession, data: UserCreate, password_hash: str) -> User:
    user = User(
        first_name=data.first_name,
        last_name=data.last_name,
        email=data.email,
        password_hash=password_hash,
        is_active=data.is_active,
        is_admin=data.is_admin,
    )
    session.add(user)
    await _flush(session, user)
    return user


async def update_user(session: AsyncSession, user: User, data: UserFields, version: int) -> User:
    """Apply an edit made on ``version`` of the user; refuse it if the user moved on since."""
    if user.version != version:
        raise StaleUserError(user)
    for field in ("first_name", "last_name", "email", "is_active", "is_admin"):
        setattr(user, field, getattr(data, field))
    await _flush(session, user)
    return user


async def set_password(session: AsyncSession, user: User, password_hash: str) -> None:
    user.password_hash = password_hash
    await _flush(session, user)


async def set_active(session: AsyncSession, user: User, active: bool) -> None:
    user.is_active = active
    await _flush(session, user)


async def delete_user(session: AsyncSession, user: User) -> None:
    await session.delete(user)
    await _flush(session, user)
