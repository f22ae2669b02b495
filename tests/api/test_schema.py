"""/openapi.json and /docs: every endpoint, model, error and the bearer scheme; local assets."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.api.support import BEARER, insert_token, problem
from tests.pool_helpers import starve_the_pool
from webapp.config import Settings
from webapp.main import create_app

OPERATIONS = {
    ("get", "/api/v1/users"),
    ("post", "/api/v1/users"),
    ("get", "/api/v1/users/{user_id}"),
    ("put", "/api/v1/users/{user_id}"),
    ("patch", "/api/v1/users/{user_id}"),
    ("delete", "/api/v1/users/{user_id}"),
    ("post", "/api/v1/users/{user_id}/password"),
    ("post", "/api/v1/users/{user_id}/activate"),
    ("post", "/api/v1/users/{user_id}/deactivate"),
}


def test_the_schema_needs_a_token_or_a_session(
    settings: Settings, client: TestClient, db: Engine, admin_id: int
) -> None:
    with TestClient(create_app(settings)) as anonymous:  # an app of its own: one lifespan each
        problem(anonymous.get("/openapi.json"), 401)
        token = insert_token(db, admin_id)
        assert (
            anonymous.get("/openapi.json", headers={BEARER: f"Bearer {token}"}).status_code == 200
        )
    assert client.get("/openapi.json").status_code == 200  # the console's session


def test_the_schema_describes_the_api_and_nothing_else(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()
    operations = {(m, p) for p, ops in schema["paths"].items() for m in ops}
    assert operations == OPERATIONS  # no console page, no /docs
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearerToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A personal API token from the console's API tokens page.",
    }
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            assert {"bearerToken": []} in op["security"], (method, path)
            for status in ("401", "403", "429", "503"):
                content = op["responses"][status]["content"]
                assert list(content) == ["application/problem+json"], (method, path, status)
            if method != "get" or "{user_id}" in path:
                assert "422" in op["responses"]
    models = schema["components"]["schemas"]
    assert {"UserOut", "UserPage", "UserCreateIn", "Problem", "FieldError"} <= set(models)
    assert "password_hash" not in json.dumps(schema)
    assert "password" not in models["UserOut"]["properties"]
    created = schema["paths"]["/api/v1/users"]["post"]["responses"]
    assert created["201"]["content"]["application/json"]["schema"]["$ref"].endswith("UserOut")
    assert {"409", "422"} <= set(created)
    assert {"404", "409", "412", "428"} <= set(
        schema["paths"]["/api/v1/users/{user_id}"]["put"]["responses"]
    )


def test_docs_page_serves_swagger_ui_from_static(settings: Settings, client: TestClient) -> None:
    with TestClient(create_app(settings), follow_redirects=False) as anonymous:
        assert anonymous.get("/docs").status_code == 303  # sign in first
    page = client.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "/static/swagger/swagger-ui-bundle.js" in sources
    assert "/static/swagger/swagger-ui.css" in sources
    assert "/static/docs.js" in sources
    assert all(s.startswith("/") for s in sources), "nothing from a CDN"
    assert 'data-openapi-url="/openapi.json"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset in sources:
        response = client.get(asset)
        assert response.status_code == 200, asset
    assert "SwaggerUIBundle" in client.get("/static/docs.js").text


def test_an_exhausted_pool_answers_503_problem_with_retry_after(database_url: str) -> None:
    """Size 1, no overflow: while one request holds the connection, the API fails fast."""
    run = starve_the_pool(database_url, "/api/v1/users", {BEARER: "Bearer wat_x"})
    assert run.held.status_code == 200
    body = problem(run.starved, 503)
    assert "try again" in body["detail"]
    assert run.starved.headers["retry-after"].isdigit()
    assert 0.4 < run.waited < 1.5  # the pool timeout (0.5 s), not the holder's 2 s
