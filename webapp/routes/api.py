"""The JSON API under ``/api/v1``: the console's user operations, on the same rules and trail.

Each route parses the request's shape (``api_schemas``), checks its values with the console's
own ``forms`` models, and does the work with the same ``crud`` functions, so a change made here
is refused, allowed and audited exactly as the same change made in the console.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from webapp import auth, crud, problems
from webapp.api_schemas import (
    PasswordIn,
    UserCreateIn,
    UserOut,
    UserPage,
    UserPatchIn,
    UserReplaceIn,
    user_out,
)
from webapp.crud import DuplicateEmailError, SafetyRailError, StaleUserError
from webapp.deps import ApiActorDep, ApiAdmin, HasherDep, SessionDep, SettingsDep
from webapp.forms import FormT, PasswordSet, UserCreate, UserFields, parse_form
from webapp.keyset import CursorError
from webapp.listing import SEARCH_MAX, SortKey, UserListQuery
from webapp.models import User
from webapp.problems import ApiProblem, field_errors, problem_responses

# Every route needs the API's caller; the errors any route may answer are listed once here.
router = APIRouter(
    prefix="/api/v1",
    tags=["users"],
    responses=problem_responses(400, 401, 403, 429, 503),
)
USER = "/users/{user_id}"
# The id column is a 32-bit integer: a larger id names nobody, and must not reach the driver.
UserId = Annotated[int, Path(ge=1, le=2**31 - 1)]
LIMIT_MAX = 500
DUPLICATE_EMAIL = "Another user already has this email address."


# --- Helpers ----------------------------------------------------------------------------


def etag(user: User) -> str:
    return f'"{user.version}"'


def _with_etag(user: User, status_code: int = 200, headers: dict[str, str] | None = None) -> Any:
    body = user_out(user).model_dump(mode="json")
    return JSONResponse(
        body, status_code=status_code, headers={"ETag": etag(user), **(headers or {})}
    )


def _if_match(request: Request, user: User) -> bool | None:
    """None without ``If-Match``; else whether it names the user's current ETag."""
    header = request.headers.get("if-match")
    if header is None:
        return None
    tags = [tag.strip() for tag in header.split(",")]
    return "*" in tags or etag(user) in tags  # If-Match compares strongly: W/ never matches


def _precondition(request: Request, user: User, version: int | None, *, required: bool) -> int:
    """The version the client's change was made on: If-Match first, then ``version``."""
    matches = _if_match(request, user)
    if matches is False:
        raise _stale(user, if_match=True)
    if matches is None and version is None:
        if required:
            raise ApiProblem(
                428,
                "Send If-Match with the ETag you read (or version in the body), "
                "so that no one else's change is overwritten.",
                kind=problems.PRECONDITION_REQUIRED,
            )
        return user.version
    if matches is None and version != user.version:
        raise _stale(user, if_match=False)
    return user.version


def _stale(current: User | None, *, if_match: bool) -> ApiProblem:
    if current is None:
        return _not_found()
    detail = "The user changed since you read it; read it again and reapply your change."
    status, kind = (
        (412, problems.PRECONDITION_FAILED) if if_match else (409, problems.STALE_VERSION)
    )
    return ApiProblem(
        status,
        detail,
        kind=kind,
        headers={"ETag": etag(current)},
        extra={"current_version": current.version},
    )


def _not_found() -> ApiProblem:
    return ApiProblem(404, "There is no user with this id.", kind=problems.NOT_FOUND)


def _duplicate() -> ApiProblem:
    return ApiProblem(
        409,
        DUPLICATE_EMAIL,
        kind=problems.DUPLICATE_EMAIL,
        errors=field_errors({"email": DUPLICATE_EMAIL}),
    )


def _rail(rail: SafetyRailError) -> ApiProblem:
    return ApiProblem(409, str(rail), kind=problems.SAFETY_RAIL)


def _validated(
    model: type[FormT], values: dict[str, Any], kept: Mapping[str, str] | None = None
) -> FormT:
    """The console's form rules, applied to the API's values; 422 by field if they fail."""
    data, errors = parse_form(model, values, kept)
    if data is None:
        raise ApiProblem(
            422,
            "The request is not valid; see errors.",
            kind=problems.VALIDATION,
            errors=field_errors(errors),
        )
    return data


async def _user(session: SessionDep, user_id: UserId) -> User:
    user = await crud.get_user(session, user_id)
    if user is None:
        raise _not_found()
    return user


def _link(request: Request, params: dict[str, str], cursor: str | None) -> str | None:
    if cursor is None:
        return None
    path = request.scope.get("root_path", "") + request.app.url_path_for("api_list_users")
    return f"{path}?{urlencode({**params, 'cursor': cursor})}"


def _flag(value: bool | None) -> str:
    return "" if value is None else "yes" if value else "no"


# --- Routes -----------------------------------------------------------------------------


@router.get(
    "/users",
    name="api_list_users",
    response_model=UserPage,
    responses=problem_responses(422),
    summary="List users: search, sort, filter, cursor paging",
)
async def list_users(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    _caller: ApiAdmin,
    q: Annotated[
        str,
        Query(
            max_length=SEARCH_MAX,
            description="Every word must appear in the first name, last name or email.",
        ),
    ] = "",
    sort: Annotated[SortKey, Query(description="`-` sorts descending.")] = "name",
    active: Annotated[bool | None, Query(description="Only active (or inactive) users.")] = None,
    admin_filter: Annotated[
        bool | None, Query(alias="admin", description="Only admins (or non-admins).")
    ] = None,
    limit: Annotated[
        int | None, Query(ge=1, le=LIMIT_MAX, description="Default: `WEBAPP_PER_PAGE`.")
    ] = None,
    cursor: Annotated[
        str | None,
        Query(max_length=2048, description="From a page's `next` or `prev`; opaque."),
    ] = None,
) -> UserPage:
    """Pages are read from an index by the sort key (tie-broken by id), so the thousandth
    page costs what the first does. Follow `next` and `prev`; they keep the filters."""
    query = UserListQuery.from_params(
        {"q": q, "sort": sort, "active": _flag(active), "admin": _flag(admin_filter)}
    )
    size = limit or settings.per_page
    try:
        page = await crud.list_users_page(session, query, cursor, size)
    except CursorError as exc:
        raise ApiProblem(400, str(exc), kind=problems.BAD_CURSOR) from None
    params = {"sort": query.sort, "limit": str(size)} | ({"q": query.q} if query.q else {})
    for name, value in (("active", active), ("admin", admin_filter)):
        if value is not None:
            params[name] = "true" if value else "false"
    return UserPage(
        items=[user_out(user) for user in page.items],
        limit=size,
        next=_link(request, params, page.next_cursor),
        prev=_link(request, params, page.prev_cursor),
    )


@router.post(
    "/users",
    name="api_create_user",
    status_code=201,
    response_model=UserOut,
    responses=problem_responses(409, 422),
    summary="Create a user",
)
async def create_user(
    request: Request,
    body: UserCreateIn,
    session: SessionDep,
    hasher: HasherDep,
    actor: ApiActorDep,
) -> Any:
    values = body.model_dump()
    data = _validated(UserCreate, {**values, "password_confirm": body.password})
    await session.commit()  # release the connection while bcrypt works
    password_hash = await hasher.hash(data.password)
    try:
        user = await crud.create_user(session, actor, data, password_hash)
    except DuplicateEmailError:
        raise _duplicate() from None
    location = request.app.url_path_for("api_get_user", user_id=user.id)
    return _with_etag(user, 201, {"Location": request.scope.get("root_path", "") + location})


@router.get(
    USER,
    name="api_get_user",
    response_model=UserOut,
    responses=problem_responses(404, 422),
    summary="Get a user",
)
async def get_user(user_id: UserId, session: SessionDep, _caller: ApiAdmin) -> Any:
    return _with_etag(await _user(session, user_id))


async def _update(
    request: Request,
    session: SessionDep,
    actor: ApiActorDep,
    user: User,
    values: dict[str, Any],
    version: int | None,
) -> Any:
    data = _validated(UserFields, values, kept=crud.stored_names(user))
    expected = _precondition(request, user, version, required=True)
    if_match = request.headers.get("if-match") is not None
    try:
        await crud.update_user(session, actor, user, data, expected)
    except SafetyRailError as rail:
        raise _rail(rail) from None
    except DuplicateEmailError:
        raise _duplicate() from None
    except StaleUserError as stale:
        raise _stale(stale.current, if_match=if_match) from None
    return _with_etag(user)


UPDATE_ERRORS = problem_responses(404, 409, 412, 422, 428)


@router.put(
    USER,
    name="api_replace_user",
    response_model=UserOut,
    responses=UPDATE_ERRORS,
    summary="Replace a user's editable fields",
)
async def replace_user(
    request: Request, user_id: UserId, body: UserReplaceIn, session: SessionDep, actor: ApiActorDep
) -> Any:
    """Send `If-Match` with the ETag you read (412 if the user changed since), or `version`
    in the body (409 if it is not the current one). Neither: 428."""
    user = await _user(session, user_id)
    values = body.model_dump(exclude={"version"})
    return await _update(request, session, actor, user, values, body.version)


@router.patch(
    USER,
    name="api_update_user",
    response_model=UserOut,
    responses=UPDATE_ERRORS,
    summary="Change some of a user's fields",
)
async def update_user(
    request: Request, user_id: UserId, body: UserPatchIn, session: SessionDep, actor: ApiActorDep
) -> Any:
    """As PUT, with only the fields to change."""
    user = await _user(session, user_id)
    current = {f: getattr(user, f) for f in crud.EDITABLE}
    changes = {k: v for k, v in body.model_dump(exclude={"version"}).items() if v is not None}
    return await _update(request, session, actor, user, {**current, **changes}, body.version)


@router.post(
    USER + "/password",
    name="api_set_password",
    response_model=UserOut,
    responses=problem_responses(404, 409, 412, 422),
    summary="Set a user's password",
)
async def set_password(
    request: Request,
    user_id: UserId,
    body: PasswordIn,
    session: SessionDep,
    hasher: HasherDep,
    actor: ApiActorDep,
) -> Any:
    """Your own password needs `current_password`, as in the console."""
    user = await _user(session, user_id)
    _precondition(request, user, None, required=False)
    data = _validated(
        PasswordSet,
        {
            "password": body.password,
            "password_confirm": body.password,
            "must_change": body.must_change,
            "current_password": body.current_password or "",
        },
    )
    own = user.id == actor.user_id
    await session.commit()  # release the connection while bcrypt works
    if own and not await hasher.verify(data.current_password, user.password_hash):
        message = (
            "Required, to set your own password."
            if not data.current_password
            else ("This is not your current password.")
        )
        raise ApiProblem(
            422,
            "The request is not valid; see errors.",
            kind=problems.VALIDATION,
            errors=field_errors({"current_password": message}),
        )
    password_hash = await hasher.hash(data.password)
    try:
        await crud.set_password(
            session, actor, user, password_hash, must_change=data.must_change and not own
        )
    except StaleUserError as stale:
        raise _stale(stale.current, if_match=request.headers.get("if-match") is not None) from None
    if own and auth.signed_in_user_id(request) == user.id:
        auth.refresh_stamp(request, user)  # this session stays signed in; others end
    return _with_etag(user)


async def _set_active(
    request: Request, user_id: UserId, session: SessionDep, actor: ApiActorDep, active: bool
) -> Any:
    user = await _user(session, user_id)
    _precondition(request, user, None, required=False)
    try:
        await crud.set_active(session, actor, user, active)
    except SafetyRailError as rail:
        raise _rail(rail) from None
    except StaleUserError as stale:
        raise _stale(stale.current, if_match=request.headers.get("if-match") is not None) from None
    return _with_etag(user)


ACTION_ERRORS = problem_responses(404, 409, 412, 422)


@router.post(
    USER + "/activate",
    name="api_activate_user",
    response_model=UserOut,
    responses=ACTION_ERRORS,
    summary="Activate a user",
)
async def activate_user(
    request: Request, user_id: UserId, session: SessionDep, actor: ApiActorDep
) -> Any:
    return await _set_active(request, user_id, session, actor, True)


@router.post(
    USER + "/deactivate",
    name="api_deactivate_user",
    response_model=UserOut,
    responses=ACTION_ERRORS,
    summary="Deactivate a user",
)
async def deactivate_user(
    request: Request, user_id: UserId, session: SessionDep, actor: ApiActorDep
) -> Any:
    """Not yourself, and never the last active admin (409)."""
    return await _set_active(request, user_id, session, actor, False)


@router.delete(
    USER,
    name="api_delete_user",
    status_code=204,
    response_class=Response,
    responses=ACTION_ERRORS,
    summary="Delete a user",
)
async def delete_user(
    request: Request, user_id: UserId, session: SessionDep, actor: ApiActorDep
) -> Response:
    """Not yourself, and never the last active admin (409). `If-Match` is honoured."""
    user = await _user(session, user_id)
    _precondition(request, user, None, required=False)
    try:
        await crud.delete_user(session, actor, user)
    except SafetyRailError as rail:
        raise _rail(rail) from None
    except StaleUserError as stale:
        raise _stale(stale.current, if_match=request.headers.get("if-match") is not None) from None
    return Response(status_code=204)
