"""Creating a user: the form, every validation rule, the stored row, duplicates, htmx answers."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from tests.factories import (
    ADMIN_EMAIL,
    HTMX,
    PASSWORD,
    fetch_users_by_email,
    field_error,
    flash_texts,
    input_value,
    insert_user,
    is_checked,
    path_of,
    sign_in,
    template_name,
    user_form,
    verifies,
)
from webapp.models import User

DUPLICATE_EMAIL = "Another user already has this email address."


def all_rows(db: Engine) -> list[Any]:
    """Every user but the signed-in admin the ``client`` fixture made."""
    with db.connect() as conn:
        stmt = select(User.__table__).where(User.email != ADMIN_EMAIL).order_by(User.id)
        return list(conn.execute(stmt).all())


def count_users(db: Engine) -> int:
    return len(all_rows(db))


# --- The empty form ----------------------------------------------------------------------


def test_new_form_page(client: TestClient) -> None:
    response = client.get("/users/new")
    assert response.status_code == 200
    assert template_name(response) == "users/new.html"
    assert "<html" in response.text
    assert 'id="user-form"' in response.text
    for name in ("first_name", "last_name", "email", "password", "password_confirm"):
        assert input_value(response.text, name) in ("", None), name
    assert is_checked(response.text, "is_active")  # new users are active unless unticked
    assert not is_checked(response.text, "is_admin")


def test_new_form_with_htmx_headers(client: TestClient) -> None:
    response = client.get("/users/new", headers=HTMX)
    assert response.status_code == 200
    assert template_name(response) == "users/_create_form.html"
    assert response.text.lstrip().startswith('<form id="user-form"')
    assert "<html" not in response.text
    assert "HX-Request" in response.headers["vary"]


# --- Success -----------------------------------------------------------------------------


def test_create_stores_the_row_and_redirects_to_the_list(client: TestClient, db: Engine) -> None:
    form = user_form(first_name="Ada", last_name="Lovelace", email="Ada.Lovelace@Example.com")
    form["is_admin"] = "yes"
    response = client.post("/users", data=form)

    assert response.status_code == 303
    assert path_of(response.headers["location"]) == "/users"
    [row] = fetch_users_by_email(db, "ada.lovelace@example.com")
    assert (row.first_name, row.last_name) == ("Ada", "Lovelace")
    assert row.email == "Ada.Lovelace@Example.com"  # stored as typed
    assert row.is_active is True and row.is_admin is True
    assert row.version == 1
    assert row.password_hash != PASSWORD
    assert row.password_hash.startswith("$2b$")
    assert verifies(PASSWORD, row.password_hash)
    assert not verifies(PASSWORD + "x", row.password_hash)


def test_create_flashes_on_the_list_it_redirects_to(client: TestClient, db: Engine) -> None:
    response = client.post("/users", data=user_form(last_name="Lovelace", email="ada@example.com"))
    listing = client.get(response.headers["location"])
    assert listing.status_code == 200
    assert "Created Ada Lovelace (ada@example.com)." in flash_texts(listing.text)
    assert "Lovelace, Ada" in listing.text
    # A flash is shown once.
    assert flash_texts(client.get("/users").text) == []


def test_create_with_htmx_redirects_the_whole_page(client: TestClient, db: Engine) -> None:
    response = client.post("/users", data=user_form(email="htmx@example.com"), headers=HTMX)
    assert response.status_code == 204
    assert response.text == ""
    assert path_of(response.headers["HX-Redirect"]) == "/users"
    assert len(fetch_users_by_email(db, "htmx@example.com")) == 1


def test_names_are_trimmed_when_stored(client: TestClient, db: Engine) -> None:
    form = user_form(first_name="  Ada  ", last_name="\tLovelace ", email="  trim@example.com ")
    response = client.post("/users", data=form)
    assert response.status_code == 303
    [row] = fetch_users_by_email(db, "trim@example.com")
    assert (row.first_name, row.last_name, row.email) == ("Ada", "Lovelace", "trim@example.com")


def test_unticked_checkboxes_are_stored_false(client: TestClient, db: Engine) -> None:
    form = user_form(email="flags@example.com")
    del form["is_active"]  # a browser sends nothing for an unticked box
    assert "is_admin" not in form
    assert client.post("/users", data=form).status_code == 303
    [row] = fetch_users_by_email(db, "flags@example.com")
    assert row.is_active is False and row.is_admin is False


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("8chars!!", id="exactly-8-chars"),
        pytest.param("p" * 72, id="72-ascii-bytes"),
        pytest.param("é" * 36, id="72-utf8-bytes"),
    ],
)
def test_passwords_at_the_limits_are_accepted(
    client: TestClient, db: Engine, password: str
) -> None:
    form = user_form(email="limit@example.com", password=password, password_confirm=password)
    response = client.post("/users", data=form)
    assert response.status_code == 303, field_error(response.text, "password")
    [row] = fetch_users_by_email(db, "limit@example.com")
    assert verifies(password, row.password_hash)
    # All 72 bytes count: bcrypt was not handed a shorter prefix.
    assert not verifies(password[:-1], row.password_hash)


# --- Validation --------------------------------------------------------------------------

NUL_PASSWORD = "nul\x00in-the-middle"


def both(password: str) -> dict[str, str]:
    return {"password": password, "password_confirm": password}


# (field, form overrides, a piece of the message shown beside the field)
INVALID = [
    pytest.param("first_name", {"first_name": ""}, "Required.", id="first-blank"),
    pytest.param("first_name", {"first_name": "   "}, "Required.", id="first-spaces"),
    pytest.param("last_name", {"last_name": ""}, "Required.", id="last-blank"),
    pytest.param("first_name", {"first_name": "a" * 101}, "(this has 101)", id="first-101"),
    pytest.param(
        "last_name", {"last_name": "  " + "b" * 101 + " "}, "(this has 101)", id="last-101-trimmed"
    ),
    pytest.param("first_name", {"first_name": "Ada\x00"}, "control characters", id="first-nul"),
    pytest.param("last_name", {"last_name": "Love\x07lace"}, "control characters", id="last-bel"),
    pytest.param("first_name", {"first_name": "A\nB"}, "control characters", id="first-newline"),
    pytest.param("first_name", {"first_name": " \u200b "}, "Required.", id="first-zero-width"),
    pytest.param("first_name", {"first_name": "\u3164"}, "Required.", id="first-hangul-filler"),
    pytest.param("last_name", {"last_name": "\u034f\u0301"}, "Required.", id="last-marks-only"),
    pytest.param(
        "last_name", {"last_name": "Ada\u202enamreg"}, "reverse the text", id="last-rtl-override"
    ),
    pytest.param("email", {"email": ""}, "Required.", id="email-blank"),
    pytest.param("email", {"email": "   "}, "Required.", id="email-spaces"),
    pytest.param("email", {"email": "not-an-email"}, "@-sign", id="email-no-at"),
    pytest.param("email", {"email": "a@"}, "after the @-sign", id="email-no-domain"),
    pytest.param("email", {"email": "a@b"}, "period", id="email-no-dot"),
    pytest.param("email", {"email": "ada\x07@example.com"}, "control", id="email-bel"),
    pytest.param("password", both(""), "Required.", id="password-blank"),
    pytest.param("password", both("7chars!"), "At least 8 characters", id="password-7"),
    pytest.param("password", both("q" * 73), "At most 72 bytes", id="password-73-bytes"),
    pytest.param("password", both("€" * 25), "(this has 75)", id="password-25-euros"),
    pytest.param("password", both(NUL_PASSWORD), "NUL", id="password-nul"),
    pytest.param("password", both(" " * 8), "only spaces", id="password-8-spaces"),
    pytest.param(
        "password_confirm", {"password_confirm": PASSWORD + "!"}, "do not match", id="differ"
    ),
    pytest.param("password_confirm", {"password_confirm": ""}, "do not match", id="confirm-blank"),
]


@pytest.mark.parametrize(("field", "overrides", "message"), INVALID)
def test_invalid_input_rerenders_the_form_with_the_error_beside_the_field(
    client: TestClient, db: Engine, field: str, overrides: dict[str, str], message: str
) -> None:
    form = user_form(**overrides)
    form["is_admin"] = "yes"
    response = client.post("/users", data=form)

    assert response.status_code == 422
    assert template_name(response) == "users/new.html"
    assert "<html" in response.text
    error = field_error(response.text, field)
    assert error is not None and message in error, error
    assert 'aria-invalid="true"' in response.text
    # Only that field is marked; everything else typed is kept.
    others = {"first_name", "last_name", "email", "password", "password_confirm"} - {field}
    assert all(field_error(response.text, other) is None for other in others)
    for name in ("first_name", "last_name", "email"):
        if name != field:
            assert input_value(response.text, name) == form[name], name
    assert is_checked(response.text, "is_active") and is_checked(response.text, "is_admin")
    # Passwords are never sent back, neither the valid one nor the refused one.
    for secret in (form["password"], form["password_confirm"]):
        if secret:
            assert secret not in response.text
    assert input_value(response.text, "password") is None
    assert count_users(db) == 0


def test_a_password_of_25_euro_signs_is_refused_for_its_bytes(
    client: TestClient, db: Engine
) -> None:
    password = "€" * 25  # only 25 characters, but 75 bytes: bcrypt would drop the last 3
    response = client.post("/users", data=user_form(password=password, password_confirm=password))
    assert response.status_code == 422
    error = field_error(response.text, "password")
    assert error is not None and "bytes" in error and "75" in error
    assert "€€€" not in response.text
    assert count_users(db) == 0


def test_a_name_is_counted_and_stored_in_one_form_however_it_was_typed(
    client: TestClient, db: Engine
) -> None:
    """100 accented letters typed as letter and accent (200 code points) are 100 letters:
    stored composed, as the same name typed with composed letters would be."""
    form = user_form(first_name="e\u0301" * 100, email="accents@example.com")
    assert client.post("/users", data=form).status_code == 303
    [row] = fetch_users_by_email(db, "accents@example.com")
    assert row.first_name == "\u00e9" * 100


def test_invalid_names_keep_what_was_typed(client: TestClient, db: Engine) -> None:
    """The refused value itself goes back into its input, escaped, for the user to fix."""
    long_name = "x" * 101
    response = client.post("/users", data=user_form(first_name=long_name, email="a@"))
    assert response.status_code == 422
    assert input_value(response.text, "first_name") == long_name
    assert input_value(response.text, "email") == "a@"
    assert field_error(response.text, "first_name") and field_error(response.text, "email")
    assert "Please correct the 2 fields marked below." in response.text
    assert count_users(db) == 0


def test_invalid_input_with_htmx_answers_the_form_fragment(client: TestClient, db: Engine) -> None:
    response = client.post("/users", data=user_form(email="not-an-email"), headers=HTMX)
    assert response.status_code == 422
    assert template_name(response) == "users/_create_form.html"
    assert "<html" not in response.text
    assert response.text.lstrip().startswith('<form id="user-form"')
    assert field_error(response.text, "email")
    assert input_value(response.text, "email") == "not-an-email"
    assert PASSWORD not in response.text
    assert count_users(db) == 0


# --- Duplicates --------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, HTMX], ids=["page", "htmx"])
def test_duplicate_email_in_another_letter_case_is_refused(
    client: TestClient, db: Engine, headers: dict[str, str]
) -> None:
    existing = insert_user(db, email="Ada@Example.com")
    form = user_form(first_name="Other", email="ada@EXAMPLE.com")
    response = client.post("/users", data=form, headers=headers)

    assert response.status_code == 422
    assert field_error(response.text, "email") == DUPLICATE_EMAIL
    assert input_value(response.text, "email") == "ada@EXAMPLE.com"
    assert input_value(response.text, "first_name") == "Other"
    assert PASSWORD not in response.text
    rows = fetch_users_by_email(db, "ada@example.com")
    assert [row.id for row in rows] == [existing]
    assert rows[0].email == "Ada@Example.com"


def test_duplicate_email_differing_in_the_case_of_an_accented_letter_is_refused(
    client: TestClient, db: Engine
) -> None:
    existing = insert_user(db, email="Élise@example.com")
    response = client.post("/users", data=user_form(email="élise@example.com"))
    assert response.status_code == 422
    assert field_error(response.text, "email") == DUPLICATE_EMAIL
    assert [row.id for row in all_rows(db)] == [existing]


@pytest.mark.parametrize(
    ("stored", "typed"),
    [
        ("jos\u00e9@example.com", "jose\u0301@example.com"),  # é composed, and e + accent
        ("jose\u0301@example.com", "JOS\u00c9@example.com"),
        ("idn@b\u00fccher.example", "idn@xn--bcher-kva.example"),  # the domain's DNS spelling
        ("idn@xn--bcher-kva.example", "IDN@B\u00dcCHER.example"),
        ("x@fa\u00df.example", "x@xn--fa-hia.example"),  # IDNA 2008: ß stays ß
    ],
    ids=["nfc-then-nfd", "nfd-then-nfc", "letters-then-dns", "dns-then-letters", "eszett"],
)
def test_duplicate_email_written_another_way_is_refused(
    client: TestClient, app: FastAPI, db: Engine, stored: str, typed: str
) -> None:
    """One mailbox, however its address was typed: the same user, at create and sign-in."""
    existing = insert_user(db, email=stored, is_admin=True)
    response = client.post("/users", data=user_form(email=typed))
    assert response.status_code == 422
    assert field_error(response.text, "email") == DUPLICATE_EMAIL
    assert [row.id for row in all_rows(db)] == [existing]
    with TestClient(app, follow_redirects=False) as other:
        sign_in(other, typed)
        assert other.get("/users").status_code == 200


def test_the_session_is_usable_after_a_duplicate(client: TestClient, db: Engine) -> None:
    """The refused insert is rolled back; the next create on the same app works."""
    insert_user(db, email="taken@example.com")
    assert client.post("/users", data=user_form(email="TAKEN@example.com")).status_code == 422
    assert client.post("/users", data=user_form(email="free@example.com")).status_code == 303
    assert count_users(db) == 2


# --- The hash never shows ----------------------------------------------------------------


def test_no_page_shows_the_hash(client: TestClient, db: Engine) -> None:
    created = client.post("/users", data=user_form(email="hash@example.com"))
    [row] = fetch_users_by_email(db, "hash@example.com")
    pages = [
        client.get(created.headers["location"]),  # the list, with the "Created" flash
        client.get("/users", headers=HTMX),
        client.get(f"/users/{row.id}"),
        client.get(f"/users/{row.id}/delete"),
        client.post("/users", data=user_form(email="hash@example.com")),  # duplicate
    ]
    assert any(text.startswith("Created") for text in flash_texts(pages[0].text))
    for page in pages:
        assert "$2b$" not in page.text
        assert row.password_hash not in page.text
        assert PASSWORD not in page.text
