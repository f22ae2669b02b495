"""``webapp seed``: realistic fake users, inserted in large batches."""

from __future__ import annotations

import asyncio
import functools
import itertools
import random
import secrets
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from passlib.context import CryptContext
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from webapp import pooler
from webapp.config import Settings
from webapp.db import make_engine
from webapp.models import User, email_key
from webapp.search_estimate import SEARCH_INDEX

BATCH = 5000
NAME_CHUNK = 10_000  # names drawn this many at a time
COPY_BATCH = 50_000
# COPY streams at once on PostgreSQL, each a server process of its own: keeping the indexes
# (the trigram index most) is most of a load's time, and it is the server's work. Measured
# on two cores: 200,000 users in 7.0 s over two streams, 10.7 s over one.
COPY_STREAMS = 2
# While a seed loads, the search index's pending list may grow to PostgreSQL's default and
# be merged in bulk: with the 64 kB it keeps in service (migration 0006), 200,000 users took
# a third longer to load. Changing it takes a moment's exclusive lock on the index, given
# up after LOCK_TIMEOUT if the console's requests hold the index that long.
BULK_PENDING_LIST_KB = 4096
LOCK_TIMEOUT = "2s"
LOCK_NOT_AVAILABLE = "55P03"

# Real names first, roughly in order of how common they are, then made-up ones, drawn with
# Zipf's law: like people's names, a few are common (the commonest surname about 1 user in
# 120) and most are rare, so a search for a surname finds what it would in a real table.
FIRST_NAMES = (
    "Maria Wei Mohammed Ana Emma Liam Fatima Noah Sofia Chen Priya Omar Olga Hana Carlos Mei "
    "David Elena Kenji Ivan Sara Mateo Aroha Ada Alan Alice Amara Andrei Anika Beatriz Ben "
    "Camille Chloe Dara Diego Elif Erik Felix Grace Hugo Ines Jamal Jana Jonas Julia Kai Lara "
    "Leila Lina Luca Maya Mila Nadia Naveen Nia Paula Rafael Rosa Sami Tariq Tomas Uma Victor "
    "Wen Yara Yusuf Zoe"
).split()
LAST_NAMES = (
    "Wang Smith Garcia Nguyen Kim Singh Patel Zhang Lee Silva Khan Gonzalez Lopez Muller "
    "Ivanova Rossi Santos Martin Williams Brown Kaur Tanaka Oliveira Rahman Costa Schmidt "
    "Taylor Torres Cruz Nakamura Jensen Hansen Yamamoto Fischer Wilson Meyer Moreau Weber "
    "Dubois Becker Wagner Walker Park Ito Novak Kowalski Petrov Bianchi Sousa Almeida Haddad "
    "Okafor Adeyemi Bakker Larsen Andersen Eriksen Varga Zielinski Ueda Abe Quinn"
).split()
MADE_UP_LAST = 40_000
MADE_UP_FIRST = 3_000
_SYLLABLES = "ka ki ko sa shi ta to na no ha mo ya ra ri wa ma mi da ga be lo ve ni el".split()
_LAST_ENDINGS = ("", "son", "er", "ley", "ton", "ski", "ova", "ez", "ini", "berg", "oto", "ic")
_FIRST_ENDINGS = ("", "a", "o", "en", "ia", "el")
DOMAINS = ("example.com", "example.org", "example.net", "mail.example", "corp.example")
SPAN = timedelta(days=3 * 365)


def _made_up(
    rng: random.Random, count: int, endings: tuple[str, ...], known: list[str]
) -> list[str]:
    names = dict.fromkeys(known)
    while len(names) < len(known) + count:
        stem = "".join(rng.choices(_SYLLABLES, k=rng.choice((2, 2, 3))))
        names[(stem + rng.choice(endings)).capitalize()] = None
    return list(names)


def _zipf(names: list[str], offset: int) -> tuple[list[str], list[float]]:
    """``names`` with cumulative weights 1/(rank + offset), for ``random.choices``."""
    return names, list(itertools.accumulate(1 / (rank + offset) for rank in range(len(names))))


@functools.cache
def name_tables() -> tuple[tuple[list[str], list[float]], tuple[list[str], list[float]]]:
    """(first names, last names), each with its cumulative weights. The same on every run."""
    rng = random.Random(2026)
    firsts = _made_up(rng, MADE_UP_FIRST, _FIRST_ENDINGS, FIRST_NAMES)
    lasts = _made_up(rng, MADE_UP_LAST, _LAST_ENDINGS, LAST_NAMES)
    return _zipf(firsts, 5), _zipf(lasts, 15)


COLUMNS = (
    "first_name",
    "last_name",
    "email",
    "email_key",
    "password_hash",
    "is_active",
    "is_admin",
    "must_change_password",
    "created_at",
    "updated_at",
    "version",
)
Row = tuple[Any, ...]


def fake_users(start: int, count: int, password_hash: str, rng: random.Random) -> Iterator[Row]:
    """Rows in ``COLUMNS`` order."""
    now = datetime.now(UTC)
    (firsts, first_weights), (lasts, last_weights) = name_tables()
    for chunk in range(start, start + count, NAME_CHUNK):
        size = min(NAME_CHUNK, start + count - chunk)
        first_names = rng.choices(firsts, cum_weights=first_weights, k=size)
        last_names = rng.choices(lasts, cum_weights=last_weights, k=size)
        for n, first, last in zip(range(chunk, chunk + size), first_names, last_names, strict=True):
            created = now - SPAN * rng.random()
            # The running number keeps every address unique, also across repeated seeds.
            email = f"{first.lower()}.{last.lower()}.{n}@{rng.choice(DOMAINS)}"
            active, admin = rng.random() > 0.1, rng.random() < 0.02
            yield (first, last, email, email_key(email), password_hash, active, admin, False,
                   created, created, 1)  # fmt: skip


def _progress(done: int, total: int, started: float) -> None:
    width = 30
    filled = width * done // total if total else width
    bar = "#" * filled + "-" * (width - filled)
    rate = done / max(time.monotonic() - started, 1e-6)
    print(f"\r[{bar}] {done:,}/{total:,}  {rate:,.0f}/s", end="", file=sys.stderr, flush=True)


async def _copy(conn: AsyncConnection, rows: list[Row]) -> None:
    """PostgreSQL's COPY: the fastest way in, an order of magnitude past INSERT."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    async with driver.cursor() as cursor:
        async with cursor.copy(f"COPY users ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                await copy.write_row(row)


async def _insert(conn: AsyncConnection, rows: list[Row]) -> None:
    await conn.execute(insert(User), [dict(zip(COLUMNS, row, strict=True)) for row in rows])


async def seed(
    settings: Settings,
    count: int,
    *,
    progress: bool = False,
    batch_size: int | None = None,
    random_seed: int | None = None,
) -> int:
    """Insert ``count`` users. Seeded users share one hash of a random, unknown password.
    With ``random_seed``, the same users every time for the same seed into the same table
    (the running numbers in their addresses go on from its highest id): a benchmark's runs
    then search the same names."""
    context = CryptContext(schemes=["bcrypt"], bcrypt__rounds=settings.bcrypt_rounds)
    password_hash = context.hash(secrets.token_urlsafe(24))
    settings = await pooler.resolve(settings)
    engine = make_engine(settings)
    size = batch_size or (BATCH if settings.is_sqlite else COPY_BATCH)
    try:
        async with bulk_pending_list(engine):
            return await _load(engine, settings, count, password_hash, size, progress, random_seed)
    finally:
        await engine.dispose()


async def _load(
    engine: AsyncEngine,
    settings: Settings,
    count: int,
    password_hash: str,
    size: int,
    progress: bool,
    random_seed: int | None,
) -> int:
    write = _insert if settings.is_sqlite else _copy
    started = time.monotonic()
    async with engine.begin() as conn:
        start = ((await conn.execute(select(func.max(User.id)))).scalar() or 0) + 1
    # A seed goes on from where the table ends: seeding it again with the same seed draws
    # other names, not the same ones again.
    rng = random.Random() if random_seed is None else random.Random(f"{random_seed}:{start}")
    # Each batch draws from a random stream of its own, so batches can be drawn in any
    # order, and side by side.
    batches = deque(
        (start + offset, min(size, count - offset), rng.getrandbits(64))
        for offset in range(0, count, size)
    )
    done = 0

    async def stream() -> None:
        nonlocal done
        while batches:
            first, n, batch_seed = batches.popleft()
            # Drawn in a thread: the other stream's COPY flows on meanwhile.
            rows = await asyncio.to_thread(_batch, first, n, password_hash, batch_seed)
            async with engine.begin() as conn:
                await write(conn, rows)
            done += n
            if progress:
                _progress(done, count, started)

    async with asyncio.TaskGroup() as streams:
        for _ in range(1 if settings.is_sqlite else COPY_STREAMS):
            streams.create_task(stream())
    if not settings.is_sqlite and count:
        async with engine.begin() as conn:
            # The load's last pending entries merged now, not read by every search until
            # the next merge (a missing index is NULL here: nothing to do).
            await conn.execute(
                text("SELECT gin_clean_pending_list(to_regclass(:index))"),
                {"index": SEARCH_INDEX},
            )
            await conn.execute(text("ANALYZE users"))  # fresh statistics for the planner
    if progress and count:
        print(file=sys.stderr)
    return done


@asynccontextmanager
async def bulk_pending_list(engine: AsyncEngine) -> AsyncIterator[None]:
    """The search index's pending list long (BULK_PENDING_LIST_KB) while the block loads,
    then as it was. When the index is busy past LOCK_TIMEOUT the load goes on with the list
    as it is: slower, no harm. PostgreSQL only (SQLite has no such index)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT reloptions FROM pg_class WHERE oid = to_regclass(:index)"),
            {"index": SEARCH_INDEX},
        )
        row = found.first()
    if row is None:  # no search index (not migrated that far): nothing to lift
        yield
        return
    kept = [o for o in row[0] or () if o.startswith("gin_pending_list_limit=")]
    restore = f"SET ({kept[0]})" if kept else "RESET (gin_pending_list_limit)"
    lifted = await _alter_search_index(
        engine, f"SET (gin_pending_list_limit = {BULK_PENDING_LIST_KB})"
    )
    try:
        yield
    finally:
        if lifted and not await _alter_search_index(engine, restore):
            print(
                f"webapp: the search index was busy; its pending list is still long: run"
                f" ALTER INDEX {SEARCH_INDEX} {restore}",
                file=sys.stderr,
            )


async def _alter_search_index(engine: AsyncEngine, change: str) -> bool:
    """``ALTER INDEX`` the search index, waiting LOCK_TIMEOUT at most: whether it was done."""
    try:
        async with engine.connect() as conn:
            # A transaction of its own (the engine's connections autocommit), for SET LOCAL.
            await conn.execution_options(isolation_level="READ COMMITTED")
            async with conn.begin():
                await conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
                await conn.execute(text(f"ALTER INDEX {SEARCH_INDEX} {change}"))
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        return False
    return True


def _batch(first: int, count: int, password_hash: str, batch_seed: int) -> list[Row]:
    return list(fake_users(first, count, password_hash, random.Random(batch_seed)))
