"""Email keys in one Unicode form, and internationalised domains in one spelling.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

An address's key (``users.email_key``, unique) was the address lowered. "josé@example.com"
typed with a composed é and with an e and a combining accent, or a domain as "bücher.example"
and as its DNS spelling "xn--bcher-kva.example", made two keys for one mailbox: two users,
and a sign-in that fails when typed the other way. The key is now lowered, put in Unicode's
composed form (NFC), and a domain's "xn--" labels are read back into letters
(``webapp.models.email_key``). This recomputes the keys that change: only keys with letters
past ASCII or an "xn--" label can. If two users' addresses turn out to be one, the migration
stops and names them, changing nothing: merge or rename one, then run it again.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import idna
import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

users = sa.table(
    "users",
    sa.column("id", sa.Integer),
    sa.column("email", sa.String),
    sa.column("email_key", sa.String),
)


def _key(email: str) -> str:
    """webapp.models.email_key as of this revision (kept here: a migration must not change
    when the application's code does)."""
    key = email.strip().lower()
    if key.isascii() and "xn--" not in key:
        return key
    key = unicodedata.normalize("NFC", key)
    local, at, domain = key.rpartition("@")
    if not at:
        return key
    labels = []
    for label in domain.split("."):
        if label.startswith("xn--"):
            try:
                label = str(idna.decode(label))  # IDNA 2008, as email_validator checks
            except idna.IDNAError:  # not a valid DNS spelling: kept as it is
                pass
        labels.append(label)
    return local + at + ".".join(labels)


def _candidates(bind: sa.Connection) -> list[tuple[int, str, str]]:
    """(id, email, key) of the users whose key this revision may change: keys with letters
    past ASCII or an "xn--" label (chosen by PostgreSQL; SQLite's rows are read and chosen
    here, the same ones)."""
    query = sa.select(users.c.id, users.c.email, users.c.email_key)
    if bind.dialect.name == "postgresql":
        query = query.where(
            sa.or_(users.c.email_key.op("~")("[^\\x01-\\x7f]"), users.c.email_key.contains("xn--"))
        )
    return [
        (uid, email, key)
        for uid, email, key in bind.execute(query)
        if not key.isascii() or "xn--" in key
    ]


def _changing(bind: sa.Connection) -> list[tuple[int, str, str]]:
    """(id, email, new key) of every user whose key changes."""
    return [
        (uid, email, _key(email)) for uid, email, key in _candidates(bind) if _key(email) != key
    ]


def upgrade() -> None:
    bind = op.get_bind()
    changing = _changing(bind)
    if not changing:
        return
    new_keys = {key for _, _, key in changing}
    others = bind.execute(
        sa.select(users.c.email_key, users.c.email).where(users.c.email_key.in_(sorted(new_keys)))
    ).all()
    taken: dict[str, list[str]] = {}
    for key, email in others:
        taken.setdefault(key, []).append(email)
    for _, email, key in changing:
        taken.setdefault(key, []).append(email)
    clashes = {key: emails for key, emails in taken.items() if len(emails) > 1}
    if clashes:
        listed = "; ".join(" = ".join(sorted(set(emails))) for emails in clashes.values())
        raise CommandError(
            "these users' addresses are one mailbox written two ways, and their keys would"
            f" clash: {listed}. Merge or rename one of each, then migrate again."
        )
    # No two keys trade places: a key that changes was not in that form, and every new one
    # is.
    for uid, _, key in changing:
        bind.execute(sa.update(users).where(users.c.id == uid).values(email_key=key))


def downgrade() -> None:
    bind = op.get_bind()
    for uid, email, key in _candidates(bind):
        old = email.strip().lower()
        if old != key:
            bind.execute(sa.update(users).where(users.c.id == uid).values(email_key=old))
