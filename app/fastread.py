"""Lean primary-key reads for the hottest paths (API-key lookup, entitlement checks).

A checked read is one or two indexed lookups; through an ORM session on an async driver
each costs more in bookkeeping than in the database. Here:
- SQLite: a per-process read-only sqlite3 connection used inline. A WAL read of an indexed
  row takes microseconds, less than the thread hop aiosqlite would need.
- PostgreSQL: a small asyncpg pool with prepared statements.
Writes never come here; they go through sessions and transactions as usual.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from typing import Any

_NAMED = re.compile(r":([a-z_][a-z0-9_]*)")


class FastReader:
    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self._sqlite: sqlite3.Connection | None = None
        self._pool: Any = None
        self._pool_lock = asyncio.Lock()
        self._pg_sql: dict[str, tuple[str, list[str]]] = {}

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    def _sqlite_connection(self) -> sqlite3.Connection:
        if self._sqlite is None:
            path = self.url.split("///", 1)[1]
            conn = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
            )
            conn.execute("PRAGMA busy_timeout=2000")
            self._sqlite = conn
        return self._sqlite

    async def _postgres_pool(self) -> Any:
        if self._pool is None:
            import asyncpg

            async with self._pool_lock:
                if self._pool is None:
                    dsn = re.sub(r"^postgresql\+asyncpg://", "postgresql://", self.url)
                    self._pool = await asyncpg.create_pool(dsn, min_size=2, max_size=16)
        return self._pool

    def _postgres_sql(self, sql: str) -> tuple[str, list[str]]:
        cached = self._pg_sql.get(sql)
        if cached is None:
            names: list[str] = []

            def number(match: re.Match[str]) -> str:
                if match.group(1) not in names:
                    names.append(match.group(1))
                return f"${names.index(match.group(1)) + 1}"

            cached = (_NAMED.sub(number, sql), names)
            self._pg_sql[sql] = cached
        return cached

    async def one(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row of `sql` (named :params), as a tuple, or None."""
        if self.is_sqlite:
            return self._sqlite_connection().execute(sql, params).fetchone()
        text, names = self._postgres_sql(sql)
        pool = await self._postgres_pool()
        async with pool.acquire() as conn:
            record = await conn.fetchrow(text, *(params[n] for n in names))
        return tuple(record) if record is not None else None

    async def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
