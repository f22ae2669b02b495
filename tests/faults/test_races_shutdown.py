"""Admins racing each other, and a SIGTERM with requests in flight: on a real uvicorn process."""

from __future__ import annotations

import asyncio
import time

import httpx2
import pytest
from sqlalchemy import Engine, select

from tests.factories import fetch_users_by_email, insert_user, signed_in_http, user_form
from tests.faults.cluster import PgCluster, TableLock
from tests.faults.conftest import ServeFactory
from tests.faults.figures import Figures
from webapp.models import AuditEvent, User
from webapp.routes.users import DUPLICATE_EMAIL

pytestmark = pytest.mark.faults

EDITORS, ROUNDS = 8, 3


async def _post_all(
    http: httpx2.AsyncClient, figures: Figures, path: str, forms: list[dict[str, str]]
) -> list[httpx2.Response]:
    responses = list(await asyncio.gather(*(http.post(path, data=form) for form in forms)))
    for response in responses:
        figures.answer(response.status_code)
    return responses


async def test_same_email_in_any_case_creates_one_row(
    serve: ServeFactory, db: Engine, figures: Figures
) -> None:
    server = serve()
    cases = ["race@example.com", "RACE@example.com", "Race@Example.com", "race@EXAMPLE.COM"]
    forms = [user_form(email=cases[n % len(cases)]) for n in range(20)]
    http = await signed_in_http(server.url)
    try:
        responses = await _post_all(http, figures, "/users", forms)
    finally:
        await http.aclose()
    assert sorted(r.status_code for r in responses) == [303] + [422] * 19
    assert all(DUPLICATE_EMAIL in r.text for r in responses if r.status_code == 422)
    assert len(fetch_users_by_email(db, "race@example.com")) == 1
    figures.rows_checked += 1


async def test_concurrent_edits_one_winner_per_version(
    serve: ServeFactory, db: Engine, figures: Figures
) -> None:
    server = serve()
    user_id = insert_user(db, first_name="Original", email="edited@example.com")
    winners = []
    http = await signed_in_http(server.url)
    try:
        for version in range(1, ROUNDS + 1):
            forms = []
            for n in range(EDITORS):
                form = user_form(
                    first_name=f"R{version}E{n}", email="edited@example.com", version=str(version)
                )
                del form["password"], form["password_confirm"]
                forms.append(form)
            responses = await _post_all(http, figures, f"/users/{user_id}", forms)
            assert sorted(r.status_code for r in responses) == [303] + [409] * (EDITORS - 1)
            for response in responses:
                if response.status_code == 409:
                    assert "Someone else saved this user" in response.text
            won = [
                f["first_name"]
                for f, r in zip(forms, responses, strict=True)
                if r.status_code == 303
            ]
            winners.append(won[0])
    finally:
        await http.aclose()
    with db.connect() as conn:
        user = conn.execute(select(User.first_name, User.version).where(User.id == user_id)).one()
        changes = conn.scalars(
            select(AuditEvent.changes)
            .where(AuditEvent.target_id == user_id, AuditEvent.action == "user.update")
            .order_by(AuditEvent.id)
        ).all()
    # Every winning edit is stored, in order, and recorded: none lost, none overwritten silently.
    assert (user.first_name, user.version) == (winners[-1], ROUNDS + 1)
    assert [c["first_name"][1] for c in changes] == winners
    figures.rows_checked += 1 + len(changes)


async def test_sigterm_lets_in_flight_requests_finish(
    cluster: PgCluster, serve: ServeFactory, figures: Figures
) -> None:
    server = serve(pool_size="3", max_overflow="2")
    http = await signed_in_http(server.url)
    try:
        assert (await http.get("/users")).status_code == 200
        lock = await asyncio.to_thread(TableLock(cluster).acquire)
        try:
            in_flight = [asyncio.create_task(http.get("/users")) for _ in range(5)]
            deadline = time.monotonic() + 30
            while len(cluster.app_backends(server.pid, state="active")) < 5:
                assert time.monotonic() < deadline, "the requests never reached the database"
                await asyncio.sleep(0.05)
            assert server.process is not None
            server.process.terminate()
            figures.fault("SIGTERM with requests in flight")
            # Stopped taking new connections, but the five are still being served.
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with httpx2.AsyncClient(base_url=server.url, timeout=5) as fresh:
                        await fresh.get("/healthz")
                except httpx2.TransportError:
                    break
                assert time.monotonic() < deadline, "still accepting after SIGTERM"
                await asyncio.sleep(0.05)
            assert not any(task.done() for task in in_flight)
        finally:
            await asyncio.to_thread(lock.release)
        finished = await asyncio.gather(*in_flight)
    finally:
        await http.aclose()
    for response in finished:
        figures.answer(response.status_code)
    assert [r.status_code for r in finished] == [200] * 5
    assert server.terminate() in (0, -15)
    # The lifespan disposed of the engine: the server shows no connection from the process.
    assert cluster.wait_until_no_backends(server.pid) == []
    assert "Application shutdown complete" in server.log()
