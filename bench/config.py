"""What a run does, from ``BENCH_*`` environment variables (defaults: the full run)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
FULL_SIZES = (100_000, 1_000_000)
# Each measured run. A p99 over 10 s at ~450 requests/s rests on the 45 slowest; one stall
# from outside the server (its core is shared with the machine's other services) holds up
# all 32 requests in flight and moved it by a quarter. Over 30 s it rests on 135.
FULL_DURATION = 30.0
# A console read and the floor's page 1 are measured in turns of about this long
# (bench.run.Bench.measure_in_turns): 6 turns each in a full run.
TURN_SECONDS = 5.0
MIN_CREATE_DURATION = 10.0


class BenchError(Exception):
    """The bench cannot go on; the message says why, in one line."""


def _int_list(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = os.environ.get(name, "")
    try:
        values = tuple(int(part.replace("_", "")) for part in raw.split(",") if part.strip())
    except ValueError:
        raise BenchError(f"{name} must be comma-separated integers, not {raw!r}") from None
    if any(v <= 0 for v in values):
        raise BenchError(f"{name}: every value must be above 0")
    return tuple(sorted(set(values))) or default


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        raise BenchError(f"{name} must be a number, not {raw!r}") from None
    if value <= 0:
        raise BenchError(f"{name} must be above 0")
    return value


def _text(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


@dataclass(frozen=True, slots=True)
class BenchConfig:
    sizes: tuple[int, ...]  # seeded users, ascending: each size adds to the one before
    duration: float  # seconds measured per scenario
    warmup: float  # seconds of load, not measured, before each scenario
    connections: int  # wrk connections for the read scenarios
    create_connections: int  # wrk connections posting creates (bcrypt-bound)
    timeout: float  # wrk gives up on a response after this long (counted as an error)
    search: str  # a common surname (about 1 user in 120)
    domain_search: str  # an email domain: a fifth of the users, too many to sort
    person_search: str  # a search for one person by name ("": a seeded user's, found alone)
    server_cpus: str  # taskset list for the app servers
    load_cpus: str  # taskset list for wrk
    all_cpus: str  # for the "--workers 2 beside one worker" pair
    floor_count: str  # what the floor counts on page 1: exact | estimate | none
    # Connections each app keeps, the same for both: the console as WEBAPP_POOL_SIZE with no
    # overflow (an overflow connection is closed as it comes back, so a steady load above
    # the pool size keeps opening new ones), the floor as psycopg_pool's min = max.
    pool_size: int
    pg_bin: Path
    pg_locale: str
    pg_shared_buffers: str
    results: Path

    @property
    def create_duration(self) -> float:
        """A create takes a second or more at bcrypt's 12 rounds: a 3 s smoke run would
        finish few, or none; creates are measured for 10 s at least."""
        return max(self.duration, MIN_CREATE_DURATION)

    @property
    def is_smoke(self) -> bool:
        return self.duration < FULL_DURATION or max(self.sizes) < FULL_SIZES[0]

    @classmethod
    def from_env(cls) -> BenchConfig:
        ncpu = os.cpu_count() or 1
        last = ncpu - 1
        floor_count = _text("BENCH_FLOOR_COUNT", "none")
        if floor_count not in ("exact", "estimate", "none"):
            raise BenchError("BENCH_FLOOR_COUNT must be exact, estimate or none")
        return cls(
            sizes=_int_list("BENCH_SIZES", FULL_SIZES),
            duration=_number("BENCH_DURATION", FULL_DURATION),
            warmup=_number("BENCH_WARMUP", 3.0),
            connections=int(_number("BENCH_CONNECTIONS", 32)),
            # Two hashes run at once per worker (WEBAPP_HASH_CONCURRENCY): four connections
            # keep the hasher busy all the time; more would only queue behind it.
            create_connections=int(_number("BENCH_CREATE_CONNECTIONS", 4)),
            timeout=_number("BENCH_TIMEOUT", 10.0),
            search=_text("BENCH_SEARCH", "smith"),
            domain_search=_text("BENCH_SEARCH_DOMAIN", "corp.example"),
            person_search=_text("BENCH_SEARCH_PERSON", ""),
            server_cpus=_text("BENCH_SERVER_CPUS", "0"),
            load_cpus=_text("BENCH_LOAD_CPUS", str(last)),
            all_cpus=_text("BENCH_ALL_CPUS", f"0-{last}" if last else "0"),
            floor_count=floor_count,
            pool_size=int(_number("BENCH_POOL_SIZE", 10)),
            pg_bin=Path(_text("BENCH_PG_BIN", "/usr/lib/postgresql/15/bin")),
            pg_locale=_text("BENCH_PG_LOCALE", "C.UTF-8"),
            pg_shared_buffers=_text("BENCH_PG_SHARED_BUFFERS", "1GB"),
            results=Path(_text("BENCH_RESULTS", str(BENCH_DIR / "results.md"))),
        )
