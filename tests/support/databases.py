"""Real databases for the suite: a SQLite file always, PostgreSQL when 127.0.0.1:5432 answers."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from pathlib import Path

PG_HOST = os.environ.get("TOLLGATE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TOLLGATE_TEST_PG_PORT", "5432"))
PG_ADMIN_DB = os.environ.get("TOLLGATE_TEST_PG_DB", "test")
PG_USER = os.environ.get("TOLLGATE_TEST_PG_USER", "postgres")


def postgres_reachable() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            return True
    except OSError:
        return False


def sqlite_url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'tollgate-test.db'}"


async def _admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=PG_ADMIN_DB)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def create_postgres_database() -> str:
    """A fresh database for this test run (dropped by drop_postgres_database)."""
    name = f"tollgate_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    return name


def drop_postgres_database(name: str) -> None:
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def postgres_url(name: str) -> str:
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
