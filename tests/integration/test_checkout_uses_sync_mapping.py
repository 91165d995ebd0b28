"""Checkout and the sync make the same Stripe objects: one desired state, no second copy.

Checkout (a customer waiting for a payment page) creates the plan's products and prices, the
coupon and the customer inline; the sync worker, running afterwards, must find every one of
them (same ids, names, metadata, idempotency keys) and create nothing twice.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.billing.jobs import drain
from app.billing.models import StripeIntegration
from app.billing.sync import SyncEngine
from app.catalog.models import Coupon, Plan
from app.db import Database
from app.settings import Settings
from tests.conftest import ApiEnv
from tests.integration.test_checkout_flow import catalog as catalog  # the fixture
from tests.integration.test_checkout_flow import provision_pro
from tests.support.billing import stripe_for
from tests.support.catalog_factory import CatalogFactory


def _all(service: Any) -> list[Any]:
    return list(service.list(params={"limit": 100}).data)


async def test_checkout_objects_are_the_syncs_objects(
    api: ApiEnv, catalog: CatalogFactory, database: Database, settings: Settings
) -> None:
    result = await provision_pro(api, couponId="half")
    assert result["status"] == "PAYMENT_REQUIRED"
    client = await stripe_for(database, settings, catalog)
    env_pk = await catalog.env_pk()
    async with database.session() as session:
        integration = await session.scalar(
            select(StripeIntegration).where(StripeIntegration.environment_pk == env_pk)
        )
        pro = await session.scalar(select(Plan).where(Plan.environment_pk == env_pk, Plan.ref == "pro"))
        half = await session.scalar(
            select(Coupon).where(Coupon.environment_pk == env_pk, Coupon.ref == "half")
        )
    assert integration is not None and pro is not None and half is not None
    slug = api.created.environment_id

    products = {p.id: p for p in _all(client.v1.products)}
    plan_product = products[f"tg_{integration.ref}_plan_{pro.pk}"]  # the sync's deterministic id
    assert plan_product.name == "App Pro Plan"
    assert plan_product.metadata.to_dict() == {
        "tollgateEntityId": "pro",
        "tollgateEnvironment": slug,
        "tollgateEntityUrl": f"{settings.public_url}/admin/plans/pro?env={slug}",
    }
    assert sorted(p.name for p in products.values()) == [
        "App Extra Add-on",
        "App Pro Plan",
        "App Pro Plan - Seats",
    ]
    seats = next(p for p in products.values() if p.name == "App Pro Plan - Seats")
    assert seats.metadata["tollgateFeatureId"] == "seats"
    prices = _all(client.v1.prices)
    assert all(p.tax_behavior == "exclusive" and p.metadata["tollgateChargeId"] for p in prices)
    coupons = _all(client.v1.coupons)
    assert [c.id for c in coupons] == [f"tg_{integration.ref}_coupon_{half.pk}"]
    customers = _all(client.v1.customers)
    assert len(customers) == 1
    assert customers[0].metadata.to_dict() == {
        "tollgateEntityId": "acme",
        "tollgateEnvironment": slug,
        "tollgateEntityUrl": f"{settings.public_url}/admin/customers/acme?env={slug}",
    }

    engine = SyncEngine(database, settings)
    await drain(engine)
    # The sync brings the rest of the catalog (the "trial" plan) and finds Checkout's objects.
    # (The engine drains every environment of the test database: read this account instead.)
    after = {p.id: p for p in _all(client.v1.products)}
    assert set(products) <= set(after)
    assert sorted(p.name for p in after.values() if p.id not in products) == ["App Trial Plan"]
    checkout_prices = {p.id for p in prices}
    assert {p.id for p in _all(client.v1.prices) if p.product in products} == checkout_prices
    assert len(_all(client.v1.coupons)) == 1
    assert [c.id for c in _all(client.v1.customers)] == [customers[0].id]
    # The subscription waits for its Checkout page: paying there creates it in Stripe, once.
    assert client.v1.subscriptions.list(params={"status": "all"}).data == []
    state = (await api.ok("get", "/sync-states?entityType=subscription"))["data"]
    assert [(s["entityId"], s["status"], s["reason"]) for s in state] == [
        (result["subscription"]["id"], "NOT_SYNCED", "awaiting_checkout")
    ]
