"""The `tollgate` command: run, migrate, env create, demo seed, sandbox, worker."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from app.settings import load_settings


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_run(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app

    settings = load_settings()
    _configure_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=args.host or settings.host, port=args.port or settings.port, log_level="warning")
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    import uvicorn

    from app.sandbox.server import create_standalone_sandbox

    _configure_logging("INFO")
    uvicorn.run(create_standalone_sandbox(port=args.port, database_path=args.database), host="127.0.0.1", port=args.port, log_level="warning")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tollgate", description="Pricing and entitlements on top of Stripe.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="migrate, seed the demo if empty, and serve")
    run.add_argument("--host")
    run.add_argument("--port", type=int)
    run.set_defaults(func=cmd_run)

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

__all__ = ["asyncio", "main"]
