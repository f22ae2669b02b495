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
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, Select, Table, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from webapp.counting import table_estimate
from webapp.models import User

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


@dataclass(frozen=True, slots=True)
class Guess:
    matches: float  # users the search should find
    everyone: float  # users in all


@dataclass(frozen=True, slots=True)
class _Sample:
    bounds: tuple[str, ...]  # the histogram's values, without its two ends
    common: tuple[tuple[str, float], ...]  # the most common values, and their shares
    rest: float  # the share of rows the histogram stands for
    everyone: float  # the table's rows, by its statistics
    read_at: float

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
    return Guess(sample.share(lowered) * sample.everyone, sample.everyone)


async def _read_sample(connection: AsyncConnection, now: float) -> _Sample:
    row = (await connection.execute(_SAMPLE, {"index": SEARCH_INDEX})).first()
    if row is None:  # no such index: statistics to go by, none
        return _Sample((), (), 0.0, 0.0, now)
    bounds, common_values, common_shares, null_share, everyone = row
    common = tuple(zip(common_values or (), common_shares or (), strict=True))
    rest = 1.0 - float(null_share or 0.0) - sum(f for _, f in common)
    return _Sample(tuple((bounds or ())[1:-1]), common, rest, float(everyone or 0.0), now)
