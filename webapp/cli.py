"""The ``webapp`` command: serve, migrate, seed."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence

from webapp import pooler
from webapp.config import Settings, SettingsError, load_settings


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    if args.workers > 1 and args.reload:
        print("webapp: --reload and --workers cannot be combined", file=sys.stderr)
        return 2
    settings.session_secret()  # make the development key now, before workers race for it
    settings = asyncio.run(pooler.resolve(settings))
    refusal = asyncio.run(_connection_budget(settings.model_copy(update={"workers": args.workers})))
    if refusal and not args.allow_overcommit:
        print(f"webapp: {refusal} (--allow-overcommit starts anyway)", file=sys.stderr)
        return 2
    # Workers read their settings from the environment: the headroom check needs the count,
    # and what was found out about PgBouncer need not be found out again by each.
    os.environ["WEBAPP_WORKERS"] = str(args.workers)
    os.environ["WEBAPP_PGBOUNCER"] = str(settings.pgbouncer).lower()
    metrics_dir = None
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Set before any worker starts (and imports prometheus_client): each writes its
        # figures there and /metrics, whichever worker answers, adds them up.
        metrics_dir = tempfile.mkdtemp(prefix="webapp-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run(
            "webapp.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            reload=args.reload,
            loop=args.loop,
            # Uvicorn stops taking new connections on SIGTERM and lets in-flight requests
            # finish (up to this long) before the lifespan disposes of the engine.
            timeout_graceful_shutdown=args.graceful_timeout,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


async def _connection_budget(settings: Settings) -> str | None:
    """Why starting would risk "too many connections" on the server, or None if it fits.

    Behind PgBouncer the server's limit is PgBouncer's business; with the database down the
    console starts anyway (and says so on /readyz) rather than refuse to come up.
    """
    from webapp.server_stats import Probe

    if settings.is_sqlite or settings.pgbouncer:
        return None
    probe = Probe(settings)
    try:
        stats = await probe.stats()
    finally:
        await probe.dispose()
    room = stats.headroom
    if room is None or not room.exceeds:
        return None
    return (
        f"{room.hosts} host(s) x {room.workers} worker(s) x {room.per_worker} connections "
        f"(WEBAPP_POOL_SIZE + WEBAPP_MAX_OVERFLOW + 1 for the health probe) = {room.planned} "
        f"may be opened, but the server allows {room.available} "
        f"(max_connections {room.max_connections} - "
        f"{room.superuser_reserved} for superusers - WEBAPP_CONNECTION_RESERVE "
        f"{room.reserve}); lower the pool settings or use PgBouncer"
    )


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from alembic.util import CommandError

    from webapp import migrations

    try:
        if args.downgrade:
            migrations.downgrade(settings.database_url, args.revision)
            print(f"webapp: database downgraded to {args.revision}")
        else:
            migrations.upgrade(settings.database_url, args.revision)
            print(f"webapp: database migrated to {args.revision}")
    except CommandError as refused:  # a migration that stopped, saying why; nothing changed
        print(f"webapp: migrate: {refused}", file=sys.stderr)
        return 1
    return 0


def _seed(args: argparse.Namespace, settings: Settings) -> int:
    from webapp.seed import seed

    if args.count < 0:
        print("webapp: --count must be 0 or more", file=sys.stderr)
        return 2
    progress = sys.stderr.isatty()
    added = asyncio.run(seed(settings, args.count, progress=progress, random_seed=args.random_seed))
    print(f"webapp: added {added:,} users")
    return 0


def _read_password() -> str:
    """Twice without echo at a terminal; one line from standard input for scripts."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password again: "):
        raise ValueError("The two passwords do not match.")
    return first


def _create_admin(args: argparse.Namespace, settings: Settings) -> int:
    from webapp.admin import AdminError, create_admin

    try:
        password = _read_password()
        user_email = asyncio.run(
            create_admin(settings, args.email, args.first_name, args.last_name, password)
        )
    except (AdminError, ValueError) as exc:
        print(f"webapp: {exc}", file=sys.stderr)
        return 1
    print(f"webapp: created admin {user_email}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="webapp", description="The user admin console.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the console over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--reload", action="store_true", help="restart on code changes (dev)")
    serve.add_argument("--graceful-timeout", type=float, default=30.0, metavar="SECONDS")
    # Python's own loop, not uvloop (uvicorn's pick when installed): under a load past one
    # core, uvloop left some list requests waiting outside the app for hundreds of ms (the
    # list's p99 at 2-3 x its p50, against 1.5 x on asyncio's loop; same rate).
    serve.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop (default asyncio: its requests wait their turn more evenly)",
    )
    serve.add_argument(
        "--allow-overcommit",
        action="store_true",
        help="start even if all workers could open more connections than the server allows",
    )
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    migrate.add_argument("--revision", default="head")
    migrate.add_argument(
        "--downgrade", action="store_true", help="go down to --revision (e.g. base)"
    )
    migrate.set_defaults(handler=_migrate)

    admin = commands.add_parser(
        "create-admin",
        help="create an admin (password asked twice, or read from stdin when piped)",
    )
    admin.add_argument("--email", required=True)
    admin.add_argument("--first-name", required=True)
    admin.add_argument("--last-name", required=True)
    admin.set_defaults(handler=_create_admin)

    seed = commands.add_parser("seed", help="add realistic fake users")
    seed.add_argument("--count", type=int, default=1000)
    seed.add_argument(
        "--random-seed",
        type=int,
        help="draw the same users every time (for the same seed and the same table)",
    )
    seed.set_defaults(handler=_seed)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"webapp: invalid setting {exc}", file=sys.stderr)
        return 2
    from sqlalchemy.exc import DBAPIError

    try:
        result: int = args.handler(args, settings)
    except DBAPIError as exc:
        # One line, by kind only: driver messages can carry host and user names.
        kind = type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__
        print(
            f"webapp: database error ({kind}): is the database reachable, "
            'and has "webapp migrate" run?',
            file=sys.stderr,
        )
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
