"""The query plans the list relies on, checked with EXPLAIN on the statements it really runs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.factories import insert_user, make_settings
from webapp import auth, crud, search_estimate
from webapp.db import make_engine
from webapp.listing import UserListQuery
from webapp.search_estimate import SEARCH_INDEX

pytestmark = pytest.mark.postgres

ROWS = 30_000


@pytest.fixture
def many_users(db: Engine) -> Iterator[None]:
    """Enough varied rows for the planner to choose as it would on a big table. Loaded as
    ``webapp seed`` loads: the search index's pending list lifted meanwhile and merged at
    the end (one statement's 30,000 rows took 6.6 s through a 64 kB list, 1.4 s so)."""
    with db.begin() as conn:
        kept = conn.execute(
            text("SELECT reloptions FROM pg_class WHERE oid = to_regclass(:index)"),
            {"index": SEARCH_INDEX},
        ).scalar_one()
        limit = next((o for o in kept or () if o.startswith("gin_pending_list_limit=")), None)
        conn.execute(text(f"ALTER INDEX {SEARCH_INDEX} SET (gin_pending_list_limit = 4096)"))
        conn.execute(
            text(
                "INSERT INTO users (first_name, last_name, email, email_key, password_hash,"
                " version, created_at, updated_at)"
                " SELECT 'F' || (n % 97), 'L' || md5(n::text), 'u' || n || '@x.example',"
                " 'u' || n || '@x.example', 'x', 1, now() - n * interval '1 minute', now()"
                " FROM generate_series(1, :rows) AS n"
            ),
            {"rows": ROWS},
        )
        conn.execute(
            text("SELECT gin_clean_pending_list(to_regclass(:index))"), {"index": SEARCH_INDEX}
        )
        restore = f"SET ({limit})" if limit else "RESET (gin_pending_list_limit)"
        conn.execute(text(f"ALTER INDEX {SEARCH_INDEX} {restore}"))
        conn.execute(text("ANALYZE users"))
    yield


class Statements:
    """The SQL (and parameters) the app's engine sends, to EXPLAIN them afterwards."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.seen: list[tuple[str, Any]] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        self.seen.append((statement, params))

    def rows_query(self) -> tuple[str, Any]:
        """The statement that read the page's rows (it orders and limits)."""
        return next(s for s in reversed(self.seen) if "ORDER BY" in s[0] and "LIMIT" in s[0])


async def _plan_of(
    database_url: str,
    db: Engine,
    query: UserListQuery,
    *,
    no_seqscan: bool = False,
    rider: crud.Rider | None = None,
) -> str:
    engine = make_engine(make_settings(database_url))
    statements = Statements(engine)
    try:
        async with AsyncSession(engine) as session:
            await crud.list_users(session, query, 50, rider)
    finally:
        await engine.dispose()
    sql, params = statements.rows_query()
    raw = db.raw_connection()
    try:
        with raw.cursor() as cursor:
            if no_seqscan:
                cursor.execute("SET enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}", params)
            return "\n".join(row[0] for row in cursor.fetchall())
    finally:
        raw.close()


async def test_every_sort_reads_its_index_without_sorting(
    database_url: str, db: Engine, many_users: None
) -> None:
    for sort, index in (
        ("name", "ix_users_name"),
        ("-name", "ix_users_name"),
        ("email", "uq_users_email_key"),
        ("created", "ix_users_created_at"),
        ("-created", "ix_users_created_at"),
    ):
        plan = await _plan_of(database_url, db, UserListQuery(sort=sort))  # type: ignore[arg-type]
        assert f"Index Scan{' Backward' if sort.startswith('-') else ''} using {index}" in plan, (
            sort,
            plan,
        )
        assert "Sort" not in plan.splitlines()[1], (sort, plan)  # no sort above the scan


async def test_the_sign_in_check_rides_with_the_page_read_once_without_a_sort(
    database_url: str, db: Engine, many_users: None
) -> None:
    admin = insert_user(db, is_admin=True)
    rider = auth.account_rider(admin)
    for sort, index in (("name", "ix_users_name"), ("-created", "ix_users_created_at")):
        query = UserListQuery(sort=sort)  # type: ignore[arg-type]
        plan = await _plan_of(database_url, db, query, rider=rider)
        assert f"using {index} on users" in plan, (sort, plan)
        # The admin's row: read by its key once, not once per row of the page.
        assert "Materialize" in plan and "Index Scan using pk_users" in plan, (sort, plan)
        assert "Sort" not in plan, (sort, plan)


async def test_a_deep_page_starts_in_the_index_at_its_cursor(
    database_url: str, db: Engine, many_users: None
) -> None:
    engine = make_engine(make_settings(database_url))
    try:
        async with AsyncSession(engine) as session:
            page = await crud.list_users_page(session, UserListQuery(), None, 50)
    finally:
        await engine.dispose()
    assert page.next_cursor is not None
    plan = await _plan_of(database_url, db, UserListQuery(cursor=page.next_cursor))
    assert "Index Scan using ix_users_name" in plan, plan
    assert "Index Cond: (ROW((last_name)::text, (first_name)::text, id) > ROW(" in plan, plan


async def test_a_selective_search_reads_the_trigram_indexes(
    database_url: str, db: Engine, many_users: None
) -> None:
    # A handful of matches among 30,000 names. At this size reading the whole table is about
    # as cheap, so the planner is told not to, to see that the indexes serve the search (on a
    # million rows it picks them by itself).
    plan = await _plan_of(database_url, db, UserListQuery(q="Lfe7ecc"), no_seqscan=True)
    assert "MATERIALIZED" not in plan  # the plan shows the CTE scan, not the keyword
    assert "CTE Scan on matches" in plan, plan
    assert "Bitmap Index Scan on ix_users_search_trgm" in plan, plan
    # The matches hold only ids and sort keys; the page's rows are then read by id.
    assert "Index Scan using pk_users on users" in plan, plan


async def test_the_list_is_planned_once_not_on_every_page(
    database_url: str, db: Engine, many_users: None
) -> None:
    """psycopg prepares a statement it has run five times; PostgreSQL then reuses a generic
    plan only if it costs about what a fresh one does. With ``LIMIT $1`` it could not cost
    one, and planned every page again: the limit is written into the SQL instead."""
    settings = make_settings(database_url, pool_size=1, max_overflow=0)
    engine = make_engine(settings)
    try:
        async with AsyncSession(engine) as session:
            for _ in range(12):
                await crud.list_users(session, UserListQuery(), 50)
            plans = (
                await session.execute(
                    text(
                        "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                        " WHERE statement LIKE '%ORDER BY users.last_name%'"
                    )
                )
            ).one_or_none()
    finally:
        await engine.dispose()
    if settings.pgbouncer:  # behind PgBouncer psycopg prepares nothing: nothing to reuse
        assert plans is None
        return
    assert plans is not None
    generic, custom = plans
    assert generic >= 5 and custom <= 5, plans


async def test_a_broad_search_walks_the_sort_index_without_sorting(
    database_url: str, db: Engine, many_users: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every user matches "x.example", as the planner expects: the page is read walking the
    sort's index (as far as WALK_REACH rows), not by reading and sorting 30,000 matches. (The
    reach is cut to a fifteenth of the table here, as it is a fiftieth of a million rows:
    within two thirds, sorting them all costs less.)"""
    assert ROWS > crud.WALK_FROM
    monkeypatch.setattr(crud, "WALK_REACH", 2000)
    for sort, index in (("name", "ix_users_name"), ("-created", "ix_users_created_at")):
        query = UserListQuery(q="x.example", sort=sort)  # type: ignore[arg-type]
        plan = await _plan_of(database_url, db, query)
        assert f"Index Scan{' Backward' if sort.startswith('-') else ''} using {index}" in plan
        assert "Sort" not in plan and "Bitmap" not in plan, (sort, plan)
        assert "Limit  (cost=" in plan and "rows=2000 " in plan, (sort, plan)


async def test_a_search_is_one_statement_broad_or_narrow(
    database_url: str, db: Engine, many_users: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search for someone, or for a name hundreds share, reads, sorts and counts its
    matches in one statement, and one that finds everyone walks the sort's index in one: no
    first read, no EXPLAIN first (it cost a search for one person 15 % more). Which way to
    read is told by the statistics the planner goes by, read once per engine (SAMPLE_TTL)
    and kept."""
    engine = make_engine(make_settings(database_url))
    statements = Statements(engine)
    try:
        async with AsyncSession(engine) as session:
            await crud.list_users(session, UserListQuery(q="F1"), 50)
            assert "pg_stats" in statements.seen[0][0], statements.seen
            statements.seen.clear()
            listed = await crud.list_users(session, UserListQuery(q="Lfe7ecc"), 50)
            narrow = list(statements.seen)
            statements.seen.clear()
            # F50 is 1 in 97 first names (and "f50" in some hashes of the last names).
            shared = await crud.list_users(session, UserListQuery(q="F50"), 50)
            assert len(statements.seen) == 1, statements.seen
            assert shared.count.exact and crud.FIRST_READ_UP_TO < shared.count.value < 1000
            statements.seen.clear()
            walked = await crud.list_users(session, UserListQuery(q="x.example"), 50)
            broad = list(statements.seen)
            # Statistics that say nothing (here: too few values for PostgreSQL itself to
            # trust them): the planner is asked, past the first read.
            statements.seen.clear()
            search_estimate.forget(engine.sync_engine)
            monkeypatch.setattr(search_estimate, "MIN_BOUNDS", 10_000)
            asked = await crud.list_users(session, UserListQuery(q="x.example"), 50)
    finally:
        await engine.dispose()
    assert listed.count.exact and 0 < listed.count.value <= crud.FIRST_READ_UP_TO
    assert len(narrow) == 1 and "WITH matches" in narrow[0][0], narrow
    assert len(broad) == 1 and "head" in broad[0][0], broad  # the walk (_walked_page)
    assert not walked.count.exact and 0.8 * ROWS < walked.count.value < 1.2 * ROWS
    assert len(walked.page.items) == 50
    assert any(s.startswith("EXPLAIN") for s, _ in statements.seen), statements.seen
    assert [row.id for row in asked.page.items] == [row.id for row in walked.page.items]


async def test_a_search_is_planned_for_its_words_every_time(
    database_url: str, db: Engine, many_users: None
) -> None:
    """A search's best plan depends on its words, so psycopg never prepares its statements
    (a generic plan made for selective words read the whole trigram index for a one-letter
    search: 0.6 s at a million users). The list's own statement is still prepared, its plan
    reused (``test_the_list_is_planned_once_not_on_every_page``), and so is a walk's, whose
    plan is the same whatever its words (``test_a_walk_keeps_its_plan_whatever_its_words``)."""
    settings = make_settings(database_url, pool_size=1, max_overflow=0)
    engine = make_engine(settings)
    queries = [
        UserListQuery(q="Lfe7ecc"),  # a few matches, read and sorted
        UserListQuery(q="F1 Lfe7"),  # two words
        UserListQuery(q="x.example"),  # every user: a walk, then an estimate
        UserListQuery(q="x.example", exact_count=True),  # and a count
        UserListQuery(q="nobody-at-all"),  # none: a count of its own
        UserListQuery(q="F", active="yes"),  # a filter too
        UserListQuery(),
    ]
    try:
        async with AsyncSession(engine) as session:
            for _ in range(8):
                for query in queries:
                    await crud.list_users(session, query, 50)
            prepared = (
                await session.scalars(text("SELECT statement FROM pg_prepared_statements"))
            ).all()
    finally:
        await engine.dispose()
    searches = [statement for statement in prepared if " LIKE " in statement]
    assert all(_is_walk(statement) for statement in searches), prepared
    if not settings.pgbouncer:
        assert [statement for statement in prepared if "ORDER BY users.last_name" in statement]
        assert searches  # the walk for "x.example"


def _is_walk(statement: str) -> bool:
    """Whether a search's statement is a walk (``crud._walked_page``): the sort's index read
    from the cursor, as far as the reach, in a subquery named ``head``."""
    return ") AS head" in statement and "WITH matches" not in statement


async def test_a_walk_keeps_its_plan_whatever_its_words(
    database_url: str, db: Engine, many_users: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A walk is prepared and its generic plan reused (the planning was a third of what a
    walk cost the server): that plan walks the sort's index as far as the reach and filters,
    whatever the words, even those that find nobody or nearly everyone."""
    monkeypatch.setattr(crud, "WALK_REACH", 2000)  # as in the broad search's test above
    settings = make_settings(database_url, pool_size=1, max_overflow=0)
    engine = make_engine(settings)
    statements = Statements(engine)
    try:
        async with AsyncSession(engine) as session:
            # psycopg prepares a statement at its sixth run; PostgreSQL plans the first five
            # runs of a prepared statement for their values, then weighs the generic plan.
            for _ in range(16):
                walked = await crud.list_users(session, UserListQuery(q="x.example"), 50)
            assert len(walked.page.items) == 50
            walk, params = statements.seen[-1]
            if not settings.pgbouncer:
                generic, custom = (
                    await session.execute(
                        text(
                            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                            " WHERE statement LIKE '%) AS head%'"
                        )
                    )
                ).one()
                assert generic >= 3 and custom <= 5, (generic, custom)
    finally:
        await engine.dispose()
    assert _is_walk(walk), walk
    # The generic plan, for words it was never run with. (psycopg's %(name)s placeholders
    # as PostgreSQL's $n, for PREPARE.)
    names: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    server_side = re.sub(r"%\((\w+)\)s", placeholder, walk)
    raw = db.raw_connection()
    try:
        with raw.cursor() as cursor:
            cursor.execute("SET plan_cache_mode = force_generic_plan")
            cursor.execute(f"PREPARE walk AS {server_side}")
            for word in ("%x.example%", "%nobody-at-all%", "%f%"):
                values = ", ".join(
                    "'" + str(word if name == "t0" else params[name]).replace("'", "''") + "'"
                    for name in names
                )
                cursor.execute(f"EXPLAIN EXECUTE walk({values})")
                plan = "\n".join(row[0] for row in cursor.fetchall())
                assert "Index Scan using ix_users_name" in plan, (word, plan)
                assert "Bitmap" not in plan and "Sort" not in plan, (word, plan)
                assert "rows=2000 " in plan, (word, plan)  # as far as the reach
    finally:
        raw.close()


async def test_a_person_is_found_by_the_rarest_trigram_of_each_word(
    database_url: str, db: Engine, many_users: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search of two words asks the index for each word's rarest trigram (in a sample of
    the table), not for all of them, and checks the whole words on the rows it finds: the
    same users as a search by every trigram, in the same order."""
    ada = insert_user(db, first_name="Adaline", last_name="Lovelacey")
    with db.begin() as conn:
        conn.execute(text("ANALYZE users"))
    searches = ("adaline lovelacey", "f50 x.example", "f1 u2", "lovelacey nobody", "f50 lfe")
    engine = make_engine(make_settings(database_url))
    statements = Statements(engine)
    found: dict[str, list[int]] = {}
    try:
        async with AsyncSession(engine) as session:
            for q in searches:
                listed = await crud.list_users(session, UserListQuery(q=q), 50)
                found[q] = [row.id for row in listed.page.items]
            person_sql, person_params = next(
                (s, p) for s, p in statements.seen if p and p.get("t0") == "%adaline%"
            )
            monkeypatch.setattr(search_estimate, "index_trigrams", lambda words, counts: ())
            search_estimate.forget(engine.sync_engine)
            for q in searches:
                listed = await crud.list_users(session, UserListQuery(q=q), 50)
                assert [row.id for row in listed.page.items] == found[q], q
    finally:
        await engine.dispose()
    assert found["adaline lovelacey"] == [ada]
    assert found["f50 x.example"] and found["f1 u2"] and not found["lovelacey nobody"]
    grams = sorted(v for k, v in person_params.items() if k.startswith("g"))
    assert len(grams) == 2 and all(len(g) == 5 for g in grams), person_params  # '%xyz%'
    raw = db.raw_connection()
    try:
        with raw.cursor() as cursor:
            cursor.execute(f"EXPLAIN {person_sql}", person_params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
    finally:
        raw.close()
    index_cond = next(line for line in plan.splitlines() if "Index Cond" in line)
    assert all(f"'{g}'" in index_cond for g in grams), plan
    assert "adaline" not in index_cond and "%lovelacey%" in plan, plan  # checked on the rows
