"""Read sessions do not queue behind a writer on SQLite (the widgets' pages use them)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import select, text

from app.db import Database
from app.environments.models import Environment
from app.migrate import upgrade_to_head


async def test_a_read_session_reads_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'read.db'}")
    try:
        await upgrade_to_head(database)
        async with database.session() as writer:
            await writer.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: the write lock is held
            started = time.monotonic()
            async with database.session(read=True) as reader:
                await asyncio.wait_for(reader.scalar(select(Environment.pk).limit(1)), timeout=2)
            assert time.monotonic() - started < 1
            # An ordinary session queues behind the writer (busy_timeout) instead.
            blocked = asyncio.create_task(_one_write_session_query(database))
            await asyncio.sleep(0.3)
            assert not blocked.done()
        await asyncio.wait_for(blocked, timeout=5)
    finally:
        await database.dispose()


async def _one_write_session_query(database: Database) -> None:
    async with database.session() as session:
        await session.execute(text("SELECT 1"))
