"""A throw-away PostgreSQL cluster in a temp folder, on a free loopback port.

initdb and pg_ctl refuse to run as root, so as root they run as the ``postgres`` user, who
then owns the folder. The cluster is stopped and the folder removed on the way out, also on
Ctrl-C or an error.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.config import BenchError

HOST = "127.0.0.1"
SUPERUSER = "postgres"
DATABASE = "bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Cluster:
    root: Path
    port: int

    @property
    def url(self) -> str:
        """The bench database, for the console (``webapp`` maps it to psycopg)."""
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{DATABASE}"

    @property
    def dsn(self) -> str:
        return f"host={HOST} port={self.port} user={SUPERUSER} dbname={DATABASE}"

    def execute(self, sql: str) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.encode())

    def scalar(self, sql: str) -> object:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute(sql.encode()).fetchone()
            return row[0] if row else None


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", SUPERUSER, "--", *cmd] if os.geteuid() == 0 else cmd


def _run(what: str, cmd: list[str], log: Path) -> None:
    with log.open("ab") as out:
        # A session of its own: Ctrl-C reaches only the bench, which then stops the cluster.
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise BenchError(f"{what} failed: " + " | ".join(tail))


@contextmanager
def running_cluster(pg_bin: Path, locale: str, shared_buffers: str) -> Iterator[Cluster]:
    for tool in ("initdb", "pg_ctl"):
        if not (pg_bin / tool).is_file():
            raise BenchError(f"no {pg_bin / tool}: install postgresql-15 or set BENCH_PG_BIN")
    root = Path(tempfile.mkdtemp(prefix="webapp-bench-"))
    data, sockets, log = root / "data", root / "socket", root / "postgres.log"
    started = False
    try:
        sockets.mkdir()
        log.touch()
        if os.geteuid() == 0:
            shutil.chown(root, SUPERUSER, SUPERUSER)
            for path in (sockets, log):
                shutil.chown(path, SUPERUSER, SUPERUSER)
        initdb = [str(pg_bin / "initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust"]
        initdb += ["-E", "UTF8", f"--locale={locale}", "--no-sync"]
        _run("initdb", _as_postgres(initdb), log)
        port = free_port()
        options = " ".join(
            [
                f"-c listen_addresses={HOST}",
                f"-p {port}",
                f"-c unix_socket_directories={sockets}",
                f"-c shared_buffers={shared_buffers}",
            ]
        )
        pg_ctl = [str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(log), "-w"]
        _run("pg_ctl start", _as_postgres([*pg_ctl, "-o", options, "start"]), log)
        started = True
        cluster = Cluster(root, port)
        with psycopg.connect(
            f"host={HOST} port={port} user={SUPERUSER} dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}".encode())
        yield cluster
    finally:
        if started:
            stop = [str(pg_bin / "pg_ctl"), "-D", str(data), "-w", "-m"]
            try:
                _run("pg_ctl stop", _as_postgres([*stop, "fast", "stop"]), log)
            except BenchError:
                subprocess.run(_as_postgres([*stop, "immediate", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
