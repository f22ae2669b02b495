"""The user list's query string: search, sort, filters and position, parsed leniently."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from webapp.keyset import CURSOR_MAX

SortKey = Literal["name", "-name", "email", "-email", "created", "-created"]
SORT_KEYS: tuple[SortKey, ...] = ("name", "-name", "email", "-email", "created", "-created")
DEFAULT_SORT: SortKey = "name"
Flag = Literal["", "yes", "no"]
SEARCH_MAX = 200


def _flag(value: str | None) -> Flag:
    return value if value in ("yes", "no") else ""  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class UserListQuery:
    """What the list shows. Unknown or malformed values fall back to defaults, never an error:
    a hand-edited or stale URL still shows a sensible list."""

    q: str = ""
    sort: SortKey = DEFAULT_SORT
    active: Flag = ""
    admin: Flag = ""
    # Where the page starts: an opaque keyset cursor (webapp.keyset), empty for the first page.
    cursor: str = ""
    # "Count exactly" asked for: otherwise a large result's size is the planner's estimate.
    exact_count: bool = False

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> UserListQuery:
        sort = params.get("sort", DEFAULT_SORT)
        q = " ".join(params.get("q", "").replace("\x00", "").split())[:SEARCH_MAX]
        return cls(
            q=q,
            sort=sort if sort in SORT_KEYS else DEFAULT_SORT,
            active=_flag(params.get("active")),
            admin=_flag(params.get("admin")),
            cursor=params.get("cursor", "")[:CURSOR_MAX],
            exact_count=params.get("count") == "exact",
        )

    @property
    def terms(self) -> list[str]:
        return self.q.split()

    def params(self, **changes: str | bool) -> dict[str, str]:
        """Query parameters for a link to this list with ``changes``; defaults are left out."""
        query = replace(self, **changes)  # type: ignore[arg-type]
        out = {
            "q": query.q,
            "sort": query.sort if query.sort != DEFAULT_SORT else "",
            "active": query.active,
            "admin": query.admin,
            "cursor": query.cursor,
            "count": "exact" if query.exact_count else "",
        }
        return {k: v for k, v in out.items() if v}

    def sort_toggle(self, column: str) -> str:
        """The sort a column header links to: ascending first, then flip."""
        return f"-{column}" if self.sort == column else column
