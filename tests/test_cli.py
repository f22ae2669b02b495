"""The ``webapp`` command, run as a user runs it: a child process, exit codes, its output."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import Engine, func, make_url, select, text

from tests.factories import fresh_database, run_webapp, sync_engine
from webapp.models import User

FAST_HASH = {"WEBAPP_BCRYPT_ROUNDS": "4"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def user_summary(engine: Engine) -> tuple[int, int, int]:
    """Rows, distinct emails (whatever the case), and rows with a blank name."""
    with engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(User)).scalar_one()
        emails = conn.execute(
            select(func.count(func.distinct(func.lower(User.email))))
        ).scalar_one()
        blank = conn.execute(
            select(func.count()).where(
                (func.trim(User.first_name) == "") | (func.trim(User.last_name) == "")
            )
        ).scalar_one()
    return rows, emails, blank


def migrate_and_seed_twice(tmp_path: Path, env: dict[str, str], engine: Engine) -> None:
    migrated = run_webapp("migrate", cwd=tmp_path, env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.strip() == "webapp: database migrated to head"
    assert migrated.stderr == ""

    for total, drawn in ((250, ()), (500, ("--random-seed", "7"))):
        seeded = run_webapp("seed", "--count", "250", *drawn, cwd=tmp_path, env=env)
        assert seeded.returncode == 0, seeded.stderr
        assert seeded.stdout.strip() == "webapp: added 250 users"
        # Not a terminal: no progress bar, no carriage returns, nothing at all.
        assert seeded.stderr == ""
        assert user_summary(engine) == (total, total, 0)


def test_migrate_then_seed_a_new_sqlite_file(tmp_path: Path) -> None:
    db_file = tmp_path / "x.db"
    env = {"WEBAPP_DATABASE_URL": f"sqlite:///{db_file}", **FAST_HASH}
    engine = sync_engine(f"sqlite+aiosqlite:///{db_file}")
    try:
        migrate_and_seed_twice(tmp_path, env, engine)
        with engine.connect() as conn:
            hashes = conn.execute(select(func.count(func.distinct(User.password_hash)))).scalar()
            active = conn.execute(select(func.count()).where(User.is_active)).scalar_one()
        # Seeded users share one bcrypt hash (of a password nobody knows); most are active.
        assert hashes == 2  # one per seed run
        assert 300 < active < 500
    finally:
        engine.dispose()


def test_migrate_then_seed_on_postgresql(
    requires_postgres: None, db: Engine, tmp_path: Path
) -> None:
    # A throw-away database, not the shared test database: other test runs empty that one.
    with fresh_database(db, tmp_path) as url:
        plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        engine = sync_engine(url)
        try:
            migrate_and_seed_twice(tmp_path, {"WEBAPP_DATABASE_URL": plain, **FAST_HASH}, engine)
        finally:
            engine.dispose()


def test_seed_count_must_not_be_negative(tmp_path: Path) -> None:
    result = run_webapp("seed", "--count", "-1", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "webapp: --count must be 0 or more"
    assert not (tmp_path / "webapp.db").exists()


def test_seed_before_migrate_says_what_to_do(tmp_path: Path) -> None:
    env = {"WEBAPP_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", **FAST_HASH}
    result = run_webapp("seed", "--count", "1", cwd=tmp_path, env=env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "migrate" in result.stderr


def test_serve_refuses_reload_with_several_workers(tmp_path: Path) -> None:
    result = run_webapp("serve", "--reload", "--workers", "2", cwd=tmp_path, timeout=20)
    assert result.returncode == 2
    assert "--reload and --workers cannot be combined" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_help_lists_the_commands(tmp_path: Path) -> None:
    # The installed console script, as a shell finds it next to this interpreter.
    script = Path(sys.executable).with_name("webapp")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "webapp.cli"]
    result = subprocess.run(
        [*command, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=20, check=False
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: webapp ")
    for name in ("serve", "migrate", "seed"):
        assert name in result.stdout


def test_a_command_is_required(tmp_path: Path) -> None:
    result = run_webapp(cwd=tmp_path)
    assert result.returncode == 2
    assert "usage: webapp" in result.stderr


@pytest.mark.direct_postgres
def test_serve_refuses_a_pool_budget_the_server_cannot_honour(
    tmp_path: Path, database_url: str, db: Engine
) -> None:
    with db.connect() as conn:
        max_connections = int(conn.execute(text("SHOW max_connections")).scalar_one())
    too_many = {
        "WEBAPP_DATABASE_URL": database_url,
        "WEBAPP_POOL_SIZE": str(max_connections),
        "WEBAPP_MAX_OVERFLOW": "0",
    }
    refused = run_webapp("serve", "--workers", "2", "--port", "1", cwd=tmp_path, env=too_many)
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()[-1:]
    # Each worker's pool and its health probe's connection (webapp.server_stats.Probe).
    assert f"= {2 * (max_connections + 1)} may be opened" in line and "PgBouncer" in line
    assert "Traceback" not in refused.stderr


@pytest.mark.direct_postgres
def test_serve_starts_when_the_budget_fits(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    env = {**os.environ, "WEBAPP_DATABASE_URL": database_url, "WEBAPP_POOL_SIZE": "2"}
    command = [sys.executable, "-m", "webapp.cli", "serve", "--port", str(port)]
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("the console did not start")
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize("loop", [None, "uvloop"])
def test_serve_runs_on_the_loop_asked_for(tmp_path: Path, loop: str | None) -> None:
    """Python's own event loop unless told otherwise (uvloop stretched the list's p99 under
    load, see the README): uvloop's library is loaded only when asked for."""
    port = free_port()
    env = {**os.environ, "WEBAPP_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    command = [sys.executable, "-m", "webapp.cli", "serve", "--port", str(port)]
    command += ["--loop", loop] if loop else []
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("the console did not start")
        maps = Path(f"/proc/{server.pid}/maps").read_text()
        assert ("uvloop" in maps) == (loop == "uvloop")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_migration_that_stops_says_why_without_a_traceback(tmp_path: Path) -> None:
    """Two users whose addresses migration 0007 finds are one mailbox: `webapp migrate`
    names them and exits 1, and the schema stays where it was."""
    url = f"sqlite:///{tmp_path / 'clash.db'}"
    env = {"WEBAPP_DATABASE_URL": url, **FAST_HASH}
    assert run_webapp("migrate", "--revision", "0006", cwd=tmp_path, env=env).returncode == 0
    engine = sync_engine(url)
    try:
        with engine.begin() as conn:
            for email in ("jos\u00e9@example.com", "jose\u0301@example.com"):
                conn.execute(
                    text(
                        "INSERT INTO users (first_name, last_name, email, email_key,"
                        " password_hash, version) VALUES ('A', 'B', :e, :e, 'x', 1)"
                    ),
                    {"e": email},
                )
        result = run_webapp("migrate", cwd=tmp_path, env=env)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert "one mailbox written two ways" in result.stderr
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0006"
    finally:
        engine.dispose()
