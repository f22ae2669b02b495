"""Which URLs the bench loads, and what a right answer contains. The one place to change them.

A page that answers without its table (a sign-in page after a 303, an error page) would make
fast, meaningless figures: each scenario is fetched once and checked before it is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode

import psycopg

from bench import client
from bench.config import BenchError
from webapp.keyset import encode_cursor

TABLE = '<table class="users">'
ROW = '<tr id="user-'
_NEXT_LINK = re.compile(r'<a href="([^"]+)"[^>]*\brel="next"')


@dataclass(frozen=True, slots=True)
class Page:
    name: str
    path: str
    markers: tuple[str, ...]  # what the body must contain
    # Held to the targets for the list pages (see bench/report.py); a figure to
    # watch when False.
    target: bool = True

    def check(self, base: str, cookie: str = "") -> str:
        """Fetch once, check, and return the body."""
        answer = client.fetch(base, self.path, cookie=cookie)
        if answer.status != 200:
            where = answer.header("Location")
            raise BenchError(f"{self.name}: GET {self.path} answered {answer.status} {where}")
        missing = [m for m in self.markers if m not in answer.body]
        if missing:
            raise BenchError(f"{self.name}: GET {self.path} lacks {missing}")
        return answer.body


def list_page(name: str, path: str, target: bool = True) -> Page:
    return Page(name, path, (TABLE, ROW), target)


def next_link(body: str) -> str | None:
    """The list's ``rel="next"`` link (a path with its query), if the page has one."""
    match = _NEXT_LINK.search(body)
    return match.group(1).replace("&amp;", "&") if match else None


def deep_page_path(dsn: str, users: int) -> str:
    """A page far into the list: 90 % of the way through the default (name) sort.

    The list pages by keyset cursor, as a person clicking "Next" that often would reach it:
    the cursor names the sort key of the row just before the page.
    """
    position = max(1, users * 9 // 10)
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT last_name, first_name, id FROM users "
            "ORDER BY last_name, first_name, id OFFSET %s LIMIT 1",
            (position,),
        ).fetchone()
    if row is None:
        raise BenchError(f"no row at position {position} for the deep page")
    return f"/users?{urlencode({'cursor': encode_cursor('name', 'n', list(row))})}"


def matches(dsn: str, search: str) -> int:
    """How many users the console's search for ``search`` finds: every word in the first
    name, the last name or the email (webapp.crud's filter, written out)."""
    words = search.lower().split()
    where = " AND ".join(
        "(first_name ILIKE %s OR last_name ILIKE %s OR email_key LIKE %s)" for _ in words
    )
    params = [f"%{w}%" for w in words for _ in range(3)]
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM users WHERE {where}", params).fetchone()
    return int(row[0]) if row else 0


def search_page(name: str, dsn: str, search: str, target: bool = True) -> Page:
    found = matches(dsn, search)
    label = f"{name} “{search}” ({found:,} match{'' if found == 1 else 'es'})"
    return list_page(label, f"/users?{urlencode({'q': search})}", target)


# A search for one person finds at most this many users: a name shared by hundreds (one in
# a few thousand seeded users is an "Ana Garcia") is a search for a common name instead.
ONE_PERSON_UP_TO = 5
CANDIDATES = 50
# The addresses of the users the bench adds: its admin (bench.admin@example.com) and its
# creates (bench/wrk/create.lua). No seeded address starts so.
BENCH_EMAILS = "bench.%"


def someone(dsn: str, users: int) -> str:
    """The full name of a user halfway down the table, one that finds at most
    ONE_PERSON_UP_TO users: a person one might look for. Halfway in the order of their
    addresses, which the seed draws the same every run (the ids it does not: two streams
    load it side by side, and which batch comes first varies), among the seeded users only:
    the bench's own (its admin, and the users its create runs add, a number that varies)
    would move the halfway point."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT first_name || ' ' || last_name FROM users"
            " WHERE email_key NOT LIKE %s ORDER BY email_key OFFSET %s LIMIT %s",
            (BENCH_EMAILS, users // 2, CANDIDATES),
        ).fetchall()
    for (name,) in rows:
        if matches(dsn, str(name)) <= ONE_PERSON_UP_TO:
            return str(name)
    raise BenchError(
        f"none of the {len(rows)} users from position {users // 2} has a name that finds at"
        f" most {ONE_PERSON_UP_TO} users: set BENCH_SEARCH_PERSON"
    )


def console_reads(
    dsn: str, users: int, search: str, person_search: str, domain_search: str
) -> list[Page]:
    """The read scenarios, in the order they run and are reported."""
    deep = deep_page_path(dsn, users)
    person_search = person_search or someone(dsn, users)
    return [
        list_page("page 1", "/users"),
        # One user in 125 shares it: every match read and sorted for every page of them
        # (16 ms of PostgreSQL's time at a million users), reported, not held to the
        # targets (README, "Benchmark").
        search_page("search, a common surname", dsn, search, target=False),
        search_page("search, one person", dsn, person_search),
        # Everyone at one company: more matches than a search reads and sorts.
        search_page("search, a domain", dsn, domain_search),
        # Far in: it links back and onwards. (A URL the list ignored would show page 1,
        # which has no rel="prev", and fail here instead of measuring the wrong page.)
        Page("deep page", deep, (TABLE, ROW, 'rel="prev"', 'rel="next"')),
        list_page("sorted (-created)", "/users?sort=-created"),
        Page("health", "/health", ("<h1>Health</h1>",), target=False),
    ]


def floor_page() -> Page:
    return list_page("page 1", "/users")
