"""What this process's connection pool is doing: counts, timings, history and leaks.

SQLAlchemy's pool events say when a connection is opened, handed out, returned or thrown
away; they cannot say who is waiting or for how long. ``MonitoredQueuePool`` times its one
public entry point, ``connect()``, to fill that gap. Everything here runs on the event loop's
thread (the async engine calls the pool from greenlets on that thread), so plain counters do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.util.queue import QueueCommon

from webapp.fair_queue import FairAsyncQueue
from webapp.timings import Timings, Window

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 2.0  # one point of history every two seconds...
HISTORY_POINTS = 150  # ...for the last five minutes

# "GET /users/{user_id}": set by the session dependency, read when a connection is checked out.
current_route: ContextVar[str | None] = ContextVar("current_route", default=None)


class MetricsSink(Protocol):
    """Where figures are mirrored as they change (Prometheus); see ``webapp.metrics``."""

    def count(self, name: str) -> None: ...
    def observe(self, name: str, seconds: float) -> None: ...
    def gauges(self, figures: dict[str, int]) -> None: ...


class MonitoredQueuePool(AsyncAdaptedQueuePool):
    """The async engine's usual pool, timing each request for a connection, and handing
    connections out first come, first served (``webapp.fair_queue``)."""

    _queue_class: type[QueueCommon[ConnectionPoolEntry]] = FairAsyncQueue
    monitor: PoolMonitor | None = None

    def connect(self) -> PoolProxiedConnection:
        if self.monitor is None:
            return super().connect()
        with self.monitor.acquiring():
            return super().connect()

    def recreate(self) -> MonitoredQueuePool:
        pool = super().recreate()  # engine.dispose() builds a fresh pool of the same class
        assert isinstance(pool, MonitoredQueuePool)
        pool.monitor = self.monitor
        return pool


@dataclass(slots=True)
class Holding:
    route: str
    since: float  # monotonic
    reported: bool = False


@dataclass(frozen=True, slots=True)
class Leak:
    route: str
    age_seconds: float


@dataclass(frozen=True, slots=True)
class Sample:
    """One point of history: the most in use and waiting since the last point, idle now."""

    at: float  # monotonic
    in_use: int
    idle: int
    waiting: int


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    size: int
    max_overflow: int
    maximum: int
    timeout_seconds: float
    in_use: int
    idle: int
    overflow_in_use: int
    waiting: int
    checkouts: int
    timeouts: int
    timeouts_recent: int
    connects: int
    invalidations: int
    soft_invalidations: int
    disconnects: int
    closed: int
    wait: Timings
    hold: Timings
    leak_threshold_seconds: float
    leaks: list[Leak] = field(default_factory=list)
    history: list[Sample] = field(default_factory=list)


class PoolMonitor:
    """Attached to one engine's pool; ``snapshot()`` reads every figure at once."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_overflow: int,
        leak_threshold: float,
        metrics: MetricsSink | None = None,
    ) -> None:
        pool = engine.sync_engine.pool
        if not isinstance(pool, MonitoredQueuePool):
            raise TypeError(f"the engine must use MonitoredQueuePool, not {type(pool).__name__}")
        pool.monitor = self
        self.engine = engine
        self.max_overflow = max_overflow
        self.leak_threshold = leak_threshold
        self.metrics = metrics
        self.waiting = 0
        self.counts = dict.fromkeys(
            ("checkouts", "timeouts", "connects", "invalidations", "soft_invalidations")
            + ("disconnects", "closed"),
            0,
        )
        self._held: dict[int, Holding] = {}
        self._wait = Window()
        self._hold = Window()
        self._timeouts = Window()
        self._history: deque[Sample] = deque(maxlen=HISTORY_POINTS)
        self._peak_in_use = 0
        self._peak_waiting = 0
        for name in ("connect", "checkout", "checkin", "detach", "invalidate", "soft_invalidate"):
            event.listen(pool, name, getattr(self, f"_on_{name}"))
        event.listen(pool, "close", self._on_close)
        event.listen(engine.sync_engine, "handle_error", self._on_error)

    @property
    def _pool(self) -> MonitoredQueuePool:
        pool = self.engine.sync_engine.pool
        assert isinstance(pool, MonitoredQueuePool)
        return pool

    # --- acquisition (timed by MonitoredQueuePool.connect) ---------------------------------

    @contextmanager
    def acquiring(self) -> Iterator[None]:
        self.waiting += 1
        self._peak_waiting = max(self._peak_waiting, self.waiting)
        started = time.monotonic()
        try:
            yield
        except sa_exc.TimeoutError:
            self._count("timeouts")
            self._timeouts.add(1)
            raise
        else:
            waited = time.monotonic() - started
            self._wait.add(waited)
            if self.metrics:
                self.metrics.observe("wait", waited)
        finally:
            self.waiting -= 1

    # --- pool events -----------------------------------------------------------------------

    def _on_connect(self, _dbapi: Any, _record: ConnectionPoolEntry) -> None:
        self._count("connects")

    def _on_checkout(self, _dbapi: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        self._count("checkouts")
        route = current_route.get() or "(outside a request)"
        self._held[id(record)] = Holding(route=route, since=time.monotonic())
        self._peak_in_use = max(self._peak_in_use, self._pool.checkedout())

    def _on_checkin(self, _dbapi: Any, record: ConnectionPoolEntry) -> None:
        self._release(record)

    def _on_detach(self, _dbapi: Any, record: ConnectionPoolEntry) -> None:
        self._release(record)

    def _on_invalidate(self, _dbapi: Any, _record: ConnectionPoolEntry, exc: Any) -> None:
        self._count("invalidations")
        if isinstance(exc, sa_exc.DisconnectionError):  # found dead before use (webapp.db)
            self._count("disconnects")

    def _on_soft_invalidate(self, _dbapi: Any, _record: ConnectionPoolEntry, _exc: Any) -> None:
        self._count("soft_invalidations")

    def _on_close(self, _dbapi: Any, _record: ConnectionPoolEntry) -> None:
        self._count("closed")

    def _on_error(self, context: ExceptionContext) -> None:
        if context.is_disconnect:  # a dead connection, found by pre-ping or by a statement
            self._count("disconnects")

    def _release(self, record: ConnectionPoolEntry) -> None:
        holding = self._held.pop(id(record), None)
        if holding is not None:
            held = time.monotonic() - holding.since
            self._hold.add(held)
            if self.metrics:
                self.metrics.observe("hold", held)
            if holding.reported:
                log.warning("connection held by %s was returned after %.1f s", holding.route, held)

    def _count(self, name: str) -> None:
        self.counts[name] += 1
        if self.metrics:
            self.metrics.count(name)

    def publish(self) -> None:
        """Set the Prometheus gauges (in use, idle, waiting...) to what they are now.

        Called as /metrics is scraped and at every sample (every SAMPLE_SECONDS), not at
        every checkout and checkin: seven gauges set three times a request were about 1 %
        of a list page's CPU. Across workers a scrape shows its own worker's figures as
        they are and the others' as of their last sample.
        """
        if self.metrics:
            self.metrics.gauges(self._gauges())

    def _gauges(self) -> dict[str, int]:
        pool = self._pool
        return {
            "size": pool.size(),
            "max_overflow": self.max_overflow,
            "in_use": pool.checkedout(),
            "idle": pool.checkedin(),
            "overflow_in_use": max(pool.overflow(), 0),
            "waiting": self.waiting,
            "leaked": sum(1 for h in self._held.values() if self._is_leak(h, time.monotonic())),
        }

    # --- leaks and history -----------------------------------------------------------------

    def _is_leak(self, holding: Holding, now: float) -> bool:
        return now - holding.since >= self.leak_threshold

    def leaks(self) -> list[Leak]:
        """Connections held past the threshold, oldest first; each is logged once."""
        now = time.monotonic()
        found = []
        for holding in sorted(self._held.values(), key=lambda h: h.since):
            if not self._is_leak(holding, now):
                continue
            age = now - holding.since
            if not holding.reported:
                holding.reported = True
                log.warning(
                    "possible connection leak: %s has held a database connection for %.1f s "
                    "(threshold %g s)",
                    holding.route,
                    age,
                    self.leak_threshold,
                )
            found.append(Leak(route=holding.route, age_seconds=round(age, 1)))
        return found

    def sample(self) -> None:
        pool = self._pool
        self._history.append(
            Sample(time.monotonic(), self._peak_in_use, pool.checkedin(), self._peak_waiting)
        )
        self._peak_in_use = pool.checkedout()
        self._peak_waiting = self.waiting
        self.leaks()
        self.publish()

    async def run(self, interval: float = SAMPLE_SECONDS) -> None:
        """Sample history and look for leaks until cancelled (a task of the lifespan)."""
        while True:
            self.sample()
            await asyncio.sleep(interval)

    def snapshot(self) -> PoolSnapshot:
        pool = self._pool
        gauges = self._gauges()
        return PoolSnapshot(
            size=gauges["size"],
            max_overflow=self.max_overflow,
            maximum=gauges["size"] + self.max_overflow,
            timeout_seconds=pool.timeout(),
            in_use=gauges["in_use"],
            idle=gauges["idle"],
            overflow_in_use=gauges["overflow_in_use"],
            waiting=self.waiting,
            timeouts_recent=self._timeouts.count(),
            wait=self._wait.timings(),
            hold=self._hold.timings(),
            leak_threshold_seconds=self.leak_threshold,
            leaks=self.leaks(),
            history=list(self._history),
            **self.counts,
        )
