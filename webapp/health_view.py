"""What the health page and ``/health/pool.json`` show: plain-language alerts, the chart, JSON."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

from webapp.pool_monitor import HISTORY_POINTS, SAMPLE_SECONDS, PoolSnapshot, Sample
from webapp.server_stats import ServerStats

BUSY_SHARE = 0.8  # of the most connections: "busy" before "saturated"
SERVER_NEAR_LIMIT = 0.9  # of max_connections
IDLE_IN_TRANSACTION_WARN_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Alert:
    level: Literal["error", "warning"]
    title: str
    text: str


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def alerts(pool: PoolSnapshot, server: ServerStats) -> list[Alert]:
    found: list[Alert] = []
    if not server.reachable:
        found.append(
            Alert(
                "error",
                "The database is not answering",
                f"It did not answer ({server.error}). Pages that need it say “try again” "
                "until it is back.",
            )
        )
    limit = f"up to {pool.timeout_seconds:g} s"
    if pool.in_use >= pool.maximum:
        waiting = ""
        if pool.waiting:
            waiting = f" {_plural(pool.waiting, 'request is', 'requests are')} waiting now."
        found.append(
            Alert(
                "error",
                "Every database connection is in use",
                f"This worker may open {pool.maximum} connections and all are busy.{waiting} "
                f"A new request waits {limit} for one, then is asked to try again.",
            )
        )
    elif pool.in_use >= BUSY_SHARE * pool.maximum:
        found.append(
            Alert(
                "warning",
                "Almost every database connection is in use",
                f"{pool.in_use} of the {pool.maximum} connections this worker may open are busy.",
            )
        )
    if pool.timeouts_recent:
        found.append(
            Alert(
                "error",
                "Requests are being turned away",
                f"In the last 5 minutes {_plural(pool.timeouts_recent, 'request')} waited "
                f"{limit} for a database connection, got none, and had to be asked to try "
                "again.",
            )
        )
    if pool.leaks:
        routes = ", ".join(sorted({leak.route for leak in pool.leaks}))
        found.append(
            Alert(
                "warning",
                "Connections held for unusually long",
                f"{_plural(len(pool.leaks), 'connection has', 'connections have')} been held for "
                f"more than {pool.leak_threshold_seconds:g} s by: {routes}. Usually a very slow "
                "query, or code that does not give its connection back. Listed below until "
                "returned.",
            )
        )
    if server.usage is not None and server.usage >= SERVER_NEAR_LIMIT:
        found.append(
            Alert(
                "error",
                "The database server is close to its connection limit",
                f"{server.connections} of its {server.max_connections} connections are open. "
                "When none are left, every application using this database is refused, not "
                "only this one.",
            )
        )
    room = server.headroom
    if room is not None and room.exceeds:
        found.append(
            Alert(
                "warning",
                "Configured for more connections than the server allows",
                f"At full load the console may open {room.planned} connections but the "
                f"server has room for {room.available}. Lower WEBAPP_POOL_SIZE or "
                "WEBAPP_MAX_OVERFLOW, or put PgBouncer in between.",
            )
        )
    oldest = server.oldest_idle_in_transaction
    if oldest is not None and oldest[0] >= IDLE_IN_TRANSACTION_WARN_SECONDS:
        found.append(
            Alert(
                "warning",
                "A transaction has been left open",
                f"A connection of “{oldest[1] or 'an unnamed client'}” has sat in an unfinished "
                f"transaction for {oldest[0]:.0f} s. It keeps a connection and may block others.",
            )
        )
    return found


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    css_class: str
    points: str
    latest: int


@dataclass(frozen=True, slots=True)
class Guide:
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    """An SVG line chart, drawn in ``_health_chart.html`` with attributes and classes only."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    y_max: int
    series: list[Series]
    guides: list[Guide]
    minutes: int


def chart(pool: PoolSnapshot, now: float | None = None) -> Chart:
    width, height, left, right, top, bottom = 640, 180, 34, 630, 10, 158
    span = SAMPLE_SECONDS * HISTORY_POINTS
    now = time.monotonic() if now is None else now
    samples = [*pool.history, Sample(now, pool.in_use, pool.idle, pool.waiting)]
    samples = [s for s in samples if now - s.at <= span]
    y_max = max([pool.maximum, 1] + [s.waiting for s in samples] + [s.in_use for s in samples])

    def x(at: float) -> float:
        return right - (now - at) / span * (right - left)

    def y(value: float) -> float:
        return bottom - value / y_max * (bottom - top)

    def points(values: list[int]) -> str:
        return " ".join(f"{x(s.at):.1f},{y(v):.1f}" for s, v in zip(samples, values, strict=True))

    series = [
        Series("In use", "in-use", points([s.in_use for s in samples]), pool.in_use),
        Series("Idle", "idle", points([s.idle for s in samples]), pool.idle),
        Series("Waiting", "waiting", points([s.waiting for s in samples]), pool.waiting),
    ]
    guides = [Guide(y(pool.maximum), f"most ({pool.maximum})")]
    if pool.max_overflow:
        guides.append(Guide(y(pool.size), f"pool size ({pool.size})"))
    return Chart(width, height, left, right, top, bottom, y_max, series, guides, round(span / 60))


def to_json(pool: PoolSnapshot, server: ServerStats, now: float | None = None) -> dict[str, Any]:
    """Every figure, for machines. Times in the history are seconds before ``now``."""
    now = time.monotonic() if now is None else now
    figures = asdict(pool)
    figures["history"] = [
        {
            "seconds_ago": round(now - s.at, 1),
            "in_use": s.in_use,
            "idle": s.idle,
            "waiting": s.waiting,
        }
        for s in pool.history
    ]
    server_figures = asdict(server)
    room = server.headroom
    if room is not None:
        server_figures["headroom"].update(
            planned=room.planned, available=room.available, exceeds=room.exceeds
        )
    return {
        "pid": os.getpid(),
        "pool": figures,
        "server": server_figures,
        "alerts": [asdict(a) for a in alerts(pool, server)],
    }
