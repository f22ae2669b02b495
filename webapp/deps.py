"""Dependency aliases for routes: the one place that calls ``Depends``.

The dependencies are ``async def`` even when they never wait: FastAPI runs a plain ``def``
dependency in a worker thread, a hop that costs more than the function itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, NoReturn

from fastapi import Depends, Request
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from starlette.datastructures import URL

from webapp import api_auth, auth, crud, htmx
from webapp.audit import Actor
from webapp.config import Settings
from webapp.db import SAFE_METHODS, session_scope
from webapp.forms import read_form
from webapp.listing import UserListQuery
from webapp.models import User
from webapp.problems import ApiProblem, is_api_request
from webapp.security import PasswordHasher
from webapp.server_stats import Probe


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def _hasher(request: Request) -> PasswordHasher:
    hasher: PasswordHasher = request.app.state.hasher
    return hasher


# scope="function": commit (or roll back) and release the connection before the response
# is sent, so a redirect never reaches the browser ahead of the data it points at.
SessionDep = Annotated[AsyncSession, Depends(session_scope, scope="function")]
SettingsDep = Annotated[Settings, Depends(_settings)]
EngineDep = Annotated[AsyncEngine, Depends(_engine)]
HasherDep = Annotated[PasswordHasher, Depends(_hasher)]


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def csrf_protect(request: Request) -> None:
    """Every state-changing request must carry this session's token (header or form field).

    Installed on the whole app, so a new route cannot forget it.
    """
    if request.method in SAFE_METHODS:
        return
    if is_api_request(request) and (
        api_auth.has_bearer(request) or auth.signed_in_user_id(request) is None
    ):
        # A bearer token, or no session at all, carries no cookie authority to forge: the
        # API then authenticates by the token alone, never by the cookie (see api_admin).
        return
    submitted: object = request.headers.get(auth.CSRF_HEADER)
    if submitted is None and request.headers.get("content-type", "").startswith(FORM_TYPES):
        # Starlette keeps the parsed form on the request: the route reads it again for free.
        submitted = (await read_form(request)).get(auth.CSRF_FIELD)
    if not auth.csrf_matches(request, submitted):
        raise auth.CsrfError


def _return_path(request: Request) -> str:
    """Where to come back after signing in: the page, not the fragment htmx asked for."""
    current = htmx.current_url(request)
    url = URL(current) if current else request.url
    return url.path + (f"?{url.query}" if url.query else "")


async def require_admin(request: Request, session: SessionDep) -> auth.SignedIn:
    """The signed-in, active admin, or a redirect to sign in (or to first-run setup).

    Every console page runs this: one light statement on the request's connection. Routes
    that change the admin's own row ask for ``CurrentAdmin`` (the database object) on top.
    """
    user_id = auth.signed_in_user_id(request)
    account = await auth.load_account(session, user_id) if user_id is not None else None
    return await _admit(request, session, user_id, account)


async def _admit(
    request: Request, session: AsyncSession, user_id: int | None, account: auth.Account | None
) -> auth.SignedIn:
    """``require_admin``'s verdict on the account read for the session's user.

    (The settings are read off the app, not asked for: each dependency FastAPI resolves
    costs every page a few microseconds, and they are only needed to turn a visitor away.)
    """
    if (
        account is None
        or not auth.may_use_console(account)
        or not auth.session_is_current(request, account)
    ):
        await _turn_away(request, session, user_id)
    route_name = getattr(request.scope.get("route"), "name", None)
    if account.must_change_password and route_name not in PASSWORD_CHANGE_ROUTES:
        raise auth.PasswordChangeRequired
    # A plain copy for templates: error pages render after the session has closed.
    admin = request.state.admin = auth.SignedIn.of(account)
    return admin


async def _turn_away(request: Request, session: AsyncSession, user_id: int | None) -> NoReturn:
    """To the sign-in page (or to first-run setup), signed out if signed in."""
    if user_id is not None:
        auth.sign_out(request)  # deactivated, demoted, deleted, or password changed
    settings: Settings = request.app.state.settings
    if settings.setup_enabled and not await crud.admin_exists(session):
        raise auth.SetupRequired
    raise auth.SignInRequired(_return_path(request))


SignedInAdmin = Annotated[auth.SignedIn, Depends(require_admin)]


@dataclass(frozen=True, slots=True)
class AdminUserList:
    admin: auth.SignedIn
    query: UserListQuery
    listing: crud.UserList


async def require_admin_with_user_list(request: Request, session: SessionDep) -> AdminUserList:
    """``require_admin`` for the user list, with the list: the console's busiest page sends
    the sign-in check's read in the statement that reads its page (``crud.Rider``), one
    round trip where there were two, about a twelfth of the page's CPU.

    The verdict is ``require_admin``'s own, given before the route runs; until then the rows
    read are only held here, and a visitor turned away never gets them. A session without a
    signed-in user reads nothing at all.
    """
    user_id = auth.signed_in_user_id(request)
    rider = auth.account_rider(user_id) if user_id is not None else None
    if rider is None:
        await _turn_away(request, session, user_id)
    settings: Settings = request.app.state.settings
    query = UserListQuery.from_params(request.query_params)
    listing = await crud.list_users(session, query, settings.per_page, rider)
    admin = await _admit(request, session, user_id, auth.account_of(listing.ridden))
    return AdminUserList(admin, query, listing)


AdminUserListDep = Annotated[AdminUserList, Depends(require_admin_with_user_list)]


async def current_admin(request: Request, session: SessionDep, admin: SignedInAdmin) -> User:
    """The signed-in admin as a database object, for the routes that work on their own row."""
    user = await crud.get_user(session, admin.id)
    if user is None:  # deleted between the two statements
        auth.sign_out(request)
        raise auth.SignInRequired(_return_path(request))
    return user


# The pages a user who must choose a new password may still reach.
PASSWORD_CHANGE_ROUTES = frozenset({"change_own_password", "save_own_password", "logout"})

CurrentAdmin = Annotated[User, Depends(current_admin)]

DATABASE_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


async def admin_for_health(request: Request) -> None:
    """Like ``current_admin``, but for the pages that watch the pool, so never from the pool.

    The check runs on the worker's probe connection (``webapp.server_stats.Probe``): a
    saturated pool does not make the health page wait, and the page does not count itself
    as a connection in use.
    When the database cannot answer at all, the session cookie, signed and time-limited,
    still vouches for an admin who signed in.
    """
    probe: Probe = request.app.state.probe
    try:
        async with AsyncSession(probe.engine, expire_on_commit=False) as session:
            await require_admin(request, session)
    except DATABASE_UNAVAILABLE:
        if auth.signed_in_user_id(request) is None:
            raise auth.SignInRequired(_return_path(request)) from None


async def _actor(request: Request, admin: SignedInAdmin) -> Actor:
    return Actor.of(admin, auth.client_address(request))


ActorDep = Annotated[Actor, Depends(_actor)]


async def api_admin(request: Request, session: SessionDep, settings: SettingsDep) -> User:
    """The API's caller: a bearer token's owner, or else the admin signed in by cookie.

    With an ``Authorization`` header the token alone decides (that is what exempts the
    request from CSRF); the session cookie is not looked at.
    """
    if api_auth.authorization(request) is not None:
        user = await api_auth.token_owner(request, session, settings)
    else:
        try:
            signed_in = await require_admin(request, session)
            user = await current_admin(request, session, signed_in)
        except (auth.SignInRequired, auth.SetupRequired):
            raise api_auth.unauthorized(
                "Send Authorization: Bearer <token>, or sign in to the console."
            ) from None
        except auth.PasswordChangeRequired:
            raise ApiProblem(
                403, "Choose a new password in the console before you go on."
            ) from None
    return user


ApiAdmin = Annotated[User, Depends(api_admin)]


async def _api_actor(request: Request, admin: ApiAdmin) -> Actor:
    return Actor.of(admin, auth.client_address(request))


ApiActorDep = Annotated[Actor, Depends(_api_actor)]
