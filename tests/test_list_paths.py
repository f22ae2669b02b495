"""Every way the list reads a page gives the same rows as the plain query would.

A search's page is read one of several ways (webapp.crud): its matches read and sorted,
the sort's index walked, a walk that runs out and falls back, a search with too many
matches to sort, a first read past which the planner is asked, or the index looked up by
each word's rarest trigram. Which one depends on thresholds and on the statistics. Here the
thresholds are set for a small table so that each way is taken, and for a spread of
searches, filters and sorts every page is followed forwards to the end and backwards to
the start again: the rows must be exactly the matches, in the sort's order (ties broken by
id), none twice, and an exact count must be the number of matches.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any, NamedTuple

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select, text

from tests.factories import ADMIN_EMAIL, insert_user, make_settings, sign_in
from webapp import crud, search_estimate
from webapp.main import create_app
from webapp.models import User

PER_PAGE = 25
USERS = 320

LAST_NAMES = [("Smith", 20), ("Smithson", 3), ("Anderson", 10), ("Nakamura", 10), ("Kono", 10)]
FIRST_NAMES = ["Ann", "Anna", "Joann", "Mei", "Sam", "Samson", "Ada", "Kenji", "Ole", "Zoe"]
DOMAINS = [("corp.example", 40), ("mail.example", 30), ("smith.example", 5)]

# (search, active, admin, sort): common words and rare ones, one word and two, a word no
# one has, LIKE's wildcards taken literally, with filters and every sort.
QUERIES: list[tuple[str, str, str, str]] = [
    ("smith", "", "", "name"),
    ("smith", "yes", "", "-created"),
    ("corp.example", "", "", "email"),
    ("corp.example", "", "no", "-name"),
    ("ann", "", "", "-email"),
    ("son smith", "", "", "created"),
    ("a", "", "", "name"),
    ("mei kono", "", "", "-name"),
    ("mail ann", "no", "", "name"),
    ("zzz", "", "", "name"),
    ("a_", "", "", "name"),
    ("", "yes", "yes", "-created"),
    ("", "", "", "name"),
    ("", "", "", "-email"),
]


class Config(NamedTuple):
    name: str
    crud: dict[str, int]
    estimate: dict[str, int]


CONFIGS = [
    Config("as shipped", {}, {}),
    # Common words walk the sort's index; a walk reaches 80 rows, then falls back. Past 30
    # matches, a count not made on the way is estimated (PostgreSQL).
    Config("walks", {"WALK_FROM": 0, "WALK_REACH": 80, "WALK_MARGIN": 1, "EXACT_UP_TO": 30}, {}),
    # Too many matches to sort: read walking the sort's index as far as it takes.
    Config("too many to sort", {"MATCHES_FIRST_UP_TO": 40, "EXACT_UP_TO": 30}, {}),
    # No statistics to go by: a first read of 20, then the planner is asked.
    Config(
        "planner asked",
        {"FIRST_READ_UP_TO": 20, "WALK_FROM": 0, "WALK_REACH": 80, "WALK_MARGIN": 1},
        {"MIN_BOUNDS": 10**9},
    ),
    # Two words found by each one's rarest trigram in the sample.
    Config("rarest trigrams", {}, {"TRIGRAMS_FROM": 0}),
]


class Person(NamedTuple):
    id: int
    text: str  # what a search looks in, as webapp.models.search_text() makes it
    active: bool
    admin: bool


def _weighted(rng: random.Random, choices: list[tuple[str, int]], rest: str) -> str:
    roll = rng.randrange(100)
    for value, weight in choices:
        if roll < weight:
            return value
        roll -= weight
    return rest


def _seed(db: Engine, is_postgres: bool) -> None:
    rng = random.Random(2026)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    for n in range(USERS):
        last = _weighted(rng, LAST_NAMES, f"Other{rng.randrange(40):02}")
        first = rng.choice(FIRST_NAMES)
        domain = _weighted(rng, DOMAINS, f"other{n % 7}.example")
        email = f"{first}.{last}{n}@{domain}".lower()
        # Three users a minute: ties on the creation time, broken by id.
        at = start + timedelta(minutes=n // 3)
        rows.append(
            {
                "first_name": first,
                "last_name": last,
                "email": email,
                "email_key": email,
                "password_hash": "x",
                "is_active": rng.random() < 0.85,
                "is_admin": rng.random() < 0.1,
                "created_at": at,
                "updated_at": at,
                "version": 1,
            }
        )
    rng.shuffle(rows)  # stored in no sort's order
    with db.begin() as conn:
        conn.execute(insert(User), rows)
        if is_postgres:
            conn.execute(text("ANALYZE users"))


def _people(db: Engine) -> list[Person]:
    with db.connect() as conn:
        columns = (User.first_name, User.last_name, User.email_key)
        rows = conn.execute(select(User.id, *columns, User.is_active, User.is_admin)).all()
    return [
        Person(uid, f"{first.lower()} {last.lower()} {key}", active, admin)
        for uid, first, last, key, active, admin in rows
    ]


def _orders(db: Engine) -> dict[str, list[int]]:
    """Every user's id in each sort's order, as the database orders them (its collation)."""
    columns = {
        "name": "last_name, first_name, id",
        "email": "email_key",
        "created": "created_at, id",
    }
    orders: dict[str, list[int]] = {}
    with db.connect() as conn:
        for sort, order in columns.items():
            rows = conn.execute(text(f"SELECT id FROM users ORDER BY {order}"))
            ids = [int(row[0]) for row in rows]
            orders[sort] = ids
            orders[f"-{sort}"] = ids[::-1]
    return orders


def _expected(people: list[Person], order: list[int], q: str, active: str, admin: str) -> list[int]:
    words = q.lower().split()
    matching = {
        p.id
        for p in people
        if all(word in p.text for word in words)
        and (not active or p.active == (active == "yes"))
        and (not admin or p.admin == (admin == "yes"))
    }
    return [uid for uid in order if uid in matching]


def _rows(html: str) -> list[int]:
    return [int(uid) for uid in re.findall(r'<tr id="user-(\d+)"', html)]


def _link(html: str, rel: str) -> str | None:
    match = re.search(rf'<a href="([^"]+)"[^>]*rel="{rel}"', html)
    return unescape(match.group(1)) if match else None


_COUNT = re.compile(r"(About )?([\d,]+|No) users?\b")


def _count(html: str) -> tuple[int, bool]:
    """The page's count of matches, and whether it is exact."""
    found = _COUNT.search(html)
    assert found is not None, html
    value = 0 if found.group(2) == "No" else int(found.group(2).replace(",", ""))
    return value, found.group(1) is None


def _walk(client: TestClient, first: str, rel: str) -> Iterator[tuple[str, str]]:
    """Each page (its address and its HTML) from ``first`` on, following ``rel`` links."""
    link: str | None = first
    seen = 0
    while link is not None:
        page = client.get(link)
        assert page.status_code == 200, (link, page.status_code)
        yield link, page.text
        link = _link(page.text, rel)
        seen += 1
        assert seen <= USERS, "the links go round in a circle"


@pytest.fixture
def list_client(database_url: str, db: Engine, is_postgres: bool) -> Iterator[TestClient]:
    insert_user(db, first_name="Ada", last_name="Admin", email=ADMIN_EMAIL, is_admin=True)
    _seed(db, is_postgres)
    app = create_app(make_settings(database_url, per_page=PER_PAGE))
    with TestClient(app, follow_redirects=False) as client:
        yield sign_in(client, ADMIN_EMAIL)


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_way_of_reading_a_page_gives_the_plain_querys_rows(
    list_client: TestClient, db: Engine, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in config.crud.items():
        monkeypatch.setattr(crud, name, value)
    for name, value in config.estimate.items():
        monkeypatch.setattr(search_estimate, name, value)
    people, orders = _people(db), _orders(db)
    for q, active, admin, sort in QUERIES:
        case = (config.name, q, active, admin, sort)
        expected = _expected(people, orders[sort], q, active, admin)
        params = {"q": q, "active": active, "admin": admin, "sort": sort}
        query = "&".join(f"{k}={v}" for k, v in params.items() if v)
        forwards = list(_walk(list_client, f"/users?{query}", "next"))
        seen = [uid for _, html in forwards for uid in _rows(html)]
        assert seen == expected, case
        assert all(0 < len(_rows(html)) <= PER_PAGE for _, html in forwards if expected), case
        value, exact = _count(forwards[0][1])
        if exact:
            assert value == len(expected), case
        else:  # an estimate, and the exact count on demand
            exact_page = list_client.get(f"/users?{query}&count=exact").text
            assert _count(exact_page) == (len(expected), True), case
            assert _rows(exact_page) == expected[:PER_PAGE], case
        # From the last page back to the first: the same pages, the other way.
        backwards = list(_walk(list_client, forwards[-1][0], "prev"))
        assert [uid for _, html in reversed(backwards) for uid in _rows(html)] == expected, case
        assert [_rows(html) for _, html in reversed(backwards)] == [
            _rows(html) for _, html in forwards
        ], case
