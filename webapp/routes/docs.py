"""``/docs`` (Swagger UI, served from ``static/``) and ``/openapi.json``, for signed-in admins.

Not public: the schema names every route and field of an internal tool, and nobody who may
not use the API needs it. ``/docs`` is a console page (sign-in); ``/openapi.json`` takes the
session or a bearer token, so tools such as code generators and schemathesis can read it.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from webapp.deps import ApiAdmin, require_admin
from webapp.openapi import build_openapi
from webapp.templating import render

router = APIRouter(include_in_schema=False)

SWAGGER_UI_VERSION = "5.35.0"  # static/swagger/, from the npm package swagger-ui-dist


@router.get("/docs", name="api_docs", dependencies=[Depends(require_admin)])
async def docs(request: Request) -> Response:
    return render(request, "docs.html", {"swagger_ui_version": SWAGGER_UI_VERSION})


@router.get("/openapi.json", name="openapi")
async def openapi(request: Request, _caller: ApiAdmin) -> JSONResponse:
    return JSONResponse(build_openapi(request.app))
