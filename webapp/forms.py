"""Form posts as pydantic models, with errors by field for the templates."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Self, TypeVar
from urllib.parse import unquote_to_bytes

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request

from webapp.security import BCRYPT_MAX_BYTES

NAME_MAX = 100
PASSWORD_MIN_CHARS = 8
SECRET_FIELDS = frozenset({"password", "password_confirm", "current_password", "csrf_token"})

FormT = TypeVar("FormT", bound=BaseModel)
FieldErrors = dict[str, str]


def _has_control_chars(value: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value)


# Characters that turn the text after them around (U+202A-U+202E, U+2066-U+2069): in a
# name, they would make the list show one thing where another is stored.
_DIRECTION_CONTROLS = frozenset(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))


# Characters Unicode files as letters or symbols that show nothing.
_BLANKS = frozenset("\u115f\u1160\u2800\u3164\uffa0")


def _visible(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LNPS" and ch not in _BLANKS


def _name(value: str) -> str:
    # One form for accented letters (a composed é, not e and an accent), so a name is
    # counted, stored, searched and sorted the same however it was typed.
    value = unicodedata.normalize("NFC", value.strip())
    # Nothing to see (spaces, a zero-width space, a Hangul filler, combining marks on
    # nothing): no name at all.
    if not any(_visible(ch) for ch in value):
        raise ValueError("Required.")
    if len(value) > NAME_MAX:
        raise ValueError(f"At most {NAME_MAX} characters (this has {len(value)}).")
    if _has_control_chars(value):
        raise ValueError("Must not contain control characters.")
    if not _DIRECTION_CONTROLS.isdisjoint(value):
        raise ValueError("Must not contain characters that reverse the text's direction.")
    return value


def _email(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("Required.")
    if _has_control_chars(value):
        raise ValueError("Must not contain control characters.")
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return value


def _password(value: str) -> str:
    if not value:
        raise ValueError("Required.")
    if any(unicodedata.category(ch) == "Cs" for ch in value):  # only JSON can send one
        raise ValueError("Must be text: it holds a lone surrogate (half a character).")
    if len(value) < PASSWORD_MIN_CHARS:
        raise ValueError(f"At least {PASSWORD_MIN_CHARS} characters.")
    if value.isspace():
        raise ValueError("Must not be only spaces.")
    size = len(value.encode())
    if size > BCRYPT_MAX_BYTES:
        raise ValueError(
            f"At most {BCRYPT_MAX_BYTES} bytes in UTF-8 (this has {size}); "
            "longer passwords would be cut short by bcrypt, so they are refused."
        )
    if "\x00" in value:
        raise ValueError("Must not contain NUL characters.")
    return value


class _Form(BaseModel):
    # A field left out of the post is checked as if sent empty: its default is validated
    # too, so a missing name, email or password is "Required.", never stored blank.
    model_config = ConfigDict(
        str_strip_whitespace=False, extra="ignore", frozen=True, validate_default=True
    )


# What a checkbox's value may be to count as ticked: pydantic's words for true.
CHECKED = frozenset({"1", "on", "t", "true", "y", "yes"})


def is_checked(value: object) -> bool:
    """Whether a form value (a posted string, or a stored bool) ticks a checkbox: "no"
    and "false" do not."""
    if isinstance(value, str):
        return value.strip().lower() in CHECKED
    return value is True


class UserFields(_Form):
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    is_active: bool = False
    is_admin: bool = False

    @field_validator("first_name", "last_name")
    @classmethod
    def _check_name(cls, value: str, info: ValidationInfo) -> str:
        # A name sent back as it is stored (an edit of something else) is kept as it is,
        # even if a later rule would refuse it: a user saved before the rule stays editable.
        kept = (info.context or {}).get("kept", {}).get(info.field_name)
        if kept is not None and value.strip() == kept:
            return str(kept)
        return _name(value)

    @field_validator("email")
    @classmethod
    def _check_email(cls, value: str) -> str:
        return _email(value)


class _NewPassword(_Form):
    password: str = ""
    password_confirm: str = ""

    @field_validator("password")
    @classmethod
    def _check_password(cls, value: str) -> str:
        return _password(value)

    @model_validator(mode="after")
    def _passwords_match(self) -> Self:
        if self.password != self.password_confirm:
            raise ValueError("password_confirm: The two passwords do not match.")
        return self


class UserCreate(UserFields, _NewPassword):
    pass


class UserUpdate(UserFields):
    version: int


class PasswordSet(_NewPassword):
    # Only asked when you set your own password from your edit page.
    current_password: str = ""
    must_change: bool = False


class PasswordChange(_NewPassword):
    current_password: str = ""

    @field_validator("current_password")
    @classmethod
    def _required(cls, value: str) -> str:
        if not value:
            raise ValueError("Required.")
        return value


TOKEN_EXPIRY_DAYS = (0, 7, 30, 90, 365)  # 0: never expires


class TokenCreate(_Form):
    name: str = ""
    expires_in_days: int = 90

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _name(value)

    @field_validator("expires_in_days")
    @classmethod
    def _check_expiry(cls, value: int) -> int:
        if value not in TOKEN_EXPIRY_DAYS:
            raise ValueError("Choose one of the offered lifetimes.")
        return value


NOT_UTF8 = (
    "The form's data is not percent-encoded UTF-8, as a browser sends it: nothing was "
    "changed. Encode each field's value as UTF-8, then percent-encode it."
)


async def read_form(request: Request) -> FormData:
    """The posted form (parsed once: the CSRF check and the route share it).

    Starlette reads a urlencoded body's raw bytes as Latin-1 and a broken percent-escape as
    U+FFFD, and would store either as if typed ("JosÃ©" for a raw "José"): such a body is a
    400 instead. No console form takes a file: one sent anyway (in a multipart post) is a
    400, not a temporary file left open and its name shown as the field's value."""
    content_type = request.headers.get("content-type", "").strip().lower()
    if content_type.startswith("application/x-www-form-urlencoded"):
        if not _percent_encoded_utf8(await request.body()):
            raise HTTPException(status_code=400, detail=NOT_UTF8)
    return await request.form(max_files=0)


def _percent_encoded_utf8(body: bytes) -> bool:
    """Whether every name and value in a urlencoded ``body`` is ASCII, percent-encoding
    UTF-8."""
    if not body.isascii():
        return False
    try:
        for part in re.split(rb"[&=]", body):
            unquote_to_bytes(part).decode()
    except UnicodeDecodeError:
        return False
    return True


def parse_form(
    model: type[FormT], data: Mapping[str, Any], kept: Mapping[str, str] | None = None
) -> tuple[FormT | None, FieldErrors]:
    """Validate a posted form; on failure return one readable message per field. ``kept``:
    the stored names of the user being edited, taken back as they are."""
    try:
        return model.model_validate(dict(data), context={"kept": kept or {}}), {}
    except ValidationError as exc:
        return None, errors_by_field(exc)


# Pydantic's own wording for a value of the wrong kind, said for people.
_PLAIN_MESSAGES = {
    "bool_parsing": "Ticked or not: send yes or no.",
    "int_parsing": "Must be a whole number.",
    "int_from_float": "Must be a whole number.",
    "missing": "Required.",
}


def errors_by_field(exc: ValidationError) -> FieldErrors:
    errors: FieldErrors = {}
    for err in exc.errors():
        message = _PLAIN_MESSAGES.get(err["type"]) or str(err["msg"]).removeprefix("Value error, ")
        field = str(err["loc"][0]) if err["loc"] else ""
        if not field and ": " in message:  # model-level checks name their field first
            field, message = message.split(": ", 1)
        errors.setdefault(field or "__all__", message)
    return errors


def form_values(data: Mapping[str, Any]) -> dict[str, str]:
    """What to put back in the form after an error: what was typed, never a password."""
    return {k: v for k, v in data.items() if isinstance(v, str) and k not in SECRET_FIELDS}
