"""The results as markdown: the machine, the settings, and one table per question."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime

from bench.cluster import Cluster
from bench.config import REPO_DIR, TURN_SECONDS, BenchConfig
from bench.load import Result

# The targets, at a million users, one worker, against the floor's page 1.
MIN_RPS_RATIO = 0.6
MAX_P99_RATIO = 1.5
MAX_P99_UNDER_CREATES = 2.0


@dataclass(frozen=True, slots=True)
class Row:
    users: int
    app: str  # "floor" or "console"
    scenario: str
    result: Result
    kind: str = "read"  # read | create | mixed | workers
    workers: int = 1
    created: int = 0  # create: rows the create loads added (warm-up and measured run)
    background: Result | None = None  # mixed: the create load that ran meanwhile
    target: bool = False  # read: held to the list pages' targets (scenarios.Page.target)
    floor: Result | None = None  # read: the floor's page 1, measured in turns with it


def _first_line(path: str, prefix: str) -> str:
    try:
        with open(path) as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith(prefix)), "?")
    except OSError:
        return "?"


def _git_commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO_DIR), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    )
    return done.stdout.strip() or "?"


def describe_machine(cluster: Cluster) -> list[tuple[str, str]]:
    mem_kb = _first_line("/proc/meminfo", "MemTotal")
    mem = f"{int(mem_kb.split()[0]) / 1024**2:.1f} GiB" if mem_kb[:1].isdigit() else mem_kb
    load1, load5, _ = os.getloadavg()
    return [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("cpus (nproc)", str(os.cpu_count())),
        ("cpu model", _first_line("/proc/cpuinfo", "model name")),
        ("memory", mem),
        ("os", f"{platform.system()} {platform.release()}"),
        ("python", platform.python_version()),
        ("postgresql", str(cluster.scalar("SELECT version()")).split(" on ")[0]),
        ("load average at start", f"{load1:.2f} (1 min), {load5:.2f} (5 min)"),
        ("app commit", _git_commit()),
    ]


def _rps(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _ratio(value: float, ok: bool | None) -> str:
    mark = "" if ok is None else (" ✓" if ok else " ✗")
    return f"{value:.2f}{mark}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _reads(rows: list[Row]) -> list[str]:
    out: list[list[str]] = []
    reads = [row for row in rows if row.kind == "read"]
    for row in reads:
        r = row.result
        rps_ratio = p99_ratio = "—"
        floor = row.floor
        if floor is not None and floor.rps and floor.p99_ms:
            rps = r.rps / floor.rps
            p99 = r.p99_ms / floor.p99_ms
            rps_ratio = _ratio(rps, rps >= MIN_RPS_RATIO if row.target else None)
            p99_ratio = _ratio(p99, p99 <= MAX_P99_RATIO if row.target else None)
        out.append(
            [
                f"{row.users:,}",
                row.app,
                row.scenario,
                _rps(r.rps),
                _ms(r.p50_ms),
                _ms(r.p99_ms),
                str(r.errors),
                f"{r.kb_per_response:.1f}",
                rps_ratio,
                p99_ratio,
            ]  # fmt: skip
        )
    header = ["users", "app", "scenario", "req/s", "p50 ms", "p99 ms", "errors", "KB/resp",
              "req/s ÷ floor", "p99 ÷ floor"]  # fmt: skip
    return _table(header, out)


def _creates(rows: list[Row]) -> list[str]:
    out = []
    for row in rows:
        if row.kind == "create":
            r = row.result
            out.append([f"{row.users:,}", _rps(r.rps), _ms(r.p50_ms), _ms(r.p99_ms),
                        str(r.errors), f"{row.created:,}"])  # fmt: skip
    header = ["users", "creates/s", "p50 ms", "p99 ms", "errors", "rows added"]
    return _table(header, out)


def _mixed(rows: list[Row]) -> list[str]:
    alone = {r.users: r.result for r in rows if r.app == "console" and r.scenario == "page 1"}
    out = []
    for row in rows:
        if row.kind != "mixed" or row.background is None or row.users not in alone:
            continue
        r, a, bg = row.result, alone[row.users], row.background
        ratio = r.p99_ms / a.p99_ms if a.p99_ms else 0.0
        out.append(
            [
                f"{row.users:,}",
                _ms(a.p99_ms),
                _ms(r.p99_ms),
                _ratio(ratio, ratio < MAX_P99_UNDER_CREATES),
                _rps(a.rps),
                _rps(r.rps),
                _rps(bg.rps),
                str(r.errors + bg.errors),
            ]  # fmt: skip
        )
    header = ["users", "p99 ms alone", "p99 ms with creates", "ratio", "req/s alone",
              "req/s with creates", "creates/s meanwhile", "errors"]  # fmt: skip
    return _table(header, out)


def _workers(rows: list[Row]) -> list[str]:
    out = []
    for row in rows:
        if row.kind == "workers":
            r = row.result
            out.append([f"{row.users:,}", str(row.workers), _rps(r.rps), _ms(r.p50_ms),
                        _ms(r.p99_ms), str(r.errors)])  # fmt: skip
    return _table(["users", "workers", "req/s", "p50 ms", "p99 ms", "errors"], out)


def render(cfg: BenchConfig, machine: list[tuple[str, str]], rows: list[Row]) -> str:
    sizes = ", ".join(f"{n:,}" for n in cfg.sizes)
    lines = ["# Benchmark results", ""]
    if cfg.is_smoke:
        lines += [
            "**A smoke run** (short or small): it shows the bench works, not figures to quote.",
            "",
        ]
    lines += ["Made by `make bench` (see bench/run.py for the settings).", ""]
    lines += _table(["machine", ""], [[k, v] for k, v in machine])
    lines += [
        "",
        f"Users seeded: {sizes} (COPY; then VACUUM ANALYZE and CHECKPOINT). "
        f"PostgreSQL 15: throw-away cluster, shared_buffers={cfg.pg_shared_buffers}, "
        f"locale {cfg.pg_locale}. Console: `webapp serve`, WEBAPP_ENV=production, "
        f"bcrypt 12 rounds, pool {cfg.pool_size} connections (no overflow), signed in "
        "through the login form. "
        f"Floor: Starlette + psycopg_pool ({cfg.pool_size} kept) + Jinja2, the console's page-1 "
        "SQL, "
        f"count: {cfg.floor_count}. Both under uvicorn on CPU {cfg.server_cpus}; wrk "
        f"(1 thread) on CPU {cfg.load_cpus}; PostgreSQL unpinned. Each run: "
        f"{cfg.warmup:g} s warm-up, then {cfg.duration:g} s measured.",
        "",
        "Errors: socket errors, timeouts (over "
        f"{cfg.timeout:g} s) and any answer with another status than expected (200 for "
        "pages, 303 for a create), so a redirect to the sign-in page counts.",
        "",
        f"## Reads: one worker, {cfg.connections} connections",
        "",
        "Each console read is measured in turns with the floor's page 1, after a warm-up "
        f"of both: turns of about {TURN_SECONDS:g} s (console, floor, floor, console, "
        "console, ...) for the run's duration each, the two apps' turns summed (requests "
        "over time; p50 and p99 over all their latencies): the machine drifts by a third "
        "within minutes, and so both meet it alike. The floor row under each console row "
        "is its turns. "
        f"✓/✗: the issue's targets for "
        f"the list pages (req/s ≥ {MIN_RPS_RATIO} × floor, p99 ≤ {MAX_P99_RATIO} × floor; "
        "they apply at 1,000,000 users). A common surname's search and the health page "
        'have no mark: figures to watch (README, "Benchmark", says why).',
        "",
        *_reads(rows),
        "",
        f"## Creates: POST /users, {cfg.create_connections} connections (bcrypt dominates)",
        "",
        f"Measured for {cfg.create_duration:g} s. Rows added: by the warm-up and the "
        "measured run, counted in the database (at least the requests answered).",
        "",
        *_creates(rows),
        "",
        "## Page 1 while creates are hashed in the background",
        "",
        f"A create load ({cfg.create_connections} connections) runs through the list's "
        f"warm-up and measured run. Target: p99 under {MAX_P99_UNDER_CREATES:g} × alone.",
        "",
        *_mixed(rows),
        "",
        f"## Page 1: `--workers 2` beside one worker (server on CPUs {cfg.all_cpus})",
        "",
        "Both unpinned, sharing the cores with PostgreSQL and wrk: a figure to watch, "
        "not a target.",
        "",
        *_workers(rows),
        "",
    ]
    return "\n".join(lines)
