"""The public probes: /healthz, /readyz, and /metrics (also across several workers)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from tests.conftest import LiveServer, _free_port, sync_url
from tests.factories import engine_for_tests, make_settings, run_webapp, signed_in_http
from tests.pool_helpers import Holder, pool_figures, skip_sign_in, started, wait_for
from webapp.main import create_app
from webapp.server_stats import Probe

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/test"


def _samples(exposition: str) -> dict[str, float]:
    """``{sample name: value}`` for the unlabelled samples (all of ours but histograms)."""
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if not sample.labels
    }


def test_liveness_needs_no_database() -> None:
    with TestClient(create_app(make_settings(UNREACHABLE, pool_timeout=0.5))) as client:
        response = client.get("/healthz")
        assert (response.status_code, response.json()) == (200, {"status": "ok"})
        not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.headers["retry-after"] == "2"
    assert not_ready.json() == {"status": "unavailable", "database": "OperationalError"}


def test_ready_when_the_database_answers(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and response.json()["round_trip_ms"] >= 0


def _watched(engine: AsyncEngine) -> dict[str, int]:
    """What ``engine`` does from now on: connections opened, the most checked out at once,
    and look-ups sent (their ``SELECT 1``)."""
    seen = {"connects": 0, "out": 0, "most_out": 0, "look_ups": 0}

    def connected(*_: object) -> None:
        seen["connects"] += 1

    def checked_out(*_: object) -> None:
        seen["out"] += 1
        seen["most_out"] = max(seen["most_out"], seen["out"])

    def checked_in(*_: object) -> None:
        seen["out"] -= 1

    def sent(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        seen["look_ups"] += statement.strip() == "SELECT 1"

    sync = engine.sync_engine
    event.listen(sync, "connect", connected)
    event.listen(sync, "checkout", checked_out)
    event.listen(sync, "checkin", checked_in)
    event.listen(sync, "before_cursor_execute", sent)
    return seen


async def test_a_burst_of_probes_opens_no_connections_of_its_own(
    database_url: str, admin_id: int
) -> None:
    """Readiness checks are public and health pages poll: fifty at once take turns on the
    worker's one probe connection (counted in the arithmetic), never one each, which a
    flood of /readyz could otherwise use to exhaust the server's connections."""
    app = create_app(make_settings(database_url))
    with LiveServer(app) as server:
        probe: Probe = app.state.probe
        seen = _watched(probe.engine)
        http = await signed_in_http(server.url)
        try:
            answers = await asyncio.gather(
                *(http.get("/readyz") for _ in range(40)),
                *(http.get("/health/pool.json") for _ in range(10)),
            )
        finally:
            await http.aclose()
        figures = answers[-1].json()
    assert {r.status_code for r in answers} == {200}
    assert seen["most_out"] == 1 and seen["connects"] <= 1  # opened at start-up, or now
    assert figures["server"]["reachable"] is True
    assert figures["pool"]["in_use"] == 0  # nor do they take pooled ones


async def test_callers_share_the_look_up_under_way(database_url: str) -> None:
    probe = Probe(make_settings(database_url))
    seen = _watched(probe.engine)
    try:
        answers = await asyncio.gather(*(probe.stats(detail=False) for _ in range(20)))
        # A caller that goes away does not take the answer from the others.
        gone, waiting = probe.stats(), probe.stats()
        gone_task, waiting_task = asyncio.ensure_future(gone), asyncio.ensure_future(waiting)
        await asyncio.sleep(0)
        gone_task.cancel()
        detailed = await waiting_task
        later = await probe.stats(detail=False)
    finally:
        await probe.dispose()
    assert all(a.reachable for a in answers) and len({id(a) for a in answers}) == 1
    assert detailed.reachable and later.reachable and later is not answers[0]
    assert seen["look_ups"] == 3  # the twenty's, the two detailed ones', the last one's
    assert seen["connects"] == 1


@pytest.mark.direct_postgres
async def test_the_probe_connection_is_replaced_when_the_server_closes_it(
    database_url: str,
) -> None:
    probe = Probe(make_settings(database_url))
    seen = _watched(probe.engine)
    try:
        assert (await probe.stats(detail=False)).reachable
        async with probe.engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        outsider = engine_for_tests(sync_url(database_url), poolclass=NullPool)
        with outsider.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
        outsider.dispose()
        after = await probe.stats(detail=False)
    finally:
        await probe.dispose()
    assert after.reachable, after.error
    assert seen["connects"] == 2


class TcpProxy:
    """A loopback TCP forwarder to the database that can be cut and restored."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = _free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Refuse new connections and drop open ones, as a database restart does."""
        if self.server is None:
            return
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await self.server.wait_closed()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.server = None

    def close_now(self) -> None:
        """Synchronous last resort at the end of a test: close every socket."""
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.writers):
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}


class _proxy_stopped_after:  # noqa: N801 - reads as a context manager
    """Stops the proxy once the server (and its pool) has gone."""

    def __init__(self, proxy: TcpProxy) -> None:
        self.proxy = proxy

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.proxy.close_now()


async def _behind_a_proxy(database_url: str) -> tuple[TcpProxy, FastAPI]:
    """The console (sign-in skipped), reaching the database through a proxy that a test
    can stop and start: the database "down" and "back" without touching the real one."""
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    return proxy, skip_sign_in(create_app(make_settings(proxied, pool_timeout=2)))


@pytest.mark.postgres
async def test_readyz_follows_the_database_down_and_back(database_url: str) -> None:
    proxy, app = await _behind_a_proxy(database_url)
    with _proxy_stopped_after(proxy), LiveServer(app) as server:
        async with httpx2.AsyncClient(base_url=server.url, timeout=30) as http:
            assert (await http.get("/readyz")).status_code == 200
            await proxy.stop()
            began = time.monotonic()
            down = await http.get("/readyz")
            assert down.status_code == 503 and down.headers["retry-after"] == "2"
            assert time.monotonic() - began < 5
            await proxy.start()  # the same port again
            assert (await http.get("/readyz")).status_code == 200
            figures = await pool_figures(http)
    assert figures["server"]["reachable"] is True


async def _served_on_a_new_connection(http: httpx2.AsyncClient) -> None:
    """The next request is served, on a connection opened in place of the dead one."""
    again = await http.get("/test/hold/b")
    pool = (await pool_figures(http))["pool"]
    assert again.status_code == 200
    assert pool["disconnects"] >= 1 and pool["invalidations"] >= 1
    assert pool["connects"] == 2 and pool["in_use"] == 0


@pytest.mark.postgres
async def test_pre_ping_replaces_connections_killed_by_a_restart(database_url: str) -> None:
    proxy, app = await _behind_a_proxy(database_url)
    holder = Holder(app)
    with _proxy_stopped_after(proxy), LiveServer(app) as server:
        async with httpx2.AsyncClient(base_url=server.url, timeout=30) as http:
            first = started(http.get("/test/hold/a"))
            await wait_for(http, lambda f: f["pool"]["in_use"] == 1 and not f["pool"]["waiting"])
            holder.release()
            assert (await first).status_code == 200
            await wait_for(http, lambda f: f["pool"]["idle"] == 1)
            await proxy.stop()
            await proxy.start()
            # The pooled connection died with the "restart"; pre-ping finds out and replaces it.
            await _served_on_a_new_connection(http)


@pytest.mark.direct_postgres
async def test_a_connection_whose_backend_was_terminated_is_replaced_before_use(
    database_url: str,
) -> None:
    """The pre-use check reads the socket, no round trip: the backend's last words (or its
    closing) make it readable, and the pool swaps the connection before a route sees it."""
    app = skip_sign_in(create_app(make_settings(database_url, pool_size=1, max_overflow=0)))
    holder = Holder(app)
    holder.release_early()
    with LiveServer(app) as server:
        async with httpx2.AsyncClient(base_url=server.url, timeout=30) as http:
            assert (await http.get("/test/hold/a")).status_code == 200
            await wait_for(http, lambda f: f["pool"]["idle"] == 1)
            ours = f"webapp:{os.getpid()}"
            outsider = engine_for_tests(sync_url(database_url), poolclass=NullPool)
            with outsider.connect() as conn:
                pids = (
                    conn.execute(
                        text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"),
                        {"name": ours},
                    )
                    .scalars()
                    .all()
                )
                assert pids
                for pid in pids:
                    conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
            outsider.dispose()
            await _served_on_a_new_connection(http)


async def test_metrics_parse_and_agree_with_the_json(database_url: str) -> None:
    app = skip_sign_in(create_app(make_settings(database_url, pool_size=2, max_overflow=2)))
    holder = Holder(app)
    with LiveServer(app) as server:
        async with httpx2.AsyncClient(base_url=server.url, timeout=30) as http:
            held = started(http.get("/test/hold/a"))
            await wait_for(http, lambda f: (f["pool"]["in_use"], f["pool"]["waiting"]) == (1, 0))
            # Neither answer takes a pooled connection, so both see the same pool.
            metrics = await http.get("/metrics")
            figures = (await pool_figures(http))["pool"]
            holder.release()
            assert (await held).status_code == 200
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    samples = _samples(metrics.text)
    for name in ("size", "max_overflow", "in_use", "idle", "overflow_in_use", "waiting"):
        assert samples[f"webapp_db_pool_{name}"] == figures[name], name
    assert samples["webapp_db_pool_leaked"] == len(figures["leaks"])
    for name in ("checkouts", "timeouts", "connects", "invalidations", "disconnects"):
        assert samples[f"webapp_db_pool_{name}_total"] == figures[name], name
    assert samples["webapp_db_pool_in_use"] == 1
    assert samples["webapp_db_pool_wait_seconds_count"] == figures["wait"]["count"]


def test_metrics_token_when_set(database_url: str) -> None:
    token = "s3cret-token-for-prometheus"
    with TestClient(create_app(make_settings(database_url, metrics_token=token))) as client:
        refused = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        allowed = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401
    assert allowed.status_code == 200 and "webapp_db_pool_size" in allowed.text


@pytest.fixture
def served_by_two_workers(tmp_path: Path) -> Iterator[str]:
    """``webapp serve --workers 2`` in a child process, on a fresh SQLite file."""
    env = {"WEBAPP_DATABASE_URL": f"sqlite:///{tmp_path / 'w.db'}", "WEBAPP_POOL_SIZE": "3"}
    env["WEBAPP_SECRET_KEY"] = "k" * 40
    assert run_webapp("migrate", cwd=tmp_path, env=env).returncode == 0
    port = _free_port()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("WEBAPP_", "PROMETHEUS"))}
    child = subprocess.Popen(
        [sys.executable, "-m", "webapp.cli", "serve", "--port", str(port), "--workers", "2"],
        cwd=tmp_path,
        env={**child_env, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        child.terminate()
        child.wait(timeout=20)


def test_metrics_add_up_every_worker(served_by_two_workers: str) -> None:
    deadline = time.monotonic() + 30
    size = 0.0
    with httpx2.Client(base_url=served_by_two_workers, timeout=5) as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx2.TransportError):
                samples = _samples(http.get("/metrics").text)
                size = samples.get("webapp_db_pool_size", 0)
                if size == 6:
                    break
            time.sleep(0.1)
        # Both workers' pools (3 each) are counted, whichever worker answered the scrape.
        assert size == 6
        for _ in range(10):
            assert http.get("/readyz").status_code == 200
        samples = _samples(http.get("/metrics").text)
    assert samples["webapp_db_pool_max_overflow"] == 10  # 5 each
    assert samples["webapp_db_pool_in_use"] == 0
