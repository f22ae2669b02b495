"""The fault suite's fixtures: its own PostgreSQL cluster, the console in a child process, and
the figures every test adds to (printed at the end of the run, to be quoted)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool

from tests.conftest import _free_port
from tests.faults.cluster import PgCluster, available
from tests.faults.figures import FIGURES, Figures
from tests.faults.server import AppServer, create_admin, webapp, webapp_env
from webapp.config import normalise_database_url


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgCluster]:
    reason = available()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    pg = PgCluster(_free_port())
    try:
        pg.init()
        pg.start()
        cwd = tmp_path_factory.mktemp("migrate")
        webapp(["migrate"], webapp_env(pg.url), cwd)
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="session")
def database_url(cluster: PgCluster) -> str:
    """Overrides the suite-wide one: every fixture here (``db``, ``settings``, the table
    emptying after each test) works on the throw-away cluster, never on TEST_DATABASE_URL."""
    return normalise_database_url(cluster.url)


@pytest.fixture(scope="session")
def db(database_url: str) -> Iterator[Engine]:
    """No pool: the suite restarts the server, which would kill pooled connections."""
    engine = create_engine(database_url, poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _cluster_up_again(cluster: PgCluster) -> Iterator[None]:
    """A test that stopped the database and failed still leaves it running for the next."""
    yield
    if not cluster.running:
        cluster.start()


@pytest.fixture
def figures() -> Figures:
    return FIGURES


ServeFactory = Callable[..., AppServer]


@pytest.fixture
def serve(cluster: PgCluster, tmp_path: Path, figures: Figures) -> Iterator[ServeFactory]:
    """``serve(pool_size="3", ...)``: create the admin, then start ``webapp serve`` with those
    settings. On the way out: SIGTERM, and no connection of the process may be left."""
    servers: list[AppServer] = []

    def start(*, admin: bool = True, **settings: str) -> AppServer:
        env = webapp_env(cluster.url, **settings)
        if admin:
            create_admin(env, tmp_path)
        server = AppServer(env, tmp_path, _free_port())
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        code = server.terminate()
        # Uvicorn exits by the signal it was stopped with, once it has shut down cleanly.
        assert code in (0, -signal.SIGTERM), f"webapp serve exited with {code}:\n{server.log()}"
        if not cluster.running:
            cluster.start()
        left = cluster.wait_until_no_backends(server.pid)
        figures.leaked += len(left)
        assert not left, f"connections left by the console after it stopped: {left}"
        log = server.log()
        assert "Traceback" not in log and "unhandled error" not in log, log


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES.used:
        terminalreporter.write_sep("=", "fault suite figures")
        for line in FIGURES.lines():
            terminalreporter.write_line(line)
