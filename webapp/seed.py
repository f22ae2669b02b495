"""``webapp seed``: realistic fake users, inserted in large batches."""

from __future__ import annotations

import random
import secrets
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from passlib.context import CryptContext
from sqlalchemy import func, insert, select

from webapp.config import Settings
from webapp.db import make_engine
from webapp.models import User, email_key

BATCH = 5000

FIRST_NAMES = (
    "Ada Alan Alice Amara Ana Andrei Anika Aroha Beatriz Ben Camille Carlos Chen Chloe Dara "
    "David Diego Elena Elif Emma Erik Fatima Felix Grace Hana Hugo Ines Ivan Jamal Jana Jonas "
    "Julia Kai Kenji Lara Leila Liam Lina Luca Maya Mateo Mei Mila Nadia Naveen Nia Noah Olga "
    "Omar Paula Priya Rafael Rosa Sami Sara Sofia Tariq Tomas Uma Victor Wen Yara Yusuf Zoe"
).split()
LAST_NAMES = (
    "Abe Adeyemi Almeida Andersen Bakker Becker Bianchi Brown Costa Cruz Dubois Eriksen "
    "Fischer Garcia Gonzalez Haddad Hansen Ito Ivanova Jensen Kaur Khan Kim Kowalski Larsen "
    "Lee Lopez Martin Meyer Moreau Muller Nakamura Nguyen Novak Okafor Oliveira Park Patel "
    "Petrov Quinn Rahman Rossi Santos Schmidt Silva Singh Smith Sousa Tanaka Taylor Torres "
    "Ueda Varga Wagner Walker Wang Weber Williams Wilson Yamamoto Zhang Zielinski"
).split()
DOMAINS = ("example.com", "example.org", "example.net", "mail.example", "corp.example")
SPAN = timedelta(days=3 * 365)


def fake_users(
    start: int, count: int, password_hash: str, rng: random.Random
) -> Iterator[dict[str, Any]]:
    now = datetime.now(UTC)
    for n in range(start, start + count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        created = now - SPAN * rng.random()
        # The running number keeps every address unique, also across repeated seeds.
        email = f"{first.lower()}.{last.lower()}.{n}@{rng.choice(DOMAINS)}"
        yield {
            "first_name": first,
            "last_name": last,
            "email": email,
            "email_key": email_key(email),
            "password_hash": password_hash,
            "is_active": rng.random() > 0.1,
            "is_admin": rng.random() < 0.02,
            "created_at": created,
            "updated_at": created,
            "version": 1,
        }


def _progress(done: int, total: int) -> None:
    width = 30
    filled = width * done // total if total else width
    bar = "#" * filled + "-" * (width - filled)
    print(f"\r[{bar}] {done:,}/{total:,}", end="", file=sys.stderr, flush=True)


async def seed(settings: Settings, count: int, *, progress: bool = False) -> int:
    """Insert ``count`` users. Seeded users share one hash of a random, unknown password."""
    context = CryptContext(schemes=["bcrypt"], bcrypt__rounds=settings.bcrypt_rounds)
    password_hash = context.hash(secrets.token_urlsafe(24))
    engine = make_engine(settings)
    rng = random.Random()
    try:
        async with engine.begin() as conn:
            start = ((await conn.execute(select(func.max(User.id)))).scalar() or 0) + 1
        done = 0
        rows = fake_users(start, count, password_hash, rng)
        while done < count:
            batch = [next(rows) for _ in range(min(BATCH, count - done))]
            async with engine.begin() as conn:
                await conn.execute(insert(User), batch)
            done += len(batch)
            if progress:
                _progress(done, count)
        if progress and count:
            print(file=sys.stderr)
        return done
    finally:
        await engine.dispose()
