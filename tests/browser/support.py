"""Playwright and Debian's Chromium for the browser tests and ``make screenshots``.

The only module here that imports Playwright, and it does so softly: on a machine without
the package the tests still collect, and the ``browser`` fixture says what is missing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tests.factories import ADMIN_EMAIL, PASSWORD

try:
    from playwright.sync_api import expect
except ImportError:  # reported by why_no_browser(); no test runs without the package
    expect = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, ConsoleMessage, Error, Page

CHROMIUM = "/usr/bin/chromium"
# What works here (see DESIGN.md): no sandbox (we run as root in a container), no GPU, and
# nothing that phones home while a test runs.
LAUNCH_ARGS: dict[str, Any] = {
    "executable_path": CHROMIUM,
    "args": [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ],
}
HOW_TO_ENABLE = "install Chromium with `apt-get install chromium` to run them"


def why_no_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if expect is None:
        return "the playwright package is not installed (`make test` installs it)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM}"
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


# Chromium's network log line for any answer of 400 or more, whoever asked for it.
_NETWORK_ERROR = re.compile(
    r"^Failed to load resource: the server responded with a status of (\d+)"
)


@dataclass
class ConsoleErrors:
    """Every console error and uncaught exception on the pages of one browser context.

    One kind of console error is the app's intent, not a fault: Chromium logs "Failed to load
    resource: the server responded with a status of 422" for *any* answer of 400 or more,
    even one the page asked for and shows as designed, whether htmx fetched it or the browser
    posted a plain form (JavaScript off logs the very same line). Invalid input is answered
    422 and a stale edit 409 on purpose: the status is what tells scripts, proxies, logs and
    monitoring that nothing was saved (it is also what Rails' Turbo requires), and htmx is
    configured (base.html) to swap those answers as normal. Answering 200 instead would make
    a refused save look like a successful one to everything but a human reader, to silence
    a line in devtools. So a test names each such answer it provokes, by status and path
    (``expect_status``), and only the network line for exactly that answer is let through.
    Everything else fails the test: any other status or path, script errors, uncaught
    exceptions, CSP violations, htmx's own error logs.
    """

    expected: set[tuple[int, str]] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    def watch(self, context: BrowserContext) -> None:
        context.on("page", self._watch_page)
        for page in context.pages:
            self._watch_page(page)

    def _watch_page(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)

    def expect_status(self, status: int, path: str) -> None:
        """The test provokes this answer on purpose (a 422 for invalid input, a 409 conflict)."""
        self.expected.add((status, path))

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        match = _NETWORK_ERROR.match(message.text)
        url = message.location.get("url", "")
        if match and (int(match.group(1)), urlsplit(url).path) in self.expected:
            return
        self.errors.append(f"console error: {message.text} ({url})")

    def _on_page_error(self, error: Error) -> None:
        self.errors.append(f"uncaught exception: {error}")


def mark_window(page: Page) -> None:
    """Put a marker on ``window``: it survives htmx swaps and dies with a page load."""
    page.evaluate("window.__noReload = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__noReload === true"), "the page was reloaded"


def sign_in(page: Page, email: str = ADMIN_EMAIL, password: str = PASSWORD) -> None:
    """Through the sign-in form, as a person would; lands on the user list."""
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/users$"))
