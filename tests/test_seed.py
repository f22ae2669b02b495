"""``webapp seed``'s users look like a real user base: names spread as people's are."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from sqlalchemy import Engine, select, text

from tests.factories import insert_user, make_settings
from webapp import seed
from webapp.models import User


def test_names_are_spread_like_real_ones() -> None:
    rows = list(seed.fake_users(1, 20_000, "hash", random.Random(7)))
    last_names = Counter(row[1] for row in rows)
    first_names = Counter(row[0] for row in rows)
    # Thousands of surnames, the commonest held by about 1 user in 120, most by one user:
    # not a few dozen names repeated a few hundred times each.
    assert len(last_names) > 5_000
    assert 0.004 < last_names.most_common(1)[0][1] / len(rows) < 0.015
    assert sum(1 for n in last_names.values() if n == 1) > len(last_names) / 2
    assert len(first_names) > 1_500
    assert len({row[3] for row in rows}) == len(rows)  # every address unique
    assert all(row[3] == row[2].lower() for row in rows)  # email_key: the address lowered


def test_the_names_are_the_same_on_every_run() -> None:
    """The made-up names come from a fixed seed: a search term means the same rows in
    every seeded database (the bench relies on it)."""
    assert seed.name_tables.__wrapped__() == seed.name_tables()
    (_, _), (last_names, _) = seed.name_tables()
    assert last_names[: len(seed.LAST_NAMES)] == list(seed.LAST_NAMES)


async def test_a_seed_in_many_batches_adds_each_user_once(database_url: str, db: Engine) -> None:
    """Batches are drawn side by side (on PostgreSQL two COPY streams at once) and each
    lands once: every running number, every address, nothing lost or doubled."""
    first = insert_user(db, email="already.here@example.com")
    added = await seed.seed(make_settings(database_url), 1_234, batch_size=100)
    assert added == 1_234
    with db.connect() as conn:
        emails = conn.execute(select(User.email).where(User.id != first)).scalars().all()
    assert len(emails) == len(set(emails)) == 1_234
    numbers = sorted(int(email.split("@")[0].rsplit(".", 1)[1]) for email in emails)
    assert numbers == list(range(first + 1, first + 1 + 1_234))


def _pending_list(db: Engine) -> tuple[list[str], int]:
    """The search index's options, and the pages its pending list held (now merged)."""
    with db.begin() as conn:
        options = conn.execute(
            text("SELECT reloptions FROM pg_class WHERE oid = 'ix_users_search_trgm'::regclass")
        ).scalar_one()
        pending = conn.execute(
            text("SELECT gin_clean_pending_list('ix_users_search_trgm'::regclass)")
        ).scalar_one()
    return list(options), int(pending)


@pytest.mark.postgres
async def test_a_seed_loads_in_bulk_and_leaves_the_search_index_as_it_was(
    database_url: str, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While it loads, the search index's pending list may grow (merged in bulk: a third
    faster); after, it is short again (migration 0006) and empty, so no search reads the
    load's entries one by one. When the console's requests hold the index, the seed does
    not wait for them: it loads with the list as it is."""
    seen: list[list[str]] = []
    load = seed._load

    async def watched(*args: object, **kwargs: object) -> int:
        seen.append(_pending_list(db)[0])
        return await load(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(seed, "_load", watched)
    assert await seed.seed(make_settings(database_url), 2_000) == 2_000
    assert seen == [[f"gin_pending_list_limit={seed.BULK_PENDING_LIST_KB}"]]
    assert _pending_list(db) == (["gin_pending_list_limit=64"], 0)

    monkeypatch.setattr(seed, "LOCK_TIMEOUT", "200ms")
    with db.connect() as busy:  # a request's transaction, holding the index
        busy.execute(text("SELECT id FROM users WHERE id = 1"))
        assert await seed.seed(make_settings(database_url), 500) == 500
        busy.rollback()
    assert seen[1] == ["gin_pending_list_limit=64"]
    assert _pending_list(db) == (["gin_pending_list_limit=64"], 0)


async def test_a_random_seed_draws_the_same_users_again(database_url: str, db: Engine) -> None:
    """``webapp seed --random-seed``: the same names into the same (here empty) table, so
    the bench's runs search the same people; another seed draws others."""

    async def drawn(random_seed: int) -> list[tuple[str, str, str]]:
        await seed.seed(make_settings(database_url), 300, batch_size=100, random_seed=random_seed)
        with db.begin() as conn:
            rows = conn.execute(select(User.first_name, User.last_name, User.email)).all()
            conn.execute(User.__table__.delete())
        return sorted((first, last, email) for first, last, email in rows)

    first = await drawn(7)
    assert len(first) == 300
    assert await drawn(7) == first
    assert await drawn(8) != first
