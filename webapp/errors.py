"""Error answers: a page for browsers, a notice for htmx, JSON for JSON clients. Never internals."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from http import HTTPStatus
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException

from webapp import auth, htmx, problems
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
    if problems.is_api_request(request):
        return problems.problem_response(status_code, message, headers=headers)
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
    if problems.is_api_request(request):
        return problems.validation_problem(exc)
    if any(err.get("loc", ("",))[0] == "path" for err in exc.errors()):
        return not_found(request)
    return error_response(request, 400, "The request could not be understood.")


def _passes_with_time(exc: Exception) -> bool:
    """A full pool, an unreachable or restarting server, a lock, a cancelled statement: yes.
    A bug that SQLite happens to report as an OperationalError ("no such table"): no."""
    orig = getattr(exc, "orig", None)
    if isinstance(orig, sqlite3.OperationalError):
        message = str(orig).lower()
        return any(word in message for word in ("locked", "busy", "unable to open", "disk i/o"))
    return True


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    if not _passes_with_time(exc):
        return await _unexpected(request, exc)
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


def _redirect(request: Request, url: str, status_code: int, message: str) -> Response:
    if problems.is_api_request(request):
        return problems.problem_response(status_code, message)
    if wants_json(request):
        title = HTTPStatus(status_code).phrase
        body = {"status": status_code, "title": title, "detail": message, "location": url}
        return JSONResponse(body, status_code=status_code)
    # htmx gets a full-page redirect, never a login form pasted into a table.
    return htmx.see_other(request, url)


async def _sign_in_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, auth.SignInRequired)
    login = request.app.url_path_for("login")
    url = f"{login}?{urlencode({'next': exc.next_url})}" if exc.next_url != "/" else str(login)
    return _redirect(request, url, 401, "Sign in to use the console.")


async def _setup_required(request: Request, exc: Exception) -> Response:
    url = str(request.app.url_path_for("setup"))
    return _redirect(request, url, 401, "No admin exists yet: finish the first-run setup.")


async def _password_change_required(request: Request, exc: Exception) -> Response:
    url = str(request.app.url_path_for("change_own_password"))
    return _redirect(request, url, 403, "Choose a new password before you go on.")


async def _csrf_error(request: Request, exc: Exception) -> Response:
    return error_response(
        request,
        403,
        "This form has expired or did not come from this console, so nothing was changed. "
        "Reload the page and try again.",
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(auth.SignInRequired, _sign_in_required)
    app.add_exception_handler(auth.SetupRequired, _setup_required)
    app.add_exception_handler(auth.PasswordChangeRequired, _password_change_required)
    app.add_exception_handler(auth.CsrfError, _csrf_error)
    app.add_exception_handler(problems.ApiProblem, problems.handle_api_problem)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(sa_exc.TimeoutError, _database_unavailable)
    app.add_exception_handler(sa_exc.OperationalError, _database_unavailable)
    app.add_exception_handler(sa_exc.InterfaceError, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected)
