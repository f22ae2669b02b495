"""The health page: pool figures, round trip, masked URL; and an unreachable database."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import make_url

from tests.conftest import LiveServer
from tests.factories import (
    HTMX,
    make_settings,
    signed_in_http,
    template_name,
    through_pgbouncer,
)
from tests.pool_helpers import Holder, pool_figures, skip_sign_in
from webapp.main import create_app

# A closed port on this machine: connections are refused at once.
UNREACHABLE = "postgresql://postgres:s3cret@127.0.0.1:1/test"


def figure(html: str, label: str) -> str:
    """The number shown beside ``label`` in the pool's figures."""
    match = re.search(rf'<dt>{re.escape(label)}</dt><dd class="num">([^<\s]+)', html)
    assert match, f"no figure labelled {label!r}"
    return match.group(1)


def round_trip(html: str) -> float | None:
    match = re.search(r'<span class="num">([\d.]+) ms</span> for <code>SELECT 1</code>', html)
    return float(match.group(1)) if match else None


@pytest.fixture
def sized_client(database_url: str) -> Iterator[TestClient]:
    """The app with pool figures unlike any default, to prove they come from the settings."""
    settings = make_settings(database_url, pool_size=4, max_overflow=3, pool_timeout=2.5)
    app = skip_sign_in(create_app(settings))
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


@pytest.fixture
def down_client() -> Iterator[TestClient]:
    """The app pointed at a database that does not answer."""
    settings = make_settings(UNREACHABLE, pool_timeout=0.5)
    app = skip_sign_in(create_app(settings))
    with TestClient(app, follow_redirects=False, raise_server_exceptions=False) as test_client:
        yield test_client


def test_health_page_shows_the_pool_and_round_trip(
    sized_client: TestClient, database_url: str
) -> None:
    response = sized_client.get("/health")
    assert response.status_code == 200
    assert template_name(response) == "health.html"
    html = response.text
    assert "<html" in html and 'hx-trigger="every 3s"' in html
    assert figure(html, "In use") == "0"
    assert figure(html, "Idle") == "0"  # the round trip uses a connection outside the pool
    assert figure(html, "Waiting now") == "0"
    assert figure(html, "Extra in use") == "0"
    assert "0 of 7 connections in use" in html
    assert "keeps up to 4 open, may open 3 more" in html and "waits up to 2.5 s" in html
    assert "All clear" in html
    rtt = round_trip(html)
    assert rtt is not None and 0 <= rtt < 5000
    assert "did not answer" not in html
    assert make_url(database_url).render_as_string(hide_password=True) in html
    # Found out at start-up (webapp.pooler): CI runs this through PgBouncer too.
    assert ("through PgBouncer" in html) is through_pgbouncer()
    # The chart: drawn on the server, SVG attributes and classes only (a strict CSP).
    assert re.search(r'<polyline class="series series-in-use" points="[\d., ]+"', html)
    assert "style=" not in html and "<script>" not in html

    # Polling again changes nothing: nothing leaks, nothing piles up.
    for _ in range(3):
        again = sized_client.get("/health", headers=HTMX).text
        assert (figure(again, "In use"), figure(again, "Idle")) == ("0", "0")


def test_plain_language_alerts() -> None:
    """Warnings are sentences anyone can act on; no pool jargon."""
    from webapp.health_view import alerts
    from webapp.pool_monitor import PoolSnapshot
    from webapp.server_stats import Headroom, ServerStats
    from webapp.timings import Timings

    none = Timings(0, 0, 0, 0, 0)
    busy = PoolSnapshot(
        size=2, max_overflow=1, maximum=3, timeout_seconds=5, in_use=3, idle=0,
        overflow_in_use=1, waiting=2, checkouts=9, timeouts=4, timeouts_recent=4, connects=3,
        invalidations=0, soft_invalidations=0, disconnects=0, closed=0, wait=none, hold=none,
        leak_threshold_seconds=10, leaks=[],
    )  # fmt: skip
    room = Headroom(workers=8, hosts=2, per_worker=10, max_connections=100,
                    superuser_reserved=3, reserve=5)  # fmt: skip
    server = ServerStats(reachable=True, round_trip_ms=1, max_connections=100, connections=95,
                         headroom=room)  # fmt: skip
    found = {a.title: a.text for a in alerts(busy, server)}
    assert "2 requests are waiting now" in found["Every database connection is in use"]
    assert "4 requests waited up to 5 s" in found["Requests are being turned away"]
    assert "95 of its 100" in found["The database server is close to its connection limit"]
    assert (
        "may open 160 connections but the server has room for 92"
        in found["Configured for more connections than the server allows"]
    )
    prose = str(found).replace("WEBAPP_MAX_OVERFLOW", "")  # setting names are fine
    assert "QueuePool" not in prose and "overflow" not in prose.lower()


def test_password_in_the_database_url_is_masked(database_url: str, is_postgres: bool) -> None:
    if not is_postgres:
        # A SQLite URL has no password: it is shown as it is.
        with TestClient(skip_sign_in(create_app(make_settings(database_url)))) as test_client:
            assert database_url in test_client.get("/health").text
        return
    url = make_url(database_url)
    if url.password is None:
        url = url.set(password="s3cret")  # trust authentication accepts any password
    password = str(url.password)
    settings = make_settings(url.render_as_string(hide_password=False))
    with TestClient(skip_sign_in(create_app(settings))) as test_client:
        html = test_client.get("/health").text
    assert round_trip(html) is not None, "the database should have answered"
    assert f":{password}@" not in html and ":***@" in html
    if password == "s3cret":
        assert "s3cret" not in html


def test_htmx_poll_gets_the_pool_fragment(client: TestClient) -> None:
    response = client.get("/health", headers=HTMX)
    assert response.status_code == 200
    assert template_name(response) == "_pool.html"
    assert "<html" not in response.text
    assert response.text.lstrip().startswith('<section id="pool"')
    assert 'hx-trigger="every 3s"' in response.text
    assert re.search(r'hx-get="(http://testserver)?/health"', response.text)
    assert "HX-Request" in response.headers["vary"]
    # A boosted navigation needs the whole page.
    boosted = client.get("/health", headers={**HTMX, "HX-Boosted": "true"})
    assert template_name(boosted) == "health.html"


def test_health_answers_when_the_database_does_not(down_client: TestClient) -> None:
    response = down_client.get("/health")
    assert response.status_code == 200
    html = response.text
    assert "The database did not answer (OperationalError)" in html
    assert round_trip(html) is None
    # The failed attempt did not keep a connection checked out.
    assert figure(html, "In use") == "0"
    # The URL is shown, its password is not.
    assert "127.0.0.1:1/test" in html
    assert "s3cret" not in html and ":***@" in html

    fragment = down_client.get("/health", headers=HTMX)
    assert fragment.status_code == 200 and "did not answer" in fragment.text


def test_pages_that_need_the_database_answer_503(down_client: TestClient) -> None:
    page = down_client.get("/users")
    assert page.status_code == 503
    assert page.headers["retry-after"] == "2"
    assert page.headers["content-type"].startswith("text/html")
    assert template_name(page) == "error.html"
    assert "<html" in page.text and "Please try again in a moment" in page.text
    assert "s3cret" not in page.text and "127.0.0.1" not in page.text

    data = down_client.get("/users", headers={"Accept": "application/json"})
    assert data.status_code == 503
    assert data.headers["retry-after"] == "2"
    assert data.json() == {
        "status": 503,
        "title": "Service Unavailable",
        "detail": "The database is busy or unavailable right now. Please try again in a moment.",
    }

    notice = down_client.get("/users", headers=HTMX)
    assert notice.status_code == 503
    assert notice.headers["retry-after"] == "2"
    assert template_name(notice) == "_error_notice.html"
    assert "<html" not in notice.text


def test_a_signed_in_health_page_does_not_wait_for_a_saturated_pool(
    database_url: str, admin_id: int
) -> None:
    """The admin check of /health runs outside the pool: with every pooled connection held,
    the page answers at once, shows them all in use, and does not count itself."""
    app = create_app(make_settings(database_url, pool_size=1, max_overflow=0, pool_timeout=5))
    holder = Holder(app)

    async def scenario(base_url: str) -> tuple[int, float, dict[str, Any]]:
        http = await signed_in_http(base_url)
        try:
            held = asyncio.create_task(http.get("/test/hold/h1"))
            while (await pool_figures(http))["pool"]["in_use"] != 1:
                await asyncio.sleep(0.02)
            started = time.monotonic()
            page = await http.get("/health")
            elapsed = time.monotonic() - started
            figures = await pool_figures(http)
            holder.release()
            await held
            return page.status_code, elapsed, figures
        finally:
            await http.aclose()

    with LiveServer(app) as server:
        status, elapsed, figures = asyncio.run(scenario(server.url))
    assert status == 200
    assert elapsed < 2.5  # not the pool's 5 s wait
    assert figures["pool"]["in_use"] == 1 and figures["pool"]["waiting"] == 0
