"""A throw-away PostgreSQL 15 cluster that the fault suite starts, stops and restarts itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

PG_BIN = Path(os.environ.get("FAULTS_PG_BIN", "/usr/lib/postgresql/15/bin"))


def available() -> str | None:
    """Why the suite cannot run here, or None."""
    if not (PG_BIN / "pg_ctl").exists():
        return f"no PostgreSQL binaries in {PG_BIN} (set FAULTS_PG_BIN)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root needs runuser to start PostgreSQL as the postgres user"
    return None


def _as_postgres(args: list[str]) -> list[str]:
    # initdb and pg_ctl refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class PgCluster:
    """initdb into a temporary folder; a free loopback port; the socket inside the folder."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="webapp-faults-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self.running = False

    def _run(self, *args: str, timeout: float = 120) -> None:
        result = subprocess.run(
            _as_postgres([str(PG_BIN / args[0]), *args[1:]]),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stdout}{result.stderr}{self._tail()}")

    def _tail(self) -> str:
        try:
            return "\n--- postgres.log ---\n" + self.log.read_text()[-3000:]
        except OSError:
            return ""

    def init(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C",
        )

    def start(self) -> None:
        # fsync off: a throw-away cluster; an immediate shutdown still keeps every committed
        # transaction (the WAL is in the operating system's cache, and crash recovery replays it).
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=100"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def engine(self) -> Engine:
        """A synchronous engine for the test's own look-ups and faults; no pool."""
        return create_engine(
            self.url.replace("postgresql://", "postgresql+psycopg://"),
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
        )

    def app_backends(self, pid: int, state: str | None = None) -> list[int]:
        """Backend pids of the connections a console process opened (``webapp:<pid>``)."""
        sql = "SELECT pid FROM pg_stat_activity WHERE application_name = :name" + (
            " AND state = :state" if state else ""
        )
        engine = self.engine()
        try:
            with engine.connect() as conn:
                rows = conn.execute(text(sql), {"name": f"webapp:{pid}", "state": state})
                return [row[0] for row in rows]
        finally:
            engine.dispose()

    def terminate(self, backends: list[int]) -> int:
        """``pg_terminate_backend`` on each, waiting (up to 5 s) until it has gone; how many
        were there to kill. Not waiting, a request sent at once could still find the
        connection open and take it (the backend had been told to go, not gone yet)."""
        engine = self.engine()
        try:
            with engine.connect() as conn:
                killed = conn.execute(
                    text(
                        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) "
                        "FROM unnest(CAST(:pids AS int[])) AS pid"
                    ),
                    {"pids": backends},
                ).scalar_one()
                return int(killed)
        finally:
            engine.dispose()

    def wait_until_no_backends(self, pid: int, timeout: float = 15) -> list[int]:
        """A closed client's backend exits a moment later: wait for it, return what is left."""
        deadline = time.monotonic() + timeout
        while (left := self.app_backends(pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left

    def destroy(self) -> None:
        if self.running:
            try:
                self.stop("immediate")
            except RuntimeError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


class TableLock:
    """Holds ``LOCK TABLE users IN ACCESS EXCLUSIVE MODE`` in a thread until ``release()``:
    every request that reads users then waits inside the database, holding its connection,
    as behind a slow query or a migration."""

    def __init__(self, cluster: PgCluster) -> None:
        self.cluster = cluster
        self._held = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)
        self._error: BaseException | None = None

    def _hold(self) -> None:
        engine = create_engine(
            self.cluster.url.replace("postgresql://", "postgresql+psycopg://"), poolclass=NullPool
        )
        try:
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '20s'"))
                conn.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
                self._held.set()
                self._release.wait(timeout=120)
        except BaseException as exc:  # reported by acquire()
            self._error = exc
            self._held.set()
        finally:
            engine.dispose()

    def acquire(self, timeout: float = 30) -> TableLock:
        self._thread.start()
        if not self._held.wait(timeout) or self._error is not None:
            raise RuntimeError(f"could not lock the users table: {self._error}")
        return self

    def release(self) -> None:
        self._release.set()
        self._thread.join(timeout=30)
