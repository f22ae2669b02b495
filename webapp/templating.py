"""Jinja2 set-up, flash messages, and the one ``render`` every route uses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi.routing import iter_route_contexts
from fastapi.templating import Jinja2Templates
from jinja2 import Template, pass_context
from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send

from webapp import auth, htmx
from webapp.forms import is_checked
from webapp.resources import resource_dir

FlashLevel = Literal["success", "info", "warning", "error"]
_FLASH_KEY = "_flashes"


def make_templates(*, auto_reload: bool = True) -> Jinja2Templates:
    templates = Jinja2Templates(
        directory=str(resource_dir("templates")), context_processors=[_request_globals]
    )
    # Reloading checks every template file's time on every use: 60 stat() calls a list page.
    templates.env.auto_reload = auto_reload
    templates.env.globals["url_for"] = url_for
    templates.env.filters["datetime"] = format_datetime
    templates.env.globals["htmx_version"] = "2.0.11"
    templates.env.tests["checked"] = is_checked
    return templates


def _request_globals(request: Request) -> dict[str, Any]:
    """What every template may use: the CSRF token for its forms, who is signed in, the
    frame's addresses and the path asked for (which section the navigation marks)."""
    return {
        "csrf_token": auth.csrf_token(request),
        "current_admin": getattr(request.state, "admin", None),
        "urls": frame_urls(request),
        "here": _app_path(request.scope),
    }


def _app_path(scope: Scope) -> str:
    """The path asked for, within the app: without the root path a proxy mounts it under
    (a server may give the path with it or without it)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path + "/"):
        return path[len(root_path) :]
    return path


@dataclass(frozen=True, slots=True)
class FrameUrls:
    """Where the frame of every page (base.html, layout.html) links to, worked out once per
    root path: a dozen ``url_for`` calls on every page cost about 2 % of a list page's CPU."""

    users: str
    new_user: str
    audit: str
    tokens: str
    health: str
    change_password: str
    logout: str
    favicon: str
    stylesheet: str
    htmx: str

    @classmethod
    def of(cls, request: Request) -> FrameUrls:
        def route(name: str, **params: Any) -> str:
            return str(route_url(request, name, **params))

        return cls(
            users=route("list_users"),
            new_user=route("new_user"),
            audit=route("audit_log"),
            tokens=route("list_tokens"),
            health=route("health"),
            change_password=route("change_own_password"),
            logout=route("logout"),
            favicon=route("static", path="favicon.svg"),
            stylesheet=route("static", path="app.css"),
            htmx=route("static", path="htmx.min.js"),
        )


def frame_urls(request: Request) -> FrameUrls:
    by_root: dict[str, FrameUrls] = _state_dict(request.app, "frame_urls")
    root_path = request.scope.get("root_path", "")
    urls = by_root.get(root_path)
    if urls is None:
        urls = by_root[root_path] = FrameUrls.of(request)
    return urls


def _routes_by_name(app: Any) -> dict[str, Any]:
    """Each route once, by name. The router's own look-up tries every route in turn and
    raises on each miss: a 50-row page asks for 250 URLs, which made it half the page's CPU."""
    index: dict[str, Any] | None = getattr(app.state, "routes_by_name", None)
    if index is None:
        index = {}
        for route in iter_route_contexts(app.routes):
            if route.name:
                index.setdefault(route.name, route)
        app.state.routes_by_name = index
    return index


# Addresses already built, by (root path, route name, path parameters): a page asks for the
# same dozen (navigation, static files, the list) every time. Bounded: ids vary without end.
_URL_CACHE_MAX = 512


@pass_context
def url_for(context: Mapping[str, Any], name: str, /, **path_params: Any) -> URL:
    """A site-relative URL: right behind any proxy, whatever Host header reached us."""
    return route_url(context["request"], name, **path_params)


def route_url(request: Request, name: str, /, **path_params: Any) -> URL:
    """``url_for`` for Python code: the route's site-relative URL, looked up once."""
    root_path = request.scope.get("root_path", "")
    cache: dict[tuple[Any, ...], URL] = _state_dict(request.app, "url_cache")
    key = (root_path, name, *sorted(path_params.items()))
    url = cache.get(key)
    if url is None:
        route = _routes_by_name(request.app).get(name)
        if route is not None:
            path = route.url_path_for(name, **path_params)
        else:  # a route added after the first page was drawn (tests do that)
            path = request.app.url_path_for(name, **path_params)
        url = URL(root_path + str(path))
        if len(cache) < _URL_CACHE_MAX:
            cache[key] = url
    return url


def _state_dict(app: Any, name: str) -> dict[Any, Any]:
    """A cache kept on the app (one per app: tests build many), made at its first use."""
    cache: dict[Any, Any] | None = getattr(app.state, name, None)
    if cache is None:
        cache = {}
        setattr(app.state, name, cache)
    return cache


def format_datetime(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:  # SQLite hands back naive values; they were stored in UTC
        value = value.replace(tzinfo=UTC)
    # "2026-11-22 04:32 UTC"; isoformat is C all the way, strftime parses its format each time.
    return value.astimezone(UTC).isoformat(" ", "minutes")[:16] + " UTC"


def flash(request: Request, text: str, level: FlashLevel = "success") -> None:
    request.session.setdefault(_FLASH_KEY, []).append({"level": level, "text": text})


def _pop_flashes(request: Request) -> list[dict[str, str]]:
    if "session" not in request.scope:
        return []
    flashes: list[dict[str, str]] = request.session.pop(_FLASH_KEY, [])
    return flashes


class PageResponse(HTMLResponse):
    """A page drawn as it is sent, not when the route returns it: by then the route's session
    has committed and given its connection back, so no connection waits on a template (a
    50-row list takes longer to draw than to read). What the template shows must therefore
    be loaded by the route: plain values, or objects whose columns are loaded (sessions keep
    them readable after commit); a template never starts a query."""

    def __init__(
        self,
        template: Template,
        context: dict[str, Any],
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.template = template
        self.context = context
        self.status_code = status_code
        self.background = None
        self.init_headers(headers)  # no body yet: its length is added when it is drawn

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.body = self.render(self.template.render(self.context))
        self.headers["content-length"] = str(len(self.body))
        if "http.response.debug" in scope.get("extensions", {}):
            # Starlette's test client reads which template answered from this message.
            info = {"template": self.template, "context": self.context}
            await send({"type": "http.response.debug", "info": info})
        await super().__call__(scope, receive, send)


def render(
    request: Request,
    page: str,
    context: Mapping[str, Any] | None = None,
    *,
    fragment: str | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Render ``page``, or only ``fragment`` when htmx asks to swap a part of it.

    A page ``include``s its fragments, so the same markup serves both answers. Flash
    messages ride along: in the page's flash region, or out of band beside a fragment.
    The page is drawn as it is sent, after the request's session has closed (``PageResponse``).
    """
    as_fragment = fragment is not None and htmx.wants_fragment(request)
    ctx = {
        "flashes": _pop_flashes(request),
        "as_fragment": as_fragment,
        # Each fragment adds the flash region out of band when it is the one rendered.
        "fragment": fragment if as_fragment else None,
        **(context or {}),
    }
    templates: Jinja2Templates = request.app.state.templates
    ctx["request"] = request
    for processor in templates.context_processors:
        ctx.update(processor(request))
    template = templates.get_template(fragment if as_fragment and fragment else page)
    response = PageResponse(template, ctx, status_code=status_code, headers=headers)
    if fragment is not None:
        htmx.vary(response)
    return response
