"""A search's size, guessed in the process from the statistics PostgreSQL plans with."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.factories import make_settings
from webapp import search_estimate
from webapp.db import make_engine

pytestmark = pytest.mark.postgres

ROWS = 20_000
SEARCH = "lower(first_name) || ' ' || lower(last_name) || ' ' || email_key"  # models.search_text


def _seed(db: Engine, rows: int, *, corp: str) -> None:
    """``rows`` users, those whose hash begins with one of ``corp``'s hex digits at
    corp.example, one in 256 a Rarely: spread at random, as real ones are (ANALYZE's
    histogram takes every so many rows in sorted order, and would miss a pattern in step
    with it)."""
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (first_name, last_name, email, email_key, password_hash,"
                " version, created_at, updated_at)"
                " SELECT 'F' || n, CASE WHEN left(md5('r' || n), 2) = '00' THEN 'Rarely'"
                " ELSE 'L' || md5(n::text) END, e, e, 'x', 1, now(), now()"
                " FROM generate_series(1, :rows) AS n,"
                " LATERAL (SELECT 'u' || n || CASE WHEN strpos(:corp, left(md5('c' || n), 1)) > 0"
                " THEN '@corp.example' ELSE '@x.example' END AS e) AS address"
            ),
            {"rows": rows, "corp": corp},
        )
        conn.execute(text("ANALYZE users"))


@pytest.fixture
async def connection(database_url: str) -> AsyncIterator[AsyncConnection]:
    engine = make_engine(make_settings(database_url))
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


async def _planner(connection: AsyncConnection, words: tuple[str, ...]) -> float:
    where = " AND ".join(f"{SEARCH} LIKE :w{i}" for i in range(len(words)))
    params = {f"w{i}": f"%{word}%" for i, word in enumerate(words)}
    sql = f"EXPLAIN (FORMAT JSON) SELECT id FROM users WHERE {where}"
    plan = (await connection.execute(text(sql), params)).scalar_one()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return float(plan[0]["Plan"]["Plan Rows"])


async def test_the_guess_is_the_planners(db: Engine, connection: AsyncConnection) -> None:
    """A word's guess is what EXPLAIN says (the same histogram, the same arithmetic), near
    enough to the truth to tell a fifth of the users from one in 256, and from no one."""
    _seed(db, ROWS, corp="012")
    for word, share in (("corp.example", 3 / 16), ("rarely", 1 / 256), ("nowhere", 0.0)):
        guess = await search_estimate.guess(connection, (word,))
        assert guess is not None
        assert guess.everyone == pytest.approx(ROWS, rel=0.05)
        planner = await _planner(connection, (word,))
        assert guess.matches == pytest.approx(planner, rel=0.05, abs=2), word
        # A sample of a hundred or so: a fifth within a few points, the rare ones under 3 %.
        assert abs(guess.matches / ROWS - share) < (0.08 if share > 0.1 else 0.03), word
    # Every word must match, on the same sampled rows (the planner multiplies instead).
    both = await search_estimate.guess(connection, ("corp.example", "f1"))
    alone = await search_estimate.guess(connection, ("corp.example",))
    assert both is not None and alone is not None and both.matches <= alone.matches
    # Words are matched lowered, as the search lowers them.
    shouted = await search_estimate.guess(connection, ("CORP.Example",))
    assert shouted == alone


async def test_the_statistics_are_read_once_a_while(
    db: Engine, connection: AsyncConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read once per engine and kept for SAMPLE_TTL: a table that changes (and is analysed
    again) is seen once they are read afresh, not before."""
    _seed(db, ROWS, corp="01234567")
    search_estimate.forget(connection.sync_engine)
    before = await search_estimate.guess(connection, ("corp.example",))
    assert before is not None and before.matches > ROWS / 3
    with db.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE email_key LIKE '%corp.example'"))
        conn.execute(text("ANALYZE users"))
    kept = await search_estimate.guess(connection, ("corp.example",))
    assert kept == before
    monkeypatch.setattr(search_estimate, "SAMPLE_TTL", 0.0)
    after = await search_estimate.guess(connection, ("corp.example",))
    assert after is not None and after.matches < ROWS / 100
    assert after.everyone == pytest.approx(ROWS / 2, rel=0.05)


async def test_no_statistics_no_guess(
    db: Engine, connection: AsyncConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a histogram PostgreSQL would trust (100 values), or without the search's
    index, there is no guess: the caller asks the planner instead."""
    _seed(db, 50, corp="012")  # 50 values: a histogram of 50 at most
    search_estimate.forget(connection.sync_engine)
    assert await search_estimate.guess(connection, ("corp.example",)) is None
    monkeypatch.setattr(search_estimate, "SEARCH_INDEX", "no_such_index")
    search_estimate.forget(connection.sync_engine)
    assert await search_estimate.guess(connection, ("corp.example",)) is None


def test_a_search_of_two_words_is_looked_up_by_their_rarest_trigrams() -> None:
    """Each word's rarest trigram in the sample (one never seen is the rarest); one word, or
    a word with no trigram to count, is looked up by all of them, as PostgreSQL would."""
    assert search_estimate.trigrams_of("gakaski") == ["gak", "aka", "kas", "ask", "ski"]
    # pg_trgm's words are runs of letters and digits: "." and "_" part them.
    assert search_estimate.trigrams_of("corp.ex_ample") == ["cor", "orp", "amp", "mpl", "ple"]
    assert search_estimate.trigrams_of("ab") == []
    assert search_estimate.trigrams_of("jürgen") is None  # kept as hashes in the index
    counts = {
        "": 2000,
        "sam": 18,
        "ami": 81,
        "gak": 19,
        "aka": 86,
        "kas": 42,
        "ask": 61,
        "ski": 138,
    }
    assert search_estimate.index_trigrams(["sami", "gakaski"], counts) == ("sam", "gak")
    # "ask" was in no sampled row: rarer than any that was.
    assert search_estimate.index_trigrams(["gakaski", "sami"], counts | {"ask": 0}) == (
        "ask",
        "sam",
    )
    assert search_estimate.index_trigrams(["gakaski"], counts) == ()
    assert search_estimate.index_trigrams(["sami", "ab"], counts) == ()
    assert search_estimate.index_trigrams(["sami", "jürgen"], counts) == ()
    # Nothing left out: the words' own trigrams, all of them.
    assert search_estimate.index_trigrams(["sam", "gak"], counts) == ()


async def test_trigrams_are_counted_in_a_sample_of_the_table(
    db: Engine, connection: AsyncConnection
) -> None:
    """Read with the statistics: about TRIGRAM_SAMPLE_ROWS rows, each trigram counted once
    a row; a trigram every user has is counted in every sampled row, a rare one seldom."""
    _seed(db, ROWS, corp="012")
    search_estimate.forget(connection.sync_engine)
    guess = await search_estimate.guess(connection, ("rarely", "u1"))
    assert guess is not None
    grams = search_estimate._samples[connection.sync_engine].grams
    assert grams is not None
    sampled = grams[""]
    assert (
        0.3 * search_estimate.TRIGRAM_SAMPLE_ROWS
        < sampled
        < 3 * search_estimate.TRIGRAM_SAMPLE_ROWS
    )
    assert grams["exa"] == sampled  # every email ends in .example
    assert grams.get("rar", 0) < sampled / 50  # one user in 256 is a Rarely
    # "u1" has no trigram of its own: the index is read by every trigram.
    assert guess.trigrams == ()
    person = await search_estimate.guess(connection, ("rarely", "corp.example"))
    assert person is not None and set(person.trigrams) <= {"rar", "are", "rel", "ely"} | {
        "cor",
        "orp",
        "exa",
        "xam",
        "amp",
        "mpl",
        "ple",
    }
    assert len(person.trigrams) == 2 and "exa" not in person.trigrams
