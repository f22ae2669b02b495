"""The API's errors: ``application/problem+json`` (RFC 9457), with errors by field for 422."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.requests import Request

API_PREFIX = "/api/"
OPENAPI_PATH = "/openapi.json"
MEDIA_TYPE = "application/problem+json"
_TYPE = "urn:webapp:problem:"

# The kinds of problem the API reports, by the slug of their ``type``.
BAD_CURSOR = "bad-cursor"
DUPLICATE_EMAIL = "duplicate-email"
NOT_FOUND = "not-found"
PRECONDITION_FAILED = "precondition-failed"
PRECONDITION_REQUIRED = "precondition-required"
SAFETY_RAIL = "safety-rail"
STALE_VERSION = "stale-version"
THROTTLED = "throttled"
UNAUTHORIZED = "unauthorized"
VALIDATION = "validation"


class FieldError(BaseModel):
    field: str = Field(description="The field, e.g. `email`, or `__all__` for the whole input.")
    location: str = Field(description="Where the field was: `body`, `query`, `path` or `header`.")
    message: str


class Problem(BaseModel):
    """What went wrong. Extra members appear on some problems (``errors``, ``current``)."""

    type: str = Field(description="`about:blank` or `urn:webapp:problem:<kind>`.")
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = Field(
        default=None, description="On 422 and on a duplicate email: what is wrong, by field."
    )
    current_version: int | None = Field(
        default=None, description="On a stale version: the version stored now."
    )


class ApiProblem(Exception):
    """Raised anywhere under ``/api/``; answered as a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        errors: list[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.errors = errors
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def is_api_request(request: Request) -> bool:
    path: str = request.scope["path"]
    root = request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path.startswith(API_PREFIX) or path in (API_PREFIX.rstrip("/"), OPENAPI_PATH)


def problem_response(
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    errors: list[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"{_TYPE}{kind}" if kind else "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = [error.model_dump() for error in errors]
    body.update(extra or {})
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=MEDIA_TYPE
    )


async def handle_api_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiProblem)
    return problem_response(
        exc.status,
        exc.detail,
        kind=exc.kind,
        errors=exc.errors,
        headers=exc.headers,
        extra=exc.extra,
    )


def field_errors(errors: Mapping[str, str], location: str = "body") -> list[FieldError]:
    """The forms' ``{field: message}`` as a problem's ``errors``."""
    return [FieldError(field=f, location=location, message=m) for f, m in errors.items()]


def validation_problem(exc: RequestValidationError) -> JSONResponse:
    """FastAPI's request validation, as a 422 problem naming each field."""
    errors: list[FieldError] = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        location = loc[0] if loc else "body"
        field = ".".join(loc[1:]) or "__all__"
        message = str(err.get("msg", "Invalid value.")).removeprefix("Value error, ")
        errors.append(FieldError(field=field, location=location, message=message))
    return problem_response(
        422, "The request is not valid; see errors.", kind=VALIDATION, errors=errors
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these statuses, each a problem document."""
    return {
        status: {
            "description": DESCRIPTIONS.get(status, HTTPStatus(status).phrase),
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


DESCRIPTIONS = {
    400: "A body that cannot be read (not UTF-8), or a cursor this API did not issue for "
    "this sort.",
    401: "No valid credentials: a bearer token, or a signed-in admin's session cookie.",
    403: "Session cookie without the `X-CSRF-Token` header, or a password change is due.",
    404: "No user with this id.",
    409: "Conflict: duplicate email, stale `version`, or a safety rail.",
    412: "`If-Match` does not match the user's current ETag.",
    422: "The input is not valid; `errors` names each field.",
    428: "Send `If-Match` (or `version` in the body) so that no change is overwritten.",
    429: "Too many failed authentications from this address; see `Retry-After`.",
    503: "The database is busy or unavailable; see `Retry-After`.",
}
