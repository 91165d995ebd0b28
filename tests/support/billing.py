"""Helpers for checkout / portal tests: the environment's Stripe client, paying on the hosted page."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import stripe
from sqlalchemy import select

from app.billing.events import EventContext
from app.billing.integration import IntegrationService
from app.billing.models import StripeIntegration
from app.db import Database
from app.environments.service import EnvironmentRef
from app.settings import Settings
from tests.support.catalog_factory import CatalogFactory

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"


async def stripe_for(database: Database, settings: Settings, catalog: CatalogFactory) -> stripe.StripeClient:
    """The SDK client of the environment's connected account (read back what Tollgate asked for)."""
    async with database.session() as session:
        row = await session.scalar(
            select(StripeIntegration).where(StripeIntegration.environment_pk == await catalog.env_pk())
        )
        assert row is not None
        return IntegrationService(session, settings).client(row)


async def event_context(
    database: Database, settings: Settings, catalog: CatalogFactory, session: Any
) -> EventContext:
    """What the webhook processor hands a handler, for this test's environment."""
    env_pk = await catalog.env_pk()
    row = await session.scalar(select(StripeIntegration).where(StripeIntegration.environment_pk == env_pk))
    assert row is not None
    env = EnvironmentRef(pk=env_pk, slug=catalog.api.created.environment_id)
    return EventContext(session, settings, env, row, IntegrationService(session, settings).client(row))


async def browse(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """A request to the sandbox's hosted pages, as a browser would make it (no redirect followed)."""
    async with httpx.AsyncClient(timeout=30, follow_redirects=False) as client:
        return await client.request(method, url, **kwargs)


async def pay(checkout_url: str, card: str = GOOD_CARD, **form: str) -> httpx.Response:
    """Submit the sandbox's hosted Checkout form."""
    data = {"card_number": card, "email": "payer@example.com", "name": "Pat Payer", **form}
    return await browse("POST", checkout_url, data=data)


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")
