"""/api/v1/integrations/stripe: connect, inspect, toggle and remove the Stripe integration."""

from __future__ import annotations

from litestar import Controller, delete, get, patch, put
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.integration import PERMISSIONS, IntegrationService
from app.billing.schemas import IntegrationConnect, IntegrationOut, IntegrationUpdate, PermissionsOut
from app.environments.service import EnvironmentRef
from app.settings import Settings


class StripeIntegrationController(Controller):
    path = "/integrations/stripe"
    tags = ["integrations"]

    @get("/")
    async def get_(
        self, db_session: AsyncSession, settings: Settings, environment: EnvironmentRef
    ) -> IntegrationOut:
        return await IntegrationService(db_session, settings).get(environment)

    @put("/")
    async def connect(
        self,
        db_session: AsyncSession,
        settings: Settings,
        environment: EnvironmentRef,
        data: IntegrationConnect,
    ) -> IntegrationOut:
        return await IntegrationService(db_session, settings).connect(environment, data)

    @patch("/")
    async def update(
        self,
        db_session: AsyncSession,
        settings: Settings,
        environment: EnvironmentRef,
        data: IntegrationUpdate,
    ) -> IntegrationOut:
        return await IntegrationService(db_session, settings).update(environment, data)

    @delete("/", status_code=200)
    async def remove(
        self, db_session: AsyncSession, settings: Settings, environment: EnvironmentRef
    ) -> IntegrationOut:
        return await IntegrationService(db_session, settings).remove(environment)

    @get("/permissions")
    async def permissions(self) -> PermissionsOut:
        return PermissionsOut(permissions=PERMISSIONS)


INTEGRATION_CONTROLLERS = [StripeIntegrationController]
