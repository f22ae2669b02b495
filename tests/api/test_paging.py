"""Cursor paging: every sort, both directions, ties, filters, and bad cursors."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.api.support import field_errors, problem
from tests.factories import HOSTILE_CURSORS, insert_user
from webapp.keyset import encode_cursor
from webapp.models import utcnow

SORTS = ["name", "-name", "email", "-email", "created", "-created"]


@pytest.fixture
def people(db: Engine, admin_id: int) -> list[dict[str, Any]]:
    """Eleven users with ties in every sort key: equal names, equal creation times."""
    moment = utcnow() - timedelta(days=1)
    rows = [
        {"first_name": "Ada", "last_name": "Same", "created_at": moment},
        {"first_name": "Ada", "last_name": "Same", "created_at": moment},
        {"first_name": "Bob", "last_name": "Same", "created_at": moment},
        {"first_name": "Cy", "last_name": "Alpha", "created_at": moment},
        {"first_name": "Di", "last_name": "Zed", "created_at": moment + timedelta(seconds=1)},
        {"first_name": "Ed", "last_name": "Mid", "created_at": moment + timedelta(seconds=1)},
        {"first_name": "Flo", "last_name": "Mid", "is_active": False, "created_at": moment},
        {"first_name": "Gus", "last_name": "Beta", "is_admin": True, "created_at": moment},
        {"first_name": "Hal", "last_name": "Same", "created_at": moment + timedelta(hours=1)},
        {"first_name": "Ivy", "last_name": "Omega", "created_at": moment},
    ]
    for n, row in enumerate(rows):
        row["id"] = insert_user(db, email=f"p{n:02d}@example.com", **row)
    admin = {"id": admin_id, "first_name": "Ada", "last_name": "Admin", "created_at": utcnow()}
    return [*rows, {**admin, "email": "admin@example.com"}]


def _expected(people: list[dict[str, Any]], sort: str) -> list[int]:
    keys = {
        "name": lambda p: (p["last_name"], p["first_name"], p["id"]),
        "email": lambda p: (p.get("email") or f"p{people.index(p):02d}@example.com", p["id"]),
        "created": lambda p: (p["created_at"], p["id"]),
    }
    ordered = sorted(people, key=keys[sort.lstrip("-")], reverse=sort.startswith("-"))
    return [p["id"] for p in ordered]


def _walk(api: TestClient, url: str, key: str) -> tuple[list[int], list[dict[str, Any]]]:
    ids: list[int] = []
    pages: list[dict[str, Any]] = []
    next_url: str | None = url
    while next_url:
        page = api.get(next_url).json()
        pages.append(page)
        ids += [user["id"] for user in page["items"]]
        next_url = page[key]
        assert len(pages) < 20
    return ids, pages


@pytest.mark.parametrize("sort", SORTS)
def test_forwards_and_back_in_every_sort(
    api: TestClient, people: list[dict[str, Any]], sort: str
) -> None:
    expected = _expected(people, sort)
    ids, pages = _walk(api, f"/api/v1/users?sort={sort}&limit=3", "next")
    assert ids == expected  # every user once, in order, ties and all
    assert [len(p["items"]) for p in pages] == [3, 3, 3, 2]
    assert pages[0]["prev"] is None and pages[-1]["next"] is None
    # Back from the last page, page by page, to the first.
    back: list[int] = []
    prev_url = pages[-1]["prev"]
    while prev_url:
        page = api.get(prev_url).json()
        back = [user["id"] for user in page["items"]] + back
        prev_url = page["prev"]
    assert back == expected[:9]


def test_links_keep_the_filters_and_the_limit(
    api: TestClient, people: list[dict[str, Any]]
) -> None:
    page = api.get("/api/v1/users", params={"q": "same", "active": "true", "limit": 2}).json()
    assert [u["first_name"] for u in page["items"]] == ["Ada", "Ada"]
    assert page["limit"] == 2
    assert "q=same" in page["next"] and "active=true" in page["next"] and "limit=2" in page["next"]
    rest = api.get(page["next"]).json()
    assert [u["first_name"] for u in rest["items"]] == ["Bob", "Hal"]
    assert rest["next"] is None
    admins = api.get("/api/v1/users", params={"admin": "true", "sort": "-name"}).json()
    assert [u["first_name"] for u in admins["items"]] == ["Gus", "Ada"]
    inactive = api.get("/api/v1/users", params={"active": "false"}).json()
    assert [u["first_name"] for u in inactive["items"]] == ["Flo"]


def test_default_limit_is_the_per_page_setting(api: TestClient, people: list[Any]) -> None:
    page = api.get("/api/v1/users").json()
    assert page["limit"] == 50 and len(page["items"]) == 11
    assert page["next"] is None and page["prev"] is None


def test_search_matches_like_the_console(api: TestClient, people: list[Any]) -> None:
    page = api.get("/api/v1/users", params={"q": "  ada   same "}).json()
    assert len(page["items"]) == 2
    assert api.get("/api/v1/users", params={"q": "100%"}).json()["items"] == []


def _tampered(payload: Any) -> str:
    raw = json.dumps(payload).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 at all!",
        "AAAA",
        _tampered([1, 2]),
        _tampered({"s": "name", "d": "n", "k": ["a", "b"]}),
        _tampered({"s": "name", "d": "x", "k": ["a", "b", 1]}),
        _tampered({"s": "name", "d": "n", "k": ["a", "b", "1"]}),
        _tampered({"s": "name", "d": "n", "k": ["a", "b", True]}),
        _tampered({"s": "name", "d": "n", "k": ["a", "b", 2**40]}),
        _tampered({"s": "created", "d": "n", "k": ["yesterday", 1]}),
        _tampered({"s": "created", "d": "n", "k": ["2026-01-01T00:00:00", 1]}),
        encode_cursor("email", "n", ["a@example.com", 1]),  # made for another sort
    ],
)
def test_a_bad_cursor_is_a_400_problem(api: TestClient, cursor: str) -> None:
    body = problem(api.get("/api/v1/users", params={"cursor": cursor}), 400)
    assert body["type"] == "urn:webapp:problem:bad-cursor"


@pytest.mark.parametrize(("sort", "cursor"), HOSTILE_CURSORS)
def test_a_cursor_no_database_or_clock_takes_is_a_400_problem(
    api: TestClient, sort: str, cursor: str
) -> None:
    body = problem(api.get("/api/v1/users", params={"sort": sort, "cursor": cursor}), 400)
    assert body["type"] == "urn:webapp:problem:bad-cursor"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sort": "password_hash"}, "sort"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"active": "perhaps"}, "active"),
        ({"q": "x" * 201}, "q"),
        ({"cursor": "x" * 3000}, "cursor"),
    ],
)
def test_bad_parameters_are_a_422_naming_them(
    api: TestClient, params: dict[str, str], field: str
) -> None:
    body = problem(api.get("/api/v1/users", params=params), 422)
    assert field in field_errors(body)
    assert body["errors"][0]["location"] == "query"
