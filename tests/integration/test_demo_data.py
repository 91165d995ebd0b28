from __future__ import annotations

from pathlib import Path

import msgspec
from sqlalchemy import select

from app.billing.models import IntegrationStatus, StripeIntegration, StripeMode
from app.db import Database
from app.demo_data import connect_demo_sandbox, read_demo_keys, seed_demo_if_empty
from app.migrate import upgrade_to_head
from app.settings import Settings


async def test_demo_seed_runs_once_and_keeps_keys(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}")
    try:
        await upgrade_to_head(database)
        assert await seed_demo_if_empty(database, tmp_path) is True
        assert await seed_demo_if_empty(database, tmp_path) is False
        keys = read_demo_keys(tmp_path)
        assert keys is not None
        assert keys["serverKey"].startswith("tg_sk_")
        assert (tmp_path / "demo-keys.json").stat().st_mode & 0o077 == 0
    finally:
        await database.dispose()


async def test_demo_environment_connects_to_the_sandbox_once(tmp_path: Path, settings: Settings) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    database = Database(url)
    served = msgspec.structs.replace(settings, database_url=url)
    try:
        await upgrade_to_head(database)
        assert await connect_demo_sandbox(database, served) is False  # nothing seeded yet
        await seed_demo_if_empty(database, tmp_path)
        assert await connect_demo_sandbox(database, served) is True
        assert await connect_demo_sandbox(database, served) is False  # idempotent
        async with database.session() as session:
            rows = list(await session.scalars(select(StripeIntegration)))
        assert [(r.mode, r.status) for r in rows] == [(StripeMode.SANDBOX, IntegrationStatus.ACTIVE)]
    finally:
        await database.dispose()
