"""The `tollgate` command: run, migrate, env create, demo seed, sandbox."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from app.db import Database
from app.settings import Settings, load_settings


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Each Stripe call would otherwise log three lines (SDK and HTTP client); our own sync
    # logs say what matters. TOLLGATE_LOG_LEVEL=DEBUG brings them back.
    quiet = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    for name in ("alembic", "stripe", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(quiet)


def _var_dir() -> Path:
    return Path(load_settings().var_dir)


async def _migrate(settings: Settings) -> None:
    from app.migrate import upgrade_to_head

    database = Database(settings.database_url)
    try:
        await upgrade_to_head(database)
    finally:
        await database.dispose()


async def _bootstrap_operator(settings: Settings) -> None:
    from app.admin.auth import ensure_bootstrap_operator

    database = Database(settings.database_url)
    try:
        await ensure_bootstrap_operator(database, settings)
    finally:
        await database.dispose()


async def _seed(settings: Settings) -> bool:
    from app.demo_data import seed_demo_if_empty

    database = Database(settings.database_url)
    try:
        return await seed_demo_if_empty(database, _var_dir())
    finally:
        await database.dispose()


def _connect_demo_when_up(settings: Settings, timeout: float = 60.0) -> None:
    """Once the server answers, connect the demo environment to the mounted sandbox (idempotent).

    A thread beside uvicorn rather than a step before it: the Stripe SDK reaches the sandbox
    over HTTP at public_url/sandbox/stripe, which only answers once the server listens.
    """
    import time
    import urllib.request

    from app.demo_data import connect_demo_sandbox

    logger = logging.getLogger("tollgate.demo")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{settings.public_url}/healthz", timeout=2):  # noqa: S310
                break
        except OSError:
            if time.monotonic() > deadline:
                logger.warning("demo: %s did not answer; Stripe sandbox not connected", settings.public_url)
                return
            time.sleep(0.2)

    async def connect() -> bool:
        database = Database(settings.database_url)
        try:
            return await connect_demo_sandbox(database, settings)
        finally:
            await database.dispose()

    try:
        if asyncio.run(connect()):
            logger.info("demo: environment connected to the Stripe sandbox (Sandbox mode)")
    except Exception:  # the demo still runs without Stripe; say why
        logger.exception("demo: could not connect the Stripe sandbox")


def _banner(settings: Settings, host: str, port: int) -> str:
    from app.demo_data import read_demo_keys

    base = (
        f"http://{host}:{port}" if settings.public_url.endswith(f":{settings.port}") else settings.public_url
    )
    lines = [
        "",
        "  Tollgate is running.",
        f"    API              {base}/api/v1   (OpenAPI: {base}/schema)",
        f"    Demo app         {base}/demo",
        f"    Operator console {base}/admin",
        f"    Stripe sandbox   {base}/sandbox/stripe",
    ]
    keys = read_demo_keys(_var_dir())
    if keys:
        lines += [
            "",
            "  Demo environment keys (kept in var/demo-keys.json):",
            f"    server key       {keys['serverKey']}",
            f"    publishable key  {keys['publishableKey']}",
        ]
        if keys.get("operatorPassword"):
            lines.append(f"  Console login: {keys['operatorEmail']} / {keys['operatorPassword']}")
        lines += [
            "",
            "  Try it:",
            f"    curl -H 'X-API-KEY: {keys['serverKey']}' {base}/api/v1/customers/demo-customer/entitlements",
        ]
    return "\n".join(lines) + "\n"


def cmd_migrate(_: argparse.Namespace) -> int:
    settings = load_settings()
    asyncio.run(_migrate(settings))
    print("Database is at the latest schema.")
    return 0


def cmd_demo_seed(_: argparse.Namespace) -> int:
    settings = load_settings()
    asyncio.run(_migrate(settings))
    seeded = asyncio.run(_seed(settings))
    print("Demo environment seeded." if seeded else "The database has environments already; nothing seeded.")
    return 0


def cmd_env_create(args: argparse.Namespace) -> int:
    from app.core.errors import TollgateError
    from app.environments.service import create_environment

    settings = load_settings()

    async def create() -> dict[str, str]:
        database = Database(settings.database_url)
        try:
            async with database.session() as session:
                created = await create_environment(session, args.name, args.display_name)
            return {"serverKey": created.server_key, "publishableKey": created.publishable_key}
        finally:
            await database.dispose()

    asyncio.run(_migrate(settings))
    try:
        keys = asyncio.run(create())
    except TollgateError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(keys))
    else:
        print(f"Environment '{args.name}' created. The server key is shown only this once:")
        print(f"  server key       {keys['serverKey']}")
        print(f"  publishable key  {keys['publishableKey']}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app

    # Flags win over the environment, and through it reach everything derived from them
    # (the default public URL, the demo's sandbox address, each worker process's settings).
    if args.host:
        os.environ["TOLLGATE_HOST"] = args.host
    if args.port:
        os.environ["TOLLGATE_PORT"] = str(args.port)
    settings = load_settings()
    _configure_logging(settings.log_level)
    asyncio.run(_migrate(settings))
    asyncio.run(_bootstrap_operator(settings))
    if not args.no_demo:
        asyncio.run(_seed(settings))
        if settings.embedded_sandbox or settings.stripe_sandbox_url:
            import threading

            threading.Thread(target=_connect_demo_when_up, args=(settings,), daemon=True).start()
    host, port = settings.host, settings.port
    print(_banner(settings, host, port), flush=True)
    if args.workers > 1:
        # Each worker process builds its own app (and engine) from the same environment.
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=host,
            port=port,
            log_level="warning",
            workers=args.workers,
        )
    else:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    import uvicorn

    from app.sandbox.server import create_standalone_sandbox

    _configure_logging("INFO")
    app = create_standalone_sandbox(port=args.port, database_path=args.database)
    print(
        f"Stripe sandbox on http://127.0.0.1:{args.port} (point the stripe SDK's api_base here)", flush=True
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from app.worker import Worker, default_jobs

    settings = load_settings()
    _configure_logging(settings.log_level)

    async def work() -> None:
        database = Database(settings.database_url)
        worker = Worker(database, default_jobs(settings))
        try:
            if args.once:
                done = await worker.run_once()
                print(", ".join(f"{name}: {count}" for name, count in done.items()) or "no jobs")
            else:
                await worker.run_forever()
        finally:
            await database.dispose()

    asyncio.run(_migrate(settings))
    asyncio.run(work())
    return 0


def cmd_admin_create_user(args: argparse.Namespace) -> int:
    import getpass

    from app.admin.auth import create_operator
    from app.core.errors import TollgateError

    settings = load_settings()
    password = args.password or getpass.getpass("Password (10+ characters): ")

    async def create() -> None:
        database = Database(settings.database_url)
        try:
            await create_operator(database, args.email, password)
        finally:
            await database.dispose()

    asyncio.run(_migrate(settings))
    try:
        asyncio.run(create())
    except TollgateError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 2
    print(f"Operator {args.email} created; sign in at {settings.public_url}/admin")
    return 0


def cmd_sync_reconcile(_: argparse.Namespace) -> int:
    from app.billing.jobs import reconcile_all

    settings = load_settings()
    _configure_logging(settings.log_level)

    async def run() -> list[str]:
        database = Database(settings.database_url)
        try:
            return (await reconcile_all(database, settings)).lines()
        finally:
            await database.dispose()

    asyncio.run(_migrate(settings))
    print("\n".join(asyncio.run(run())))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tollgate", description="Pricing and entitlements on top of Stripe."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="migrate, seed the demo into an empty database, and serve")
    run.add_argument("--host")
    run.add_argument("--port", type=int)
    run.add_argument("--no-demo", action="store_true", help="do not seed the demo environment")
    run.add_argument("--workers", type=int, default=1, help="web worker processes (default 1)")
    run.set_defaults(func=cmd_run)

    migrate = sub.add_parser("migrate", help="bring the database schema up to date")
    migrate.set_defaults(func=cmd_migrate)

    env = sub.add_parser("env", help="environments")
    env_sub = env.add_subparsers(dest="env_command", required=True)
    env_create = env_sub.add_parser("create", help="create an environment and print its keys once")
    env_create.add_argument("name", help="lower-case slug, e.g. production")
    env_create.add_argument("--display-name")
    env_create.add_argument(
        "--json", action="store_true", help='print {"serverKey": ..., "publishableKey": ...}'
    )
    env_create.set_defaults(func=cmd_env_create)

    demo = sub.add_parser("demo", help="demo data")
    demo_sub = demo.add_subparsers(dest="demo_command", required=True)
    demo_seed = demo_sub.add_parser("seed", help="seed the demo catalog and customers into an empty database")
    demo_seed.set_defaults(func=cmd_demo_seed)

    admin = sub.add_parser("admin", help="console operators")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    create_user = admin_sub.add_parser("create-user", help="create a console operator")
    create_user.add_argument("email")
    create_user.add_argument("--password", help="read from a prompt when not given")
    create_user.set_defaults(func=cmd_admin_create_user)

    worker = sub.add_parser("worker", help="run background jobs (any number of these may run)")
    worker.add_argument("--once", action="store_true", help="run every job once and exit")
    worker.set_defaults(func=cmd_worker)

    sync = sub.add_parser("sync", help="Stripe sync")
    sync_sub = sync.add_subparsers(dest="sync_command", required=True)
    reconcile = sync_sub.add_parser("reconcile", help="compare everything with Stripe, repair drift, report")
    reconcile.set_defaults(func=cmd_sync_reconcile)

    sandbox = sub.add_parser("sandbox", help="run the offline Stripe-compatible sandbox on its own")
    sandbox.add_argument("--port", type=int, default=12111)
    sandbox.add_argument("--database", help="SQLite file for the sandbox's state (default: in var/)")
    sandbox.set_defaults(func=cmd_sandbox)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
