"""Error answers: a page for browsers, a notice for htmx, JSON for JSON clients. Never internals."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException

from webapp import htmx
from webapp.templating import render

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def error_response(
    request: Request,
    status_code: int,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
) -> Response:
    title = HTTPStatus(status_code).phrase
    if wants_json(request):
        return JSONResponse(
            {"status": status_code, "title": title, "detail": message},
            status_code=status_code,
            headers=dict(headers or {}),
        )
    response = render(
        request,
        "error.html",
        {"status_code": status_code, "title": title, "message": message},
        fragment="_error_notice.html",
        status_code=status_code,
        headers=headers,
    )
    if htmx.wants_fragment(request):
        # A notice in the flash region; the part of the page that asked stays as it was.
        htmx.retarget(response, "#flashes")
    return response


def not_found(request: Request, message: str = "There is nothing at this address.") -> Response:
    return error_response(request, 404, message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {
        404: "There is nothing at this address.",
        405: "This address does not accept that kind of request.",
    }.get(exc.status_code, str(exc.detail))
    return error_response(request, exc.status_code, message, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if any(err.get("loc", ("",))[0] == "path" for err in exc.errors()):
        return not_found(request)
    return error_response(request, 400, "The request could not be understood.")


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    # Pool exhausted past its timeout, or the database unreachable: both pass with time,
    # so say so and ask the client to retry, instead of a 500 or a hang.
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return error_response(
        request,
        503,
        "The database is busy or unavailable right now. Please try again in a moment.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(
        request, 500, "Something went wrong on our side. Nothing was changed; it has been logged."
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(sa_exc.TimeoutError, _database_unavailable)
    app.add_exception_handler(sa_exc.OperationalError, _database_unavailable)
    app.add_exception_handler(sa_exc.InterfaceError, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected)
