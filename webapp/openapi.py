"""The API's OpenAPI document: the ``/api/`` routes only (the console's pages are not an API)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import iter_route_contexts

from webapp.problems import API_PREFIX, FieldError, Problem
from webapp.tokens import TOKEN_PREFIX

DESCRIPTION = f"""
The console's user operations as JSON: the same validation, safety rails and audit trail.

**Authentication.** Create a personal token on the console's *API tokens* page and send
`Authorization: Bearer {TOKEN_PREFIX}…`. A browser signed in to the console may use the API with
its session cookie instead, and then sends `X-CSRF-Token` on every request that changes
something. A token works while its owner is an active admin and it has not expired.

**Errors** are `application/problem+json` documents (RFC 9457), with `errors` by field on 422.

**Changes never overwrite each other.** Every user has a `version`, and its `ETag` is derived
from it: send `If-Match` with the ETag you read (412 if someone changed the user meanwhile),
or `version` in the body (409).

**Paging** is by cursor: follow `next` and `prev`. Each page costs the same, however deep.
"""

SECURITY_SCHEMES: dict[str, Any] = {
    "bearerToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "A personal API token from the console's API tokens page.",
    },
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "webapp_session",
        "description": "The console's sign-in session (browsers).",
    },
    "csrfHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-CSRF-Token",
        "description": "With the session cookie, on every request that changes something.",
    },
}
SAFE = {"get", "head", "options"}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    cached: dict[str, Any] | None = getattr(app.state, "openapi_schema", None)
    if cached is not None:
        return cached
    routes = [
        route
        for route in iter_route_contexts(app.routes)
        if (route.path_format or "").startswith(API_PREFIX)
    ]
    schema = get_openapi(
        title="webapp API", version="1", description=DESCRIPTION.strip(), routes=routes
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in (Problem, FieldError):
        definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(definition.pop("$defs", {}))
        schemas[model.__name__] = definition
    components["securitySchemes"] = SECURITY_SCHEMES
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            session: dict[str, list[str]] = {"sessionCookie": []}
            if method not in SAFE:
                session["csrfHeader"] = []
            operation["security"] = [{"bearerToken": []}, session]
    app.state.openapi_schema = schema
    return schema
