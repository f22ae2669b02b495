"""``make bench-cpu``: the server's CPU per list page, console against floor, in one process.

``make bench`` measures what the issue asks (requests/s under wrk), but on this shared
two-core machine those rates drift by a quarter or more from one minute to the next, more
than most changes to the console move them. Here the console and the floor app run in one
process, pinned to one CPU, and are called directly (ASGI, no sockets, no uvicorn: what
both would spend there is the same), 32 requests at a time, in alternating rounds: drift
hits both alike, and what is compared is CPU time alone. The ratio is lower than wrk's
(uvicorn's share of each request, the same for both, is left out) and the console's
garbage-collector settings apply to both. A diagnostic for changes, not the issue's figure.

Environment: BENCH_CPU_USERS=100000 BENCH_CPU_ROUNDS=12 BENCH_CPU_BATCH=320, and from
``make bench``: BENCH_CONNECTIONS, BENCH_SERVER_CPUS, BENCH_POOL_SIZE, BENCH_FLOOR_COUNT,
BENCH_PG_*.
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from bench import client, scenarios
from bench.config import BenchConfig, BenchError
from bench.run import ADMIN_EMAIL, Bench, log, prepared_bench

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def _send(
    app: App, method: str, target: str, headers: list[tuple[str, str]], body: bytes = b""
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One HTTP request straight into an ASGI app, as uvicorn would hand it over: status,
    headers and body as the app sent them (nothing decoded: this is what is timed)."""
    path, _, query = target.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": query.encode(), "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000), "state": {},
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }  # fmt: skip
    received = False
    started: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never goes away
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return started.get("status", 0), list(started.get("headers", [])), b"".join(chunks)


async def call(
    app: App, method: str, target: str, headers: list[tuple[str, str]], body: bytes = b""
) -> client.Response:
    """``_send``, its answer read as ``bench.client`` reads one over HTTP."""
    status, raw_headers, raw_body = await _send(app, method, target, headers, body)
    decoded = [(k.decode(), v.decode()) for k, v in raw_headers]
    return client.Response(status, decoded, raw_body.decode(errors="replace"))


async def sign_in(console: App, password: str) -> list[tuple[str, str]]:
    """The headers a signed-in browser sends: through the real sign-in form."""
    page = await call(console, "GET", "/login", [])
    form = {"email": ADMIN_EMAIL, "password": password, "next": "", "csrf_token": page.csrf_token()}
    headers = [("cookie", page.cookie()), ("content-type", "application/x-www-form-urlencoded")]
    answer = await call(console, "POST", "/login", headers, urlencode(form).encode())
    if answer.status != 303 or not answer.cookie():
        raise BenchError(f"sign-in refused (status {answer.status})")
    return [("host", "127.0.0.1:8000"), ("cookie", answer.cookie())]


@dataclass(frozen=True, slots=True)
class Figures:
    name: str
    console_us: float  # CPU per console page
    floor_us: float  # CPU per floor page 1, in the rounds between
    ratios: list[float]  # floor ÷ console, round by round
    console_faults: float  # minor page faults per console page
    floor_faults: float


async def _batch(
    app: App, target: str, headers: list[tuple[str, str]], n: int, at_once: int
) -> tuple[float, int]:
    async def one_by_one(count: int) -> None:
        for _ in range(count):
            await _send(app, "GET", target, headers)

    before, faults = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    await asyncio.gather(*(one_by_one(n // at_once) for _ in range(at_once)))
    spent = time.process_time() - before
    return spent, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


async def measure(
    bench: Bench, pages: list[tuple[str, str]], rounds: int, batch: int
) -> list[Figures]:
    os.environ.update(bench.app_env())
    os.environ.update(
        BENCH_FLOOR_DSN=bench.cluster.dsn,
        BENCH_FLOOR_COUNT=bench.cfg.floor_count,
        BENCH_POOL_SIZE=str(bench.cfg.pool_size),
    )
    from bench.floor import create_app as create_floor
    from webapp.main import create_app as create_console

    console, floor = create_console(), create_floor()
    at_once = bench.cfg.connections
    per_round = batch // at_once * at_once
    figures = []
    async with console.router.lifespan_context(console), floor.router.lifespan_context(floor):
        signed_in = await sign_in(console, bench.admin_password)
        for name, target in pages:
            answer = await call(console, "GET", target, signed_in)
            if answer.status != 200 or "<tbody" not in answer.body:
                raise BenchError(f"{name}: {target} answered {answer.status} without its table")
        for name, target in pages:
            await _batch(console, target, signed_in, per_round, at_once)  # warm-up
            await _batch(floor, "/users", [], per_round, at_once)
            spent = {"console": 0.0, "floor": 0.0}
            faults = {"console": 0, "floor": 0}
            ratios = []
            for _ in range(rounds):
                c_spent, c_faults = await _batch(console, target, signed_in, per_round, at_once)
                f_spent, f_faults = await _batch(floor, "/users", [], per_round, at_once)
                spent["console"] += c_spent
                spent["floor"] += f_spent
                faults["console"] += c_faults
                faults["floor"] += f_faults
                ratios.append(f_spent / c_spent)
            pages_run = rounds * per_round
            figures.append(
                Figures(
                    name,
                    1e6 * spent["console"] / pages_run,
                    1e6 * spent["floor"] / pages_run,
                    ratios,
                    faults["console"] / pages_run,
                    faults["floor"] / pages_run,
                )
            )
            log(f"{name}: done")
    return figures


def render(users: int, rounds: int, batch: int, at_once: int, figures: list[Figures]) -> str:
    lines = [
        f"CPU per page in one process, {users:,} users, {rounds} rounds of {batch} pages "
        f"each way, {at_once} at a time (console page, then floor page 1)",
        "",
        "| page | console µs | floor µs | floor ÷ console | median round | rounds' range "
        "| faults/page console | floor |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        lines.append(
            f"| {f.name} | {f.console_us:,.0f} | {f.floor_us:,.0f} | "
            f"{f.floor_us / f.console_us:.3f} | {statistics.median(f.ratios):.3f} | "
            f"{min(f.ratios):.3f}-{max(f.ratios):.3f} | {f.console_faults:.1f} | "
            f"{f.floor_faults:.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    cfg = BenchConfig.from_env()
    users = int(os.environ.get("BENCH_CPU_USERS", "100000"))
    rounds = int(os.environ.get("BENCH_CPU_ROUNDS", "12"))
    batch = int(os.environ.get("BENCH_CPU_BATCH", "320"))
    cpus = {int(c) for c in cfg.server_cpus.split(",") if c.strip().isdigit()}
    try:
        with prepared_bench(cfg, "webapp-bench-cpu-") as bench:
            bench.seed_to(users)
            pages = [
                ("page 1", "/users"),
                ("deep page", scenarios.deep_page_path(bench.cluster.dsn, users)),
                ("sorted (-created)", "/users?sort=-created"),
            ]
            if cpus:
                os.sched_setaffinity(0, cpus)  # after the cluster and seed: they run anywhere
            os.chdir(bench.workdir)  # no stray .env is read by the console's settings
            figures = asyncio.run(measure(bench, pages, rounds, batch))
        print(render(users, rounds, batch, cfg.connections, figures))
        return 0
    except BenchError as exc:
        log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
