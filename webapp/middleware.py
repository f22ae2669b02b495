"""Security headers on every answer, a Secure session cookie over HTTPS, a body-size limit."""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No inline script or style anywhere: htmx is configured by a meta tag, its indicator
# styles are off (they would be injected inline), and eval is off.
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, session_cookie: str, static_prefix: str = "/static/"):
        self.app = app
        self.session_cookie = session_cookie
        self.static_prefix = static_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_static = scope["path"].startswith(self.static_prefix)
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
                if not is_static:
                    # Console pages show personal data: never keep them in any cache.
                    headers["Cache-Control"] = "no-store"
                if https:
                    _secure_session_cookie(headers, self.session_cookie)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _secure_session_cookie(headers: MutableHeaders, name: str) -> None:
    cookies = headers.getlist("set-cookie")
    if not any(c.startswith(f"{name}=") and "secure" not in c.lower() for c in cookies):
        return
    del headers["set-cookie"]
    for cookie in cookies:
        if cookie.startswith(f"{name}=") and "secure" not in cookie.lower():
            cookie += "; secure"
        headers.append("set-cookie", cookie)


class BodySizeLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with a 413, before they are read into memory.

    The refusal is raised where the body is read (the form parser, in a dependency or a route),
    so it reaches the app's error handlers like any other HTTP error: a page, an htmx notice or
    JSON, and the request's session, if one was opened, rolls back and returns its connection.
    A declared ``Content-Length`` is refused at the first read; a chunked body as soon as it
    grows past the limit.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        # ASCII digits only: "²" is a digit to str.isdigit(), and int() refuses it.
        too_large = declared.isascii() and declared.isdigit() and int(declared) > self.max_bytes
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if too_large:
                raise self._refusal()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._refusal()
            return message

        await self.app(scope, limited_receive, send)

    def _refusal(self) -> HTTPException:
        return HTTPException(
            413,
            f"This request is too large: at most {self.max_bytes:,} bytes are accepted. "
            "Nothing was changed.",
        )
