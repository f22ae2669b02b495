"""Sign-in, sign-out, return-to, first-run setup, create-admin, rehash, forced password change."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from passlib.context import CryptContext
from sqlalchemy import Engine, select, update

from tests.factories import (
    ADMIN_EMAIL,
    HTMX,
    PASSWORD,
    csrf_from,
    fetch_user,
    fetch_users_by_email,
    insert_user,
    make_settings,
    sign_in,
    template_name,
    through_pgbouncer,
)
from webapp.main import create_app
from webapp.models import AuditEvent, LoginThrottle, User
from webapp.routes.auth import WRONG_CREDENTIALS


def _login(client: TestClient, email: str, password: str, next_url: str = "") -> object:
    token = csrf_from(client.get("/login").text)
    data = {"email": email, "password": password, "csrf_token": token, "next": next_url}
    return client.post("/login", data=data)


def _actions(db: Engine) -> list[str]:
    with db.connect() as conn:
        return list(conn.execute(select(AuditEvent.action).order_by(AuditEvent.id)).scalars())


# --- Who may come in --------------------------------------------------------------------


def test_anonymous_visitor_is_sent_to_sign_in_and_back(
    anon_client: TestClient, admin_id: int
) -> None:
    response = anon_client.get("/users?q=ada")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fusers%3Fq%3Dada"
    login = anon_client.get(response.headers["location"])
    assert template_name(login) == "auth/login.html"
    assert 'name="next" value="/users?q=ada"' in login.text
    signed_in = _login(anon_client, ADMIN_EMAIL, PASSWORD, "/users?q=ada")
    assert signed_in.status_code == 303  # type: ignore[attr-defined]
    assert signed_in.headers["location"] == "/users?q=ada"  # type: ignore[attr-defined]
    assert anon_client.get("/users?q=ada").status_code == 200


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/x", "users"])
def test_return_to_only_local_paths(anon_client: TestClient, admin_id: int, next_url: str) -> None:
    response = _login(anon_client, ADMIN_EMAIL, PASSWORD, next_url)
    assert response.headers["location"] == "/users"  # type: ignore[attr-defined]


def test_expired_session_on_htmx_gets_a_full_page_redirect(
    anon_client: TestClient, admin_id: int
) -> None:
    headers = {**HTMX, "HX-Current-URL": "http://testserver/users?sort=email"}
    response = anon_client.get("/users?q=x", headers=headers)
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == "/login?next=%2Fusers%3Fsort%3Demail"
    assert response.text == ""  # no login form pasted into a table


def test_json_client_gets_401(anon_client: TestClient, admin_id: int) -> None:
    response = anon_client.get("/users", headers={"Accept": "application/json"})
    assert response.status_code == 401
    assert response.json()["location"] == "/login?next=%2Fusers"


@pytest.mark.parametrize(
    "who",
    [
        {"email": "plain@example.com", "is_admin": False},
        {"email": "retired@example.com", "is_admin": True, "is_active": False},
    ],
    ids=["not an admin", "inactive admin"],
)
def test_only_active_admins_may_sign_in(
    anon_client: TestClient, admin_id: int, db: Engine, who: dict[str, object]
) -> None:
    insert_user(db, **who)
    response = _login(anon_client, str(who["email"]), PASSWORD)
    assert response.status_code == 401  # type: ignore[attr-defined]
    assert WRONG_CREDENTIALS in response.text  # type: ignore[attr-defined]
    assert anon_client.get("/users").status_code == 303


def test_failure_message_does_not_tell_whether_the_email_exists(
    anon_client: TestClient, admin_id: int
) -> None:
    known = _login(anon_client, ADMIN_EMAIL, "wrong password")
    unknown = _login(anon_client, "nobody@example.com", "wrong password")
    for response in (known, unknown):
        assert response.status_code == 401  # type: ignore[attr-defined]
        assert WRONG_CREDENTIALS in response.text  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("email", "password"),
    [
        (ADMIN_EMAIL, PASSWORD + "\x00"),  # bcrypt refuses a NUL
        ("nobody@example.com", "with a \x00 in it"),
        ("ad\x00min@example.com", PASSWORD),  # PostgreSQL refuses a NUL
        (ADMIN_EMAIL + "\x00", PASSWORD),  # without it, the admin's address
        (ADMIN_EMAIL, "é" * 37),  # 74 bytes: more than bcrypt reads
    ],
    ids=[
        "nul-in-password",
        "nul-in-password-unknown-email",
        "nul-in-email",
        "nul-after-email",
        "74-bytes",
    ],
)
def test_a_password_or_email_no_account_can_have_is_a_plain_failed_sign_in(
    anon_client: TestClient, admin_id: int, db: Engine, email: str, password: str
) -> None:
    response = _login(anon_client, email, password)
    assert response.status_code == 401  # type: ignore[attr-defined]
    assert WRONG_CREDENTIALS in response.text  # type: ignore[attr-defined]
    assert _actions(db) == ["auth.sign_in_failed"]  # and counted towards the lock-out


def test_a_form_that_sends_a_file_is_refused(
    anon_client: TestClient, admin_id: int, db: Engine
) -> None:
    """No console form takes a file: one sent where the email goes is a 400, neither signs
    anyone in nor counts as a failure (no account is named), and is not shown back."""
    token = csrf_from(anon_client.get("/login").text)
    response = anon_client.post(
        "/login",
        data={"password": PASSWORD, "csrf_token": token},
        files={"email": ("email.txt", ADMIN_EMAIL.encode())},
    )
    assert response.status_code == 400
    assert "UploadFile" not in response.text
    assert anon_client.get("/users").status_code == 303
    with db.connect() as conn:
        assert list(conn.execute(select(LoginThrottle.key)).scalars()) == []


def test_unknown_emails_are_verified_against_a_hash_of_the_current_cost(app: FastAPI) -> None:
    with TestClient(app):
        hasher = app.state.hasher
        assert hasher.dummy_hash.startswith(f"$2b${app.state.settings.bcrypt_rounds:02d}$")
        assert CryptContext(schemes=["bcrypt"]).identify(hasher.dummy_hash) == "bcrypt"


def test_sign_out(client: TestClient, db: Engine) -> None:
    response = client.post("/logout")
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert "You are signed out." in client.get("/login").text
    assert client.get("/users").status_code == 303
    assert _actions(db)[-1] == "auth.sign_out"


def test_sign_in_with_the_wrong_password_is_audited(
    anon_client: TestClient, admin_id: int, db: Engine
) -> None:
    _login(anon_client, ADMIN_EMAIL, "not the password")
    _login(anon_client, ADMIN_EMAIL, PASSWORD)
    assert _actions(db) == ["auth.sign_in_failed", "auth.sign_in"]


# --- Sessions end when access ends ------------------------------------------------------


def test_demoted_or_deactivated_admin_is_refused_at_once(
    client: TestClient, db: Engine, admin_id: int
) -> None:
    assert client.get("/users").status_code == 200
    with db.begin() as conn:
        conn.execute(update(User).where(User.id == admin_id).values(is_admin=False))
    assert client.get("/users").status_code == 303
    with db.begin() as conn:  # an admin again, but that session has ended
        conn.execute(update(User).where(User.id == admin_id).values(is_admin=True))
    assert client.get("/users").status_code == 303


def test_password_change_elsewhere_ends_other_sessions(
    app: FastAPI, db: Engine, admin_id: int
) -> None:
    with (
        TestClient(app, follow_redirects=False) as one,
        TestClient(app, follow_redirects=False) as two,
    ):
        sign_in(one, ADMIN_EMAIL)
        sign_in(two, ADMIN_EMAIL)
        response = two.post(
            "/account/password",
            data={
                "current_password": PASSWORD,
                "password": "a brand new password",
                "password_confirm": "a brand new password",
            },
        )
        assert response.status_code == 303
        assert two.get("/users").status_code == 200  # the session that changed it stays
        assert one.get("/users").status_code == 303  # the other one is signed out


# --- First run --------------------------------------------------------------------------


def test_setup_is_the_only_page_until_an_admin_exists(anon_client: TestClient, db: Engine) -> None:
    for path in ("/users", "/login", "/audit", "/health"):
        response = anon_client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/setup", path
    page = anon_client.get("/setup")
    assert template_name(page) == "auth/setup.html"
    form = {
        "first_name": "First",
        "last_name": "Admin",
        "email": "first@example.com",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
        "csrf_token": csrf_from(page.text),
    }
    assert anon_client.post("/setup", data={**form, "password_confirm": "x"}).status_code == 422
    response = anon_client.post("/setup", data=form)
    assert response.status_code == 303
    assert anon_client.get("/users").status_code == 200  # signed in as the new admin
    [row] = fetch_users_by_email(db, "first@example.com")
    assert row.is_admin and row.is_active
    # Gone for good once an admin exists.
    assert anon_client.get("/setup").status_code == 404
    # Signing in renewed the session's CSRF token; with the new one, setup is still gone.
    form["csrf_token"] = csrf_from(anon_client.get("/account/password").text)
    assert anon_client.post("/setup", data=form).status_code == 404
    assert len(fetch_users_by_email(db, "first@example.com")) == 1


def test_setup_can_be_turned_off(database_url: str) -> None:
    app = create_app(make_settings(database_url, setup_enabled=False))
    with TestClient(app, follow_redirects=False) as client:
        assert client.get("/setup").status_code == 404
        response = client.get("/users")
        assert response.headers["location"].startswith("/login")


def _create_admin(
    cwd: Path, database_url: str, stdin: str, email: str
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "WEBAPP_DATABASE_URL": database_url,
        "WEBAPP_BCRYPT_ROUNDS": "4",
        "WEBAPP_PGBOUNCER": str(through_pgbouncer()).lower(),
    }
    command = [sys.executable, "-m", "webapp.cli", "create-admin", "--email", email]
    command += ["--first-name", "Cli", "--last-name", "Admin"]
    return subprocess.run(
        command, input=stdin, cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_create_admin_reads_the_password_from_stdin(
    tmp_path: Path, database_url: str, anon_client: TestClient, db: Engine
) -> None:
    result = _create_admin(tmp_path, database_url, f"{PASSWORD}\n", "cli@example.com")
    assert result.returncode == 0, result.stderr
    assert "created admin cli@example.com" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    [row] = fetch_users_by_email(db, "cli@example.com")
    assert row.is_admin and row.is_active and row.password_hash.startswith("$2b$04$")
    sign_in(anon_client, "cli@example.com")
    assert anon_client.get("/users").status_code == 200
    assert _actions(db)[0] == "user.create"  # the command line leaves a trace too

    again = _create_admin(tmp_path, database_url, f"{PASSWORD}\n", "CLI@example.com")
    assert again.returncode == 1 and "already exists" in again.stderr
    short = _create_admin(tmp_path, database_url, "short\n", "other@example.com")
    assert short.returncode == 1 and "password" in short.stderr
    assert "Traceback" not in again.stderr + short.stderr


# --- Rehash -----------------------------------------------------------------------------


def test_sign_in_upgrades_a_weaker_hash(database_url: str, db: Engine, admin_id: int) -> None:
    before = fetch_user(db, admin_id)
    assert before.password_hash.startswith("$2b$04$")
    app = create_app(make_settings(database_url, bcrypt_rounds=5))
    with TestClient(app, follow_redirects=False) as client:
        sign_in(client, ADMIN_EMAIL)
        after = fetch_user(db, admin_id)
        assert after.password_hash.startswith("$2b$05$")
        assert CryptContext(schemes=["bcrypt"]).verify(PASSWORD, after.password_hash)
        assert after.version == before.version  # not an edit: open edit forms stay valid
        assert client.get("/users").status_code == 200  # this session survives the rehash


def test_sign_in_replaces_an_old_variant_at_its_own_cost(
    database_url: str, db: Engine, admin_id: int
) -> None:
    """A $2a$ hash (the older variant) with more rounds than the setting: replaced by a $2b$
    one of the same cost, not the setting's lower one."""
    old = CryptContext(schemes=["bcrypt"], bcrypt__ident="2a", bcrypt__rounds=5).hash(PASSWORD)
    with db.begin() as conn:
        conn.execute(update(User).where(User.id == admin_id).values(password_hash=old))
    app = create_app(make_settings(database_url, bcrypt_rounds=4))
    with TestClient(app, follow_redirects=False) as client:
        sign_in(client, ADMIN_EMAIL)
    new = fetch_user(db, admin_id).password_hash
    assert new.startswith("$2b$05$")
    assert CryptContext(schemes=["bcrypt"]).verify(PASSWORD, new)


def test_sign_in_keeps_a_stronger_hash(database_url: str, db: Engine, admin_id: int) -> None:
    """Fewer rounds set than a hash was made with: the hash stays as it is (a lower setting
    must not weaken the stored hashes), and signing in still works."""
    app = create_app(make_settings(database_url, bcrypt_rounds=5))
    with TestClient(app, follow_redirects=False) as client:
        sign_in(client, ADMIN_EMAIL)
    stronger = fetch_user(db, admin_id).password_hash
    assert stronger.startswith("$2b$05$")
    app = create_app(make_settings(database_url, bcrypt_rounds=4))
    with TestClient(app, follow_redirects=False) as client:
        sign_in(client, ADMIN_EMAIL)
        assert client.get("/users").status_code == 200
    assert fetch_user(db, admin_id).password_hash == stronger


# --- Forced password change -------------------------------------------------------------


@pytest.fixture
def second_admin(db: Engine) -> int:
    return insert_user(db, email="second@example.com", is_admin=True)


def test_must_change_password_comes_before_anything_else(
    client: TestClient, app: FastAPI, db: Engine, second_admin: int
) -> None:
    response = client.post(
        f"/users/{second_admin}/password",
        data={
            "password": "temporary pass",
            "password_confirm": "temporary pass",
            "must_change": "yes",
        },
    )
    assert response.status_code == 303
    assert fetch_user(db, second_admin).must_change_password

    with TestClient(app, follow_redirects=False) as other:
        token = csrf_from(other.get("/login").text)
        login = other.post(
            "/login",
            data={"email": "second@example.com", "password": "temporary pass", "csrf_token": token},
        )
        assert login.headers["location"] == "/account/password"
        for path in ("/users", "/audit", f"/users/{second_admin}"):
            assert other.get(path).headers["location"] == "/account/password", path
        page = other.get("/account/password")
        assert "Choose a new password before you go on." in page.text
        token = csrf_from(page.text)
        changed = other.post(
            "/account/password",
            data={
                "current_password": "temporary pass",
                "password": "my own password",
                "password_confirm": "my own password",
                "csrf_token": token,
            },
        )
        assert changed.status_code == 303
        assert other.get("/users").status_code == 200
    assert not fetch_user(db, second_admin).must_change_password


def test_changing_your_own_password_asks_for_the_current_one(
    client: TestClient, db: Engine, admin_id: int
) -> None:
    before = fetch_user(db, admin_id).password_hash
    new = {"password": "another password", "password_confirm": "another password"}
    for path in ("/account/password", f"/users/{admin_id}/password"):
        missing = client.post(path, data=new)
        assert missing.status_code == 422, path
        for not_it in ("not it", PASSWORD + "\x00"):  # bcrypt refuses a NUL: not a 500
            wrong = client.post(path, data={**new, "current_password": not_it})
            assert wrong.status_code == 422, path
            assert "This is not your current password." in wrong.text
    assert fetch_user(db, admin_id).password_hash == before
    ok = client.post(f"/users/{admin_id}/password", data={**new, "current_password": PASSWORD})
    assert ok.status_code == 303
    assert CryptContext(schemes=["bcrypt"]).verify(
        "another password", fetch_user(db, admin_id).password_hash
    )
    assert client.get("/users").status_code == 200  # still signed in here
