"""The database server's side: round trip, who is connected, and room for our connections.

These look-ups, and the health page's sign-in check, use the worker's probe connection: one
of its own, outside the pool, kept open (``make_probe_engine``). The health page and
``/readyz`` must answer most of all when every pooled connection is taken, and a burst of
them must not open connections of its own: they take turns on the one, and requests that
come while a look-up is under way wait for its answer (``Probe``). It counts in the
connection arithmetic (``PROBE_CONNECTIONS``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from webapp.config import Settings
from webapp.db import check_socket

log = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 2  # libpq's connect_timeout counts in whole seconds, 2 at least
# The probe's connections per worker, on top of its pool's: in every sum of what may be open.
PROBE_CONNECTIONS = 1
ACTIVITY_ROWS = 50

_ACTIVITY = text(
    """
    SELECT coalesce(application_name, '') AS application_name,
           coalesce(host(client_addr), 'local') AS client,
           coalesce(state, 'unknown') AS state,
           count(*) AS connections,
           max(extract(epoch FROM now() - state_change))
               FILTER (WHERE state IN ('idle in transaction', 'idle in transaction (aborted)'))
               AS oldest_idle_in_transaction
    FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    """
)
_LIMITS = text(
    "SELECT current_setting('max_connections')::int, "
    "current_setting('superuser_reserved_connections')::int"
)


def make_probe_engine(settings: Settings) -> AsyncEngine:
    """The worker's probe connection: a pool of PROBE_CONNECTIONS, opened at the first
    look-up and kept. A request waits up to PROBE_TIMEOUT_SECONDS for it (then the database
    counts as unavailable); on PostgreSQL it is checked before each use as the pool's are
    (``webapp.db.check_socket``) and replaced if the server closed it."""
    connect_args: dict[str, Any] = {}
    at_rest: dict[str, Any] = {}
    if settings.is_sqlite:
        connect_args["timeout"] = PROBE_TIMEOUT_SECONDS
    else:
        at_rest["isolation_level"] = "AUTOCOMMIT"  # it only reads: no transaction to end
        connect_args["application_name"] = f"webapp:{os.getpid()}"
        connect_args["connect_timeout"] = PROBE_TIMEOUT_SECONDS
        if settings.pgbouncer:
            connect_args["prepare_threshold"] = None
        else:
            connect_args["options"] = f"-c statement_timeout={PROBE_TIMEOUT_SECONDS * 1000}"
    engine = create_async_engine(
        settings.database_url,
        pool_size=PROBE_CONNECTIONS,
        max_overflow=0,
        pool_timeout=PROBE_TIMEOUT_SECONDS,
        pool_pre_ping=settings.is_sqlite,
        connect_args=connect_args,
        **at_rest,
    )
    if not settings.is_sqlite:
        event.listen(engine.sync_engine, "checkout", check_socket)
    return engine


class Probe:
    """The probe engine, and the server look-ups under way on it: callers that come while
    one is under way share its answer, so a thousand ``/readyz`` at once make one round
    trip at a time, not a thousand connections."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_probe_engine(settings)
        self._under_way: dict[bool, asyncio.Future[ServerStats]] = {}

    async def stats(self, *, detail: bool = True) -> ServerStats:
        look_up = self._under_way.get(detail)
        if look_up is None:
            look_up = asyncio.ensure_future(server_stats(self.engine, self.settings, detail=detail))
            self._under_way[detail] = look_up
            look_up.add_done_callback(self._done)
        # Shielded: a caller that goes away does not cancel the others' answer.
        return await asyncio.shield(look_up)

    def _done(self, look_up: asyncio.Future[ServerStats]) -> None:
        for detail, under_way in list(self._under_way.items()):
            if under_way is look_up:
                del self._under_way[detail]

    async def dispose(self) -> None:
        await self.engine.dispose()


@dataclass(frozen=True, slots=True)
class Activity:
    application_name: str
    client: str
    state: str
    connections: int
    ours: bool


@dataclass(frozen=True, slots=True)
class Headroom:
    """The most connections every worker on every host may open, against the server's limit."""

    workers: int
    hosts: int
    per_worker: int
    max_connections: int
    superuser_reserved: int
    reserve: int

    @property
    def planned(self) -> int:
        return self.hosts * self.workers * self.per_worker

    @property
    def available(self) -> int:
        return max(self.max_connections - self.superuser_reserved - self.reserve, 0)

    @property
    def exceeds(self) -> bool:
        return self.planned > self.available


@dataclass(frozen=True, slots=True)
class ServerStats:
    reachable: bool
    error: str | None = None
    round_trip_ms: float | None = None
    # PostgreSQL only:
    max_connections: int | None = None
    connections: int | None = None  # every client connection on the server, this one included
    activity: list[Activity] = field(default_factory=list)
    oldest_idle_in_transaction: tuple[float, str] | None = None  # seconds, application_name
    headroom: Headroom | None = None

    @property
    def usage(self) -> float | None:
        if self.max_connections is None or self.connections is None:
            return None
        return self.connections / self.max_connections


def headroom(settings: Settings, max_connections: int, superuser_reserved: int) -> Headroom:
    return Headroom(
        workers=settings.workers,
        hosts=settings.hosts,
        per_worker=settings.pool_size + settings.max_overflow + PROBE_CONNECTIONS,
        max_connections=max_connections,
        superuser_reserved=superuser_reserved,
        reserve=settings.connection_reserve,
    )


def error_kind(exc: Exception) -> str:
    """Named by kind only: driver messages can carry host names and user names."""
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else None
    return type(orig if orig is not None else exc).__name__


async def server_stats(
    probe: AsyncEngine, settings: Settings, *, detail: bool = True
) -> ServerStats:
    """A round trip and, on PostgreSQL with ``detail``, who is connected and the limits."""
    try:
        async with probe.connect() as conn:
            started = time.perf_counter()
            await conn.execute(text("SELECT 1"))
            rtt = (time.perf_counter() - started) * 1000
            if not detail or probe.dialect.name != "postgresql":
                return ServerStats(reachable=True, round_trip_ms=rtt)
            return await _postgres_stats(conn, settings, rtt)
    except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, OSError) as exc:
        # TimeoutError: the probe connection stayed taken for PROBE_TIMEOUT_SECONDS.
        return ServerStats(reachable=False, error=error_kind(exc))


async def _postgres_stats(conn: AsyncConnection, settings: Settings, rtt: float) -> ServerStats:
    max_connections, superuser_reserved = (await conn.execute(_LIMITS)).one()
    rows = (await conn.execute(_ACTIVITY)).all()
    ours = f"webapp:{os.getpid()}"
    activity = [
        Activity(r.application_name, r.client, r.state, r.connections, r.application_name == ours)
        for r in rows
    ]
    oldest = max(
        (
            (float(r.oldest_idle_in_transaction), r.application_name)
            for r in rows
            if r.oldest_idle_in_transaction is not None
        ),
        default=None,
    )
    activity.sort(key=lambda a: (not a.ours, not a.application_name.startswith("webapp:")))
    return ServerStats(
        reachable=True,
        round_trip_ms=rtt,
        max_connections=max_connections,
        connections=sum(r.connections for r in rows) + 1,
        activity=activity[:ACTIVITY_ROWS],
        oldest_idle_in_transaction=oldest,
        headroom=headroom(settings, max_connections, superuser_reserved),
    )


async def warn_if_over_limit(probe: Probe) -> None:
    """At start-up, once: say so in the log if every worker at full load could be refused."""
    if probe.settings.is_sqlite:
        return
    stats = await probe.stats()
    room = stats.headroom
    if room is not None and room.exceeds:
        log.warning(
            "at full load the console may open %d connections (%d host(s) x %d worker(s) x "
            "(pool size + overflow + probe = %d)) but the database allows %d (max_connections %d, "
            "minus %d reserved for superusers and %d kept for other clients): some would be "
            "refused. Lower WEBAPP_POOL_SIZE / WEBAPP_MAX_OVERFLOW or put PgBouncer in between.",
            room.planned,
            room.hosts,
            room.workers,
            room.per_worker,
            room.available,
            room.max_connections,
            room.superuser_reserved,
            room.reserve,
        )
