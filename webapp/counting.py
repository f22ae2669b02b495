"""How many rows a list has, without counting a million rows on every request."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, case, func, literal_column, null, select
from sqlalchemy.ext.asyncio import AsyncSession

# Counting this many rows costs about a millisecond; past it, ask the planner.
EXACT_UP_TO = 1000
# Past this many rows (by its statistics) a whole table is sized from them, once a bounded
# count has shown it is past EXACT_UP_TO.
TABLE_ESTIMATE_FROM = 10 * EXACT_UP_TO
# Past this many rows by its statistics a whole table is not counted at all: the bounded
# count (a thousand rows read) was an eighth of what PostgreSQL spent on a page of the list.
# For the statistics to hide a table of EXACT_UP_TO rows or fewer, 98 % of its rows would
# have gone since they were last taken; autovacuum takes them again once a fifth has gone.
UNCOUNTED_FROM = 50 * EXACT_UP_TO


@dataclass(frozen=True, slots=True)
class Count:
    value: int
    exact: bool


def bounded_count(rows: Select[Any]) -> ColumnElement[int]:
    """How many rows ``rows`` selects, counting no further than EXACT_UP_TO + 1 (a number
    in the SQL, not a parameter: see ``crud._keyset_order``)."""
    head = rows.limit(literal_column(str(EXACT_UP_TO + 1))).subquery("head")
    return select(func.count()).select_from(head).scalar_subquery()


def table_estimate(table: Table) -> ColumnElement[float]:
    """PostgreSQL's figure for a table's rows, from its statistics (no scan): the planner's
    own arithmetic, rows per page at the last ANALYZE times the pages now. Negative if the
    table was never analysed."""
    name = table.fullname.replace("'", "''")
    return literal_column(
        "(SELECT CASE WHEN c.relpages > 0"
        " THEN c.reltuples / c.relpages * (pg_relation_size(c.oid)"
        " / current_setting('block_size')::float8) ELSE c.reltuples END"
        f" FROM pg_class c WHERE c.oid = to_regclass('{name}'))"
    )


def table_size(table: Table) -> tuple[ColumnElement[int | None], ColumnElement[float]]:
    """A whole table's size, as two columns to read beside its rows: a bounded count (NULL,
    never run, when the statistics say the table is past UNCOUNTED_FROM rows) and
    ``table_estimate``. ``table_count`` reads them."""
    estimate = table_estimate(table)
    rows = select(*table.primary_key.columns)
    # PostgreSQL runs a subquery in a CASE only when its branch is taken. (The number is
    # written in the SQL, as bounded_count's is.)
    large = estimate >= literal_column(str(UNCOUNTED_FROM))
    counted = case((large, null()), else_=bounded_count(rows))
    return counted, estimate


def table_count(counted: int | None, estimate: float | None) -> Count | None:
    """The count of a whole table from ``table_size``'s columns (or ``bounded_count`` and
    ``table_estimate``), or None when neither settles it (between EXACT_UP_TO and
    TABLE_ESTIMATE_FROM rows: ask the planner)."""
    if counted is None:  # not counted: the statistics say the table is large
        return Count(round(estimate or 0), False)
    if counted <= EXACT_UP_TO:
        return Count(counted, True)
    if estimate is not None and estimate >= TABLE_ESTIMATE_FROM:
        return Count(round(estimate), False)
    return None


async def count_rows(session: AsyncSession, rows: Select[Any], *, exact: bool = False) -> Count:
    """The number of rows ``rows`` selects: exact when small (or asked for), else estimated.

    A bounded count (``LIMIT EXACT_UP_TO + 1``) settles small results exactly. A larger
    result on PostgreSQL gets the planner's estimate, labelled as such by the caller; SQLite
    (the embedded default, for small deployments) always counts.
    """
    if exact or session.get_bind().dialect.name != "postgresql":
        total = await session.scalar(select(func.count()).select_from(rows.subquery()))
        return Count(int(total or 0), True)
    counted = int(await session.scalar(select(bounded_count(rows))) or 0)
    if counted <= EXACT_UP_TO:
        return Count(counted, True)
    return Count(max(await planner_rows(session, rows), counted), False)


async def count_table(session: AsyncSession, table: Table, *, exact: bool = False) -> Count:
    """How many rows ``table`` has: exact up to EXACT_UP_TO; past it, on PostgreSQL, from
    its statistics when they say it is large, else the planner's estimate."""
    rows = select(*table.primary_key.columns)
    if exact or session.get_bind().dialect.name != "postgresql":
        return await count_rows(session, rows, exact=exact)
    counted, estimate = (await session.execute(select(*table_size(table)))).one()
    found = table_count(counted, estimate)
    if found is not None:
        return found
    return Count(max(await planner_rows(session, rows), counted or 0), False)


async def planner_rows(session: AsyncSession, rows: Select[Any]) -> int:
    """PostgreSQL's estimate of how many rows ``rows`` returns (from its statistics)."""
    compiled = rows.compile(dialect=session.get_bind().dialect)
    connection = await session.connection()
    result = await connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params)
    plan = result.scalar_one()
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])
