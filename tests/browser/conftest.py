"""Browser fixtures: one Chromium per test module, a fresh context (cookies, storage) per test.

The app runs in a real uvicorn (``live_server``) against the suite's test database. Without
Chromium the tests skip with one line saying how to enable them; in CI (``CI=true``) they
fail instead, so a missing browser can never pass for a green run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.support import (
    HOW_TO_ENABLE,
    LAUNCH_ARGS,
    ConsoleErrors,
    expect,
    in_ci,
    sign_in,
    why_no_browser,
)
from tests.conftest import LiveServer
from tests.factories import make_settings
from webapp.config import Settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

# The default wait of Playwright's auto-waiting assertions; the slowest step here is the
# health page's 3-second poll, which its test waits for explicitly.
TIMEOUT_MS = 5_000


_NOT_RUN = pytest.StashKey[str]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a browser, leave the browser tests out and say so once, at the end.

    In CI they stay in, and the ``browser`` fixture fails each of them with the reason.
    """
    reason = why_no_browser()
    if reason is None or in_ci():
        return
    left_out = [item for item in items if item.get_closest_marker("browser")]
    if left_out:
        items[:] = [item for item in items if not item.get_closest_marker("browser")]
        config.hook.pytest_deselected(items=left_out)
        config.stash[_NOT_RUN] = f"{len(left_out)} browser tests: {reason}; {HOW_TO_ENABLE}"


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if _NOT_RUN in config.stash:
        terminalreporter.write_line(f"SKIPPED {config.stash[_NOT_RUN]}", yellow=True)


# Per module, not per session: while Playwright's sync API is started, its event loop counts
# as running in this thread, and the asyncio tests that follow could not start theirs.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    reason = why_no_browser()
    if reason is not None:
        if in_ci():
            pytest.fail(f"browser tests cannot run in CI: {reason} (.ci/run installs it)")
        pytest.skip(f"browser tests: {reason}; {HOW_TO_ENABLE}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(**LAUNCH_ARGS)
        expect.set_options(timeout=TIMEOUT_MS)
        yield chromium
        chromium.close()


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Small pages, so a dozen users already page.
    return make_settings(database_url, per_page=5)


@pytest.fixture
def console() -> ConsoleErrors:
    return ConsoleErrors()


NewContext = Callable[..., "BrowserContext"]


@pytest.fixture
def new_context(
    browser: Browser, live_server: LiveServer, console: ConsoleErrors
) -> Iterator[NewContext]:
    """Opens browser contexts on the live server; at the end, fails on any console error."""
    contexts: list[BrowserContext] = []

    def open_context(**options: Any) -> BrowserContext:
        options.setdefault("viewport", {"width": 1280, "height": 900})
        context = browser.new_context(base_url=live_server.url, **options)
        context.set_default_timeout(TIMEOUT_MS)
        console.watch(context)
        contexts.append(context)
        return context

    yield open_context
    for context in contexts:
        context.close()
    assert not console.errors, "errors in the browser console:\n" + "\n".join(console.errors)


@pytest.fixture
def page(new_context: NewContext) -> Page:
    return new_context().new_page()


@pytest.fixture
def admin_page(page: Page, admin_id: int) -> Page:
    """Signed in as the admin, on the user list."""
    sign_in(page)
    return page
