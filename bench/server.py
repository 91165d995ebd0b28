"""Start a real Tollgate server process for a benchmark, on a free loopback port."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOLLGATE = str(Path(sys.executable).parent / "tollgate")
# This checkout's CLI, whether or not (or wherever) the project is installed: a worktree that
# shares another checkout's virtualenv benchmarks its own code.
TOLLGATE_CMD = [sys.executable, "-m", "app.cli"]


def tollgate_env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    port: int
    server_key: str
    publishable_key: str
    env: dict[str, str]


def postgres_bench_url() -> str | None:
    """A fresh PostgreSQL database for one benchmark run, or None when PostgreSQL is not reachable."""
    sys.path.insert(0, str(ROOT))
    from tests.support.databases import (
        create_postgres_database,
        drop_postgres_database,
        postgres_reachable,
        postgres_url,
    )

    if not postgres_reachable():
        return None
    name = create_postgres_database()
    atexit.register(drop_postgres_database, name)  # benchmarks leave no databases behind
    return postgres_url(name)


@contextlib.contextmanager
def tollgate_server(database_url: str | None, *, workers: int = 2) -> Iterator[RunningServer]:
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as tmp:
        port = free_port()
        env = {
            **tollgate_env(dict(os.environ)),
            "TOLLGATE_VAR_DIR": tmp,
            "TOLLGATE_PORT": str(port),
            "TOLLGATE_EMBEDDED_SANDBOX": "0",
            "TOLLGATE_EMBEDDED_WORKER": "0",
            "TOLLGATE_LOG_LEVEL": "WARNING",
            "TOLLGATE_SECRET": "bench-secret-" + "x" * 32,
        }
        if database_url:
            env["TOLLGATE_DATABASE_URL"] = database_url
        created = subprocess.run(
            [*TOLLGATE_CMD, "env", "create", "bench", "--json"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        keys = json.loads(created.stdout.strip().splitlines()[-1])
        process = subprocess.Popen(
            [*TOLLGATE_CMD, "run", "--no-demo", "--workers", str(workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=None if os.environ.get("BENCH_SERVER_LOG") else subprocess.DEVNULL,
        )
        try:
            deadline = time.time() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                        break
                except OSError:
                    if time.time() > deadline or process.poll() is not None:
                        raise RuntimeError("the server did not start") from None
                    time.sleep(0.2)
            yield RunningServer(port, keys["serverKey"], keys["publishableKey"], env)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
