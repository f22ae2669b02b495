"""``webapp seed``'s users look like a real user base: names spread as people's are."""

from __future__ import annotations

import random
from collections import Counter

from sqlalchemy import Engine, select

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
