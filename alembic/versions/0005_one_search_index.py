"""One trigram index for the whole search, in place of one per field (PostgreSQL).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

A search word must appear in the first name, the last name or the email. With an index per
field, each word cost three index scans, and a two-word search six; a common word (Maria,
Smith) makes each of them long. One index over the three fields, lowered and joined by a
space (a search word has none, so it never matches across two fields), takes every word of
a search in a single scan, where the rare words' trigrams let it skip most of the common
ones': a search for one person by name went from 15-19 ms to 4-5 ms of PostgreSQL's time
at a million users. The expression must stay exactly ``webapp.models.search_text()``: the
planner uses the index only for that expression (tests/test_plans.py checks it does). On a
large live table, build it by hand first with CREATE INDEX CONCURRENTLY (same name); the
migration then finds it and skips. SQLite has no such index: there the search scans.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH_TEXT = "lower(first_name) || ' ' || lower(last_name) || ' ' || email_key"
PER_FIELD = {
    "ix_users_first_name_trgm": "first_name",
    "ix_users_last_name_trgm": "last_name",
    "ix_users_email_key_trgm": "email_key",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_users_search_trgm"
        f" ON users USING gin (({SEARCH_TEXT}) gin_trgm_ops)"
    )
    for name in PER_FIELD:
        op.execute(f"DROP INDEX IF EXISTS {name}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, column in PER_FIELD.items():
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON users USING gin ({column} gin_trgm_ops)")
    op.execute("DROP INDEX IF EXISTS ix_users_search_trgm")
