"""Every query the console runs. Takes an ``AsyncSession``; knows nothing of HTTP or templates."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    Table,
    and_,
    bindparam,
    case,
    func,
    literal_column,
    select,
    true,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.sql.util import ClauseAdapter

from webapp import audit, driver_reads, search_estimate
from webapp.audit import Actor
from webapp.counting import (
    EXACT_UP_TO,
    Count,
    bounded_count,
    count_table,
    table_count,
    table_size,
)
from webapp.forms import UserCreate, UserFields
from webapp.keyset import Cursor, CursorError, KeyKind, KeysetPage, decode_cursor, encode_cursor
from webapp.listing import UserListQuery
from webapp.models import MAX_ID, User, email_key, search_text

# PostgreSQL names the index (uq_users_email_key), SQLite the column (users.email_key).
EMAIL_UNIQUE_MARK = "email_key"


class DuplicateEmailError(Exception):
    """Another user already has this email, in any letter case."""


class SafetyRailError(Exception):
    """The change would lock the console out (yourself, or the last admin); nothing changed."""


def stored_names(user: User) -> dict[str, str]:
    """A user's names as stored: an edit that sends them back unchanged keeps them."""
    return {"first_name": user.first_name, "last_name": user.last_name}


class StaleUserError(Exception):
    """The user changed (or went away) since the form was opened."""

    def __init__(self, current: User | None) -> None:
        super().__init__("user changed since it was read")
        self.current = current


_SORTS: dict[str, tuple[Any, ...]] = {
    "name": (User.last_name, User.first_name, User.id),
    "-name": (User.last_name.desc(), User.first_name.desc(), User.id.desc()),
    "email": (User.email_key,),
    "-email": (User.email_key.desc(),),
    "created": (User.created_at, User.id),
    "-created": (User.created_at.desc(), User.id.desc()),
}


class _Shape(NamedTuple):
    """What a filtered list's SQL depends on; the search words are its parameters (``t0``,
    ``t1``, ...), so one statement per shape is built and compiled, not one per search."""

    terms: int
    active: str
    admin: str
    postgres: bool  # how its LIKE patterns escape (see LIKE_ESCAPE)
    # Trigrams the index finds the words by (``g0``, ...: see search_estimate.index_trigrams),
    # the whole words then checked on the rows it finds; 0: the words themselves.
    grams: int = 0

    @classmethod
    def of(cls, query: UserListQuery, postgres: bool) -> _Shape:
        return cls(len(query.terms), query.active, query.admin, postgres)


def _conditions(shape: _Shape) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    # Every word must appear in one of the fields, so "ada lovelace" finds Ada Lovelace.
    # One expression for the three fields, trigram-indexed on PostgreSQL: every word of a
    # search is looked up in one scan of one index.
    searched = search_text()
    escape = None if shape.postgres else LIKE_ESCAPE
    checked = searched
    if shape.grams:
        for i in range(shape.grams):
            conditions.append(searched.like(bindparam(f"g{i}", type_=String())))
        # Not the index's expression: the index is not asked for the whole words.
        checked = searched.op("||")(literal_column("''", String()))
    for i in range(shape.terms):
        conditions.append(checked.like(bindparam(f"t{i}", type_=String()), escape=escape))
    if shape.active:
        conditions.append(User.is_active.is_(shape.active == "yes"))
    if shape.admin:
        conditions.append(User.is_admin.is_(shape.admin == "yes"))
    return conditions


# The character that makes %, _ and itself match themselves in a search's LIKE pattern.
# SQLite's LIKE has none unless the statement names one (ESCAPE '/'). PostgreSQL's LIKE
# escapes with a backslash unless told otherwise, and is not told: ESCAPE '/' made each
# pattern like_escape($1, '/'), which a prepared statement's generic plan (a walk's) works
# out again on every row it looks at, 0.14 ms on a walk's page.
LIKE_ESCAPE = "/"
POSTGRES_LIKE_ESCAPE = "\\"


def _search_params(query: UserListQuery, postgres: bool) -> dict[str, str]:
    """The search words as the filter's LIKE patterns: %, _ and the escape character in a
    word match themselves."""
    escape = POSTGRES_LIKE_ESCAPE if postgres else LIKE_ESCAPE
    params = {}
    for i, term in enumerate(query.terms):
        word = term.lower().replace(escape, escape * 2)
        word = word.replace("%", f"{escape}%").replace("_", f"{escape}_")
        params[f"t{i}"] = f"%{word}%"
    return params


def _filtered(stmt: Select[Any], query: UserListQuery, postgres: bool) -> Select[Any]:
    """``stmt`` narrowed by the query's search and filters, their values bound in."""
    conditions = _conditions(_Shape.of(query, postgres))
    if not conditions:
        return stmt
    return stmt.where(and_(*conditions)).params(_search_params(query, postgres))


# How a search reads its page (``_keyset_page``). On PostgreSQL it first guesses how many
# users it will find, from the statistics the planner itself goes by, kept in the process
# (``webapp.search_estimate``: no round trip). When so many match that a page of them should
# turn up within WALK_REACH / WALK_MARGIN rows of the sort's index (one user in 50 or more,
# and more than WALK_FROM), it walks that index from the cursor, keeping its matches (about
# 2 µs a row), and shows the guess as the estimate of its size: a domain's 200,000 matches
# among a million would cost half a second read and sorted, where a page of them turns up
# within 250 rows. Otherwise it reads all its matches through the trigram index and sorts
# them, counting them in the same statement: one statement, whether it finds one person or
# a common surname's 8,000 among a million (about 2 µs a match: 16 ms). Where the
# statistics say nothing (no ANALYZE yet, a small table), it reads up to FIRST_READ_UP_TO
# matches that way; past them it asks the planner (one EXPLAIN: 0.3 ms) and goes on as
# above. A walk goes WALK_REACH rows at most: matches that bunch together further along
# the index (a common surname, in the name order) are then read and sorted after all. And
# a search with more than MATCHES_FIRST_UP_TO matches, too many to sort, walks as far as
# it takes.
FIRST_READ_UP_TO = 200
WALK_FROM = 5_000
WALK_REACH = 20_000
WALK_MARGIN = 8
MATCHES_FIRST_UP_TO = 50_000


class UserRow(NamedTuple):
    """A row of the list (and of the API's pages): plain values, never the password hash.

    Read as tuples rather than ORM objects, and held in a named tuple, whose fields a
    template reads at C speed: a page of 50 rows costs a fraction of what objects did.
    """

    id: int
    first_name: str
    last_name: str
    email: str
    email_key: str
    is_active: bool
    is_admin: bool
    must_change_password: bool
    created_at: datetime
    updated_at: datetime
    version: int


ROW_COLUMNS = tuple(getattr(User, name) for name in UserRow._fields)
USERS = cast(Table, User.__table__)


@dataclass(frozen=True, slots=True)
class Rider:
    """A read of one row that travels with the list's page, in the statement that reads the
    page: one round trip for both. The console's sign-in check rides with the user list
    this way (``webapp.deps.require_admin_with_user_list``).

    ``stmt`` is built once (a module's constant): the page's statement joined with it is
    built once per pair and kept. Its first column must never be NULL (a key), and its
    parameter names must not be the list's own (``k0``, ``t0``, ``limit``, ``cap``)."""

    stmt: Select[Any]
    params: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class UserList:
    page: KeysetPage[UserRow]
    count: Count
    # With a rider: its row, or None when it found none.
    ridden: tuple[Any, ...] | None = None
    # The cursor was not one of ours (hand-edited, out of date, another sort's): the page
    # is the first one.
    restarted: bool = False


class _Read(NamedTuple):
    page: KeysetPage[UserRow]
    extras: tuple[Any, ...]  # the columns past the rows' own: a count, an estimate
    ridden: tuple[Any, ...] | None  # the rider's row (None: none found, or no rider)
    estimate: int | None = None  # a search's matches, by the planner (when it was asked)
    restarted: bool = False  # the cursor was not one of ours: the first page instead


async def list_users(
    session: AsyncSession, query: UserListQuery, per_page: int, rider: Rider | None = None
) -> UserList:
    """The console's list: a keyset page, and how many users match (exact or estimated);
    with ``rider``, the rider's row too, read in the statement that reads the page.

    A cursor that is not one of ours (hand-edited, or from another sort) starts over at the
    first page rather than failing: the list's links are for people.
    """
    cursor = query.cursor or None
    if query.terms:
        # A search that reads and sorts its matches counts them in the same statement.
        read = await _read_page(session, query, cursor, per_page, rider, search=True)
        sizes = read.extras
        if sizes and sizes[0] <= MATCHES_FIRST_UP_TO:
            return UserList(read.page, Count(int(sizes[0]), True), read.ridden, read.restarted)
        # Not all read (a walk, too many, or none on this page): counted, or estimated. An
        # empty page is counted, whatever the planner expected.
        found = int(sizes[0]) if sizes else len(read.page.items)
        estimate = read.estimate if read.page.items else None
        count = await _count_matching(session, query, found, estimate)
        return UserList(read.page, count, read.ridden, read.restarted)
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres and not query.is_filtered and not query.exact_count:
        # The whole list on PostgreSQL: its size (the table's statistics, and a bounded
        # count unless they say it is large) rides along with the page's rows, in the same
        # statement.
        read = await _read_page(session, query, cursor, per_page, rider, sized=True)
        sized = table_count(*read.extras) if read.extras else None
        count = sized or await count_table(session, USERS)
        return UserList(read.page, count, read.ridden, read.restarted)
    if query.is_filtered:
        count = await _count_matching(session, query, 0, None)
    else:
        count = await count_table(session, USERS, exact=query.exact_count)
    read = await _read_page(session, query, cursor, per_page, rider)
    return UserList(read.page, count, read.ridden, read.restarted)


@functools.lru_cache(maxsize=256)
def _matching(shape: _Shape) -> Select[Any]:
    """The ids a search or filter (of this shape) finds."""
    return select(User.id).where(and_(*_conditions(shape)))


@functools.lru_cache(maxsize=256)
def _matching_of_all(shape: _Shape) -> Select[Any]:
    """The ids a search finds, then every id: EXPLAINed, the planner's figure for each."""
    return cast(Select[Any], union_all(_matching(shape), select(User.id)))


def _walks(matches: float, everyone: float, page: int) -> bool:
    """Whether a search expected to find ``matches`` users of ``everyone`` walks the sort's
    index for a page of ``page`` rows, rather than reading and sorting its matches."""
    if matches > MATCHES_FIRST_UP_TO:
        return True
    # The rows a walk should take, everyone / matches a match, with a margin.
    return matches > WALK_FROM and page * everyone * WALK_MARGIN <= WALK_REACH * matches


@functools.lru_cache(maxsize=256)
def _matching_count(shape: _Shape, bounded: bool) -> Select[Any]:
    """How many users a search or filter (of this shape) finds: all, or up to
    EXACT_UP_TO + 1."""
    if bounded:
        return select(bounded_count(_matching(shape)))
    return select(func.count()).select_from(_matching(shape).subquery())


async def _count_matching(
    session: AsyncSession, query: UserListQuery, found: int, estimate: int | None
) -> Count:
    """How many users a search or filter finds, ``found`` of them known to match already:
    counted when asked for or when few (SQLite always counts), else PostgreSQL's estimate
    (``estimate``, when it was asked already; never below ``found``). A search's counts are
    planned for its words (see driver_reads.fetch_all)."""
    connection = await session.connection()
    postgres = connection.dialect.name == "postgresql"
    shape, params = _Shape.of(query, postgres), _search_params(query, postgres)
    words = bool(query.terms)
    if query.exact_count or not postgres:
        rows = await driver_reads.fetch_all(
            connection, _matching_count(shape, False), params, plan_each_time=words
        )
        return Count(int(rows[0][0]), True)
    if found <= EXACT_UP_TO and (estimate is None or estimate <= EXACT_UP_TO):
        rows = await driver_reads.fetch_all(
            connection, _matching_count(shape, True), params, plan_each_time=words
        )
        found = int(rows[0][0])
        if found <= EXACT_UP_TO:
            return Count(found, True)
    if estimate is None:
        estimate = int((await driver_reads.plan(connection, _matching(shape), params))["Plan Rows"])
    return Count(max(estimate, found), False)


async def _read_page(
    session: AsyncSession,
    query: UserListQuery,
    cursor: str | None,
    limit: int,
    rider: Rider | None = None,
    *,
    sized: bool = False,
    search: bool = False,
) -> _Read:
    """``list_users_page``, starting over when the cursor is not one of ours. Beside the
    page: with ``sized``, the whole table's bounded count and estimate; with ``search``,
    how many rows match (up to MATCHES_FIRST_UP_TO + 1), when the page has rows."""
    try:
        return await _keyset_page(session, query, cursor, limit, sized, search, rider)
    except CursorError:
        read = await _keyset_page(session, query, None, limit, sized, search, rider)
        return read._replace(restarted=True)


# Keyset paging: each sort's columns, ending in the unique id so that ties never reorder.
_KEYSET: dict[str, tuple[tuple[Any, ...], tuple[KeyKind, ...]]] = {
    "name": ((User.last_name, User.first_name, User.id), (str, str, int)),
    "email": ((User.email_key,), (str,)),  # unique: no tie to break, and its index serves
    "created": ((User.created_at, User.id), (datetime, int)),
}


def _keyset_order(
    stmt: Select[Any], columns: tuple[Any, ...], reverse: bool, after: bool, limit: str = "limit"
) -> Select[Any]:
    """``stmt`` from the cursor on, in the sort's order or its reverse. The cursor's key is
    bound as ``k0``, ``k1``, ...; ``limit`` is given with the parameters too, but written
    into the SQL when it is sent (it is the same on every page): with
    ``LIMIT $n`` PostgreSQL cannot cost a generic plan, so it planned every page afresh
    (0.3 ms of the server's time, half of what a page cost it); with the number in the
    statement it plans a prepared statement once and reuses the plan. (``limit`` names
    that parameter: a walk's inner limit is another.)"""
    if after:
        key = tuple_(*columns)
        values = tuple_(*(bindparam(f"k{i}", type_=c.type) for i, c in enumerate(columns)))
        stmt = stmt.where(key < values if reverse else key > values)
    order = [c.desc() for c in columns] if reverse else list(columns)
    return stmt.order_by(*order).limit(bindparam(limit, type_=Integer(), literal_execute=True))


@functools.cache
def _whole_list_page(sort: str, reverse: bool, after: bool, sized: bool) -> Select[Any]:
    """The unfiltered list's statement for one sort, direction and position, built once:
    a statement built afresh for every page costs SQLAlchemy more to match to its cached
    compiled form than the rest of the execution."""
    stmt = select(*ROW_COLUMNS)
    if sized:
        counted, estimated = table_size(USERS)
        stmt = stmt.add_columns(counted.label("counted"), estimated.label("estimated"))
    return _keyset_order(stmt, _KEYSET[sort][0], reverse, after)


@functools.lru_cache(maxsize=256)
def _filtered_page(shape: _Shape, sort: str, reverse: bool, after: bool) -> Select[Any]:
    """A filtered list's page, walking the sort's index (built once per shape)."""
    filtered = select(*ROW_COLUMNS).where(and_(*_conditions(shape)))
    return _keyset_order(filtered, _KEYSET[sort][0], reverse, after)


@functools.lru_cache(maxsize=256)
def _matches_first_page(shape: _Shape, sort: str, reverse: bool, after: bool) -> Select[Any]:
    """A search's page, read from its matches, and how many match, in one statement.

    The matches (their id and sort key, at most ``cap`` of them) are fenced off in a
    MATERIALIZED CTE: PostgreSQL reads them through the trigram index and sorts them,
    instead of walking the sort's index until a page of matches turns up, which is slow
    when the matches bunch together far along it (every "Nakamura" sits in the middle of
    the alphabet). Only the page's rows are then read in full, and the CTE is counted.
    """
    columns: tuple[Any, ...] = _KEYSET[sort][0]
    keys = {User.id.key: User.id} | {c.key: c for c in columns}
    matches = (
        select(*keys.values())
        .where(and_(*_conditions(shape)))
        .limit(bindparam("cap"))
        .cte("matches")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    page = _keyset_order(
        select(matches), tuple(matches.c[c.key] for c in columns), reverse, after
    ).subquery("page")
    order = [page.c[c.key] for c in columns]
    matched = select(func.count()).select_from(matches).scalar_subquery().label("matched")
    return (
        select(*ROW_COLUMNS, matched)
        .join_from(page, USERS, page.c.id == User.id)
        .order_by(*(c.desc() for c in order) if reverse else order)
    )


@functools.lru_cache(maxsize=256)
def _walked_page(shape: _Shape, sort: str, reverse: bool, after: bool) -> Select[Any]:
    """A broad search's page: the sort's index walked from the cursor for ``reach`` rows at
    most, and the matches among them (a page of them, or fewer when the walk ran out)."""
    columns: tuple[Any, ...] = _KEYSET[sort][0]
    head = _keyset_order(select(*ROW_COLUMNS), columns, reverse, after, "reach").subquery("head")
    to_head = ClauseAdapter(head)
    kept = select(*(head.c[c.key] for c in ROW_COLUMNS)).where(
        *(to_head.traverse(condition) for condition in _conditions(shape))
    )
    return _keyset_order(kept, tuple(head.c[c.key] for c in columns), reverse, False)


async def list_users_page(
    session: AsyncSession, query: UserListQuery, cursor: str | None, limit: int
) -> KeysetPage[UserRow]:
    """A page of the list after (or before) ``cursor``: one index range scan, no OFFSET, no
    count, so it costs the same on page 1 and page 20 000. ``CursorError`` on a bad cursor.

    A search reads its matches first (``_matches_first_page``) or walks the sort's index
    (``_walked_page``), as it finds few or many: see FIRST_READ_UP_TO.
    """
    read = await _keyset_page(session, query, cursor, limit, False, bool(query.terms))
    return read.page


async def _keyset_page(
    session: AsyncSession,
    query: UserListQuery,
    cursor: str | None,
    limit: int,
    sized: bool,
    search: bool,
    rider: Rider | None = None,
) -> _Read:
    descending = query.sort.startswith("-")
    name = query.sort.lstrip("-")
    sort_columns, kinds = _KEYSET[name]
    at: Cursor | None = decode_cursor(cursor, query.sort, kinds) if cursor is not None else None
    backwards = at is not None and at.direction == "p"
    # Reading backwards is reading the opposite order from the cursor, then flipping the rows.
    reverse = descending != backwards
    after = at is not None
    params: dict[str, Any] = {"limit": limit + 1}
    if at is not None:
        params.update((f"k{i}", v) for i, v in enumerate(at.key))
    if sized and query.is_filtered:
        raise ValueError("only the whole list is sized with its page")
    # Core rows on the session's connection: the ORM has nothing to track in a list.
    # Every statement here is built once per sort, position and shape of the search: the
    # driver sends it (webapp.driver_reads).
    connection = await session.connection()
    postgres = connection.dialect.name == "postgresql"
    shape = _Shape.of(query, postgres)
    params.update(_search_params(query, postgres))
    # A search is planned for its words, every time (see driver_reads.fetch_all).
    words = bool(query.terms)
    # How many a search should find, from the statistics PostgreSQL plans with (kept in
    # the process: no round trip): so many that a page of them lies near, and its page is
    # read walking the sort's index at once; else all its matches are read and sorted. With
    # no statistics to go by, PostgreSQL reads a first few and asks the planner if there
    # are more; SQLite has no planner's figures at all: it reads and sorts them all.
    guess = await search_estimate.guess(connection, query.terms) if search and postgres else None
    walks = guess is not None and _walks(guess.matches, guess.everyone, limit + 1)
    # But for a walk: its plan is the same whatever the words (the sort's index from the
    # cursor, as far as the reach, then the filter), so it is prepared and its plan reused,
    # as the list's own is: planning it was a third of what a walk cost the server.
    planned_each_time = words and not walks
    if search and not walks and guess is not None and guess.trigrams:
        # Its matches are read through the trigram index: by their rarest trigrams.
        shape = shape._replace(grams=len(guess.trigrams))
        params.update((f"g{i}", f"%{gram}%") for i, gram in enumerate(guess.trigrams))
    ask_planner = postgres and guess is None
    first_read = FIRST_READ_UP_TO if ask_planner else MATCHES_FIRST_UP_TO
    if walks:
        stmt = _walked_page(shape, name, reverse, after)
        params["reach"] = WALK_REACH
    elif search:
        stmt = _matches_first_page(shape, name, reverse, after)
        params["cap"] = first_read + 1
    elif query.is_filtered:
        stmt = _filtered_page(shape, name, reverse, after)
    else:
        stmt = _whole_list_page(name, reverse, after, sized)
    ridden: tuple[Any, ...] | None = None
    if rider is None:
        rows, extras = await _rows(connection, stmt, params, planned_each_time)
    else:
        with_rider = _with_rider(stmt, rider.stmt, name, reverse)
        rows, extras, ridden = await _rows_with_rider(
            connection, with_rider, params, rider, planned_each_time
        )
    estimate = int(guess.matches) if guess is not None else None
    if walks:
        if len(rows) <= limit:  # the walk ran out before a page's worth
            rows, extras = await _sorted_matches(connection, shape, name, reverse, after, params)
    elif search and _past(rows, extras, first_read, after):
        if ask_planner:
            rows, extras, estimate = await _broad_page(
                connection, shape, name, reverse, after, params, limit
            )
        else:  # too many to sort: walk the sort's index, as far as it takes
            stmt = _filtered_page(shape, name, reverse, after)
            rows, extras = await _rows(connection, stmt, params, words)
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    if not rows:
        empty: KeysetPage[UserRow] = KeysetPage(items=[], next_cursor=None, prev_cursor=None)
        return _Read(empty, extras, ridden, estimate)

    def key_of(row: UserRow) -> list[Any]:
        return [getattr(row, c.key) for c in sort_columns]

    has_next = more if not backwards else True
    has_prev = more if backwards else at is not None
    page = KeysetPage(
        items=rows,
        next_cursor=encode_cursor(query.sort, "n", key_of(rows[-1])) if has_next else None,
        prev_cursor=encode_cursor(query.sort, "p", key_of(rows[0])) if has_prev else None,
    )
    return _Read(page, extras, ridden, estimate)


async def _broad_page(
    connection: AsyncConnection,
    shape: _Shape,
    sort: str,
    reverse: bool,
    after: bool,
    params: dict[str, Any],
    limit: int,
) -> tuple[list[UserRow], tuple[Any, ...], int]:
    """The page of a search with more matches than its first read, with no statistics to
    guess by, as ``_rows`` gives it, and how many the planner expects: walked, or read and
    sorted (see FIRST_READ_UP_TO)."""
    planned = await driver_reads.plan(connection, _matching_of_all(shape), params)
    matches, everyone = (part["Plan Rows"] for part in planned["Plans"])
    if _walks(matches, everyone, limit + 1):
        walked = _walked_page(shape, sort, reverse, after)
        rows, extras = await _rows(connection, walked, params | {"reach": WALK_REACH}, False)
        if len(rows) > limit:
            return rows, extras, int(matches)
        # The walk ran out before a page's worth: the matches lie further along.
    rows, extras = await _sorted_matches(connection, shape, sort, reverse, after, params)
    return rows, extras, int(matches)


async def _sorted_matches(
    connection: AsyncConnection,
    shape: _Shape,
    sort: str,
    reverse: bool,
    after: bool,
    params: dict[str, Any],
) -> tuple[list[UserRow], tuple[Any, ...]]:
    """A search's page from all its matches read and sorted, up to MATCHES_FIRST_UP_TO of
    them; past that, too many to sort, the sort's index walked as far as it takes."""
    stmt = _matches_first_page(shape, sort, reverse, after)
    rows, extras = await _rows(connection, stmt, params | {"cap": MATCHES_FIRST_UP_TO + 1}, True)
    if _past(rows, extras, MATCHES_FIRST_UP_TO, after):
        stmt = _filtered_page(shape, sort, reverse, after)
        rows, extras = await _rows(connection, stmt, params, True)
    return rows, extras


def _past(rows: list[UserRow], extras: tuple[Any, ...], cap: int, after: bool) -> bool:
    """Whether a page read from a search's first ``cap`` matches (``_matches_first_page``)
    may lack rows of the page: more matched, or, from a cursor, none came back (the page's
    rows may lie past those read)."""
    return bool(extras[0] > cap) if rows else after


async def _rows(
    connection: AsyncConnection, stmt: Select[Any], params: dict[str, Any], words: bool
) -> tuple[list[UserRow], tuple[Any, ...]]:
    """The statement's rows as ``UserRow``s, and the columns past them (the same on every
    row: a count, an estimate) from the last row, or () when there is none. With ``words``
    (a search) the statement is planned for them."""
    fields = len(UserRow._fields)
    rows: list[UserRow] = []
    extras: tuple[Any, ...] = ()
    # All at once: iterating a result fetches its rows one call at a time.
    for row in await driver_reads.fetch_all(connection, stmt, params, plan_each_time=words):
        rows.append(UserRow._make(row[:fields]))
        extras = tuple(row[fields:])
    return rows, extras


@functools.lru_cache(maxsize=256)
def _with_rider(page: Select[Any], rider: Select[Any], sort: str, reverse: bool) -> Select[Any]:
    """The page's statement with the rider's row joined to it, its values on one of the
    page's rows (NULL on the others: fifty copies of it cost the driver more to read than
    the round trip they save).

    The page comes first and the rider is joined to it, not the other way round: PostgreSQL
    then reads the rider once (Materialize) and keeps the page's order from its index, with
    no sort on top. A page with no rows brings no rider either (see ``_rows_with_rider``).
    """
    listed = page.subquery("listed")
    ridden = rider.subquery("ridden")
    once = func.row_number().over() == literal_column("1")
    order = [listed.c[column.key] for column in _KEYSET[sort][0]]
    return (
        select(*listed.c, *(case((once, c)).label(f"ridden_{c.key}") for c in ridden.c))
        .select_from(listed)
        .outerjoin(ridden, true())
        .order_by(*(c.desc() for c in order) if reverse else order)
    )


async def _rows_with_rider(
    connection: AsyncConnection,
    stmt: Select[Any],
    params: dict[str, Any],
    rider: Rider,
    words: bool,
) -> tuple[list[UserRow], tuple[Any, ...], tuple[Any, ...] | None]:
    """``_rows`` of a statement made by ``_with_rider``, and the rider's row (None when it
    found none). An empty page brings no rider: the rider is then read on its own."""
    found = await driver_reads.fetch_all(
        connection, stmt, {**params, **rider.params}, plan_each_time=words
    )
    if not found:
        alone = await driver_reads.fetch_all(connection, rider.stmt, rider.params)
        return [], (), tuple(alone[0]) if alone else None
    fields = len(UserRow._fields)
    width = len(rider.stmt.selected_columns)
    rows: list[UserRow] = []
    ridden: tuple[Any, ...] | None = None
    for row in found:
        rows.append(UserRow._make(row[:fields]))
        if row[-width] is not None:  # the rider's first column: its key, never NULL
            ridden = tuple(row[-width:])
    return rows, tuple(found[-1][fields:-width]), ridden


async def get_user(session: AsyncSession, user_id: int) -> User | None:
    if not 0 < user_id <= MAX_ID:
        return None
    return await session.get(User, user_id)


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    stmt = select(User).where(User.email_key == email_key(email))
    return (await session.scalars(stmt)).one_or_none()


@asynccontextmanager
async def _writing(session: AsyncSession, user_id: int | None) -> AsyncIterator[None]:
    """Make the changes in the block and write them, in a savepoint.

    The database's refusals become domain errors, and a refusal undoes only the savepoint:
    the rest of the request's transaction (and every object loaded in it, such as the
    signed-in admin) stays usable for the page that explains what went wrong.
    """
    try:
        async with session.begin_nested():
            yield
            await session.flush()
    except IntegrityError as exc:
        if EMAIL_UNIQUE_MARK in str(exc.orig):
            raise DuplicateEmailError from None
        raise
    except StaleDataError:
        current = await session.get(User, user_id, populate_existing=True) if user_id else None
        raise StaleUserError(current) from None


EDITABLE = ("first_name", "last_name", "email", "is_active", "is_admin")


def _snapshot(user: User) -> dict[str, Any]:
    return {field: getattr(user, field) for field in EDITABLE}


async def _guard_admin_removal(session: AsyncSession, actor: Actor, user: User) -> None:
    """Refuse to take away (deactivate, demote, delete) the acting admin or the last admin."""
    if user.id == actor.user_id:
        raise SafetyRailError(
            "You cannot deactivate, demote or delete your own account. Ask another admin to do it."
        )
    if not (user.is_active and user.is_admin):
        return
    # Lock every active admin in one order, so two admins removing each other at the same
    # moment queue up instead of both passing the check (SQLite's write lock does the same).
    stmt = (
        select(User.id)
        .where(User.is_active.is_(True), User.is_admin.is_(True))
        .order_by(User.id)
        .with_for_update()
    )
    admins = (await session.scalars(stmt)).all()
    if not [admin_id for admin_id in admins if admin_id != user.id]:
        raise SafetyRailError(
            f"{user.full_name} is the last active admin. Make someone else an admin first."
        )


async def admin_exists(session: AsyncSession) -> bool:
    stmt = select(User.id).where(User.is_admin.is_(True)).limit(1)
    return (await session.execute(stmt)).first() is not None


async def create_user(
    session: AsyncSession, actor: Actor, data: UserCreate, password_hash: str
) -> User:
    user = User(
        first_name=data.first_name,
        last_name=data.last_name,
        email=data.email,
        password_hash=password_hash,
        is_active=data.is_active,
        is_admin=data.is_admin,
    )
    async with _writing(session, None):
        session.add(user)
    audit.record(
        session, actor, "user.create", target=user, changes=audit.diff({}, _snapshot(user))
    )
    return user


async def update_user(
    session: AsyncSession, actor: Actor, user: User, data: UserFields, version: int
) -> User:
    """Apply an edit made on ``version`` of the user; refuse it if the user moved on since."""
    if user.version != version:
        raise StaleUserError(user)
    before = _snapshot(user)
    if (before["is_active"] and not data.is_active) or (before["is_admin"] and not data.is_admin):
        await _guard_admin_removal(session, actor, user)
    async with _writing(session, user.id):
        for field in EDITABLE:
            setattr(user, field, getattr(data, field))
    changes = audit.diff(before, _snapshot(user))
    if changes:
        audit.record(session, actor, "user.update", target=user, changes=changes)
    return user


async def set_password(
    session: AsyncSession,
    actor: Actor,
    user: User,
    password_hash: str,
    *,
    must_change: bool = False,
) -> None:
    before = user.must_change_password
    async with _writing(session, user.id):
        user.password_hash = password_hash
        user.must_change_password = must_change
    changes = audit.diff({"must_change_password": before}, {"must_change_password": must_change})
    audit.record(session, actor, "user.password_set", target=user, changes=changes)


async def set_active(session: AsyncSession, actor: Actor, user: User, active: bool) -> None:
    if user.is_active and not active:
        await _guard_admin_removal(session, actor, user)
    before = user.is_active
    async with _writing(session, user.id):
        user.is_active = active
    if before != active:
        action = "user.activate" if active else "user.deactivate"
        changes = audit.diff({"is_active": before}, {"is_active": active})
        audit.record(session, actor, action, target=user, changes=changes)


async def delete_user(session: AsyncSession, actor: Actor, user: User) -> None:
    await _guard_admin_removal(session, actor, user)
    async with _writing(session, user.id):
        await session.delete(user)
    audit.record(session, actor, "user.delete", target=user)


async def rehash_password(session: AsyncSession, user: User, password_hash: str) -> None:
    """Store a stronger hash of the same password. Not an edit: the version stays."""
    await session.execute(
        update(User).where(User.id == user.id).values(password_hash=password_hash)
    )
    set_committed_value(user, "password_hash", password_hash)
