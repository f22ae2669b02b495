"""The user pages in Chromium, as a person uses them: what they see, not status codes."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine

from tests.browser.support import (
    ConsoleErrors,
    assert_not_reloaded,
    expect,
    mark_window,
    sign_in,
)
from tests.factories import PASSWORD, fetch_user, fetch_users_by_email, insert_user, verifies

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.browser


def rows(page: Page) -> Locator:
    return page.locator("#user-table tbody tr")


def test_sign_in_lands_on_the_user_list(page: Page, admin_id: int, console: ConsoleErrors) -> None:
    console.expect_status(401, "/login")  # a wrong password is answered 401: see ConsoleErrors
    page.goto("/users")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fusers$"))  # sent to sign in first
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("do not match")
    sign_in(page)
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    expect(page.get_by_role("link", name="Admin, Ada")).to_be_visible()
    expect(page.locator(".account")).to_contain_text("Ada Admin")


def test_create_with_mistakes_then_fix_them(
    admin_page: Page, db: Engine, console: ConsoleErrors
) -> None:
    page = admin_page
    console.expect_status(422, "/users")  # invalid input is answered 422: see ConsoleErrors
    page.get_by_role("link", name="New user").click()
    expect(page.get_by_role("heading", name="New user")).to_be_visible()
    mark_window(page)

    page.get_by_label("First name").fill("Ada")
    page.get_by_label("Last name").fill("Lovelace")
    page.get_by_label("Email").fill("ada@")
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Password again").fill("short")
    page.get_by_label("Admin: may use this console").check()
    page.get_by_role("button", name="Create user").click()

    expect(page.locator("#email-error")).to_be_visible()
    expect(page.locator("#password-error")).to_contain_text("8")
    expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")
    assert_not_reloaded(page)  # htmx swapped the form in place
    expect(page.get_by_label("First name")).to_have_value("Ada")
    expect(page.get_by_label("Last name")).to_have_value("Lovelace")
    expect(page.get_by_label("Email")).to_have_value("ada@")
    expect(page.get_by_label("Password", exact=True)).to_have_value("")  # never sent back
    expect(page.get_by_label("Admin: may use this console")).to_be_checked()

    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_role("button", name="Create user").click()

    expect(page).to_have_url(re.compile(r"/users$"))
    expect(page.locator(".flash")).to_have_text("Created Ada Lovelace (ada@example.com).")
    row = page.locator("tr", has=page.get_by_role("link", name="Lovelace, Ada"))
    expect(row).to_contain_text("ada@example.com")
    expect(row.locator(".badge.admin")).to_have_text("Admin")
    [stored] = fetch_users_by_email(db, "ada@example.com")
    assert stored.password_hash.startswith("$2b$") and PASSWORD not in stored.password_hash
    assert verifies(PASSWORD, stored.password_hash)


def test_live_search_history_and_reload(admin_page: Page, db: Engine) -> None:
    page = admin_page
    for first, last in [("Grace", "Hopper"), ("Alan", "Turing"), ("Barbara", "Liskov")]:
        insert_user(db, first_name=first, last_name=last, email=f"{first}@example.com".lower())
    page.reload()
    expect(rows(page)).to_have_count(4)
    mark_window(page)

    page.get_by_label("Search users").press_sequentially("hop", delay=30)
    expect(rows(page)).to_have_count(1)
    expect(rows(page)).to_contain_text("Hopper, Grace")
    expect(page.locator(".result-count")).to_have_text("1 user matches your search")
    expect(page).to_have_url(re.compile(r"/users\?q=hop$"))
    assert_not_reloaded(page)

    page.go_back()  # htmx restores the list it had before the search
    expect(page).to_have_url(re.compile(r"/users$"))
    expect_full_list_page(page, 4, "")
    page.go_forward()
    expect_full_list_page(page, 1, "hop")

    page.reload()  # the address alone gives the same result
    expect_full_list_page(page, 1, "hop")
    # Away to another page and Back: the browser must not show its cached fragment.
    page.get_by_role("link", name="New user").click()
    expect(page.get_by_role("heading", name="New user")).to_be_visible()
    page.go_back()
    expect(page).to_have_url(re.compile(r"/users\?q=hop$"))
    expect_full_list_page(page, 1, "hop")
    page.go_back()
    expect(page).to_have_url(re.compile(r"/users$"))
    expect_full_list_page(page, 4, "")


def expect_full_list_page(page: Page, count: int, query: str) -> None:
    """A whole page (bar, heading, search box), never a bare fragment, with ``count`` rows."""
    expect(page.locator(".topbar")).to_be_visible()
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    expect(page.locator("#user-table")).to_have_count(1)
    expect(page.get_by_label("Search users")).to_have_value(query)
    expect(rows(page)).to_have_count(count)


def test_sort_and_page(admin_page: Page, db: Engine) -> None:
    page = admin_page
    for n in range(1, 13):
        insert_user(db, email=f"user{n:02d}@example.com")
    page.reload()
    mark_window(page)
    emails = page.locator("#user-table td.email")
    header = page.locator("thead").get_by_role("link", name=re.compile("^Email"))

    header.click()
    expect(page).to_have_url(re.compile(r"/users\?sort=email$"))
    first_five = ["admin", "user01", "user02", "user03", "user04"]
    expect(emails).to_have_text([f"{name}@example.com" for name in first_five])
    header.click()
    expect(page).to_have_url(re.compile(r"/users\?sort=-email$"))
    expect(page.locator("th[aria-sort=descending]")).to_contain_text("Email")
    expect(emails.first).to_have_text("user12@example.com")
    expect(page.locator(".pager .disabled")).to_have_text(["« First", "← Previous"])

    # Pages follow the sort by cursor: the address names where the page starts.
    page.get_by_role("link", name="Next →").click()
    expect(page).to_have_url(re.compile(r"sort=-email&cursor=[\w-]+$"))
    expect(emails.first).to_have_text("user07@example.com")
    second_page = page.url
    page.get_by_role("link", name="Next →").click()
    expect(emails).to_have_text(["user02@example.com", "user01@example.com", "admin@example.com"])
    expect(page.locator(".pager .disabled")).to_have_text("Next →")
    page.get_by_role("link", name="← Previous").click()
    expect(emails.first).to_have_text("user07@example.com")
    expect(emails).to_have_count(5)
    page.go_back()
    expect(emails).to_have_text(["user02@example.com", "user01@example.com", "admin@example.com"])
    page.go_back()
    expect(page).to_have_url(second_page)
    expect(emails.first).to_have_text("user07@example.com")
    page.get_by_role("link", name="« First").click()
    expect(emails.first).to_have_text("user12@example.com")
    assert_not_reloaded(page)


def test_edit_and_conflict_between_two_tabs(
    admin_page: Page, db: Engine, console: ConsoleErrors
) -> None:
    user_id = insert_user(db, first_name="Grace", last_name="Hopper", email="grace@example.com")
    console.expect_status(409, f"/users/{user_id}")  # a stale save is refused: see ConsoleErrors
    mine = admin_page
    mine.reload()
    mine.get_by_role("link", name="Hopper, Grace").click()
    expect(mine.get_by_role("heading", name="Grace Hopper")).to_be_visible()
    mine.get_by_label("Last name").fill("Hopper-Murray")
    mine.get_by_role("button", name="Save changes").click()
    expect(mine.locator(".flash")).to_have_text("Saved Grace Hopper-Murray.")
    expect(mine.get_by_role("heading", name="Grace Hopper-Murray")).to_be_visible()

    theirs = mine.context.new_page()  # a second tab, same admin
    theirs.goto(f"/users/{user_id}")
    mine.goto(f"/users/{user_id}")
    mine.get_by_label("Email").fill("amazing.grace@example.com")
    mine.get_by_role("button", name="Save changes").click()
    expect(mine.locator(".flash")).to_have_text("Saved Grace Hopper-Murray.")

    mark_window(theirs)
    theirs.get_by_label("First name").fill("Rear Admiral Grace")
    theirs.get_by_role("button", name="Save changes").click()
    conflict = theirs.locator(".conflict")
    expect(conflict).to_contain_text("Someone else saved this user after you opened the form")
    expect(conflict).to_contain_text("amazing.grace@example.com")  # what is stored now
    expect(theirs.get_by_label("First name")).to_have_value("Rear Admiral Grace")  # kept
    assert_not_reloaded(theirs)
    assert fetch_user(db, user_id).first_name == "Grace"  # nothing was overwritten

    theirs.get_by_role("button", name="Save changes").click()  # now a deliberate overwrite
    expect(theirs.locator(".flash")).to_have_text("Saved Rear Admiral Grace Hopper-Murray.")
    assert fetch_user(db, user_id).first_name == "Rear Admiral Grace"


def test_deactivate_inline_and_delete_after_confirming(admin_page: Page, db: Engine) -> None:
    user_id = insert_user(db, first_name="Grace", last_name="Hopper", email="grace@example.com")
    page = admin_page
    page.reload()
    mark_window(page)
    row = page.locator(f"#user-{user_id}")

    row.get_by_role("button", name="Deactivate").click()
    expect(row.locator(".badge")).to_have_text("Inactive")
    expect(row.get_by_role("button", name="Activate")).to_be_visible()
    expect(page.locator(".flash")).to_have_text("Deactivated Grace Hopper.")
    assert fetch_user(db, user_id).is_active is False

    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    row.get_by_role("link", name="Delete").click()
    assert asked == ["Delete Grace Hopper (grace@example.com)? This cannot be undone."]
    expect(row).to_be_visible()
    assert fetch_user(db, user_id) is not None  # dismissed: nothing happened

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("link", name="Delete").click()
    expect(row).to_have_count(0)
    expect(page.locator(".flash")).to_have_text("Deleted Grace Hopper.")
    expect(page.locator(".result-count")).to_have_text("1 user")
    assert fetch_user(db, user_id) is None
    assert_not_reloaded(page)


def test_delete_from_a_sorted_search_comes_back_to_it(admin_page: Page, db: Engine) -> None:
    """The list a row's delete returns to (its "next", given once for every row) keeps the
    search and the sort the page showed."""
    for last in ("Aardvark", "Hopper", "Zulu"):
        insert_user(db, first_name="Kit", last_name=last, email=f"kit.{last.lower()}@example.com")
    page = admin_page
    page.goto("/users?q=kit&sort=-name")
    mark_window(page)
    expect(rows(page)).to_have_count(3)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("tr", has_text="Hopper").get_by_role("link", name="Delete").click()
    expect(page.locator(".flash")).to_have_text("Deleted Kit Hopper.")
    expect(rows(page)).to_have_count(2)
    expect(rows(page).first).to_contain_text("Zulu")  # still the search, still descending
    expect(rows(page).last).to_contain_text("Aardvark")
    assert_not_reloaded(page)
