"""The user list's query string: search, sort, filters and position, parsed leniently."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

from jinja2.filters import do_urlencode
from jinja2.utils import htmlsafe_json_dumps
from markupsafe import Markup

from webapp.keyset import CURSOR_MAX, KeysetPage

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
        if not q.isascii():  # the composed form names and emails are stored in
            q = unicodedata.normalize("NFC", q)
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

    @property
    def is_filtered(self) -> bool:
        """A search or a filter: the list shows some users, not all."""
        return bool(self.q or self.active or self.admin)

    def params(self, **changes: str | bool) -> dict[str, str]:
        """Query parameters for a link to this list with ``changes`` (new values of its
        fields); defaults are left out. A page asks for a dozen of these: a plain dict of
        the fields is a fraction of the cost of a changed copy of the query."""
        if not changes.keys() <= _FIELDS:
            raise TypeError(f"not a field of the list's query: {sorted(changes.keys() - _FIELDS)}")
        values: dict[str, Any] = {
            "q": self.q,
            "sort": self.sort,
            "active": self.active,
            "admin": self.admin,
            "cursor": self.cursor,
            "exact_count": self.exact_count,
            **changes,
        }
        out = {
            "q": values["q"],
            "sort": values["sort"] if values["sort"] != DEFAULT_SORT else "",
            "active": values["active"],
            "admin": values["admin"],
            "cursor": values["cursor"],
            "count": "exact" if values["exact_count"] else "",
        }
        return {k: v for k, v in out.items() if v}

    def sort_toggle(self, column: str) -> str:
        """The sort a column header links to: ascending first, then flip."""
        return f"-{column}" if self.sort == column else column


_FIELDS = frozenset(UserListQuery.__dataclass_fields__)
SORTABLE = ("name", "email", "created")


@dataclass(frozen=True, slots=True)
class RowLinks:
    """What every row's links share, worked out once per page rather than once per row."""

    users: str  # the list's path: a row's pages are {users}/{id}, {users}/{id}/delete, ...
    next_url: str  # where a row's buttons come back to: the list as it is shown
    next_query: str  # "?next=...", for the delete confirmation page
    next_vals: Markup  # {"next": ...} as htmx's hx-vals, JSON made safe for an attribute

    @classmethod
    def of(cls, users: str, next_url: str) -> RowLinks:
        return cls(
            users=users,
            next_url=next_url,
            next_query="?" + do_urlencode({"next": next_url}),
            next_vals=htmlsafe_json_dumps({"next": next_url}),
        )


@dataclass(frozen=True, slots=True)
class ListLinks:
    """The list page's links: sorts, count, pages and rows, each a plain path with a query."""

    here: str  # the list as shown: filters, sort, position (the canonical address)
    sort: dict[str, str]  # column -> the address that sorts by it (a second click flips it)
    exact_count: str
    first: str
    prev: str | None
    next: str | None
    rows: RowLinks

    @classmethod
    def of(cls, base: str, query: UserListQuery, page: KeysetPage[Any]) -> ListLinks:
        def link(**changes: str | bool) -> str:
            params = query.params(**changes)
            return base + (f"?{urlencode(params)}" if params else "")

        here = link()
        return cls(
            here=here,
            sort={c: link(sort=query.sort_toggle(c), cursor="") for c in SORTABLE},
            exact_count=link(exact_count=True),
            first=link(cursor=""),
            prev=link(cursor=page.prev_cursor) if page.prev_cursor else None,
            next=link(cursor=page.next_cursor) if page.next_cursor else None,
            rows=RowLinks.of(base, here),
        )
