"""Migrations on a fresh database of the test database's kind: up, down to nothing, up again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, exc, insert, inspect, select, text

from tests.factories import fresh_database, sync_engine
from webapp import crud, migrations
from webapp.listing import UserListQuery
from webapp.models import Base, User, email_key

COLUMNS = {
    "id",
    "first_name",
    "last_name",
    "email",
    "email_key",
    "must_change_password",
    "password_hash",
    "is_active",
    "is_admin",
    "created_at",
    "updated_at",
    "version",
}
INDEXES = {"uq_users_email_key", "ix_users_name", "ix_users_created_at"}
# Substring search on PostgreSQL: GIN trigram indexes, which SQLite has no kind of, so they
# live in the migrations only, not in the models. 0004 made one per field, 0005 one for all.
PER_FIELD_TRIGRAM = {
    "ix_users_first_name_trgm",
    "ix_users_last_name_trgm",
    "ix_users_email_key_trgm",
}
TRIGRAM = {"ix_users_search_trgm"}
HEAD = "0007"


def expected_indexes(engine: Engine) -> set[str]:
    return INDEXES | TRIGRAM if engine.dialect.name == "postgresql" else INDEXES


@pytest.fixture
def fresh_url(db: Engine, tmp_path: Path) -> Iterator[str]:
    with fresh_database(db, tmp_path) as url:
        yield url


@pytest.fixture
def fresh_db(fresh_url: str) -> Iterator[Engine]:
    engine = sync_engine(fresh_url)
    yield engine
    engine.dispose()


def index_sql(engine: Engine) -> dict[str, str]:
    """Each secondary index on ``users`` and the SQL that defines it, as the database has it."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            query = (
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'users'"
            )
        else:
            query = (
                "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x"
                " JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid"
                " WHERE t.relname = 'users' AND t.relnamespace = 'public'::regnamespace"
                " AND NOT x.indisprimary"
            )
        return {name: sql for name, sql in conn.execute(text(query)) if sql}


def a_user(email: str) -> dict[str, object]:
    return {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": email,
        "password_hash": "x",
        "version": 1,
    }


def test_upgrade_creates_the_users_table(fresh_url: str, fresh_db: Engine) -> None:
    assert "users" not in inspect(fresh_db).get_table_names()
    migrations.upgrade(fresh_url)

    inspector = inspect(fresh_db)
    columns = {c["name"]: c for c in inspector.get_columns("users")}
    assert set(columns) == COLUMNS
    assert not any(c["nullable"] for c in columns.values())
    assert inspector.get_pk_constraint("users")["constrained_columns"] == ["id"]
    indexes = index_sql(fresh_db)
    assert set(indexes) == expected_indexes(fresh_db)
    assert "UNIQUE" in indexes["uq_users_email_key"].upper()
    assert "email_key" in indexes["uq_users_email_key"]
    with fresh_db.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD


def test_migrated_schema_matches_the_models(fresh_url: str, fresh_db: Engine) -> None:
    migrations.upgrade(fresh_url)
    with fresh_db.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    deliberate = [d for d in differences if d[0] == "remove_index" and d[1].name in TRIGRAM]
    assert [d for d in differences if d not in deliberate] == []


def test_email_is_unique_whatever_the_case(fresh_url: str, fresh_db: Engine) -> None:
    migrations.upgrade(fresh_url)
    with fresh_db.begin() as conn:
        conn.execute(insert(User).values(a_user("Ada@Example.com")))
    with pytest.raises(exc.IntegrityError), fresh_db.begin() as conn:
        conn.execute(insert(User).values(a_user("ada@example.COM")))
    with fresh_db.begin() as conn:
        conn.execute(insert(User).values(a_user("ada2@example.com")))
        assert conn.execute(select(User.email).order_by(User.id)).scalars().all() == [
            "Ada@Example.com",
            "ada2@example.com",
        ]


def test_server_defaults_fill_flags_and_timestamps(fresh_url: str, fresh_db: Engine) -> None:
    migrations.upgrade(fresh_url)
    with fresh_db.begin() as conn:
        conn.execute(insert(User).values(a_user("grace@example.com")))
        row = conn.execute(select(User.__table__)).one()
    assert row.is_active is True and row.is_admin is False
    assert row.created_at is not None and row.updated_at is not None


def test_downgrade_to_base_removes_the_table_and_upgrade_works_again(
    fresh_url: str, fresh_db: Engine
) -> None:
    migrations.upgrade(fresh_url)
    migrations.upgrade(fresh_url)  # already at head: nothing to do, no error
    migrations.downgrade(fresh_url, "base")
    assert "users" not in inspect(fresh_db).get_table_names()
    with fresh_db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 0

    migrations.upgrade(fresh_url)
    assert {c["name"] for c in inspect(fresh_db).get_columns("users")} == COLUMNS
    assert set(index_sql(fresh_db)) == expected_indexes(fresh_db)
    with fresh_db.begin() as conn:
        conn.execute(insert(User).values(a_user("again@example.com")))
        assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 1


def test_second_revision_adds_audit_and_throttling_and_goes_back_cleanly(
    fresh_url: str, fresh_db: Engine
) -> None:
    migrations.upgrade(fresh_url, "0001")
    assert not {"audit_events", "login_throttle"} & set(inspect(fresh_db).get_table_names())
    with fresh_db.begin() as conn:  # the schema of 0001, not the models' current one
        conn.execute(
            text(
                "INSERT INTO users (first_name, last_name, email, email_key, password_hash,"
                " version) VALUES ('Kept', 'Row', 'kept@example.com', 'kept@example.com',"
                " 'x', 1)"
            )
        )
    migrations.upgrade(fresh_url)
    inspector = inspect(fresh_db)
    assert {"audit_events", "login_throttle"} <= set(inspector.get_table_names())
    with fresh_db.connect() as conn:
        # The row that was there gets the new column's default.
        flag = conn.execute(text("SELECT must_change_password FROM users")).scalar_one()
        assert flag in (False, 0)
    migrations.downgrade(fresh_url, "0001")
    inspector = inspect(fresh_db)
    assert not {"audit_events", "login_throttle"} & set(inspector.get_table_names())
    assert "must_change_password" not in {c["name"] for c in inspector.get_columns("users")}
    with fresh_db.connect() as conn:
        assert conn.execute(text("SELECT email FROM users")).scalar_one() == "kept@example.com"


def test_third_revision_adds_api_tokens_and_goes_back_cleanly(
    fresh_url: str, fresh_db: Engine
) -> None:
    migrations.upgrade(fresh_url, "0002")
    assert "api_tokens" not in inspect(fresh_db).get_table_names()
    migrations.upgrade(fresh_url)
    inspector = inspect(fresh_db)
    columns = {c["name"]: c for c in inspector.get_columns("api_tokens")}
    assert set(columns) == {
        "id",
        "user_id",
        "name",
        "token_hash",
        "prefix",
        "created_at",
        "last_used_at",
        "expires_at",
    }
    assert {n for n, c in columns.items() if c["nullable"]} == {"last_used_at", "expires_at"}
    (foreign_key,) = inspector.get_foreign_keys("api_tokens")
    assert foreign_key["referred_table"] == "users"
    assert foreign_key["options"].get("ondelete") == "CASCADE"
    unique = {i["name"] for i in inspector.get_indexes("api_tokens") if i["unique"]}
    assert unique == {"uq_api_tokens_token_hash"}
    migrations.downgrade(fresh_url, "0002")
    assert "api_tokens" not in inspect(fresh_db).get_table_names()
    assert "users" in inspect(fresh_db).get_table_names()


def test_trigram_indexes_serve_the_search_on_postgresql(fresh_url: str, fresh_db: Engine) -> None:
    migrations.upgrade(fresh_url)
    assert set(index_sql(fresh_db)) == expected_indexes(fresh_db)
    if fresh_db.dialect.name == "postgresql":
        with fresh_db.begin() as conn:
            # Enough varied names for the planner to prefer the index to reading everything.
            conn.execute(
                text(
                    "INSERT INTO users (first_name, last_name, email, email_key, password_hash,"
                    " version) SELECT 'F', md5(n::text), n || '@x.example', n || '@x.example',"
                    " 'x', 1 FROM generate_series(1, 20000) AS n"
                )
            )
            # As in a table in service: the index's pending entries merged (VACUUM does it).
            conn.execute(text("SELECT gin_clean_pending_list('ix_users_search_trgm')"))
            conn.execute(text("ANALYZE users"))
            # The console's own filter, as it sends it: the index is on that expression.
            search = crud._filtered(select(User.id), UserListQuery(q="ovela"), True)
            sql = search.compile(dialect=fresh_db.dialect, compile_kwargs={"literal_binds": True})
            plan = "\n".join(row[0] for row in conn.execute(text(f"EXPLAIN {sql}")))
        assert "Bitmap Index Scan on ix_users_search_trgm" in plan, plan
        # 0006: a short pending list, so that searches do not read thousands of new users'
        # entries one by one until the next merge.
        assert _reloptions(fresh_db, "ix_users_search_trgm") == ["gin_pending_list_limit=64"]
        migrations.downgrade(fresh_url, "0005")
        assert _reloptions(fresh_db, "ix_users_search_trgm") is None
        migrations.downgrade(fresh_url, "0004")  # one index per field again
        assert set(index_sql(fresh_db)) == INDEXES | PER_FIELD_TRIGRAM
    migrations.downgrade(fresh_url, "0003")
    assert set(index_sql(fresh_db)) == INDEXES
    migrations.upgrade(fresh_url)


def _reloptions(engine: Engine, index: str) -> list[str] | None:
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT reloptions FROM pg_class WHERE oid = to_regclass(:index)"),
            {"index": index},
        ).scalar_one()
    return list(found) if found is not None else None


def _insert_at_0006(conn: Connection, email: str, key: str) -> None:
    conn.execute(
        text(
            "INSERT INTO users (first_name, last_name, email, email_key, password_hash, version)"
            " VALUES ('Ada', 'Lovelace', :email, :key, 'x', 1)"
        ),
        {"email": email, "key": key},
    )


def _keys(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {
            email: key for email, key in conn.execute(text("SELECT email, email_key FROM users"))
        }


def test_seventh_revision_brings_email_keys_to_one_form_and_back(
    fresh_url: str, fresh_db: Engine
) -> None:
    """Keys made before 0007 (the address lowered) become the keys webapp.models.email_key
    makes now; the rest are untouched; going back restores them."""
    migrations.upgrade(fresh_url, "0006")
    before = {
        "jose\u0301@example.com": "jose\u0301@example.com",  # e + combining accent
        "Idn@XN--BCHER-KVA.example": "idn@xn--bcher-kva.example",
        "Plain@Example.com": "plain@example.com",
        "\u00c9lise@example.com": "\u00e9lise@example.com",  # composed already
    }
    with fresh_db.begin() as conn:
        for email, key in before.items():
            _insert_at_0006(conn, email, key)
    migrations.upgrade(fresh_url)
    after = _keys(fresh_db)
    assert after == {email: email_key(email) for email in before}
    assert after["jose\u0301@example.com"] == "jos\u00e9@example.com"
    assert after["Idn@XN--BCHER-KVA.example"] == "idn@b\u00fccher.example"
    migrations.downgrade(fresh_url, "0006")
    assert _keys(fresh_db) == before


def test_seventh_revision_stops_at_two_addresses_of_one_mailbox(
    fresh_url: str, fresh_db: Engine
) -> None:
    """Two users whose addresses turn out to be one: the migration names them and changes
    nothing, and goes through once one is renamed."""
    migrations.upgrade(fresh_url, "0006")
    with fresh_db.begin() as conn:
        _insert_at_0006(conn, "jos\u00e9@example.com", "jos\u00e9@example.com")
        _insert_at_0006(conn, "JOSE\u0301@example.com", "jose\u0301@example.com")
    before = _keys(fresh_db)
    with pytest.raises(CommandError, match="one mailbox written two ways") as refused:
        migrations.upgrade(fresh_url)
    assert "JOSE\u0301@example.com = jos\u00e9@example.com" in str(refused.value)
    assert _keys(fresh_db) == before
    with fresh_db.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0006"
    with fresh_db.begin() as conn:
        conn.execute(
            text(
                "UPDATE users SET email = 'other@example.com',"
                " email_key = 'other@example.com' WHERE email LIKE 'JOSE%'"
            )
        )
    migrations.upgrade(fresh_url)
    assert _keys(fresh_db)["jos\u00e9@example.com"] == "jos\u00e9@example.com"
