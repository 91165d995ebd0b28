"""/api/v1: the server-side REST API, authenticated with X-API-KEY."""

from __future__ import annotations

from litestar import Router

from app.api.billing import BILLING_CONTROLLERS
from app.api.catalog import CATALOG_CONTROLLERS
from app.api.customers import CUSTOMER_CONTROLLERS
from app.api.deps import API_DEPENDENCIES
from app.api.environment import EnvironmentController
from app.api.integrations import INTEGRATION_CONTROLLERS
from app.api.subscriptions import SUBSCRIPTION_HANDLERS
from app.api.sync import SYNC_CONTROLLERS

api_router = Router(
    path="/api/v1",
    route_handlers=[
        *CATALOG_CONTROLLERS,
        *CUSTOMER_CONTROLLERS,
        *SUBSCRIPTION_HANDLERS,
        *INTEGRATION_CONTROLLERS,
        *BILLING_CONTROLLERS,
        EnvironmentController,
        *SYNC_CONTROLLERS,
    ],
    dependencies=API_DEPENDENCIES,
)
