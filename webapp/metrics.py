"""The pool's figures as Prometheus metrics, right when several worker processes serve.

With one process, each app has its own registry. With several (``webapp serve --workers N``
sets ``PROMETHEUS_MULTIPROC_DIR``), every process writes its values to files in that folder and
a scrape, whichever worker answers it, adds up every live worker's: gauges are summed over the
live processes, counters and histograms over all of them.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

PREFIX = "webapp_db_pool_"
COUNTERS = {
    "checkouts": "connections handed to requests",
    "timeouts": "requests that got no connection within the pool timeout",
    "connects": "new database connections opened",
    "invalidations": "connections thrown away as unusable",
    "soft_invalidations": "connections marked for replacement at their next return",
    "disconnects": "dead connections found (by pre-ping or a failing statement)",
    "closed": "database connections closed",
}
GAUGES = {
    "size": "connections the pool keeps open",
    "max_overflow": "extra connections allowed under load",
    "in_use": "connections held by requests now",
    "idle": "open connections waiting in the pool",
    "overflow_in_use": "extra connections open now",
    "waiting": "requests waiting for a connection now",
    "leaked": "connections held longer than the leak threshold",
}
HISTOGRAMS = {
    "wait": "time a request waited for a connection",
    "hold": "time a request held its connection",
}
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class PoolMetrics:
    """Implements ``pool_monitor.MetricsSink``; one per app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # In multiprocess mode values live in files; the scrape reads them, not a registry.
        registry = None if multiprocess_mode() else self.registry
        self._counters = {
            name: Counter(PREFIX + name, doc, registry=registry) for name, doc in COUNTERS.items()
        }
        self._gauges = {
            name: Gauge(PREFIX + name, doc, registry=registry, multiprocess_mode="livesum")
            for name, doc in GAUGES.items()
        }
        self._histograms = {
            name: Histogram(f"{PREFIX}{name}_seconds", doc, registry=registry, buckets=BUCKETS)
            for name, doc in HISTOGRAMS.items()
        }

    def count(self, name: str) -> None:
        self._counters[name].inc()

    def observe(self, name: str, seconds: float) -> None:
        self._histograms[name].observe(seconds)

    def gauges(self, figures: dict[str, int]) -> None:
        for name, value in figures.items():
            self._gauges[name].set(value)

    def exposition(self) -> bytes:
        if not multiprocess_mode():
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    def close(self) -> None:
        """At shutdown: this process's gauges stop counting towards the live sum."""
        if multiprocess_mode():
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
