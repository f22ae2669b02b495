"""The application factory: ``create_app(settings)``. Nothing here runs at import."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from webapp import pooler
from webapp.config import Settings, get_settings
from webapp.db import make_engine, make_read_sessionmaker, make_sessionmaker
from webapp.deps import admin_for_health, csrf_protect
from webapp.errors import install_error_handlers
from webapp.middleware import BodySizeLimitMiddleware, SecurityHeadersMiddleware
from webapp.monitoring import start_monitoring
from webapp.resources import resource_dir
from webapp.routes import api, audit, auth, docs, health, probes, tokens, users
from webapp.security import PasswordHasher
from webapp.session_cookie import SessionCookieMiddleware
from webapp.templating import make_templates

SESSION_COOKIE = "webapp_session"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = app.state.settings = await pooler.resolve(app.state.settings)
    engine = make_engine(settings)
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.read_sessionmaker = make_read_sessionmaker(engine)
    hasher = app.state.hasher = PasswordHasher(settings.bcrypt_rounds, settings.hash_concurrency)
    stop_monitoring = await start_monitoring(app.state, engine, settings)
    _settle_garbage_collector()
    try:
        yield
    finally:
        await stop_monitoring()
        hasher.close()
        # Closes every pooled connection; uvicorn has let in-flight requests finish first.
        await engine.dispose()


# Python sweeps its youngest objects for cycles after every 700 net allocations: a list page
# makes that many and leaves no cycles, so most sweeps found nothing and promoted the page's
# live objects, and the full sweeps that followed (tens of ms each) were the list's p99.
GC_YOUNG_THRESHOLD = 10_000


def _settle_garbage_collector() -> None:
    """What start-up made lives as long as the process: out of every future sweep."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="webapp",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # On the whole app, so no route that changes state can be added without it.
        dependencies=[Depends(csrf_protect)],
    )
    app.state.settings = settings
    app.state.templates = make_templates(auto_reload=settings.env == "development")
    app.add_middleware(
        SessionCookieMiddleware,
        secret_key=settings.session_secret(),
        session_cookie=SESSION_COOKIE,
        max_age=settings.session_max_age,
        same_site="lax",
        https_only=settings.env == "production",
    )
    app.add_middleware(SecurityHeadersMiddleware, session_cookie=SESSION_COOKIE)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.mount("/static", StaticFiles(directory=resource_dir("static")), name="static")
    app.include_router(users.list_router)  # the busiest page: matched first
    app.include_router(auth.router)
    app.include_router(users.router)
    app.include_router(audit.router)
    app.include_router(tokens.router)
    app.include_router(api.router)  # the only routes in /openapi.json: see webapp/openapi.py
    app.include_router(docs.router)
    app.include_router(health.router, dependencies=[Depends(admin_for_health)])
    app.include_router(probes.router)  # public: see routes/probes.py
    install_error_handlers(app)
    return app
