"""Dependency aliases for routes: the one place that calls ``Depends``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from webapp.config import Settings
from webapp.db import session_scope
from webapp.security import PasswordHasher


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


def _hasher(request: Request) -> PasswordHasher:
    hasher: PasswordHasher = request.app.state.hasher
    return hasher


# scope="function": commit (or roll back) and release the connection before the response
# is sent, so a redirect never reaches the browser ahead of the data it points at.
SessionDep = Annotated[AsyncSession, Depends(session_scope, scope="function")]
SettingsDep = Annotated[Settings, Depends(_settings)]
EngineDep = Annotated[AsyncEngine, Depends(_engine)]
HasherDep = Annotated[PasswordHasher, Depends(_hasher)]
