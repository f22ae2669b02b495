"""With JavaScript off, creating a user works through plain full-page posts."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine

from tests.browser.support import ConsoleErrors, expect, sign_in
from tests.factories import PASSWORD, fetch_users_by_email, verifies

if TYPE_CHECKING:
    from tests.browser.conftest import NewContext

pytestmark = pytest.mark.browser


def test_create_user_without_javascript(
    new_context: NewContext, admin_id: int, db: Engine, console: ConsoleErrors
) -> None:
    console.expect_status(422, "/users")  # the invalid post is answered 422: see ConsoleErrors
    page = new_context(java_script_enabled=False).new_page()
    sign_in(page)
    page.get_by_role("link", name="New user").click()
    expect(page).to_have_url(re.compile(r"/users/new$"))

    page.get_by_label("First name").fill("Alan")
    page.get_by_label("Last name").fill("Turing")
    page.get_by_label("Email").fill("alan at example.com")
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Password again").fill("short")
    with page.expect_navigation():  # a real page load, not a swap
        page.get_by_role("button", name="Create user").click()

    expect(page).to_have_url(re.compile(r"/users$"))  # the form page answered at the post's URL
    expect(page.get_by_role("heading", name="New user")).to_be_visible()
    expect(page.locator(".form-errors")).to_contain_text("Please correct")
    expect(page.locator("#email-error")).to_be_visible()
    expect(page.locator("#password-error")).to_be_visible()
    expect(page.get_by_label("First name")).to_have_value("Alan")
    expect(page.get_by_label("Email")).to_have_value("alan at example.com")
    expect(page.get_by_label("Password", exact=True)).to_have_value("")

    page.get_by_label("Email").fill("alan@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Create user").click()

    expect(page).to_have_url(re.compile(r"/users$"))
    expect(page.locator(".flash")).to_have_text("Created Alan Turing (alan@example.com).")
    expect(page.get_by_role("link", name="Turing, Alan")).to_be_visible()
    [stored] = fetch_users_by_email(db, "alan@example.com")
    assert verifies(PASSWORD, stored.password_hash)
