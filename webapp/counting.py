"""How many rows a list has, without counting a million rows on every request."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

# Counting this many rows costs about a millisecond; past it, ask the planner.
EXACT_UP_TO = 1000


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
