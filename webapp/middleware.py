"""Security headers on every answer, and a Secure session cookie over HTTPS."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
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
