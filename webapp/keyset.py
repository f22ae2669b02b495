"""Keyset (cursor) paging: opaque cursors that name a row's sort key, and a page of results.

A cursor is URL-safe base64 of a small JSON object: the sort it was made for, the direction
(``n`` for the page after the row, ``p`` for the page before it) and the row's key, tie-broken
by id. It is not signed: it only says where to start reading, and every value is checked.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")
Direction = Literal["n", "p"]
KeyKind = type[str] | type[int] | type[datetime]
CURSOR_MAX = 2048


class CursorError(ValueError):
    """The cursor is not one this API made, or was made for another sort."""


@dataclass(frozen=True, slots=True)
class Cursor:
    sort: str
    direction: Direction
    key: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class KeysetPage(Generic[T]):
    """Rows in sort order, with the cursors of the pages before and after (None at an end)."""

    items: Sequence[T]
    next_cursor: str | None
    prev_cursor: str | None


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite: naive UTC
        return aware.astimezone(UTC).isoformat()
    return value


def encode_cursor(sort: str, direction: Direction, key: Sequence[Any]) -> str:
    payload = {"s": sort, "d": direction, "k": [_plain(v) for v in key]}
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str, sort: str, kinds: Sequence[KeyKind]) -> Cursor:
    """Parse and check a cursor for ``sort`` whose key has values of ``kinds``."""
    if not token or len(token) > CURSOR_MAX:
        raise CursorError("The cursor is empty or too long.")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):  # RecursionError: "[[[[..."
        raise CursorError("The cursor is not one this API issued.") from None
    if not isinstance(payload, dict) or set(payload) != {"s", "d", "k"}:
        raise CursorError("The cursor is not one this API issued.")
    if payload["s"] != sort:
        raise CursorError("The cursor was issued for another sort; start again without it.")
    direction = payload["d"]
    values = payload["k"]
    if direction not in ("n", "p") or not isinstance(values, list) or len(values) != len(kinds):
        raise CursorError("The cursor is not one this API issued.")
    return Cursor(
        sort, direction, tuple(_value(v, kind) for v, kind in zip(values, kinds, strict=True))
    )


def _value(value: Any, kind: KeyKind) -> Any:
    if kind is int:
        # bool is an int in Python, not in a cursor; ids fit in a 32-bit column.
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31:
            return value
    elif kind is str:
        # JSON may spell a lone surrogate ("\ud800"), which no database can be sent.
        if isinstance(value, str) and len(value) <= 300 and "\x00" not in value:
            if _encodable(value):
                return value
    elif kind is datetime and isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is not None:
                return parsed.astimezone(UTC)  # OverflowError: out of range once in UTC
        except (ValueError, OverflowError):
            raise CursorError("The cursor is not one this API issued.") from None
    raise CursorError("The cursor is not one this API issued.")


def _encodable(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True
