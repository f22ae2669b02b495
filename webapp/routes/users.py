"""The user pages: list (search, sort, filter, pages), create, edit, password, activate, delete."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from webapp import auth, crud, htmx
from webapp.crud import DuplicateEmailError, SafetyRailError, StaleUserError
from webapp.deps import (
    ActorDep,
    AdminUserListDep,
    HasherDep,
    SessionDep,
    SettingsDep,
    require_admin,
)
from webapp.errors import not_found
from webapp.forms import (
    FieldErrors,
    PasswordSet,
    UserCreate,
    UserUpdate,
    form_values,
    parse_form,
    read_form,
)
from webapp.listing import ListLinks, RowLinks, UserListQuery
from webapp.models import User
from webapp.templating import flash, render, route_url
from webapp.urls import local_path

# Every page here needs a signed-in, active admin.
router = APIRouter(dependencies=[Depends(require_admin)])
# The list checks its admin in the statement that reads its page: the same check, by
# ``require_admin_with_user_list`` (tests/test_access.py holds every route to it).
list_router = APIRouter()

DUPLICATE_EMAIL = "Another user already has this email address."


def _user_values(user: User) -> dict[str, Any]:
    return {
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": user.is_active,
        "is_admin": user.is_admin,
        "version": user.version,
    }


async def _list_page(
    request: Request, session: SessionDep, settings: SettingsDep, query: UserListQuery
) -> Response:
    return _render_list(request, query, await crud.list_users(session, query, settings.per_page))


def _render_list(
    request: Request, query: UserListQuery, listing: crud.UserList, *, push_url: bool = False
) -> Response:
    """The list, or its table for htmx; with ``push_url``, the table's answer puts the list's
    short, canonical address in the bar (the search form sends every field, defaults too)."""
    if listing.restarted:  # the first page is shown: its links and address say so
        query = replace(query, cursor="")
    links = ListLinks.of(_list_path(request), query, listing.page)
    response = render(
        request,
        "users/list.html",
        {
            "page": listing.page,
            "count": listing.count,
            "query": query,
            "links": links,
            "restarted": listing.restarted,
        },
        fragment="users/_table.html",
    )
    if push_url and htmx.wants_fragment(request):
        htmx.push_url(response, links.here)
    return response


def _list_path(request: Request) -> str:
    return route_url(request, "list_users").path


@router.get("/", name="home")
async def home(request: Request) -> RedirectResponse:
    return RedirectResponse(request.url_for("list_users"), status_code=303)


@list_router.get("/users", name="list_users")
async def list_users(request: Request, listed: AdminUserListDep) -> Response:
    return _render_list(request, listed.query, listed.listing, push_url=True)


@router.get("/users/new", name="new_user")
async def new_user(request: Request) -> Response:
    return _create_form(request, {"is_active": True}, {})


def _create_form(
    request: Request, values: dict[str, Any], errors: FieldErrors, status_code: int = 200
) -> Response:
    return render(
        request,
        "users/new.html",
        {"values": values, "errors": errors},
        fragment="users/_create_form.html",
        status_code=status_code,
    )


@router.post("/users", name="create_user")
async def create_user(
    request: Request, session: SessionDep, hasher: HasherDep, actor: ActorDep
) -> Response:
    form = await read_form(request)
    data, errors = parse_form(UserCreate, form)
    if data is None:
        return _create_form(request, form_values(form), errors, 422)
    # Hash before touching the database: the connection is not held while bcrypt runs.
    password_hash = await hasher.hash(data.password)
    try:
        user = await crud.create_user(session, actor, data, password_hash)
    except DuplicateEmailError:
        return _create_form(request, form_values(form), {"email": DUPLICATE_EMAIL}, 422)
    flash(request, f"Created {user.full_name} ({user.email}).")
    return htmx.see_other(request, str(request.url_for("list_users")))


def _edit_page(
    request: Request,
    user: User,
    *,
    values: dict[str, Any] | None = None,
    errors: FieldErrors | None = None,
    password_errors: FieldErrors | None = None,
    conflict: User | None = None,
    fragment: str = "users/_edit_form.html",
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "users/edit.html",
        {
            "user": user,
            "values": values if values is not None else _user_values(user),
            "errors": errors or {},
            "password_errors": password_errors or {},
            "conflict": conflict,
        },
        fragment=fragment,
        status_code=status_code,
    )


@router.get("/users/{user_id}", name="edit_user")
async def edit_user(request: Request, user_id: int, session: SessionDep) -> Response:
    user = await crud.get_user(session, user_id)
    if user is None:
        return not_found(request, "There is no user with this id; it may have been deleted.")
    return _edit_page(request, user)


@router.post("/users/{user_id}", name="update_user")
async def update_user(
    request: Request, user_id: int, session: SessionDep, actor: ActorDep
) -> Response:
    user = await crud.get_user(session, user_id)
    if user is None:
        return not_found(request, "This user was deleted, so your changes could not be saved.")
    form = await read_form(request)
    values = form_values(form)
    data, errors = parse_form(UserUpdate, form, kept=crud.stored_names(user))
    if data is None:
        return _edit_page(request, user, values=values, errors=errors, status_code=422)
    try:
        await crud.update_user(session, actor, user, data, data.version)
    except SafetyRailError as rail:
        return _edit_page(
            request, user, values=values, errors={"__all__": str(rail)}, status_code=409
        )
    except DuplicateEmailError:
        user = await crud.get_user(session, user_id) or user
        return _edit_page(
            request, user, values=values, errors={"email": DUPLICATE_EMAIL}, status_code=422
        )
    except StaleUserError as stale:
        if stale.current is None:
            return not_found(request, "This user was deleted, so your changes could not be saved.")
        # Keep what was typed, show what is stored now, and arm the form with the current
        # version: saving again is a deliberate overwrite, never a silent one.
        values["version"] = str(stale.current.version)
        return _edit_page(
            request, stale.current, values=values, conflict=stale.current, status_code=409
        )
    flash(request, f"Saved {user.full_name}.")
    return htmx.see_other(request, str(request.url_for("edit_user", user_id=user.id)))


@router.post("/users/{user_id}/password", name="set_password")
async def set_password(
    request: Request, user_id: int, session: SessionDep, hasher: HasherDep, actor: ActorDep
) -> Response:
    form = await read_form(request)
    user = await crud.get_user(session, user_id)
    if user is None:
        return not_found(request, "There is no user with this id; it may have been deleted.")
    data, errors = parse_form(PasswordSet, form)
    own = user.id == actor.user_id
    if data is not None and own:
        # Changing your own password takes the current one, as on the account page.
        await session.commit()  # release the connection while bcrypt works
        if not await hasher.verify(data.current_password, user.password_hash):
            data, errors = None, {"current_password": "This is not your current password."}
    if data is None:
        return _edit_page(
            request,
            user,
            password_errors=errors,
            fragment="users/_password_form.html",
            status_code=422,
        )
    await session.commit()
    password_hash = await hasher.hash(data.password)
    try:
        await crud.set_password(
            session, actor, user, password_hash, must_change=data.must_change and not own
        )
    except StaleUserError:
        return _changed_meanwhile(request, str(request.url_for("edit_user", user_id=user_id)))
    if own:
        auth.refresh_stamp(request, user)  # stay signed in here; other sessions end
    flash(request, f"Set a new password for {user.full_name}.")
    return htmx.see_other(request, str(request.url_for("edit_user", user_id=user.id)))


def _changed_meanwhile(request: Request, url: str) -> Response:
    flash(request, "Someone else changed this user at the same moment; please try again.", "error")
    return htmx.see_other(request, url)


def _list_query_of(next_url: str) -> UserListQuery:
    return UserListQuery.from_params(dict(parse_qsl(urlsplit(next_url).query)))


def _next_url(request: Request, form: FormData) -> str:
    return local_path(form.get("next"), str(request.url_for("list_users").path))


@router.post("/users/{user_id}/active", name="set_active")
async def set_active(
    request: Request, user_id: int, session: SessionDep, actor: ActorDep
) -> Response:
    form = await read_form(request)
    next_url = _next_url(request, form)
    user = await crud.get_user(session, user_id)
    if user is None:
        return not_found(request, "There is no user with this id; it may have been deleted.")
    wanted = form.get("active")
    if wanted not in ("yes", "no"):  # the buttons send one or the other
        flash(request, "Say whether to activate or deactivate: active=yes or no.", "error")
        return htmx.see_other(request, next_url)
    active = wanted == "yes"
    try:
        await crud.set_active(session, actor, user, active)
        flash(request, f"{'Activated' if active else 'Deactivated'} {user.full_name}.")
    except StaleUserError:
        return _changed_meanwhile(request, next_url)
    except SafetyRailError as rail:
        flash(request, str(rail), "error")
    if htmx.wants_fragment(request):
        return render(
            request,
            "users/_row.html",
            {"user": user, "row_links": RowLinks.of(_list_path(request), next_url)},
            fragment="users/_row.html",
        )
    return htmx.see_other(request, next_url)


@router.get("/users/{user_id}/delete", name="confirm_delete")
async def confirm_delete(request: Request, user_id: int, session: SessionDep) -> Response:
    user = await crud.get_user(session, user_id)
    if user is None:
        return not_found(request, "There is no user with this id; it may have been deleted.")
    next_url = local_path(request.query_params.get("next"), str(request.url_for("list_users").path))
    return render(request, "users/delete.html", {"user": user, "next_url": next_url})


@router.post("/users/{user_id}/delete", name="delete_user")
async def delete_user(
    request: Request, user_id: int, session: SessionDep, settings: SettingsDep, actor: ActorDep
) -> Response:
    form = await read_form(request)
    next_url = _next_url(request, form)
    user = await crud.get_user(session, user_id)
    if user is None:
        flash(request, "That user was already deleted.", "info")
    else:
        name = user.full_name
        try:
            await crud.delete_user(session, actor, user)
            flash(request, f"Deleted {name}.")
        except SafetyRailError as rail:
            flash(request, str(rail), "error")
        except StaleUserError as stale:
            if stale.current is None:
                flash(request, "That user was already deleted.", "info")
            else:
                flash(
                    request,
                    f"{stale.current.full_name} was changed by someone else at the same moment, "
                    "so it was not deleted. Check the user and try again.",
                    "error",
                )
    if htmx.wants_fragment(request):
        # Refresh the whole table: the count and the page's rows both changed.
        return await _list_page(request, session, settings, _list_query_of(next_url))
    return htmx.see_other(request, next_url)
