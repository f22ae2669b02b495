"""How many rows a list has, without counting a million rows on every request."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

# Counting this many rows costs about a millisecond; past it, ask the planner.
EXACT_UP_TO = 1000
# Past this many rows (by its statistics) a whole table is sized from them, once a bounded
# count has shown it is past EXACT_UP_TO: both figures come back from one statement.
TABLE_ESTIMATE_FROM = 10 * EXACT_UP_TO

# The planner's own arithmetic: rows per page at the last ANALYZE, times the pages now.
_TABLE_ROWS = (
    "SELECT (SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT :bound) AS head),"
    " (SELECT CASE WHEN c.relpages > 0"
    " THEN c.reltuples / c.relpages * (pg_relation_size(c.oid)"
    " / current_setting('block_size')::float8) ELSE c.reltuples END"
    " FROM pg_class c WHERE c.oid = to_regclass(:name))"
)


@dataclass(frozen=True, slots=True)
class Count:
    value: int
    exact: bool


async def count_rows(session: AsyncSession, rows: Select[Any], *, exact: bool = False) -> Count:
    """The number of rows ``rows`` selects: exact when small (or asked for), else estimated.

    A bounded count (``LIMIT EXACT_UP_TO + 1``) settles small results exactly. A larger
    result on PostgreSQL gets the planner's estimate, labelled as such by the caller; SQLite
    (the embedded default, for small deployments) always counts.
    """
    if exact or session.get_bind().dialect.name != "postgresql":
        total = await session.scalar(select(func.count()).select_from(rows.subquery()))
        return Count(int(total or 0), True)
    bounded = select(func.count()).select_from(rows.limit(EXACT_UP_TO + 1).subquery())
    counted = int(await session.scalar(bounded) or 0)
    if counted <= EXACT_UP_TO:
        return Count(counted, True)
    return Count(max(await planner_rows(session, rows), counted), False)


async def planner_rows(session: AsyncSession, rows: Select[Any]) -> int:
    """PostgreSQL's estimate of how many rows ``rows`` returns (from its statistics)."""
    compiled = rows.compile(dialect=session.get_bind().dialect)
    connection = await session.connection()
    result = await connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params)
    plan = result.scalar_one()
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


async def count_table(session: AsyncSession, table: Table, *, exact: bool = False) -> Count:
    """How many rows ``table`` has: exact up to EXACT_UP_TO; past it, on PostgreSQL, from
    its statistics when they say it is large (a catalog read, no scan), else as
    ``count_rows`` estimates. One statement in the common cases."""
    bind = session.get_bind()
    if exact or bind.dialect.name != "postgresql":
        return await count_rows(session, select(*table.primary_key.columns), exact=exact)
    sql = _TABLE_ROWS.format(table=bind.dialect.identifier_preparer.format_table(table))
    params = {"bound": EXACT_UP_TO + 1, "name": table.fullname}
    counted, estimate = (await session.execute(text(sql), params)).one()
    if counted <= EXACT_UP_TO:
        return Count(int(counted), True)
    if estimate is not None and estimate >= TABLE_ESTIMATE_FROM:
        return Count(round(estimate), False)
    return Count(
        max(await planner_rows(session, select(*table.primary_key.columns)), counted), False
    )
