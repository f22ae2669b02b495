"""The application factory: ``create_app(settings)``. Nothing here runs at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from webapp.config import Settings, get_settings
from webapp.db import make_engine, make_sessionmaker
from webapp.errors import install_error_handlers
from webapp.resources import resource_dir
from webapp.routes import health, users
from webapp.security import PasswordHasher
from webapp.templating import make_templates


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    engine = make_engine(settings)
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.hasher = PasswordHasher(settings.bcrypt_rounds, settings.hash_concurrency)
    try:
        yield
    finally:
        # Closes every pooled connection; uvicorn has let in-flight requests finish first.
        await engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="webapp",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.templates = make_templates()
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.session_secret(),
        session_cookie="webapp_session",
        same_site="lax",
        https_only=settings.env == "production",
    )
    app.mount("/static", StaticFiles(directory=resource_dir("static")), name="static")
    app.include_router(users.router)
    app.include_router(health.router)
    install_error_handlers(app)
    return app
