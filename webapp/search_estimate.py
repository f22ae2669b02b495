"""How many users a search will find, guessed in the process from PostgreSQL's statistics.

A search's page is read one way when it finds few users (read them all through the trigram
index, sort them) and another when it finds many (walk the sort's index, keeping matches):
see ``webapp.crud``. PostgreSQL's planner knows which: ``EXPLAIN`` of the search gives its
estimate. But asking costs a round trip per search, and reading a first batch of matches
before asking costs more: for an email domain shared by a fifth of a million users, the two
cost more than the page itself.

The planner's estimate for ``text LIKE '%word%'`` comes from the column's statistics: the
share of the histogram's sample values that match (PostgreSQL's ``histogram_selectivity``;
ANALYZE keeps 100 values or so for the search's indexed expression, spread evenly across its
sort order), plus the most common values that match. That sample is read here at most once
a minute (SAMPLE_TTL) per engine, and a search's share of it is counted in Python, without
asking the database. Each process keeps its own copy: nothing another worker would need.

The guess is the planner's, with a sample this size: good to a percent or so of the table,
enough to tell a domain (a fifth of everyone) from a surname (under one percent). It chooses
how a page is read, never what is on it; a wrong guess costs time, not rows.

It also says which of a search's trigrams to look up in the trigram index (``index_trigrams``).
The index finds a word by all of its trigrams, and what that costs is the length of their
lists of rows: "sami gakaski" has seven, among them "ski" (one user in 15) and "ami" (one in
25), and reading them was 1.8 ms of the server's 2.3 for a search that finds one person.
Looked up by each word's rarest trigram ("gak" and "sam") it costs a fraction of that (0.45
ms, 41 rows to check), and the whole words are then checked on the rows found. Which
trigrams are rare is counted in a sample of the table (about 2,000 rows), read with the
statistics.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, Select, Table, literal_column, select, text
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.ext.asyncio import AsyncConnection

from webapp.counting import table_estimate
from webapp.models import User, search_text

# The trigram index of the search's expression (migration 0005); its statistics are the
# expression's.
SEARCH_INDEX = "ix_users_search_trgm"
SAMPLE_TTL = 60.0
# PostgreSQL itself trusts a histogram of 100 values or more, and leaves out the two ends.
MIN_BOUNDS = 100
# And clamps what a histogram says to this range: a word in none of the sampled values
# is not taken to match no one.
LEAST_SHARE, MOST_SHARE = 0.0001, 0.9999

# The search index's statistics, and the table's size as the planner reckons it
# (webapp.counting.table_estimate); no row when there is no such index.
_SAMPLE = cast(
    Select[Any],
    select(
        literal_column("s.histogram_bounds::text::text[]"),
        literal_column("s.most_common_vals::text::text[]"),
        literal_column("s.most_common_freqs"),
        literal_column("s.null_frac"),
        table_estimate(cast(Table, User.__table__)),
    )
    .select_from(
        text(
            "pg_class i JOIN pg_namespace n ON n.oid = i.relnamespace"
            " LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = i.relname"
            " AND s.attname = 'expr'"
        )
    )
    .where(text("i.oid = to_regclass(:index)")),
)


# Rows sampled to count trigrams in, and from how many rows in all (below it the index's
# lists are short whichever trigrams are read).
TRIGRAM_SAMPLE_ROWS = 2_000
TRIGRAMS_FROM = 10_000

# How often each trigram turns up in the sampled rows' search text (once per row at most;
# those found in one row only are left out), and the rows sampled: the first row's count.
# pg_trgm's show_trgm lists a word's trigrams padded at its two ends too; a search word's
# are those within it, three letters or digits.
_SEARCHED = str(search_text().compile(dialect=PGDialect()))  # type: ignore[no-untyped-call]
_TRIGRAM_SAMPLE = text(
    "WITH sampled AS MATERIALIZED ("
    f" SELECT show_trgm({_SEARCHED}) AS grams FROM users TABLESAMPLE SYSTEM (:percent))"
    " SELECT '', count(*) FROM sampled"
    " UNION ALL"
    " SELECT gram, count(*) FROM sampled, unnest(sampled.grams) AS gram"
    " WHERE gram ~ '^[a-z0-9]{3}$' GROUP BY gram HAVING count(*) > 1"
)
# A search word's trigrams as pg_trgm takes them from '%word%': within each run of letters
# or digits, three at a time (ASCII here: other letters the index keeps as hashes).
_RUN = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True, slots=True)
class Guess:
    matches: float  # users the search should find
    everyone: float  # users in all
    # The trigrams to look the search up by in the index (see index_trigrams); empty: every
    # trigram of every word, as PostgreSQL would.
    trigrams: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Sample:
    bounds: tuple[str, ...]  # the histogram's values, without its two ends
    common: tuple[tuple[str, float], ...]  # the most common values, and their shares
    rest: float  # the share of rows the histogram stands for
    everyone: float  # the table's rows, by its statistics
    read_at: float
    grams: dict[str, int] | None = None  # trigram -> sampled rows holding it (and "" -> rows)

    @property
    def usable(self) -> bool:
        return len(self.bounds) >= MIN_BOUNDS - 2 and self.everyone > 0

    def share(self, words: tuple[str, ...]) -> float:
        """The share of users whose search text holds every word: the planner's arithmetic
        (for all the words at once, where the planner multiplies each word's share)."""
        hits = sum(1 for value in self.bounds if all(word in value for word in words))
        share = min(max(hits / len(self.bounds), LEAST_SHARE), MOST_SHARE) * self.rest
        return share + sum(f for value, f in self.common if all(w in value for w in words))


_samples: WeakKeyDictionary[Engine, _Sample] = WeakKeyDictionary()


def forget(engine: Engine) -> None:
    """Read the statistics afresh on the next search (after ANALYZE, say)."""
    _samples.pop(engine, None)


async def guess(connection: AsyncConnection, words: Sequence[str]) -> Guess | None:
    """How many users a search for ``words`` (each lowered, matched as a substring) should
    find, and how many there are; None when the statistics do not say (no ANALYZE yet, a
    table too small or too uniform for a histogram, or they cannot be read)."""
    engine = connection.sync_engine
    sample = _samples.get(engine)
    now = time.monotonic()
    if sample is None or now - sample.read_at > SAMPLE_TTL:
        sample = await _read_sample(connection, now)
        _samples[engine] = sample
    if not sample.usable:
        return None
    lowered = tuple(word.lower() for word in words)
    grams = index_trigrams(lowered, sample.grams) if sample.grams else ()
    return Guess(sample.share(lowered) * sample.everyone, sample.everyone, grams)


def trigrams_of(word: str) -> list[str] | None:
    """The trigrams pg_trgm looks ``word`` (lowered) up by in a LIKE '%word%', in order;
    None when it has letters this module does not count (not ASCII)."""
    if not word.isascii():
        return None
    return [run[i : i + 3] for run in _RUN.findall(word) for i in range(len(run) - 2)]


def index_trigrams(words: Sequence[str], counts: dict[str, int]) -> tuple[str, ...]:
    """The trigrams to find a search of two words or more (lowered) by in the index: each
    word's rarest in the sample. () for one word, or when a word has none to count (too
    short, or not ASCII): the index is then read by every trigram, as PostgreSQL would.

    One word keeps its every trigram: its rows found by fewer are each checked three times
    over, which cost "maria" (30,000 users) 35 -> 49 ms and spared "yabeson" 0.8. Two rare
    trigrams of two words find few rows whatever the words: a person's name.
    """
    per_word = [grams for grams in map(trigrams_of, words) if grams]
    if len(words) < 2 or len(per_word) < len(words):
        return ()
    chosen: list[str] = []
    for grams in per_word:
        rarest = min(grams, key=lambda gram: counts.get(gram, 0))
        if rarest not in chosen:
            chosen.append(rarest)
    every = {gram for grams in per_word for gram in grams}
    return tuple(chosen) if len(chosen) < len(every) else ()


async def _read_sample(connection: AsyncConnection, now: float) -> _Sample:
    row = (await connection.execute(_SAMPLE, {"index": SEARCH_INDEX})).first()
    if row is None:  # no such index: statistics to go by, none
        return _Sample((), (), 0.0, 0.0, now)
    bounds, common_values, common_shares, null_share, everyone = row
    common = tuple(zip(common_values or (), common_shares or (), strict=True))
    rest = 1.0 - float(null_share or 0.0) - sum(f for _, f in common)
    everyone = float(everyone or 0.0)
    grams = await _read_trigrams(connection, everyone) if everyone >= TRIGRAMS_FROM else None
    return _Sample(tuple((bounds or ())[1:-1]), common, rest, everyone, now, grams)


async def _read_trigrams(connection: AsyncConnection, everyone: float) -> dict[str, int]:
    percent = min(100.0, 100.0 * TRIGRAM_SAMPLE_ROWS / everyone)
    rows = await connection.execute(_TRIGRAM_SAMPLE, {"percent": percent})
    return {str(gram): int(n) for gram, n in rows}
