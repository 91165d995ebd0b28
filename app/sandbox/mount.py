"""Mount the sandbox inside Tollgate under /sandbox/stripe (Sandbox mode out of the box)."""

from __future__ import annotations

from typing import Any

from litestar.handlers import asgi

from app.sandbox.server import Sandbox
from app.settings import VAR_DIR, Settings

MOUNT_PATH = "/sandbox/stripe"


def sandbox_mount(settings: Settings, database_path: str | None = None) -> Any:
    """A Litestar ASGI route handler serving the sandbox; the SDK's api_base is public_url + MOUNT_PATH."""
    sandbox = Sandbox(database_path or VAR_DIR / "sandbox.db", f"{settings.public_url}{MOUNT_PATH}")

    @asgi(path=MOUNT_PATH, is_mount=True, copy_scope=True)
    async def stripe_sandbox(scope: Any, receive: Any, send: Any) -> None:
        await sandbox(scope, receive, send)

    stripe_sandbox.sandbox = sandbox  # type: ignore[attr-defined]  # for tests and the lead's wiring
    return stripe_sandbox
