"""Schemathesis against /openapi.json with a valid token: no 500, nothing off the schema.

Bounded (``MAX_EXAMPLES`` per operation, positive and negative data) so the suite stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.support import BEARER

MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def running_app(app: FastAPI) -> Iterator[FastAPI]:
    with TestClient(app):  # the lifespan: engine, pool, hasher
        yield app


@pytest.fixture
def api_schema(running_app: FastAPI, token: str) -> schemathesis.BaseSchema:
    headers = {BEARER: f"Bearer {token}"}
    return schemathesis.openapi.from_asgi("/openapi.json", running_app, headers=headers)


def _run(operation: schemathesis.APIOperation, mode: GenerationMode, token: str) -> int:
    examples = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same examples on every run: a failure can be replayed
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        nonlocal examples
        examples += 1
        case.call_and_validate(headers={BEARER: f"Bearer {token}"}, checks=CHECKS)

    run()
    return examples


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_keeps_to_its_schema(
    api_schema: schemathesis.BaseSchema, token: str, mode: GenerationMode
) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 9
    counts = {op.label: _run(op, mode, token) for op in operations}
    print(f"schemathesis {mode.value}: {len(counts)} operations, {sum(counts.values())} examples")
    assert all(counts.values())
