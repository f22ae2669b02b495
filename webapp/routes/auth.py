"""Sign-in, sign-out, first-run setup and changing your own password."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from webapp import audit, auth, crud, htmx
from webapp.audit import Actor
from webapp.crud import DuplicateEmailError, StaleUserError
from webapp.deps import CurrentAdmin, HasherDep, SessionDep, SettingsDep
from webapp.errors import not_found
from webapp.forms import PasswordChange, UserCreate, form_values, parse_form, read_form
from webapp.models import utcnow
from webapp.templating import flash, render
from webapp.urls import local_path

router = APIRouter()

WRONG_CREDENTIALS = "That email and password do not match an account that may use this console."


def _login_page(
    request: Request,
    *,
    email: str = "",
    next_url: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "auth/login.html",
        {"email": email, "next_url": next_url, "error": error},
        status_code=status_code,
    )


@router.get("/login", name="login")
async def login_form(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    if settings.setup_enabled and not await crud.admin_exists(session):
        return htmx.see_other(request, str(request.url_for("setup").path))
    next_url = local_path(request.query_params.get("next"), "")
    return _login_page(request, next_url=next_url)


@router.post("/login", name="login_submit")
async def login(
    request: Request, session: SessionDep, settings: SettingsDep, hasher: HasherDep
) -> Response:
    form = await read_form(request)
    # Text only (a multipart post may send a file). An address with a NUL is no one's (the
    # forms refuse one, and PostgreSQL would refuse to look it up): a failed sign-in,
    # counted against the address without it.
    typed = form.get("email")
    typed = typed if isinstance(typed, str) else ""
    email = typed.replace("\x00", "").strip()[:254]
    password = form.get("password")
    password = password if isinstance(password, str) else ""
    next_url = local_path(form.get("next"), "")
    address = auth.client_address(request)
    keys = auth.throttle_keys(email, address)

    locked = await auth.locked_until(session, keys)
    if locked is not None:
        minutes = max(1, math.ceil((locked - utcnow()).total_seconds() / 60))
        return _login_page(
            request,
            email=email,
            next_url=next_url,
            error=f"Too many failed sign-ins. Try again in {minutes} minute"
            f"{'s' if minutes != 1 else ''}.",
            status_code=429,
        )
    user = await crud.get_user_by_email(session, email) if email and "\x00" not in typed else None
    # Release the connection while bcrypt works; verify against a dummy hash for unknown
    # emails, so a miss takes as long as a hit.
    await session.commit()
    password_ok = await hasher.verify(password, user.password_hash if user else hasher.dummy_hash)
    if user is not None and password_ok and auth.may_use_console(user):
        return await _signed_in(request, session, hasher, user, password, keys[0], next_url)

    outcome = await auth.record_failure(session, settings, keys)
    anonymous = Actor(None, None, address)
    audit.record(session, anonymous, "auth.sign_in_failed", target=user, target_email=email)
    if outcome.locked_until is not None:
        audit.record(session, anonymous, "auth.lockout", target=user, target_email=email)
    await session.commit()
    if outcome.delay:
        await asyncio.sleep(outcome.delay)  # the connection is back in the pool meanwhile
    return _login_page(
        request, email=email, next_url=next_url, error=WRONG_CREDENTIALS, status_code=401
    )


async def _signed_in(
    request: Request,
    session: SessionDep,
    hasher: HasherDep,
    user: Any,
    password: str,
    account_key: str,
    next_url: str,
) -> Response:
    if hasher.needs_update(user.password_hash):
        await crud.rehash_password(session, user, await hasher.rehash(password, user.password_hash))
    await auth.reset_failures(session, account_key)
    audit.record(session, Actor.of(user, auth.client_address(request)), "auth.sign_in", target=user)
    auth.sign_in(request, user)
    if user.must_change_password:
        return htmx.see_other(request, str(request.url_for("change_own_password").path))
    return htmx.see_other(request, next_url or str(request.url_for("list_users").path))


@router.post("/logout", name="logout")
async def logout(request: Request, session: SessionDep, admin: CurrentAdmin) -> Response:
    audit.record(
        session, Actor.of(admin, auth.client_address(request)), "auth.sign_out", target=admin
    )
    auth.sign_out(request)
    flash(request, "You are signed out.", "info")
    return htmx.see_other(request, str(request.url_for("login").path))


# --- First run --------------------------------------------------------------------------


async def _setup_open(session: SessionDep, settings: SettingsDep) -> bool:
    return settings.setup_enabled and not await crud.admin_exists(session)


@router.get("/setup", name="setup")
async def setup_form(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    if not await _setup_open(session, settings):
        return not_found(request)
    return render(request, "auth/setup.html", {"values": {}, "errors": {}})


@router.post("/setup", name="setup_submit")
async def setup(
    request: Request, session: SessionDep, settings: SettingsDep, hasher: HasherDep
) -> Response:
    if not await _setup_open(session, settings):
        return not_found(request)
    form = await read_form(request)
    data, errors = parse_form(UserCreate, {**form, "is_active": "yes", "is_admin": "yes"})
    if data is None:
        return render(
            request,
            "auth/setup.html",
            {"values": form_values(form), "errors": errors},
            status_code=422,
        )
    await session.commit()  # release the connection while bcrypt works
    password_hash = await hasher.hash(data.password)
    if not await _setup_open(session, settings):  # someone finished setup meanwhile
        return not_found(request)
    actor = Actor(None, None, auth.client_address(request))
    try:
        user = await crud.create_user(session, actor, data, password_hash)
    except DuplicateEmailError:  # pragma: no cover - no user can exist before the first admin
        return not_found(request)
    auth.sign_in(request, user)
    flash(request, f"Welcome, {user.first_name}. You are the first admin.")
    return htmx.see_other(request, str(request.url_for("list_users").path))


# --- Your own password ------------------------------------------------------------------


def _password_page(
    request: Request, admin: Any, errors: dict[str, str], status_code: int = 200
) -> Response:
    return render(
        request,
        "auth/password.html",
        {"user": admin, "errors": errors},
        status_code=status_code,
    )


@router.get("/account/password", name="change_own_password")
async def change_own_password(request: Request, admin: CurrentAdmin) -> Response:
    return _password_page(request, admin, {})


@router.post("/account/password", name="save_own_password")
async def save_own_password(
    request: Request, session: SessionDep, admin: CurrentAdmin, hasher: HasherDep
) -> Response:
    form = await read_form(request)
    data, errors = parse_form(PasswordChange, form)
    if data is None:
        return _password_page(request, admin, errors, 422)
    await session.commit()  # release the connection while bcrypt works
    if not await hasher.verify(data.current_password, admin.password_hash):
        return _password_page(
            request, admin, {"current_password": "This is not your current password."}, 422
        )
    if data.password == data.current_password:
        return _password_page(
            request, admin, {"password": "Choose a password different from the current one."}, 422
        )
    password_hash = await hasher.hash(data.password)
    actor = Actor.of(admin, auth.client_address(request))
    user = await crud.get_user(session, admin.id)
    if user is None:  # pragma: no cover - current_admin just loaded it
        return not_found(request)
    try:
        await crud.set_password(session, actor, user, password_hash, must_change=False)
    except StaleUserError:
        flash(request, "Your account changed at the same moment; please try again.", "error")
        return htmx.see_other(request, str(request.url_for("change_own_password").path))
    auth.refresh_stamp(request, user)
    flash(request, "Your password was changed. Other sessions of yours are signed out.")
    return htmx.see_other(request, str(request.url_for("list_users").path))
