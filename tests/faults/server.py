"""The console as production runs it: ``webapp serve`` in a child process (a real uvicorn)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2

from tests.factories import ADMIN_EMAIL, PASSWORD, TEST_SECRET

START_TIMEOUT = 60.0


def webapp_env(database_url: str, **settings: str) -> dict[str, str]:
    """The child's environment: none of this process's ``WEBAPP_*``, only these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEBAPP_", "PROMETHEUS"))}
    env.update(
        WEBAPP_DATABASE_URL=database_url,
        WEBAPP_SECRET_KEY=TEST_SECRET,
        WEBAPP_BCRYPT_ROUNDS="4",
        WEBAPP_SETUP_ENABLED="false",
    )
    env.update({f"WEBAPP_{k.upper()}": v for k, v in settings.items()})
    return env


def webapp(args: list[str], env: dict[str, str], cwd: Path, stdin: str = "") -> str:
    result = subprocess.run(
        [sys.executable, "-m", "webapp.cli", *args],
        input=stdin,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def create_admin(env: dict[str, str], cwd: Path) -> None:
    """``webapp create-admin``, the password piped in on standard input, as a script would."""
    webapp(
        ["create-admin", "--email", ADMIN_EMAIL, "--first-name", "Ada", "--last-name", "Admin"],
        env,
        cwd,
        stdin=PASSWORD + "\n",
    )


class AppServer:
    """``python -m webapp.cli serve --port P``; its log goes to a file shown on failure."""

    def __init__(self, env: dict[str, str], cwd: Path, port: int) -> None:
        self.env, self.cwd, self.port = env, cwd, port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = cwd / f"serve-{port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> AppServer:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "webapp.cli", "serve", "--port", str(self.port)],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        with httpx2.Client(base_url=self.url, timeout=5) as http:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"webapp serve exited at start:\n{self.log()}")
                try:
                    if http.get("/healthz").status_code == 200:
                        return self
                except httpx2.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"webapp serve did not start:\n{self.log()}")
                time.sleep(0.1)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, as an orchestrator stops it; the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""
