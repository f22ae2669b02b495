"""``webapp create-admin``: the same rules and audit trail as the console's forms."""

from __future__ import annotations

from webapp import crud, pooler
from webapp.audit import Actor
from webapp.config import Settings
from webapp.db import make_engine, make_sessionmaker
from webapp.forms import UserCreate, parse_form
from webapp.security import PasswordHasher


class AdminError(Exception):
    """The admin could not be created; the message says why, in one line."""


async def create_admin(
    settings: Settings, email: str, first_name: str, last_name: str, password: str
) -> str:
    form = {
        "email": email,
        "first_name": first_name,
        "last_name": last_name,
        "password": password,
        "password_confirm": password,
        "is_active": "yes",
        "is_admin": "yes",
    }
    data, errors = parse_form(UserCreate, form)
    if data is None:
        field, message = next(iter(errors.items()))
        raise AdminError(f"{field.replace('_', ' ')}: {message}")
    hasher = PasswordHasher(settings.bcrypt_rounds, 1)
    try:
        password_hash = await hasher.hash(data.password)
    finally:
        hasher.close()
    engine = make_engine(await pooler.resolve(settings))
    try:
        async with make_sessionmaker(engine)() as session:
            try:
                user = await crud.create_user(
                    session, Actor(None, None, "command line"), data, password_hash
                )
            except crud.DuplicateEmailError:
                raise AdminError(f"a user with the email {email} already exists") from None
            await session.commit()
            return user.email
    finally:
        await engine.dispose()
