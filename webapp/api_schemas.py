"""The API's request and response bodies. Their shape only: the rules are the forms' own.

A request body is checked here for its shape (which fields, of which JSON types); its values
then go through the same ``webapp.forms`` models as the console's forms, so a name, an email or
a password is accepted by the API exactly when the console would accept it. No response model
has a password or a hash in it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.config import JsonDict

from webapp.forms import NAME_MAX, PASSWORD_MIN_CHARS
from webapp.security import BCRYPT_MAX_BYTES

_NAME: JsonDict = {"minLength": 1, "maxLength": NAME_MAX}
_PASSWORD_DOC = (
    f"{PASSWORD_MIN_CHARS} characters to {BCRYPT_MAX_BYTES} bytes in UTF-8 "
    "(longer ones are refused, never cut short)."
)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UserCreateIn(_In):
    first_name: str = Field(json_schema_extra=_NAME, examples=["Ada"])
    last_name: str = Field(json_schema_extra=_NAME, examples=["Lovelace"])
    email: str = Field(
        json_schema_extra={"format": "email", "maxLength": 254},
        description="Unique whatever its letter case.",
        examples=["ada@example.com"],
    )
    password: str = Field(description=_PASSWORD_DOC, json_schema_extra={"minLength": 8})
    is_active: bool = True
    is_admin: bool = False


class UserReplaceIn(_In):
    """Every editable field. ``version`` is the one you read, unless you send ``If-Match``."""

    first_name: str = Field(json_schema_extra=_NAME)
    last_name: str = Field(json_schema_extra=_NAME)
    email: str = Field(json_schema_extra={"format": "email", "maxLength": 254})
    is_active: bool
    is_admin: bool
    version: int | None = Field(
        default=None, description="The version you read; or send `If-Match` instead."
    )


class UserPatchIn(_In):
    """Only the fields to change; one omitted (or null) keeps its value."""

    first_name: str | None = Field(default=None, json_schema_extra=_NAME)
    last_name: str | None = Field(default=None, json_schema_extra=_NAME)
    email: str | None = Field(default=None, json_schema_extra={"format": "email"})
    is_active: bool | None = None
    is_admin: bool | None = None
    version: int | None = Field(
        default=None, description="The version you read; or send `If-Match` instead."
    )


class PasswordIn(_In):
    password: str = Field(description=_PASSWORD_DOC, json_schema_extra={"minLength": 8})
    must_change: bool = Field(
        default=False,
        description="Oblige the user to choose a new password at their next sign-in "
        "(ignored for your own password).",
    )
    current_password: str | None = Field(
        default=None, description="Required, and checked, when you set your own password."
    )


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    first_name: str
    last_name: str
    email: str
    is_active: bool
    is_admin: bool
    must_change_password: bool
    created_at: datetime
    updated_at: datetime
    version: int = Field(description="Goes up with every change; the ETag is derived from it.")

    @field_validator("created_at", "updated_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite: naive UTC


class UserPage(BaseModel):
    items: list[UserOut]
    limit: int
    next: str | None = Field(description="The next page's address, or null on the last page.")
    prev: str | None = Field(description="The previous page's address, or null on the first.")


def user_out(user: Any) -> UserOut:
    return UserOut.model_validate(user)
