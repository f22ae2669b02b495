"""The user list: page or fragment, search, sort, filters and pages."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.factories import HTMX, insert_user


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


def test_search_wildcards_and_quotes_match_literally(client: TestClient, db: Engine) -> None:
    percent = insert_user(db, first_name="Per%cent", last_name="Sign")
    under = insert_user(db, first_name="Under_score", last_name="Sign")
    slash = insert_user(db, first_name="Back\\slash", last_name="Sign")
    plain = insert_user(db, first_name="Plain", last_name="Sign")
    quote = insert_user(db, first_name="O'Brien", last_name="Sign")
    ids = [percent, under, slash, plain, quote]
    assert names(client.get("/users", params={"q": "%"}).text, ids) == [percent]
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


def test_pages_of_fifty(client: TestClient, db: Engine) -> None:
    ids = [insert_user(db, last_name=f"Person{n:03d}") for n in range(120)]
    first = client.get("/users?admin=no")  # the 120, without the signed-in admin
    assert len(names(first.text, ids)) == 50
    assert "120 users match your search · showing 1–50" in first.text
    assert "Page 1 of 3" in first.text and 'rel="next"' in first.text
    last = client.get("/users?page=3&admin=no", headers=HTMX)
    assert len(names(last.text, ids)) == 20
    assert "showing 101–120" in last.text and 'rel="prev"' in last.text
    # Links keep the search and sort; a page past the end shows the last page.
    assert "page=2" in last.text and "admin=no" in last.text
    beyond = client.get("/users?page=99&admin=no")
    assert "Page 3 of 3" in beyond.text


def test_malformed_parameters_fall_back_to_defaults(client: TestClient, db: Engine) -> None:
    insert_user(db)
    for query in ("page=abc", "page=-5", "sort=password_hash", "active=maybe", "q=%00", "page=1e9"):
        response = client.get(f"/users?{query}")
        assert response.status_code == 200, query
        assert "2 users" in response.text  # and the signed-in admin
