"""Load with ``wrk``: one run, its figures read from the JSON line the Lua ``done()`` prints."""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import subprocess
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.config import BENCH_DIR, BenchError

LUA_DIR = BENCH_DIR / "wrk"
MARK = "BENCH_RESULT "


@dataclass(frozen=True, slots=True)
class Result:
    requests: int
    seconds: float
    bytes: int
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors, timeouts, and answers with another status than expected
    error_detail: str = ""  # e.g. "timeout 3, status 303: 12"
    # Each latency wrk recorded (µs) and how many responses took it, ascending.
    latencies: tuple[tuple[int, int], ...] = ()

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def kb_per_response(self) -> float:
        return self.bytes / self.requests / 1024 if self.requests else 0.0


def percentile(latencies: Sequence[tuple[int, int]], p: float) -> float:
    """The latency (µs) below which ``p`` % of the responses came, ranked as wrk ranks."""
    total = sum(count for _, count in latencies)
    rank = min(total, math.floor(p / 100 * total) + 1)  # wrk: round(p/100 * count + 0.5)
    seen = 0
    for value, count in latencies:
        seen += count
        if seen >= rank:
            return float(value)
    return 0.0


def combined(results: Sequence[Result]) -> Result:
    """Runs taken in turns, as one run: their requests over their time, their percentiles
    over all their latencies."""
    latencies: Counter[int] = Counter()
    for result in results:
        for value, count in result.latencies:
            latencies[value] += count
    merged = tuple(sorted(latencies.items()))
    return Result(
        requests=sum(r.requests for r in results),
        seconds=sum(r.seconds for r in results),
        bytes=sum(r.bytes for r in results),
        p50_ms=percentile(merged, 50) / 1000,
        p99_ms=percentile(merged, 99) / 1000,
        errors=sum(r.errors for r in results),
        error_detail="; ".join(r.error_detail for r in results if r.error_detail),
        latencies=merged,
    )


@dataclass(frozen=True, slots=True)
class Load:
    """What to send: a URL, a Lua script from bench/wrk, and the script's environment."""

    url: str
    script: str = "get.lua"
    expect: int = 200
    env: Mapping[str, str] | None = None


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed: apt-get install -y wrk (make bench does it)")


def start(
    load: Load, *, seconds: float, connections: int, cpus: str, timeout: float
) -> subprocess.Popen[str]:
    # BENCH_RUN tells one wrk run from the next (a create's warm-up from its measured run).
    env = {**os.environ, **(load.env or {}), "BENCH_EXPECT": str(load.expect)}
    env["BENCH_RUN"] = secrets.token_hex(4)
    argv = [
        "taskset", "-c", cpus, "wrk", "--threads", "1", "--connections", str(connections),
        "--duration", f"{max(1, round(seconds))}s", "--timeout", f"{timeout:g}s",
        "--script", load.script, load.url,
    ]  # fmt: skip
    # cwd: the scripts load common.lua by a relative path. A session of its own: Ctrl-C
    # reaches only the bench, which ends this run.
    return subprocess.Popen(
        argv, cwd=LUA_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def finish(proc: subprocess.Popen[str]) -> Result:
    try:
        output, _ = proc.communicate()
    finally:
        stop(proc)
    line = next((ln for ln in output.splitlines() if ln.startswith(MARK)), None)
    if proc.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({proc.returncode}): {' | '.join(output.splitlines()[-5:])}")
    raw = json.loads(line.removeprefix(MARK))
    kinds = ("connect", "read", "write", "timeout")
    socket_errors = sum(raw[k] for k in kinds)
    detail = [f"{k} {raw[k]}" for k in kinds if raw[k]]
    detail += [f"status {code}: {n}" for code, n in sorted(raw["by_status"].items())]
    return Result(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        bytes=raw["bytes"],
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        # "unexpected" already holds every 4xx and 5xx that wrk counts as "status".
        errors=socket_errors + raw["unexpected"],
        error_detail=", ".join(detail),
        latencies=tuple((int(value), int(count)) for value, count in raw["latencies"]),
    )


def run(load: Load, *, seconds: float, connections: int, cpus: str, timeout: float) -> Result:
    return finish(start(load, seconds=seconds, connections=connections, cpus=cpus, timeout=timeout))
