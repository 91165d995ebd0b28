"""Mount the sandbox inside Tollgate under /sandbox/stripe (Sandbox mode out of the box)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.handlers import asgi

from app.sandbox.server import Sandbox
from app.settings import Settings

MOUNT_PATH = "/sandbox/stripe"


def sandbox_database_path(settings: Settings) -> Path:
    """sandbox.db beside Tollgate's own SQLite file (var/ by default), so each install has its own."""
    if settings.database_url.startswith("sqlite") and "///" in settings.database_url:
        return Path(settings.database_url.split("///", 1)[1]).parent / "sandbox.db"
    return Path(settings.var_dir) / "sandbox.db"


def sandbox_mount(settings: Settings, database_path: str | None = None) -> Any:
    """A Litestar ASGI route handler serving the sandbox; the SDK's api_base is public_url + MOUNT_PATH."""
    sandbox = Sandbox(database_path or sandbox_database_path(settings), f"{settings.public_url}{MOUNT_PATH}")

    @asgi(path=MOUNT_PATH, is_mount=True, copy_scope=True)
    async def stripe_sandbox(scope: Any, receive: Any, send: Any) -> None:
        await sandbox(scope, receive, send)

    return stripe_sandbox
