"""The health page in Chromium: its figures follow the pool while requests run meanwhile."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import httpx2
import pytest
from fastapi import FastAPI

from tests.browser.support import assert_not_reloaded, expect, mark_window
from tests.conftest import LiveServer
from tests.pool_helpers import Holder

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.browser

# The page polls every 3 s; a change shows within one poll, two to be safe on a busy machine.
TWO_POLLS_MS = 7_000


def stat(page: Page, label: str) -> Locator:
    """The figure under ``label`` in the pool's tiles (``"2 of 5"``, ``"14"``)."""
    return page.locator(".stats > div", has=page.get_by_text(label, exact=True)).locator("dd")


def leading_number(locator: Locator) -> int:
    match = re.match(r"\d+", locator.inner_text())
    assert match, locator.inner_text()
    return int(match.group())


def test_figures_update_while_requests_run(
    admin_page: Page, app: FastAPI, live_server: LiveServer
) -> None:
    holder = Holder(app)  # GET /test/hold/{name} keeps a real connection until released
    page = admin_page
    page.get_by_role("link", name="Health").click()
    expect(page.get_by_role("heading", name="Health")).to_be_visible()
    mark_window(page)
    in_use, handed_out = stat(page, "In use"), stat(page, "Handed out")
    idle_in_use, handed_out_before = leading_number(in_use), leading_number(handed_out)

    with ThreadPoolExecutor(max_workers=2) as background:
        held = [
            background.submit(httpx2.get, f"{live_server.url}/test/hold/{name}", timeout=30)
            for name in ("first", "second")
        ]
        expect(in_use).to_have_text(re.compile(rf"^{idle_in_use + 2} of 5"), timeout=TWO_POLLS_MS)
        expect(page.locator("#pool-meter")).to_have_attribute("value", str(idle_in_use + 2))
        holder.release()
        assert [future.result().status_code for future in held] == [200, 200]

    expect(in_use).to_have_text(re.compile(rf"^{idle_in_use} of 5"), timeout=TWO_POLLS_MS)
    assert leading_number(handed_out) >= handed_out_before + 2
    expect(page.locator(".topbar")).to_have_count(1)  # swapped in place, not nested
    assert_not_reloaded(page)
