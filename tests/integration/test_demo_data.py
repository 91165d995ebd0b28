from __future__ import annotations

from pathlib import Path

from app.db import Database
from app.demo_data import read_demo_keys, seed_demo_if_empty
from app.migrate import upgrade_to_head


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
