"""``make bench``: seed a throw-away PostgreSQL, load the console and the floor, print a table.

Environment (defaults: the full run, about 20 minutes on 2 cores): BENCH_SIZES=100000,1000000
BENCH_DURATION=30 BENCH_WARMUP=3 BENCH_CONNECTIONS=32 BENCH_CREATE_CONNECTIONS=4
BENCH_TIMEOUT=10 BENCH_SEARCH=smith BENCH_SEARCH_DOMAIN=corp.example
BENCH_SEARCH_PERSON= (a seeded user's full name that finds at most 5 users)
BENCH_FLOOR_COUNT=none BENCH_POOL_SIZE=10 BENCH_SERVER_CPUS=0 BENCH_LOAD_CPUS=1
BENCH_RESULTS=bench/results.md. A smoke run:
``BENCH_SIZES=20000 BENCH_DURATION=3 make bench``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from bench import client, load, report, scenarios, servers
from bench.client import SignedIn
from bench.cluster import Cluster, running_cluster
from bench.config import TURN_SECONDS, BenchConfig, BenchError
from bench.load import Load, Result
from bench.report import Row

ADMIN_EMAIL = "bench.admin@example.com"
SEED = 2026  # webapp seed --random-seed: the same users in every run
BIN_DIR = Path(sys.executable).parent


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass
class Bench:
    cfg: BenchConfig
    cluster: Cluster
    workdir: Path  # cwd of every app process: no stray .env or dev secret is picked up
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    signed_in: SignedIn | None = None
    seeded: int = 0
    rows: list[Row] = field(default_factory=list)

    # --- the app's processes ---------------------------------------------------------

    def app_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEBAPP_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(
            WEBAPP_DATABASE_URL=self.cluster.url,
            WEBAPP_ENV="production",
            WEBAPP_SECRET_KEY=self.secret_key,
            WEBAPP_BCRYPT_ROUNDS="12",  # the production default: the create figure is honest
            WEBAPP_SETUP_ENABLED="false",
            WEBAPP_POOL_SIZE=str(self.cfg.pool_size),
            WEBAPP_MAX_OVERFLOW="0",
        )
        return env

    def webapp(self, *args: str, stdin: str = "") -> None:
        done = subprocess.run(
            [str(BIN_DIR / "webapp"), *args], input=stdin, text=True, capture_output=True,
            env=self.app_env(), cwd=self.workdir, start_new_session=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise BenchError(f"webapp {args[0]} failed: {done.stderr.strip()[-300:]}")

    def prepare(self) -> None:
        self.webapp("migrate")
        self.webapp(
            "create-admin", "--email", ADMIN_EMAIL, "--first-name", "Bench", "--last-name",
            "Admin", stdin=self.admin_password + "\n",
        )  # fmt: skip

    def seed_to(self, users: int) -> None:
        count = users - self.seeded
        # The same users in every run: the searches find the same names, run after run.
        # The seed draws from where the ids end, and the creates measured at the last size
        # added a number of users that varies: they go first, and their ids are reused.
        self.cluster.execute(
            f"DELETE FROM users WHERE email_key LIKE '{scenarios.BENCH_EMAILS}'"
            f" AND email_key <> '{ADMIN_EMAIL}';"
            " SELECT setval('users_id_seq', (SELECT max(id) FROM users))"
        )
        started = time.monotonic()
        self.webapp("seed", "--count", str(count), "--random-seed", str(SEED))
        seeded_in = time.monotonic() - started
        # A table in service has been vacuumed (visibility map, hint bits) and checkpointed:
        # measure that, not the aftermath of a bulk load.
        self.cluster.execute("VACUUM (ANALYZE) users")
        self.cluster.execute("CHECKPOINT")
        self.seeded = users
        log(f"seeded {count:,} users in {seeded_in:.1f} s ({users:,} in all), vacuumed")

    @contextmanager
    def console(self, workers: int = 1, cpus: str | None = None) -> Iterator[str]:
        with servers.serving(
            servers.console_command(BIN_DIR, workers),
            env=self.app_env(),
            cpus=cpus or self.cfg.server_cpus,
            cwd=self.workdir,
            log=self.workdir / "console.log",
            ready_path="/healthz",
        ) as base:
            if self.signed_in is None:  # the signed cookie outlives a restart: sign in once
                self.signed_in = client.sign_in(base, ADMIN_EMAIL, self.admin_password)
            yield base

    @contextmanager
    def floor(self) -> Iterator[str]:
        env = {
            **os.environ,
            "BENCH_FLOOR_DSN": self.cluster.dsn,
            "BENCH_FLOOR_COUNT": self.cfg.floor_count,
            "BENCH_POOL_SIZE": str(self.cfg.pool_size),
        }
        with servers.serving(
            servers.floor_command(BIN_DIR),
            env=env,
            cpus=self.cfg.server_cpus,
            cwd=self.workdir,
            log=self.workdir / "floor.log",
            ready_path="/healthz",
        ) as base:
            yield base

    @property
    def session(self) -> SignedIn:
        assert self.signed_in is not None, "sign in first"
        return self.signed_in

    # --- loads -----------------------------------------------------------------------

    def start_load(self, target: Load, seconds: float, connections: int) -> subprocess.Popen[str]:
        return load.start(
            target, seconds=seconds, connections=connections, cpus=self.cfg.load_cpus,
            timeout=self.cfg.timeout,
        )  # fmt: skip

    def measure(
        self, target: Load, connections: int | None = None, seconds: float | None = None
    ) -> Result:
        """A warm-up, not counted, then the measured run."""
        conns = connections or self.cfg.connections
        load.finish(self.start_load(target, self.cfg.warmup, conns))
        return load.finish(self.start_load(target, seconds or self.cfg.duration, conns))

    def measure_in_turns(self, console: Load, floor: Load) -> tuple[Result, Result]:
        """A console page and the floor's page 1, each warmed up, then measured in turns of
        about TURN_SECONDS (console, floor, floor, console, console, ...) for the run's
        duration each, every app's turns summed into one result. This machine drifts by a
        third within minutes (the floor's page 1 has gone from 580 to 370 req/s and back):
        taken in short turns, in an order that undoes a steady drift, both meet it alike,
        and their ratio is that of the two apps, not of two minutes."""
        conns, cfg = self.cfg.connections, self.cfg
        for target in (console, floor):
            load.finish(self.start_load(target, cfg.warmup, conns))
        turns = max(1, round(cfg.duration / TURN_SECONDS))
        taken: tuple[list[Result], list[Result]] = ([], [])
        for turn in range(turns):
            order = (0, 1) if turn % 2 == 0 else (1, 0)
            for which in order:
                target = (console, floor)[which]
                taken[which].append(
                    load.finish(self.start_load(target, cfg.duration / turns, conns))
                )
        return load.combined(taken[0]), load.combined(taken[1])

    def page_load(self, base: str, page: scenarios.Page, cookie: str = "") -> Load:
        page.check(base, cookie)
        return Load(base + page.path, env={"BENCH_COOKIE": cookie})

    def create_load(self, base: str) -> tuple[Load, str]:
        """POST /users with a unique email per request; checked once by hand first."""
        password = secrets.token_urlsafe(12)
        form = {
            "first_name": "Bench", "last_name": "Check",
            "email": f"bench.check.{secrets.token_hex(6)}@example.com",
            "password": password, "password_confirm": password, "is_active": "yes",
            "csrf_token": self.session.csrf_token,
        }  # fmt: skip
        answer = client.fetch(base, "/users", cookie=self.session.cookie, form=form)
        if answer.status != 303 or urlsplit(answer.header("Location")).path != "/users":
            raise BenchError(f"create: POST /users answered {answer.status} {answer.body[:200]}")
        nonce = secrets.token_hex(4)
        env = {
            "BENCH_COOKIE": self.session.cookie, "BENCH_CSRF": self.session.csrf_token,
            "BENCH_PASSWORD": password, "BENCH_NONCE": nonce,
        }  # fmt: skip
        return Load(base + "/users", script="create.lua", expect=303, env=env), nonce

    def created(self, nonce: str) -> int:
        # The nonce is hex and the pattern's other characters are literal: nothing to escape.
        count = self.cluster.scalar(
            f"SELECT count(*) FROM users WHERE email_key LIKE 'bench.{nonce}-%'"
        )
        return int(count) if isinstance(count, int) else 0

    def add(self, row: Row) -> None:
        self.rows.append(row)
        r = row.result
        log(
            f"{row.users:,} users · {row.app} · {row.scenario}: {r.rps:,.1f} req/s, "
            f"p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms, {r.errors} errors"
            + (f" ({r.error_detail})" if r.errors else "")
        )

    # --- one size --------------------------------------------------------------------

    def run_size(self) -> None:
        users, cfg = self.seeded, self.cfg
        # Both servers up (each idle while the other is loaded); every console read is
        # measured in turns with the floor's page 1, and set against it.
        with self.floor() as floor_base, self.console() as base:
            cookie = self.session.cookie
            floor_page = self.page_load(floor_base, scenarios.floor_page())
            reads = scenarios.console_reads(
                self.cluster.dsn, users, cfg.search, cfg.person_search, cfg.domain_search
            )
            for page in reads:
                console, floor = self.measure_in_turns(
                    self.page_load(base, page, cookie), floor_page
                )
                self.add(Row(users, "console", page.name, console, target=page.target, floor=floor))
                self.add(Row(users, "floor", "page 1, in turns with it", floor))
        with self.console() as base:
            creates, nonce = self.create_load(base)
            result = self.measure(creates, cfg.create_connections, cfg.create_duration)
            created = self.created(nonce)  # warm-up and measured run
            if created < result.requests:
                log(f"create: {result.requests} answered 303 but only {created} rows were added")
            self.add(Row(users, "console", "create", result, kind="create", created=created))
            # The list while creates are hashed: a create load runs through the list's
            # warm-up and measured run.
            creates, _ = self.create_load(base)
            span = cfg.warmup + cfg.duration + 2
            background = self.start_load(creates, span, cfg.create_connections)
            try:
                result = self.measure(self.page_load(base, reads[0], cookie))
            except BaseException:
                load.stop(background)
                raise
            busy = load.finish(background)
            mixed = Row(users, "console", "page 1 + creates", result, kind="mixed", background=busy)
            self.add(mixed)
        for workers in (1, 2):
            with self.console(workers, cfg.all_cpus) as base:
                result = self.measure(self.page_load(base, reads[0], cookie))
                name = f"page 1, {workers} worker{'s' * (workers > 1)}"
                self.add(Row(users, "console", name, result, kind="workers", workers=workers))


def _interrupt_on_signals() -> None:
    """Ctrl-C and SIGTERM unwind the bench, which stops its servers and cluster. SIGINT too
    when started in the background, where the shell would have it ignored."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, handler)


@contextmanager
def prepared_bench(cfg: BenchConfig, prefix: str) -> Iterator[Bench]:
    """A throw-away cluster, migrated, with the bench's admin; all of it gone on the way out."""
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix=prefix))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        log(f"starting PostgreSQL ({cfg.pg_bin})")
        cluster = stack.enter_context(
            running_cluster(cfg.pg_bin, cfg.pg_locale, cfg.pg_shared_buffers)
        )
        bench = Bench(cfg, cluster, workdir)
        bench.prepare()
        yield bench


def main() -> int:
    _interrupt_on_signals()
    try:
        cfg = BenchConfig.from_env()
        load.require_wrk()
        with prepared_bench(cfg, "webapp-bench-run-") as bench:
            machine = report.describe_machine(bench.cluster)
            for users in cfg.sizes:
                bench.seed_to(users)
                bench.run_size()
            text = report.render(cfg, machine, bench.rows)
        print(text)
        cfg.results.write_text(text)
        log(f"wrote {cfg.results}")
        return 0
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; the cluster and servers are stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
