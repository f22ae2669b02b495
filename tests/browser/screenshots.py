"""``make screenshots``: the README's pictures, from a throw-away seeded database.

Seeds a SQLite file with ``webapp migrate``, ``webapp seed`` and ``webapp create-admin``,
serves the console in-process, and saves from Chromium into the folder given (``docs``):

- ``users.png`` and ``users-mobile.png``: the user list at 1280 and 400 px wide;
- ``form-errors.png``: the new-user form after a post with mistakes;
- ``health.png``: the health page while a demo route holds connections past the threshold
  and a burst of requests queues for the rest (some wait out the timeout and are turned away).

Usage: ``python -m tests.browser.screenshots docs``
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx2
from fastapi import FastAPI
from sqlalchemy import text

from tests.browser.support import LAUNCH_ARGS, expect, sign_in, why_no_browser
from tests.conftest import LiveServer
from tests.factories import ADMIN_EMAIL, PASSWORD
from webapp.config import Settings
from webapp.deps import SessionDep
from webapp.main import create_app

USERS = 1_000
HELD_SECONDS = 7.0  # the demo route's hold: past the leak threshold below
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 400, "height": 860}


def webapp(*args: str, env: dict[str, str], stdin: str | None = None) -> None:
    subprocess.run(
        [sys.executable, "-m", "webapp.cli", *args], env=env, input=stdin, text=True, check=True
    )


def seeded_database(folder: Path) -> dict[str, str]:
    """A fresh SQLite file with ``USERS`` users and the admin; returns the settings' env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBAPP_")}
    env |= {
        "WEBAPP_DATABASE_URL": f"sqlite:///{folder / 'webapp.db'}",
        "WEBAPP_SECRET_KEY": secrets.token_urlsafe(48),
        "WEBAPP_BCRYPT_ROUNDS": "4",
    }
    webapp("migrate", env=env)
    webapp("seed", "--count", str(USERS), env=env)
    name = ["--first-name", "Ada", "--last-name", "Lovelace"]
    webapp("create-admin", "--email", ADMIN_EMAIL, *name, env=env, stdin=PASSWORD + "\n")
    return env


def demo_app(env: dict[str, str]) -> FastAPI:
    settings = Settings(
        database_url=env["WEBAPP_DATABASE_URL"],
        secret_key=env["WEBAPP_SECRET_KEY"],
        bcrypt_rounds=4,
        pool_size=3,
        max_overflow=2,
        pool_timeout=1.5,
        leak_threshold=5,
    )
    app = create_app(settings)

    async def monthly_report(session: SessionDep) -> dict[str, str]:
        # Stands for a slow report: keeps its connection while it "works".
        await session.execute(text("SELECT 1"))
        await asyncio.sleep(HELD_SECONDS)
        return {"report": "done"}

    app.add_api_route("/reports/monthly", monthly_report)
    return app


@contextmanager
def load(base_url: str) -> Iterator[None]:
    """Ten clients ask for the slow report over and over: the pool fills, the rest queue."""
    stop = threading.Event()

    def burst() -> None:
        with httpx2.Client(base_url=base_url, timeout=30) as http:
            while not stop.is_set():
                http.get("/reports/monthly")  # a 503 after the pool timeout is the point

    with ThreadPoolExecutor(max_workers=10) as pool:
        for _ in range(10):
            pool.submit(burst)
        try:
            yield
        finally:
            stop.set()


def main(out: Path) -> int:
    reason = why_no_browser()
    if reason:
        print(f"screenshots: {reason}; install Chromium with `apt-get install chromium`")
        return 1
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    # The demo load is meant to exhaust the pool: its warnings are the point, not news.
    logging.getLogger("webapp").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="webapp-shots-") as tmp:
        env = seeded_database(Path(tmp))
        with LiveServer(demo_app(env)) as server, sync_playwright() as playwright:
            browser = playwright.chromium.launch(**LAUNCH_ARGS)
            context = browser.new_context(base_url=server.url, viewport=WIDE)
            page = context.new_page()
            sign_in(page)
            page.goto("/users?sort=-created")
            page.screenshot(path=out / "users.png")

            page.goto("/users/new")
            page.get_by_label("First name").fill("Grace")
            page.get_by_label("Last name").fill("Hopper")
            page.get_by_label("Email").fill("grace.hopper@example")
            page.get_by_label("Password", exact=True).fill("cobol")
            page.get_by_label("Password again").fill("cobol")
            page.get_by_role("button", name="Create user").click()
            expect(page.locator("#email-error")).to_be_visible()
            page.screenshot(path=out / "form-errors.png")

            page.set_viewport_size(NARROW)
            page.goto("/users?sort=-created")
            page.screenshot(path=out / "users-mobile.png")

            page.set_viewport_size(WIDE)
            with load(server.url):
                page.goto("/health")
                # Let the chart gather a few samples and the holds pass the threshold.
                expect(page.locator(".stat-warn")).to_be_visible(timeout=20_000)
                time.sleep(2)  # one more poll, so the chart shows the rise (a picture only)
                page.screenshot(path=out / "health.png", full_page=True)
            browser.close()
    for name in ("users.png", "users-mobile.png", "form-errors.png", "health.png"):
        print(f"screenshots: wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs")))
