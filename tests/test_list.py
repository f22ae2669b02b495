"""The user list: page or fragment, search, sort, filters and pages."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from datetime import UTC, datetime
from html import unescape

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, text

from tests.factories import ADMIN_EMAIL, HOSTILE_CURSORS, HTMX, insert_user, sign_in
from webapp import crud, search_estimate
from webapp.counting import UNCOUNTED_FROM
from webapp.listing import UserListQuery
from webapp.models import User
from webapp.templating import _app_path


def names(response_text: str, ids: list[int]) -> list[int]:
    """The given user ids in the order their rows appear on the page."""
    positions = {uid: response_text.find(f'id="user-{uid}"') for uid in ids}
    return [uid for uid, pos in sorted(positions.items(), key=lambda kv: kv[1]) if pos >= 0]


def test_root_redirects_to_the_list(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 303
    assert response.headers["location"].endswith("/users")


def test_full_page_without_htmx(client: TestClient, db: Engine) -> None:
    insert_user(db, first_name="Ada", last_name="Lovelace")
    response = client.get("/users")
    assert response.status_code == 200
    assert response.template.name == "users/list.html"  # type: ignore[attr-defined]
    assert "<html" in response.text and "Lovelace, Ada" in response.text
    assert "2 users" in response.text  # and the signed-in admin
    assert "HX-Request" in response.headers["vary"]


def test_fragment_for_htmx_but_page_for_boost_and_history_restore(client: TestClient) -> None:
    fragment = client.get("/users", headers=HTMX)
    assert fragment.template.name == "users/_table.html"  # type: ignore[attr-defined]
    assert "<html" not in fragment.text
    assert fragment.text.lstrip().startswith('<section id="user-table"')
    for extra in ({"HX-Boosted": "true"}, {"HX-History-Restore-Request": "true"}):
        page = client.get("/users", headers={**HTMX, **extra})
        assert page.template.name == "users/list.html"  # type: ignore[attr-defined]


def test_empty_state(client: TestClient) -> None:
    response = client.get("/users", params={"q": "nobody"})
    assert "No users match your search." in response.text
    assert "Clear the search" in response.text


def test_search_is_case_insensitive_over_names_and_email(client: TestClient, db: Engine) -> None:
    ada = insert_user(db, first_name="Ada", last_name="Lovelace", email="ada@engine.example")
    grace = insert_user(db, first_name="Grace", last_name="Hopper", email="grace@navy.example")
    alan = insert_user(db, first_name="Alan", last_name="Turing", email="alan@BLETCHLEY.example")
    ids = [ada, grace, alan]
    assert names(client.get("/users", params={"q": "LOVE"}).text, ids) == [ada]
    assert names(client.get("/users", params={"q": "hop"}).text, ids) == [grace]
    assert names(client.get("/users", params={"q": "bletchley"}).text, ids) == [alan]
    assert names(client.get("/users", params={"q": "a"}).text, ids) == [grace, ada, alan]
    # Several words: each must match some field.
    assert names(client.get("/users", params={"q": "grace navy"}).text, ids) == [grace]
    assert names(client.get("/users", params={"q": "grace turing"}).text, ids) == []


def test_a_search_finds_an_accented_name_however_it_is_typed(
    client: TestClient, db: Engine
) -> None:
    jose = insert_user(db, first_name="Jos\u00e9", last_name="Garc\u00eda")  # composed, as stored
    assert names(client.get("/users", params={"q": "jose\u0301"}).text, [jose]) == [jose]
    assert names(client.get("/users", params={"q": "GARCI\u0301A"}).text, [jose]) == [jose]


def test_search_wildcards_and_quotes_match_literally(client: TestClient, db: Engine) -> None:
    percent = insert_user(db, first_name="Per%cent", last_name="Sign")
    under = insert_user(db, first_name="Under_score", last_name="Sign")
    slash = insert_user(db, first_name="Back\\slash", last_name="Sign")
    plain = insert_user(db, first_name="Plain", last_name="Sign")
    quote = insert_user(db, first_name="O'Brien", last_name="Sign")
    forward = insert_user(db, first_name="For/ward", last_name="Sign")  # the LIKE escape
    ids = [percent, under, slash, plain, quote, forward]
    assert names(client.get("/users", params={"q": "%"}).text, ids) == [percent]
    assert names(client.get("/users", params={"q": "/"}).text, ids) == [forward]
    assert names(client.get("/users", params={"q": "r/w %"}).text, ids) == []
    assert names(client.get("/users", params={"q": "_"}).text, ids) == [under]
    assert names(client.get("/users", params={"q": "\\"}).text, ids) == [slash]
    response = client.get("/users", params={"q": "o'brien"})
    assert response.status_code == 200
    assert names(response.text, ids) == [quote]
    response = client.get("/users", params={"q": "'; DROP TABLE users; --"})
    assert response.status_code == 200 and "No users match" in response.text


def test_sort_by_each_column_both_ways(client: TestClient, db: Engine) -> None:
    b = insert_user(db, first_name="Bea", last_name="Beta", email="z@example.com")
    a = insert_user(db, first_name="Al", last_name="Alpha", email="Y@example.com")
    c = insert_user(db, first_name="Cy", last_name="Gamma", email="x@example.com")
    ids = [a, b, c]
    assert names(client.get("/users").text, ids) == [a, b, c]  # default: by name
    assert names(client.get("/users?sort=-name").text, ids) == [c, b, a]
    assert names(client.get("/users?sort=email").text, ids) == [c, a, b]  # case-insensitive
    assert names(client.get("/users?sort=-email").text, ids) == [b, a, c]
    assert names(client.get("/users?sort=created").text, ids) == [b, a, c]
    assert names(client.get("/users?sort=-created").text, ids) == [c, a, b]


def test_filters(client: TestClient, db: Engine) -> None:
    admin = insert_user(db, is_admin=True)
    inactive = insert_user(db, is_active=False)
    plain = insert_user(db)
    ids = [admin, inactive, plain]
    assert set(names(client.get("/users?admin=yes").text, ids)) == {admin}
    assert set(names(client.get("/users?admin=no").text, ids)) == {inactive, plain}
    assert set(names(client.get("/users?active=no").text, ids)) == {inactive}
    assert set(names(client.get("/users?active=yes&admin=no").text, ids)) == {plain}


def _link(html: str, rel: str) -> str | None:
    match = re.search(rf'<a href="([^"]+)"[^>]*rel="{rel}"', html)
    return unescape(match.group(1)) if match else None


def test_pages_follow_the_sort_by_cursor(client: TestClient, db: Engine) -> None:
    ids = [insert_user(db, last_name=f"Person{n:03d}") for n in range(120)]
    first = client.get("/users?admin=no")  # the 120, without the signed-in admin
    assert names(first.text, ids) == ids[:50]
    assert "120 users match your search" in first.text
    assert _link(first.text, "prev") is None and _link(first.text, "first") is None
    second_url = _link(first.text, "next")
    assert second_url is not None and "admin=no" in second_url and "cursor=" in second_url
    second = client.get(second_url, headers=HTMX)
    assert names(second.text, ids) == ids[50:100]
    third = client.get(_link(second.text, "next") or "")
    assert names(third.text, ids) == ids[100:]
    assert _link(third.text, "next") is None  # the end
    back = client.get(_link(third.text, "prev") or "")
    assert names(back.text, ids) == ids[50:100]
    assert names(client.get(_link(back.text, "first") or "").text, ids) == ids[:50]
    # Backwards from the newest, by creation date.
    newest = client.get("/users?admin=no&sort=-created")
    assert names(newest.text, ids) == ids[::-1][:50]
    older = client.get(_link(newest.text, "next") or "")
    assert names(older.text, ids) == ids[::-1][50:100]


def test_a_cursor_that_is_not_ours_starts_over(client: TestClient, db: Engine) -> None:
    ids = [insert_user(db, last_name=f"Person{n:03d}") for n in range(60)]
    by_email = client.get("/users?admin=no&sort=email")
    cursor = re.search(r"cursor=([^&\"]+)", _link(by_email.text, "next") or "")
    assert cursor is not None
    for bad in ("garbage", "%00", "x" * 3000, cursor.group(1)):  # the last: another sort's
        response = client.get(f"/users?admin=no&cursor={bad}")
        assert response.status_code == 200
        assert names(response.text, ids) == ids[:50]
    # Well-formed, but nothing a database or a clock takes (tests/api/test_paging.py).
    for sort, hostile in HOSTILE_CURSORS:
        response = client.get("/users", params={"admin": "no", "sort": sort, "cursor": hostile})
        assert response.status_code == 200, hostile
        assert len(names(response.text, ids)) == 50
    # It says so, and its links and address are the first page's, not the bad cursor's.
    restarted = client.get("/users?admin=no&cursor=garbage", headers=HTMX)
    assert "this is the first page" in restarted.text
    assert "garbage" not in restarted.text
    assert restarted.headers["HX-Push-Url"] == "/users?admin=no"
    assert "this is the first page" not in client.get("/users?admin=no").text


def test_large_results_are_estimated_and_counted_on_demand(
    client: TestClient, db: Engine, is_postgres: bool
) -> None:
    """Past 1,000 matches PostgreSQL's planner estimates the size; "count exactly" counts."""
    now = datetime.now(UTC)
    rows = [
        {
            "first_name": "Bulk",
            "last_name": "User",
            "email": f"bulk{n}@x.example",
            "email_key": f"bulk{n}@x.example",
            "password_hash": "x",
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
        for n in range(1600)
    ]
    with db.begin() as conn:
        conn.execute(insert(User), rows)
        if is_postgres:
            conn.execute(text("ANALYZE users"))
    # A filter without words: a bounded count, then the planner's estimate.
    page = client.get("/users?admin=no")
    exact = client.get("/users?admin=no&count=exact")
    assert "1,600 users match your search" in exact.text
    if is_postgres:
        estimate = re.search(r"About ([\d,]+) users match your search", page.text)
        assert estimate is not None, page.text
        assert 1000 < int(estimate.group(1).replace(",", "")) < 3200  # the planner's guess
        assert "count exactly" in page.text
    else:  # SQLite always counts
        assert "1,600 users match your search" in page.text
    # A search counts its matches exactly, in the statement that reads its page.
    search = client.get("/users?q=bulk")
    assert "1,600 users match your search" in search.text
    assert "count exactly" not in search.text


def test_a_search_past_the_sorting_limit_walks_the_index(
    client: TestClient, db: Engine, is_postgres: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More matches than a search sorts (MATCHES_FIRST_UP_TO, lowered here): the page is
    read walking the sort's index, and the same page comes back; the size is estimated."""
    now = datetime.now(UTC)
    with db.begin() as conn:
        conn.execute(
            insert(User),
            [
                {
                    "first_name": f"Wide{n:04}",
                    "last_name": f"Walker{(n * 7919) % 1500:04}",
                    "email": f"wide{n}@x.example",
                    "email_key": f"wide{n}@x.example",
                    "password_hash": "x",
                    "created_at": now,
                    "updated_at": now,
                    "version": 1,
                }
                for n in range(1500)
            ],
        )
        if is_postgres:
            conn.execute(text("ANALYZE users"))
    sorted_first = client.get("/users?q=wide&sort=-name")
    monkeypatch.setattr(crud, "MATCHES_FIRST_UP_TO", 1000)
    walked = client.get("/users?q=wide&sort=-name")
    first_rows = re.findall(r'<tr id="user-(\d+)"', sorted_first.text)
    assert len(first_rows) == 50
    assert re.findall(r'<tr id="user-(\d+)"', walked.text) == first_rows
    assert "Walker1499" in walked.text  # the top of the reversed sort
    assert "1,500 users match your search" in sorted_first.text
    if is_postgres:
        assert re.search(r"About [\d,]+ users match your search", walked.text), walked.text
    else:
        assert "1,500 users match your search" in walked.text
    following = _link(walked.text, "next")
    assert following is not None
    assert len(re.findall(r'<tr id="user-', client.get(following).text)) == 50


def _insert_people(db: Engine, people: list[tuple[str, str, str]], analyze: bool) -> None:
    """Users by (first name, last name, email), in one statement; analysed on PostgreSQL."""
    now = datetime.now(UTC)
    with db.begin() as conn:
        conn.execute(
            insert(User),
            [
                {
                    "first_name": first,
                    "last_name": last,
                    "email": email,
                    "email_key": email,
                    "password_hash": "x",
                    "created_at": now,
                    "updated_at": now,
                    "version": 1,
                }
                for first, last, email in people
            ],
        )
        if analyze:
            conn.execute(text("ANALYZE users"))


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr id="user-(\d+)"', html)


def test_a_broad_search_walks_the_sort_index_and_estimates_its_size(
    client: TestClient, db: Engine, is_postgres: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search PostgreSQL expects to find more than WALK_FROM users, so many that a page
    of them turns up within WALK_REACH / WALK_MARGIN rows (all set here for a small table),
    walks the sort's index: the very pages that reading and sorting every match gives, both
    ways, with the size estimated (and counted on demand). SQLite has no planner's estimate:
    it reads and sorts, and counts."""
    people = [
        (f"Wide{n:04}", f"Walker{(n * 7919) % 1500:04}", f"wide{n}@x.example") for n in range(1500)
    ]
    _insert_people(db, people, is_postgres)
    for sort in ("name", "-name", "email", "-created"):
        monkeypatch.setattr(crud, "WALK_REACH", 0)  # never walks
        sorted_first = client.get(f"/users?q=wide&sort={sort}")
        following = _link(sorted_first.text, "next")
        assert following is not None
        sorted_next = client.get(following)
        assert "1,500 users match your search" in sorted_first.text
        monkeypatch.setattr(crud, "WALK_FROM", 600)
        monkeypatch.setattr(crud, "WALK_REACH", 800)
        monkeypatch.setattr(crud, "WALK_MARGIN", 2)
        walked = client.get(f"/users?q=wide&sort={sort}")
        assert len(_rows(walked.text)) == 50
        assert _rows(walked.text) == _rows(sorted_first.text), sort
        assert _link(walked.text, "next") == following, sort
        walked_next = client.get(following)
        assert _rows(walked_next.text) == _rows(sorted_next.text), sort
        back = _link(walked_next.text, "prev")
        assert back is not None
        assert _rows(client.get(back).text) == _rows(sorted_first.text), sort
        if is_postgres:
            estimate = re.search(r"About ([\d,]+) users match your search", walked.text)
            assert estimate is not None, walked.text
            assert 600 < int(estimate.group(1).replace(",", "")) < 3000  # the planner's
            exact = client.get(f"/users?q=wide&sort={sort}&count=exact")
            assert "1,500 users match your search" in exact.text
            assert _rows(exact.text) == _rows(sorted_first.text)
        else:
            assert "1,500 users match your search" in walked.text


def test_every_page_of_a_search_past_its_first_read_is_found(
    client: TestClient, db: Engine, is_postgres: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page is first read from a search's first matches (MATCHES_FIRST_UP_TO, or
    FIRST_READ_UP_TO on PostgreSQL without statistics to guess by: both lowered here); from
    a cursor deep in the list none of those may lie on the page. Every page, followed by
    its "Next" link and back, is still the right one, whichever way it is then read."""
    # Stored in the order of the sort: the first matches read are the first in the list, so
    # that from a cursor past them, none of them is on the page.
    people = [(f"Deep{n:04}", f"Diver{n:04}", f"deep{n}@x.example") for n in range(600)]
    _insert_people(db, people, is_postgres)
    with db.connect() as conn:
        expected = [
            str(row[0])
            for row in conn.execute(
                text(
                    "SELECT id FROM users WHERE first_name LIKE 'Deep%'"
                    " ORDER BY last_name, first_name, id"
                )
            )
        ]
    monkeypatch.setattr(crud, "FIRST_READ_UP_TO", 60)
    monkeypatch.setattr(crud, "MATCHES_FIRST_UP_TO", 60)
    # Read and sorted, or walked; guessed from the statistics, or (PostgreSQL without
    # statistics it trusts) read first and then planned.
    for walks, statistics in itertools.product((False, True), (True, False)):
        monkeypatch.setattr(crud, "WALK_FROM", 0 if walks else 10_000)
        monkeypatch.setattr(search_estimate, "MIN_BOUNDS", 100 if statistics else 10**9)
        seen: list[str] = []
        pages: list[str] = []
        link: str | None = "/users?q=deep"
        while link is not None:
            page = client.get(link).text
            pages.append(link)
            seen += _rows(page)
            link = _link(page, "next")
        assert seen == expected, (walks, statistics)
        assert len(pages) == 12
        back = _link(client.get(pages[-1]).text, "prev")
        assert back is not None
        assert _rows(client.get(back).text) == expected[500:550], (walks, statistics)


def test_a_walk_that_finds_no_page_reads_and_sorts_the_matches_after_all(
    client: TestClient, db: Engine, is_postgres: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Matches bunched together far along the sort's index (here every match is a Zed,
    after 1,200 Aarons, in the name order): the walk ends after WALK_REACH rows without a
    page, and the matches are read and sorted instead, and counted. Reversed, the Zeds come
    first: the walk finds them."""
    aarons = [(f"Near{n:04}", f"Aaron{n:04}", f"near{n}@near.example") for n in range(1200)]
    zeds = [(f"Far{n:04}", f"Zed{n:04}", f"far{n}@far.example") for n in range(1200)]
    _insert_people(db, aarons + zeds, is_postgres)
    monkeypatch.setattr(crud, "WALK_FROM", 600)
    monkeypatch.setattr(crud, "WALK_REACH", 1000)
    monkeypatch.setattr(crud, "WALK_MARGIN", 2)
    first = client.get("/users?q=far.example")
    assert [f"Zed{n:04}" in first.text for n in (0, 49, 50)] == [True, True, False]
    assert "1,200 users match your search" in first.text  # read, sorted and counted
    reversed_ = client.get("/users?q=far.example&sort=-name")
    assert [f"Zed{n:04}" in reversed_.text for n in (1199, 1150, 1149)] == [True, True, False]
    if is_postgres:
        assert re.search(r"About [\d,]+ users match your search", reversed_.text)
    assert len(_rows(first.text)) == len(_rows(reversed_.text)) == 50


def _add_bulk_users(db: Engine, rows: int) -> None:
    """``rows`` users, bulk1@x.example on (PostgreSQL: generate_series), then ANALYZE."""
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (first_name, last_name, email, email_key, password_hash,"
                " created_at, updated_at, version)"
                " SELECT 'Bulk', 'User', 'bulk' || n || '@x.example', 'bulk' || n || '@x.example',"
                " 'x', now(), now(), 1 FROM generate_series(1, :rows) AS n"
            ),
            {"rows": rows},
        )
        conn.execute(text("ANALYZE users"))


@pytest.mark.postgres
def test_a_large_table_is_sized_from_its_statistics(client: TestClient, db: Engine) -> None:
    """The whole list of a large table: the planner's figure (no count at all), labelled."""
    _add_bulk_users(db, 12_000)
    page = client.get("/users")
    estimate = re.search(r"About ([\d,]+) users", page.text)
    assert estimate is not None, page.text
    assert 0.8 * 12_001 < int(estimate.group(1).replace(",", "")) < 1.2 * 12_001
    assert "count exactly" in page.text and "match your search" not in page.text
    assert "12,001 users" in client.get("/users?count=exact").text  # and the admin
    # Past the first page the figure is the same, and the rows still come by cursor.
    second = client.get(_link(page.text, "next") or "")
    assert f"About {estimate.group(1)} users" in second.text
    # Statistics lag a mass delete; the bounded count beside them does not.
    with db.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE email_key LIKE 'bulk%'"))
    assert "1 user<" in client.get("/users").text.replace("\n", "")


@pytest.mark.postgres
def test_a_table_its_statistics_call_large_is_not_counted(client: TestClient, db: Engine) -> None:
    """Past UNCOUNTED_FROM rows by the statistics, the whole list counts nothing: its size
    is theirs until they are taken again (by autovacuum after a mass delete)."""
    _add_bulk_users(db, UNCOUNTED_FROM + 2_000)
    with db.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE email_key LIKE 'bulk%'"))
    # Not counted: a bounded count would have found the one admin left.
    page = client.get("/users")
    estimate = re.search(r"About ([\d,]+) users", page.text)
    assert estimate is not None, page.text
    assert int(estimate.group(1).replace(",", "")) >= UNCOUNTED_FROM
    assert "1 user<" in client.get("/users?count=exact").text.replace("\n", "")
    # Statistics taken again say it is small: counted, exactly.
    with db.begin() as conn:
        conn.execute(text("ANALYZE users"))
    assert "1 user<" in client.get("/users").text.replace("\n", "")


def test_malformed_parameters_fall_back_to_defaults(client: TestClient, db: Engine) -> None:
    insert_user(db)
    for query in ("cursor=abc", "count=maybe", "sort=password_hash", "active=maybe", "q=%00"):
        response = client.get(f"/users?{query}")
        assert response.status_code == 200, query
        assert "2 users" in response.text  # and the signed-in admin


def test_links_keep_every_setting_but_the_defaults() -> None:
    query = UserListQuery(q="ada", sort="-created", active="yes", admin="no", cursor="abc")
    assert query.params() == {
        "q": "ada",
        "sort": "-created",
        "active": "yes",
        "admin": "no",
        "cursor": "abc",
    }
    assert query.params(sort="name", cursor="", exact_count=True) == {
        "q": "ada",
        "active": "yes",
        "admin": "no",
        "count": "exact",
    }
    for changes in ({}, {"q": ""}, {"sort": "email"}, {"active": "", "admin": "yes"}):
        assert query.params(**changes) == replace(query, **changes).params()  # type: ignore[arg-type]
    assert UserListQuery().params() == {}
    with pytest.raises(TypeError):
        query.params(page="2")


def test_the_navigation_marks_the_section_and_follows_a_root_path(
    app: FastAPI, admin_id: int
) -> None:
    for root_path in ("", "/admin"):
        with TestClient(app, root_path=root_path, follow_redirects=False) as client:
            sign_in(client, ADMIN_EMAIL)
            for page, section in (
                ("/users", "/users"),
                ("/users/new", "/users"),
                ("/audit", "/audit"),
            ):
                html = client.get(page).text
                current = re.findall(r'<a href="([^"]+)" aria-current="page">', html)
                assert current == [root_path + section], (root_path, page, current)
                assert f'href="{root_path}/static/app.css"' in html
                assert f'action="{root_path}/logout"' in html
            # The address a search puts in the bar: short (defaults left out), under the root.
            searched = client.get("/users?q=ada&sort=name&active=&admin=", headers=HTMX)
            assert searched.headers["HX-Push-Url"] == f"{root_path}/users?q=ada"


def test_the_section_is_found_whether_the_server_gives_the_root_path_or_not() -> None:
    assert _app_path({"path": "/admin/audit", "root_path": "/admin"}) == "/audit"  # uvicorn's
    assert _app_path({"path": "/audit", "root_path": "/admin"}) == "/audit"
    assert _app_path({"path": "/administer", "root_path": "/admin"}) == "/administer"
    assert _app_path({"path": "/users", "root_path": ""}) == "/users"
