"""The signed session cookie: Starlette's format, its signature checked once per cookie.

Starlette's ``SessionMiddleware`` checks the cookie's signature on every request: a key
derived afresh, an HMAC, base64 and JSON, a few per cent of a list page's CPU, spent on the
same few cookies again and again. This middleware writes and reads the very same cookie
(``itsdangerous.TimestampSigner``, base64 JSON, the same attributes), and remembers which
cookie values it has verified, with the time they were signed: a cookie seen again is
checked for age only. What it remembers is derived from the cookie alone, so any worker
reads any cookie the same way; nothing in it is needed elsewhere.
"""

from __future__ import annotations

import json
import time
from base64 import b64decode, b64encode
from typing import Any, Literal

import itsdangerous
from itsdangerous.exc import BadSignature
from starlette.datastructures import MutableHeaders
from starlette.middleware.sessions import Session
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Verified cookie values remembered at most; past it the memory starts again empty.
VERIFIED_MAX = 4096


class SessionCookieMiddleware:
    """``request.session`` from a signed, time-limited cookie (Starlette's format)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        secret_key: str,
        session_cookie: str,
        max_age: int,
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = False,
    ) -> None:
        self.app = app
        self.signer = itsdangerous.TimestampSigner(secret_key)
        self.session_cookie = session_cookie
        self.max_age = max_age
        security = f"httponly; samesite={same_site}"
        self.flags = f"path=/; Max-Age={max_age}; {security}"
        self.cleared = f"path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; {security}"
        if https_only:
            self.flags += "; secure"
            self.cleared += "; secure"
        # cookie value -> (the time it was signed, its JSON text)
        self._verified: dict[str, tuple[float, str]] = {}

    def load(self, cookie: str, now: float | None = None) -> dict[str, Any] | None:
        """The session a cookie carries, or None when it is forged, garbled or too old."""
        now = time.time() if now is None else now
        known = self._verified.get(cookie)
        if known is None:
            try:
                value, signed = self.signer.unsign(
                    cookie.encode(), max_age=self.max_age, return_timestamp=True
                )
                text = b64decode(value).decode()
            except (BadSignature, ValueError):  # binascii.Error and UnicodeError are ValueErrors
                return None
            known = (signed.timestamp(), text)
            if len(self._verified) >= VERIFIED_MAX:
                self._verified.clear()
            self._verified[cookie] = known
        signed_at, text = known
        if not 0 <= now - signed_at <= self.max_age:
            # Expired since it was first seen (or signed "in the future"): as itsdangerous.
            self._verified.pop(cookie, None)
            return None
        try:
            data = json.loads(text)  # a fresh copy each time: the route may change it
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def dump(self, session: dict[str, Any]) -> str:
        return self.signer.sign(b64encode(json.dumps(session).encode())).decode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        cookie = HTTPConnection(scope).cookies.get(self.session_cookie)
        data = self.load(cookie) if cookie is not None else None
        scope["session"] = Session(data or {})
        had_session = data is not None

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                session: Session = scope["session"]
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                if session.accessed:
                    headers.add_vary_header("Cookie")
                if session.modified and session:
                    value = f"{self.session_cookie}={self.dump(session)}; {self.flags}"
                    headers.append("Set-Cookie", value)
                elif session.modified and had_session:
                    headers.append("Set-Cookie", f"{self.session_cookie}=null; {self.cleared}")
            await send(message)

        await self.app(scope, receive, send_with_cookie)
