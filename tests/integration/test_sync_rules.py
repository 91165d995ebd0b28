"""The sync into the sandbox: mapping rules, not-synced reasons, versioned prices, coupons, limits."""

from __future__ import annotations

from typing import Any

import pytest
import stripe
from sqlalchemy import select

from app.billing import mapping
from app.billing.integration import IntegrationService
from app.billing.jobs import drain, reconcile_all
from app.billing.models import StripeIntegration
from app.billing.sync import SyncEngine
from app.db import Database
from app.environments.models import Environment
from app.settings import Settings
from tests.conftest import ApiEnv, problem_code
from tests.support.sandbox import RunningSandbox


class Synced:
    """A connected environment, its engine and a Stripe client on its sandbox account."""

    def __init__(self, api: ApiEnv, database: Database, settings: Settings, sandbox: RunningSandbox) -> None:
        self.api = api
        self.database = database
        self.settings = settings
        self.sandbox = sandbox
        self.engine = SyncEngine(database, settings)
        self.stripe: stripe.StripeClient
        self.env_pk = 0
        self.account_id = ""

    async def connect(self) -> None:
        await self.api.ok("put", "/integrations/stripe", {"mode": "SANDBOX"}, status=200)
        await self.connect_existing()

    async def connect_existing(self) -> None:
        async with self.database.session() as session:
            self.env_pk = await session.scalar(
                select(Environment.pk).where(Environment.slug == self.api.created.environment_id)
            )
            row = await session.scalar(
                select(StripeIntegration).where(StripeIntegration.environment_pk == self.env_pk)
            )
            assert row is not None
            key = IntegrationService(session, self.settings).api_key(row)
            self.account_id = row.account_id
        self.stripe = self.sandbox.client(key)

    async def drain(self) -> None:
        await drain(self.engine)

    async def states(self, entity_type: str | None = None) -> dict[str, dict[str, Any]]:
        query = "/sync-states?limit=100" + (f"&entityType={entity_type}" if entity_type else "")
        page = await self.api.ok("get", query)
        return {f"{s['entityType']}:{s['entityId']}": s for s in page["data"]}


@pytest.fixture
async def synced(
    api: ApiEnv, database: Database, settings: Settings, stripe_sandbox: RunningSandbox
) -> Synced:
    s = Synced(api, database, settings, stripe_sandbox)
    await s.connect()
    return s


def charge(amount: int, period: str = "MONTHLY", model: str = "FLAT_FEE", **extra: Any) -> dict[str, Any]:
    return {"billingPeriod": period, "currency": "usd", "billingModel": model, "amount": amount, **extra}


async def catalog(api: ApiEnv) -> None:
    await api.ok(
        "post",
        "/features",
        {"id": "seats", "name": "Seats", "featureType": "METERED", "meterType": "FLUCTUATING"},
    )
    await api.ok("post", "/products", {"id": "acme", "name": "Acme"})
    await api.ok(
        "post",
        "/plans",
        {
            "id": "basic",
            "productId": "acme",
            "name": "Basic",
            "pricingType": "PAID",
            "charges": [
                charge(1000),
                charge(10000, "ANNUALLY"),
                charge(500, model="PER_UNIT", featureId="seats"),
            ],
        },
    )
    await api.ok("post", "/plans/basic/publish", status=200)
    await api.ok("post", "/plans", {"id": "free", "productId": "acme", "name": "Free", "pricingType": "FREE"})
    await api.ok("post", "/plans/free/publish", status=200)
    await api.ok("post", "/coupons", {"id": "half", "name": "Half", "percentOff": 50, "duration": "FOREVER"})


async def test_full_mapping_and_not_synced_reasons(synced: Synced) -> None:
    api = synced.api
    await catalog(api)
    await api.ok(
        "post", "/customers", {"id": "payer", "name": "Payer Inc", "email": "p@example.com"}, status=201
    )
    await api.ok("post", "/customers", {"id": "freebie", "name": "Free Rider"}, status=201)
    await api.ok("post", "/customers", {"id": "lonely"}, status=201)
    await api.ok(
        "post",
        "/subscriptions",
        {
            "customerId": "payer",
            "planId": "basic",
            "subscriptionId": "s-paid",
            "unitQuantities": [{"featureId": "seats", "quantity": 3}],
        },
    )
    await api.ok(
        "post", "/subscriptions", {"customerId": "freebie", "planId": "free", "subscriptionId": "s-free"}
    )
    await synced.drain()

    states = await synced.states()
    assert states["plan:basic"]["status"] == "SYNCED", states["plan:basic"]
    assert states["plan:free"]["status"] == "NOT_SYNCED" and states["plan:free"]["reason"] == "free_plan"
    assert states["customer:payer"]["status"] == "SYNCED"
    assert states["customer:freebie"]["reason"] == "free_plans_only"
    assert states["customer:lonely"]["reason"] == "no_subscription"
    assert states["customer:lonely"]["reasonText"]
    assert states["subscription:s-free"]["reason"] == "free_plan"
    sub_state = states["subscription:s-paid"]
    assert sub_state["status"] == "SYNCED" and sub_state["billingId"].startswith("sub_")
    assert (
        sub_state["dashboardUrl"] == f"{synced.settings.sandbox_api_base}/dashboard/{sub_state['billingId']}"
    )

    product = synced.stripe.v1.products.retrieve(states["plan:basic"]["billingId"])
    assert product.name == "Acme Basic Plan"
    slug = api.created.environment_id
    assert product.metadata["tollgateEntityId"] == "basic"
    assert product.metadata["tollgateEnvironment"] == slug
    assert product.metadata["tollgateEntityUrl"] == f"http://testserver.local/admin/plans/basic?env={slug}"
    products = synced.stripe.v1.products.list(params={"limit": 100}).data
    assert sorted(p.name for p in products) == ["Acme Basic Plan", "Acme Basic Plan - Seats"]

    customer = synced.stripe.v1.customers.retrieve(states["customer:payer"]["billingId"])
    assert customer.name == "Payer Inc" and customer.email == "p@example.com"
    assert customer.metadata is not None
    assert customer.metadata["tollgateEntityUrl"].endswith(f"/admin/customers/payer?env={slug}")
    sub = synced.stripe.v1.subscriptions.retrieve(sub_state["billingId"])
    quantities = sorted((item.price.unit_amount, item.quantity) for item in sub["items"].data)
    assert quantities == [(500, 3), (1000, 1)]
    assert sub.metadata["tollgateEntityId"] == "s-paid"
    # Exactly one Stripe customer for the synced customer.
    assert len(synced.stripe.v1.customers.list(params={"limit": 100}).data) == 1

    # A second drain changes nothing; reconcile finds no drift.
    report = await reconcile_all(synced.database, synced.settings, environment_pk=synced.env_pk)
    assert report.changed == 0 and report.failed == 0


async def test_versioned_prices_and_coupon_archive(synced: Synced) -> None:
    api = synced.api
    await catalog(api)
    await synced.drain()
    states = await synced.states("plan")
    product_id = states["plan:basic"]["billingId"]
    old = {p.id for p in synced.stripe.v1.prices.list(params={"product": product_id, "active": True}).data}
    assert len(old) == 2
    await api.ok(
        "patch",
        "/plans/basic",
        {
            "charges": [
                charge(2000),
                charge(20000, "ANNUALLY"),
                charge(500, model="PER_UNIT", featureId="seats"),
            ]
        },
    )
    await synced.drain()
    active = {
        p.unit_amount
        for p in synced.stripe.v1.prices.list(params={"product": product_id, "active": True}).data
    }
    assert active == {2000, 20000}
    for price_id in old:
        assert synced.stripe.v1.prices.retrieve(price_id).active is False

    coupon_id = (await synced.states("coupon"))["coupon:half"]["billingId"]
    assert synced.stripe.v1.coupons.retrieve(coupon_id).percent_off == 50
    await api.ok("post", "/coupons/half/archive", status=200)
    await synced.drain()
    with pytest.raises(stripe.InvalidRequestError):
        synced.stripe.v1.coupons.retrieve(coupon_id)


async def test_sync_disabled_and_retry(synced: Synced) -> None:
    api = synced.api
    await catalog(api)
    await api.ok("patch", "/integrations/stripe", {"syncCustomers": False})
    await api.ok("post", "/customers", {"id": "c1"}, status=201)
    await api.ok("post", "/subscriptions", {"customerId": "c1", "planId": "basic", "subscriptionId": "s1"})
    await synced.drain()
    states = await synced.states()
    assert states["customer:c1"]["reason"] == "customer_sync_disabled"
    assert states["subscription:s1"]["reason"] == "customer_not_synced"
    await api.ok("patch", "/integrations/stripe", {"syncCustomers": True})
    await synced.drain()
    states = await synced.states()
    assert states["customer:c1"]["status"] == "SYNCED"
    assert states["subscription:s1"]["status"] == "SYNCED"
    retried = await api.ok("post", "/sync-states/customer/c1/retry", status=202)
    assert retried["status"] == "PENDING"
    bad = await api.post("/sync-states/widget/c1/retry")
    assert bad.status_code == 400 and problem_code(bad) == "invalid_entity_type"
    filtered = await api.ok("get", "/sync-states?status=PENDING")
    # Retrying a customer retries the subscriptions waiting for it.
    assert sorted(s["entityId"] for s in filtered["data"]) == ["c1", "s1"]


async def test_subscription_limit_per_customer(synced: Synced, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mapping, "MAX_SUBSCRIPTIONS_PER_CUSTOMER", 2)
    api = synced.api
    await catalog(api)
    await api.ok("post", "/products", {"id": "p2", "name": "P2"})
    await api.ok("post", "/products", {"id": "p3", "name": "P3"})
    for product in ("p2", "p3"):
        await api.ok(
            "post",
            "/plans",
            {
                "id": f"plan-{product}",
                "productId": product,
                "name": "X",
                "pricingType": "PAID",
                "charges": [charge(100)],
            },
        )
        await api.ok("post", f"/plans/plan-{product}/publish", status=200)
    await api.ok("post", "/customers", {"id": "many"}, status=201)
    for i, plan in enumerate(("basic", "plan-p2", "plan-p3")):
        await api.ok(
            "post", "/subscriptions", {"customerId": "many", "planId": plan, "subscriptionId": f"m{i}"}
        )
        await synced.drain()
    states = await synced.states("subscription")
    assert [states[f"subscription:m{i}"]["status"] for i in range(3)] == ["SYNCED", "SYNCED", "FAILED"]
    assert "at most 2 active subscriptions" in states["subscription:m2"]["errorMessage"]
    assert states["subscription:m2"]["canRetry"] is True


async def test_changes_flow_to_stripe_addons_coupon_quantities_rename_cancel(synced: Synced) -> None:
    api = synced.api
    await catalog(api)
    await api.ok(
        "post",
        "/addons",
        {
            "id": "extra",
            "productId": "acme",
            "name": "Extra Seats",
            "maxQuantity": 5,
            "charges": [charge(300)],
        },
    )
    await api.ok("post", "/addons/extra/publish", status=200)
    await api.ok("patch", "/plans/basic", {"compatibleAddonIds": ["extra"]})
    await api.ok("post", "/customers", {"id": "buyer", "name": "Buyer"}, status=201)
    await api.ok(
        "post",
        "/subscriptions",
        {
            "customerId": "buyer",
            "planId": "basic",
            "subscriptionId": "s1",
            "addons": [{"addonId": "extra", "quantity": 2}],
            "unitQuantities": [{"featureId": "seats", "quantity": 1}],
            "couponId": "half",
        },
    )
    await synced.drain()
    states = await synced.states()
    addon = synced.stripe.v1.products.retrieve(states["addon:extra"]["billingId"])
    assert addon.name == "Acme Extra Seats Add-on"
    assert addon.metadata is not None and addon.metadata["tollgateEntityUrl"].endswith(
        "/admin/addons/extra?env=" + api.created.environment_id
    )
    sub_id = states["subscription:s1"]["billingId"]

    def items() -> list[tuple[int | None, int | None]]:
        sub = synced.stripe.v1.subscriptions.retrieve(sub_id)
        return sorted((i.price.unit_amount, i.quantity) for i in sub["items"].data)

    assert items() == [(300, 2), (500, 1), (1000, 1)]
    sub = synced.stripe.v1.subscriptions.retrieve(sub_id)
    assert sub.discounts, "the coupon is applied as a discount"

    await api.ok(
        "patch",
        "/subscriptions/s1",
        {
            "unitQuantities": [{"featureId": "seats", "quantity": 4}],
            "addons": [{"addonId": "extra", "quantity": 3}],
        },
    )
    await api.ok("patch", "/products/acme", {"name": "Acme Cloud"})
    await api.ok("patch", "/customers/buyer", {"email": "buyer@example.com"})
    await synced.drain()
    assert items() == [(300, 3), (500, 4), (1000, 1)]
    assert (
        synced.stripe.v1.products.retrieve(states["plan:basic"]["billingId"]).name == "Acme Cloud Basic Plan"
    )
    assert (
        synced.stripe.v1.customers.retrieve(states["customer:buyer"]["billingId"]).email
        == "buyer@example.com"
    )

    await api.ok(
        "post", "/subscriptions/s1/cancel", {"cancellationTime": "END_OF_BILLING_PERIOD"}, status=200
    )
    await synced.drain()
    assert synced.stripe.v1.subscriptions.retrieve(sub_id).cancel_at_period_end is True
    await api.ok("post", "/subscriptions/s1/cancel", {"cancellationTime": "IMMEDIATE"}, status=200)
    await synced.drain()
    assert synced.stripe.v1.subscriptions.retrieve(sub_id).status == "canceled"
    # Exactly one Stripe subscription and customer throughout.
    assert len(synced.stripe.v1.subscriptions.list(params={"status": "all"}).data) == 1
    assert len(synced.stripe.v1.customers.list().data) == 1


async def test_trials_converting_are_synced_cancelling_ones_are_not(synced: Synced) -> None:
    api = synced.api
    await catalog(api)
    for ref, behavior in (("trial-paid", "CONVERT_TO_PAID"), ("trial-free", "CANCEL_SUBSCRIPTION")):
        await api.ok(
            "post",
            "/plans",
            {
                "id": ref,
                "productId": "acme",
                "name": ref.title(),
                "pricingType": "PAID",
                "charges": [charge(700)],
                "defaultTrial": {"durationDays": 14, "trialEndBehavior": behavior},
            },
        )
        await api.ok("post", f"/plans/{ref}/publish", status=200)
    await api.ok("post", "/customers", {"id": "converting"}, status=201)
    await api.ok("post", "/customers", {"id": "trying"}, status=201)
    await api.ok(
        "post", "/subscriptions", {"customerId": "converting", "planId": "trial-paid", "subscriptionId": "t1"}
    )
    await api.ok(
        "post", "/subscriptions", {"customerId": "trying", "planId": "trial-free", "subscriptionId": "t2"}
    )
    await synced.drain()
    states = await synced.states()
    assert states["subscription:t1"]["status"] == "SYNCED"
    assert states["subscription:t2"]["reason"] == "trial"
    assert states["customer:trying"]["reason"] == "trials_only"
    sub = synced.stripe.v1.subscriptions.retrieve(states["subscription:t1"]["billingId"])
    assert sub.status == "trialing" and sub.trial_end is not None


async def test_reconcile_repairs_drift(synced: Synced) -> None:
    api = synced.api
    await catalog(api)
    await api.ok("post", "/customers", {"id": "payer", "name": "Payer"}, status=201)
    await api.ok("post", "/subscriptions", {"customerId": "payer", "planId": "basic", "subscriptionId": "s1"})
    await synced.drain()
    states = await synced.states()
    product_id = states["plan:basic"]["billingId"]
    customer_id = states["customer:payer"]["billingId"]
    sub_id = states["subscription:s1"]["billingId"]
    # Someone edits Stripe by hand.
    synced.stripe.v1.products.update(product_id, params={"name": "Renamed by hand"})
    synced.stripe.v1.customers.update(customer_id, params={"name": "Wrong"})
    synced.stripe.v1.subscriptions.update(sub_id, params={"cancel_at_period_end": True})
    report = await reconcile_all(synced.database, synced.settings, environment_pk=synced.env_pk)
    assert report.changed == 3 and report.failed == 0, report
    assert synced.stripe.v1.products.retrieve(product_id).name == "Acme Basic Plan"
    assert synced.stripe.v1.customers.retrieve(customer_id).name == "Payer"
    assert synced.stripe.v1.subscriptions.retrieve(sub_id).cancel_at_period_end is False
    again = await reconcile_all(synced.database, synced.settings, environment_pk=synced.env_pk)
    assert again.changed == 0
