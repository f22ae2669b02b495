"""Start and stop the pool's watchers with the app: monitor, metrics, probe connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import State

from webapp.config import Settings
from webapp.metrics import PoolMetrics
from webapp.pool_monitor import PoolMonitor
from webapp.server_stats import Probe, warn_if_over_limit


async def start_monitoring(
    state: State, engine: AsyncEngine, settings: Settings
) -> Callable[[], Awaitable[None]]:
    """Watch ``engine``'s pool; returns the coroutine function that stops watching."""
    metrics = PoolMetrics()
    monitor = PoolMonitor(
        engine,
        max_overflow=settings.max_overflow,
        leak_threshold=settings.leak_threshold,
        metrics=metrics,
    )
    probe = Probe(settings)
    state.pool_monitor, state.pool_metrics, state.probe = monitor, metrics, probe
    await warn_if_over_limit(probe)
    task = asyncio.create_task(monitor.run(), name="pool-monitor")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        monitor.metrics = None  # closing the pool next is not load
        metrics.close()
        await probe.dispose()

    return stop
