"""/api/v1/integrations/stripe: connect (key or OAuth), inspect, toggle and remove the Stripe
integration; the grace period check."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, patch, post, put
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing import oauth
from app.billing.integration import PERMISSIONS, IntegrationService
from app.billing.models import StripeMode
from app.billing.schemas import (
    IntegrationConnect,
    IntegrationOut,
    IntegrationUpdate,
    OAuthStartOut,
    PermissionsOut,
)
from app.core.errors import InvalidRequest
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

    @get("/oauth/start")
    async def oauth_start(
        self,
        settings: Settings,
        environment: EnvironmentRef,
        mode: Annotated[StripeMode, Parameter(query="mode")],
        return_url: Annotated[str, Parameter(query="returnUrl", max_length=2000)],
    ) -> OAuthStartOut:
        """Stripe's authorize URL; the callback (outside /api) finishes like `PUT` with a key."""
        if not return_url.startswith(("http://", "https://")):
            raise InvalidRequest("returnUrl must be an http(s) URL.", code="invalid_url", param="returnUrl")
        return oauth.start(settings, environment, mode, return_url)

    @post("/grace-period-check", status_code=200)
    async def grace_period_check(
        self, db_session: AsyncSession, settings: Settings, environment: EnvironmentRef
    ) -> IntegrationOut:
        return await IntegrationService(db_session, settings).check_grace_period(environment)


INTEGRATION_CONTROLLERS = [StripeIntegrationController]
