"""The session cookie: Starlette's format, its signature checked once per cookie value."""

from __future__ import annotations

import json
import time
from base64 import b64decode, b64encode

import itsdangerous
import pytest
from starlette.types import Receive, Scope, Send

from webapp import session_cookie
from webapp.session_cookie import SessionCookieMiddleware

SECRET = "a-test-secret-that-is-long-enough-for-hmac"
MAX_AGE = 3600


async def _app(scope: Scope, receive: Receive, send: Send) -> None:  # never called here
    raise AssertionError


def _middleware(secret: str = SECRET) -> SessionCookieMiddleware:
    return SessionCookieMiddleware(_app, secret_key=secret, session_cookie="s", max_age=MAX_AGE)


def _starlette_cookie(data: object, secret: str = SECRET) -> str:
    """A cookie as Starlette's own SessionMiddleware writes it."""
    payload = b64encode(json.dumps(data).encode())
    return itsdangerous.TimestampSigner(secret).sign(payload).decode()


def test_reads_the_cookies_starlette_wrote_and_writes_ones_it_reads() -> None:
    cookies = _middleware()
    assert cookies.load(_starlette_cookie({"uid": 7, "csrf": "t"})) == {"uid": 7, "csrf": "t"}
    written = cookies.dump({"uid": 8})
    assert _middleware().load(written) == {"uid": 8}  # another worker, nothing remembered
    signer = itsdangerous.TimestampSigner(SECRET)
    assert json.loads(b64decode(signer.unsign(written))) == {"uid": 8}


@pytest.mark.parametrize(
    "cookie",
    [
        "garbage",
        _starlette_cookie({"uid": 7}, secret="another-secret-another-secret-another"),
        _starlette_cookie([1, 2]),  # signed, but not a session
        itsdangerous.TimestampSigner(SECRET).sign(b"not base64 json!").decode(),
    ],
)
def test_refuses_a_forged_or_garbled_cookie(cookie: str) -> None:
    assert _middleware().load(cookie) is None


def test_a_cookie_verified_once_is_still_refused_when_altered() -> None:
    cookies = _middleware()
    good = _starlette_cookie({"uid": 7})
    assert cookies.load(good) == {"uid": 7}
    value, timestamp, signature = good.rsplit(".", 2)
    forged = f"{b64encode(json.dumps({'uid': 1}).encode()).decode()}.{timestamp}.{signature}"
    assert cookies.load(forged) is None
    assert cookies.load(good) == {"uid": 7}


def test_a_remembered_cookie_still_expires() -> None:
    cookies = _middleware()
    good = _starlette_cookie({"uid": 7})
    now = time.time()
    assert cookies.load(good, now=now) == {"uid": 7}
    assert cookies.load(good, now=now + MAX_AGE + 2) is None
    assert cookies.load(good, now=now - 60) is None  # "signed in the future": clock went back


def test_each_request_gets_its_own_copy_of_the_session() -> None:
    cookies = _middleware()
    good = _starlette_cookie({"uid": 7, "_flashes": [{"level": "info", "text": "hi"}]})
    first = cookies.load(good)
    assert first is not None
    first["_flashes"].append({"level": "info", "text": "changed by a route"})
    first["uid"] = 99
    assert cookies.load(good) == {"uid": 7, "_flashes": [{"level": "info", "text": "hi"}]}


def test_what_it_remembers_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_cookie, "VERIFIED_MAX", 3)
    cookies = _middleware()
    for uid in range(10):
        assert cookies.load(_starlette_cookie({"uid": uid})) == {"uid": uid}
        assert len(cookies._verified) <= 3
