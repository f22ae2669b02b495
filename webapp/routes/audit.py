"""The audit page: read-only, newest first, filtered and paged like the user list."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from webapp import audit
from webapp.deps import SessionDep, SettingsDep, require_admin
from webapp.templating import render

# Read-only by design: there is no route that edits or deletes an audit row.
router = APIRouter(dependencies=[Depends(require_admin)])


@router.get("/audit", name="audit_log")
async def audit_log(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    query = audit.AuditQuery.from_params(request.query_params)
    page = await audit.list_events(session, query, settings.per_page)
    return render(
        request,
        "audit/list.html",
        {"page": page, "query": query, "actions": audit.ACTIONS},
        fragment="audit/_table.html",
    )
