"""Trigram indexes for substring search on PostgreSQL.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

The list's search is a case-insensitive substring match (ILIKE '%term%') on first name,
last name and email. A B-tree cannot serve a pattern that starts with a wildcard; a GIN
index of trigrams can, so a search of a million users reads the matching rows instead of
all of them. SQLite has no such index type: there the search scans, which the embedded
default's small tables afford. On a large live table, build these by hand first with
CREATE INDEX CONCURRENTLY (same names); the migration then finds them and skips.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_users_first_name_trgm": "first_name",
    "ix_users_last_name_trgm": "last_name",
    "ix_users_email_key_trgm": "email_key",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # pg_trgm is a trusted extension: the database's owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, column in INDEXES.items():
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON users USING gin ({column} gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
