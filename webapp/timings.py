"""Durations over a moving window (the pool's waits and holds): count, percentiles, longest.

Each duration is counted in a bucket 4 % wide, in a set of counts kept per slice of the
window. Adding one is a dictionary update; reading the percentiles adds up at most a few
dozen buckets a slice, whatever the traffic; the window always spans its whole time. (A
list of every duration, which this replaced, had to be capped, at 20,000: the last 40 s of
a pool serving 500 requests a second, not the five minutes it was shown as, and the health
page sorted it on every view, a quarter of the page's time.)
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

WINDOW_SECONDS = 300.0
WINDOW_SLICES = 30  # forgotten 10 s at a time
SMALLEST = 1e-6  # seconds: anything shorter counts as 0
GROWTH = 1.04  # each bucket's upper bound over its lower: a percentile is off by 2 % at most
_LOG_GROWTH = math.log(GROWTH)


@dataclass(frozen=True, slots=True)
class Timings:
    """Nearest-rank percentiles over the window, in milliseconds (to within 2 %; the
    longest exactly)."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float


def _bucket(seconds: float) -> int:
    """0 for up to SMALLEST, else b for (SMALLEST·GROWTH^(b-1), SMALLEST·GROWTH^b]."""
    if seconds <= SMALLEST:
        return 0
    return max(1, math.ceil(math.log(seconds / SMALLEST) / _LOG_GROWTH))


def _middle(bucket: int) -> float:
    """The bucket's geometric middle, in seconds: within 2 % of anything counted in it."""
    return 0.0 if bucket == 0 else SMALLEST * GROWTH ** (bucket - 0.5)


@dataclass(slots=True)
class _Slice:
    index: int  # covers [index, index + 1) slice lengths of the monotonic clock
    counts: dict[int, int] = field(default_factory=dict)
    count: int = 0
    longest: float = 0.0


class Window:
    """Durations younger than ``seconds`` (give or take the slice being forgotten)."""

    def __init__(self, seconds: float = WINDOW_SECONDS, slices: int = WINDOW_SLICES) -> None:
        self.seconds = seconds
        self._slice_seconds = seconds / slices
        self._slices: deque[_Slice] = deque()

    def add(self, value: float, now: float | None = None) -> None:
        index = int((time.monotonic() if now is None else now) // self._slice_seconds)
        if not self._slices or index > self._slices[-1].index:
            self._slices.append(_Slice(index))
        last = self._slices[-1]
        bucket = _bucket(value)
        last.counts[bucket] = last.counts.get(bucket, 0) + 1
        last.count += 1
        last.longest = max(last.longest, value)

    def _recent(self, now: float | None) -> deque[_Slice]:
        cutoff = (time.monotonic() if now is None else now) - self.seconds
        oldest_kept = math.floor(cutoff / self._slice_seconds)
        while self._slices and self._slices[0].index < oldest_kept:
            self._slices.popleft()
        return self._slices

    def count(self, now: float | None = None) -> int:
        return sum(s.count for s in self._recent(now))

    def timings(self, now: float | None = None) -> Timings:
        counts: dict[int, int] = {}
        total, longest = 0, 0.0
        for piece in self._recent(now):
            for bucket, n in piece.counts.items():
                counts[bucket] = counts.get(bucket, 0) + n
            total += piece.count
            longest = max(longest, piece.longest)
        if not total:
            return Timings(0, 0.0, 0.0, 0.0, 0.0)
        ranks = {p: max(1, math.ceil(total * p / 100)) for p in (50, 95, 99)}
        found: dict[int, float] = {}
        seen = 0
        for bucket in sorted(counts):
            seen += counts[bucket]
            for p, rank in ranks.items():
                if p not in found and seen >= rank:
                    found[p] = min(_middle(bucket), longest)
            if len(found) == len(ranks):
                break

        def ms(seconds: float) -> float:
            return round(seconds * 1000, 2)

        return Timings(total, ms(found[50]), ms(found[95]), ms(found[99]), ms(longest))
