"""The API tokens page: an admin creates (seen once) and revokes their own personal tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from webapp import htmx, tokens
from webapp.deps import ActorDep, CurrentAdmin, SessionDep, require_admin
from webapp.errors import not_found
from webapp.forms import (
    TOKEN_EXPIRY_DAYS,
    FieldErrors,
    TokenCreate,
    form_values,
    parse_form,
    read_form,
)
from webapp.models import User, utcnow
from webapp.templating import flash, render

router = APIRouter(dependencies=[Depends(require_admin)])


async def _page(
    request: Request,
    session: SessionDep,
    admin: User,
    *,
    values: dict[str, Any] | None = None,
    errors: FieldErrors | None = None,
    created: str | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "tokens/list.html",
        {
            "tokens": await tokens.list_tokens(session, admin.id),
            "now": utcnow(),
            "values": values or {"expires_in_days": "90"},
            "errors": errors or {},
            "created": created,
            "lifetimes": TOKEN_EXPIRY_DAYS,
            "as_aware": tokens.as_aware,
        },
        status_code=status_code,
    )


@router.get("/tokens", name="list_tokens")
async def list_tokens(request: Request, session: SessionDep, admin: CurrentAdmin) -> Response:
    return await _page(request, session, admin)


@router.post("/tokens", name="create_token")
async def create_token(
    request: Request, session: SessionDep, admin: CurrentAdmin, actor: ActorDep
) -> Response:
    form = await read_form(request)
    data, errors = parse_form(TokenCreate, form)
    if data is None:
        return await _page(
            request, session, admin, values=form_values(form), errors=errors, status_code=422
        )
    days = data.expires_in_days
    expires_at = utcnow() + timedelta(days=days) if days else None
    _, secret = await tokens.create_token(session, actor, admin, data.name, expires_at)
    # Shown in this answer and never again: only its hash is kept, so it cannot be shown later
    # (nor ride in a redirect's cookie).
    return await _page(request, session, admin, created=secret, status_code=201)


@router.post("/tokens/{token_id}/revoke", name="revoke_token")
async def revoke_token(
    request: Request, token_id: int, session: SessionDep, admin: CurrentAdmin, actor: ActorDep
) -> Response:
    token = await tokens.get_token(session, admin.id, token_id)
    if token is None:
        return not_found(request, "There is no such token of yours; it may have been revoked.")
    await tokens.revoke_token(session, actor, admin, token)
    flash(request, f"Revoked the token “{token.name}”. It no longer works.")
    return htmx.see_other(request, str(request.url_for("list_tokens").path))
