"""The servers under load, each in its own process group, pinned to CPUs with ``taskset``."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from bench import client
from bench.cluster import HOST, free_port
from bench.config import REPO_DIR, BenchError

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def _tail(log: Path, lines: int = 8) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return " | ".join(text.strip().splitlines()[-lines:])


def _wait_ready(proc: subprocess.Popen[bytes], base: str, path: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode}: {_tail(log)}")
        try:
            if client.fetch(base, path, timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"server not answering {path} after {READY_TIMEOUT:.0f} s: {_tail(log)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the group we started (uvicorn lets in-flight requests end), then SIGKILL."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextmanager
def serving(
    cmd: list[str],
    *,
    env: Mapping[str, str],
    cpus: str,
    cwd: Path,
    log: Path,
    ready_path: str,
) -> Iterator[str]:
    """Run ``cmd`` (given ``--port {port}`` placeholders) and yield its base URL."""
    port = free_port()
    argv = ["taskset", "-c", cpus, *(part.format(port=port) for part in cmd)]
    base = f"http://{HOST}:{port}"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        _wait_ready(proc, base, ready_path, log)
        yield base
    finally:
        _stop(proc)


def console_command(bin_dir: Path, workers: int) -> list[str]:
    webapp = str(bin_dir / "webapp")
    return [webapp, "serve", "--host", HOST, "--port", "{port}", "--workers", str(workers)]


def floor_command(bin_dir: Path) -> list[str]:
    # The same server as the console's: uvicorn (httptools, access log) on Python's own event
    # loop, as `webapp serve` runs it (the floor's figures were the same on uvloop's).
    uvicorn = str(bin_dir / "uvicorn")
    return [
        uvicorn, "bench.floor:create_app", "--factory", "--app-dir", str(REPO_DIR),
        "--host", HOST, "--port", "{port}", "--loop", "asyncio",
    ]  # fmt: skip
