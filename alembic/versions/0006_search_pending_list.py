"""A short pending list for the search's trigram index (PostgreSQL).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

A GIN index puts new entries on a pending list and merges them into the index in bulk,
once the list outgrows ``gin_pending_list_limit`` (4 MB by default) or VACUUM runs. Every
search reads the whole pending list meanwhile. Each user adds some fifty trigrams: 3,000
users created or renamed filled 498 pages of it, and a search for one person at a million
users went from 2.7 to 6.4 ms of PostgreSQL's time until the next merge. At 64 kB (the
least PostgreSQL allows) a search sees no difference, and a create or an edit merges about
fifty users' entries now and then. ``webapp seed`` lifts the limit while it loads, where
merging in bulk is the point (webapp.seed.bulk_pending_list).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH_INDEX = "ix_users_search_trgm"
PENDING_LIST_KB = 64


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER INDEX {SEARCH_INDEX} SET (gin_pending_list_limit = {PENDING_LIST_KB})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER INDEX {SEARCH_INDEX} RESET (gin_pending_list_limit)")
