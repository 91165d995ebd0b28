"""/api/v1/environment: the calling key's own environment (name, keys' public parts, allowed origins)."""

from __future__ import annotations

from litestar import Controller, get, patch
from sqlalchemy.ext.asyncio import AsyncSession

from app.environments.service import (
    EnvironmentOut,
    EnvironmentRef,
    EnvironmentUpdate,
    get_environment,
    update_environment,
)


class EnvironmentController(Controller):
    path = "/environment"
    tags = ["environment"]

    @get("/")
    async def get_(self, db_session: AsyncSession, environment: EnvironmentRef) -> EnvironmentOut:
        return await get_environment(db_session, environment)

    @patch("/")
    async def update(
        self, db_session: AsyncSession, environment: EnvironmentRef, data: EnvironmentUpdate
    ) -> EnvironmentOut:
        return await update_environment(db_session, environment, data)
