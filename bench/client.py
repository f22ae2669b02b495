"""Single HTTP requests for the checks around a load: sign in, read a page, post a form."""

from __future__ import annotations

import http.client
import re
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

from bench.config import BenchError

_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: str

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k.lower() == name.lower()), "")

    def cookie(self) -> str:
        """``name=value`` of the cookie this response sets, or ""."""
        for key, value in self.headers:
            if key.lower() == "set-cookie":
                for morsel in SimpleCookie(value).values():
                    return f"{morsel.key}={morsel.coded_value}"
        return ""

    def csrf_token(self) -> str:
        match = _CSRF_FIELD.search(self.body)
        if match is None:
            raise BenchError(f"no CSRF token on the page (status {self.status})")
        return match.group(1)


def fetch(
    base: str,
    path: str,
    *,
    cookie: str = "",
    form: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Response:
    """GET ``path`` (POST ``form`` when given), without following redirects."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
    headers = {"Cookie": cookie} if cookie else {}
    body = None
    if form is not None:
        body = urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        conn.request("POST" if form is not None else "GET", path, body=body, headers=headers)
        answer = conn.getresponse()
        text = answer.read().decode(errors="replace")
        return Response(answer.status, answer.getheaders(), text)
    finally:
        conn.close()


@dataclass(frozen=True, slots=True)
class SignedIn:
    cookie: str  # the Cookie header a browser would send
    csrf_token: str  # the session's token, for forms


def sign_in(base: str, email: str, password: str) -> SignedIn:
    """Sign in through the real form, as a browser does: page, token, post, cookie."""
    page = fetch(base, "/login")
    if page.status != 200:
        raise BenchError(f"GET /login answered {page.status}")
    form = {"email": email, "password": password, "next": "", "csrf_token": page.csrf_token()}
    answer = fetch(base, "/login", cookie=page.cookie(), form=form)
    cookie = answer.cookie()
    if answer.status != 303 or not cookie:
        raise BenchError(f"sign-in refused (status {answer.status}): check the bench admin")
    # Signing in starts a fresh session with a fresh CSRF token: read it from a form.
    return SignedIn(cookie, fetch(base, "/users/new", cookie=cookie).csrf_token())
