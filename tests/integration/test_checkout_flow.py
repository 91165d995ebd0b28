"""Checkout on demand: PAYMENT_REQUIRED, the session Stripe receives, completion and expiry.

Everything is read back from the sandbox through the SDK (the session Tollgate created, its
line items), and paid on the sandbox's hosted page: nothing about Stripe is mocked.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

from app.billing.checkout import expire_stale_checkouts, on_checkout_session
from app.billing.models import CheckoutSession
from app.db import Database
from app.settings import Settings
from tests.conftest import ApiEnv, problem_code
from tests.support.billing import DECLINED_CARD, event_context, path_of, pay, query_of, stripe_for
from tests.support.catalog_factory import CatalogFactory, flat, per_unit
from tests.support.sandbox import RunningSandbox

OPTIONS = {"successUrl": "https://host.example/done?from=tg", "cancelUrl": "https://host.example/pricing"}


@pytest.fixture
async def catalog(api: ApiEnv, database: Database) -> CatalogFactory:
    f = CatalogFactory(database, api)
    await f.product("app")
    await f.feature("seats", "METERED", "FLUCTUATING")
    await f.feature("sso")
    await f.addon("extra", entitlements={"seats": {"limit": 10}}, charges=[flat(500)], max_quantity=5)
    await f.plan("free", pricing="FREE", entitlements={"seats": {"limit": 1}})
    await f.plan(
        "pro",
        display_order=2,
        entitlements={"sso": {}},
        charges=[flat(3000), per_unit(700, "seats", min=1, max=50)],
        addons=["extra"],
    )
    await f.plan("trial", charges=[flat(1500)], trial_days=14)
    await f.coupon("half", percent_off_bp=5000)
    await f.customer("acme")
    await api.ok("put", "/integrations/stripe", {"mode": "SANDBOX"}, status=200)
    return f


async def provision_pro(api: ApiEnv, **extra: Any) -> Any:
    body = {
        "customerId": "acme",
        "planId": "pro",
        "unitQuantities": [{"featureId": "seats", "quantity": 3}],
        "addons": [{"addonId": "extra", "quantity": 2}],
        "checkoutOptions": OPTIONS,
        **extra,
    }
    return await api.ok("post", "/subscriptions", body)


async def test_without_checkout_options_the_subscription_is_invoiced(
    api: ApiEnv, catalog: CatalogFactory
) -> None:
    invoiced = await api.ok("post", "/subscriptions", {"customerId": "acme", "planId": "pro"})
    assert invoiced["status"] == "SUCCESS"
    assert invoiced["subscription"]["status"] == "ACTIVE"
    assert "checkoutUrl" not in invoiced or invoiced["checkoutUrl"] is None


async def test_paid_plan_without_payment_method_answers_payment_required(
    api: ApiEnv, catalog: CatalogFactory, database: Database, settings: Settings
) -> None:
    result = await provision_pro(api)
    assert result["status"] == "PAYMENT_REQUIRED"
    assert result["subscription"]["status"] == "PAYMENT_PENDING"
    sub_id = result["subscription"]["id"]
    check = await api.ok("get", "/customers/acme/entitlements/sso")
    assert check["hasAccess"] is False, "nothing is granted before payment"

    client = await stripe_for(database, settings, catalog)
    sessions = client.v1.checkout.sessions.list(params={"limit": 10}).data
    assert len(sessions) == 1
    session = client.v1.checkout.sessions.retrieve(sessions[0].id, params={"expand": ["line_items"]})
    assert result["checkoutUrl"] == session.url
    assert session.mode == "subscription"
    assert session.client_reference_id == sub_id
    assert session.metadata is not None and session.metadata["tollgateSubscriptionId"] == sub_id
    assert session.customer is not None and session.customer_email is None
    assert session.success_url is not None and session.success_url.startswith(
        "http://testserver.local/checkout/return/"
    )
    assert session.cancel_url is not None and session.cancel_url.endswith("/cancel")
    assert session.automatic_tax.enabled is False
    assert session.billing_address_collection == "auto"
    assert not session.allow_promotion_codes
    assert session.line_items is not None
    lines = sorted((li.quantity, li.price.unit_amount) for li in session.line_items.data if li.price)
    assert lines == [(1, 3000), (2, 500), (3, 700)], "flat fee, 2 add-ons, 3 seats"
    customer = client.v1.customers.retrieve(str(session.customer))
    assert customer.metadata is not None and customer.metadata["tollgateEntityId"] == "acme"

    # Provisioning again while it waits opens a fresh page and closes the old one: one Stripe customer.
    again = await provision_pro(api)
    assert again["status"] == "PAYMENT_REQUIRED" and again["checkoutUrl"] != result["checkoutUrl"]
    assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"
    assert len(client.v1.customers.list(params={"limit": 10}).data) == 1
    assert len(client.v1.prices.list(params={"limit": 10}).data) == 3, "prices are found, not re-created"

    declined = await pay(again["checkoutUrl"], DECLINED_CARD)
    assert declined.status_code == 402
    status = await api.ok("get", f"/subscriptions/{sub_id}/checkout-status")
    assert status["status"] == "PENDING"
    assert status["subscription"]["status"] == "PAYMENT_PENDING"

    paid = await pay(again["checkoutUrl"])
    assert paid.status_code in (302, 303), paid.text
    back = await api.client.get(path_of(paid.headers["location"]), follow_redirects=False)
    assert back.status_code == 303
    location = back.headers["location"]
    assert location.startswith("https://host.example/done?")
    assert query_of(location) == {"from": "tg", "checkoutCompleted": "true", "subscriptionId": sub_id}

    status = await api.ok("get", f"/subscriptions/{sub_id}/checkout-status")
    assert status["status"] == "COMPLETED"
    assert status["subscription"]["status"] == "ACTIVE"
    assert (await api.ok("get", "/customers/acme/entitlements/sso"))["hasAccess"] is True
    stripe_sub = client.v1.subscriptions.list(params={"limit": 10}).data
    assert len(stripe_sub) == 1
    assert stripe_sub[0].metadata["tollgateSubscriptionId"] == sub_id
    async with database.session() as db:
        from app.customers.models import Customer
        from app.subscriptions.models import Subscription

        row = await db.scalar(select(Subscription).where(Subscription.ref == sub_id))
        cust = await db.scalar(
            select(Customer).where(Customer.ref == "acme", Customer.environment_pk == await catalog.env_pk())
        )
        assert row is not None and cust is not None
        assert row.billing_id == stripe_sub[0].id
        assert cust.billing_id == stripe_sub[0].customer and cust.has_payment_method is True

    # The webhook arriving afterwards changes nothing (handlers are idempotent).
    async with database.session() as db:
        ctx = await event_context(database, settings, catalog, db)
        await on_checkout_session(ctx, {"data": {"object": {"id": session.id}}})
        await on_checkout_session(ctx, {"data": {"object": {"id": again["checkoutUrl"].rsplit("/", 1)[-1]}}})
    assert (await api.ok("get", f"/subscriptions/{sub_id}"))["status"] == "ACTIVE"

    # With a card on file, the next paid subscription starts at once (no Checkout).
    await catalog.product("other")
    await catalog.plan("other-pro", "other", charges=[flat(100)])
    direct = await api.ok("post", "/subscriptions", {"customerId": "acme", "planId": "other-pro"})
    assert direct["status"] == "SUCCESS" and direct["checkoutUrl"] is None
    assert direct["subscription"]["status"] == "ACTIVE"


async def test_completion_event_activates(
    api: ApiEnv, catalog: CatalogFactory, database: Database, settings: Settings
) -> None:
    result = await provision_pro(api)
    sub_id = result["subscription"]["id"]
    paid = await pay(result["checkoutUrl"])
    assert paid.status_code in (302, 303)
    async with database.session() as db:
        ctx = await event_context(database, settings, catalog, db)
        await on_checkout_session(ctx, {"data": {"object": {"id": result["checkoutUrl"].rsplit("/", 1)[-1]}}})
    assert (await api.ok("get", f"/subscriptions/{sub_id}"))["status"] == "ACTIVE"
    assert (await api.ok("get", "/customers/acme/entitlements/sso"))["hasAccess"] is True


async def test_cancel_and_expiry_clean_up(
    api: ApiEnv, catalog: CatalogFactory, database: Database, settings: Settings
) -> None:
    result = await provision_pro(api)
    sub_id = result["subscription"]["id"]
    session_id = result["checkoutUrl"].rsplit("/", 1)[-1]
    async with database.session() as db:
        token = await db.scalar(select(CheckoutSession.token).where(CheckoutSession.stripe_id == session_id))
    back = await api.client.get(f"/checkout/return/{token}/cancel", follow_redirects=False)
    assert back.status_code == 303
    assert query_of(back.headers["location"]) == {"checkoutCompleted": "false", "subscriptionId": sub_id}
    assert (await api.ok("get", f"/subscriptions/{sub_id}"))["status"] == "PAYMENT_PENDING"

    client = await stripe_for(database, settings, catalog)
    client.v1.checkout.sessions.expire(session_id)
    async with database.session() as db:
        ctx = await event_context(database, settings, catalog, db)
        await on_checkout_session(ctx, {"data": {"object": {"id": session_id}}})
    status = await api.ok("get", f"/subscriptions/{sub_id}/checkout-status")
    assert status["status"] == "EXPIRED"
    assert status["subscription"]["status"] == "CANCELED"
    assert (await api.client.get("/checkout/return/nope/success")).status_code == 404


async def test_options_tax_promotion_codes_coupon_trial(
    api: ApiEnv,
    catalog: CatalogFactory,
    database: Database,
    settings: Settings,
    stripe_sandbox: RunningSandbox,
) -> None:
    client = await stripe_for(database, settings, catalog)
    refused = await api.patch("/integrations/stripe", {"stripeTax": True})
    assert refused.status_code == 422 and problem_code(refused) == "stripe_tax_not_active"
    assert "head_office" in refused.json()["detail"]
    client.v1.tax.settings.update(params={"head_office": {"address": {"country": "DE"}}})
    assert (await api.ok("patch", "/integrations/stripe", {"stripeTax": True}))["stripeTax"] is True

    result = await provision_pro(
        api, checkoutOptions={**OPTIONS, "allowPromotionCodes": True, "collectBillingAddress": True}
    )
    session = client.v1.checkout.sessions.retrieve(result["checkoutUrl"].rsplit("/", 1)[-1])
    assert session.automatic_tax.enabled is True
    assert session.billing_address_collection == "required"
    assert session.tax_id_collection is not None and session.tax_id_collection.enabled is True
    assert session.allow_promotion_codes is True
    assert not session.discounts

    # A coupon is applied as a discount (Stripe takes it or the promotion-code box, not both).
    await catalog.customer("beta")
    with_coupon = await api.ok(
        "post",
        "/subscriptions",
        {
            "customerId": "beta",
            "planId": "pro",
            "couponId": "half",
            "checkoutOptions": {**OPTIONS, "allowPromotionCodes": True},
        },
    )
    coupon_session = client.v1.checkout.sessions.retrieve(with_coupon["checkoutUrl"].rsplit("/", 1)[-1])
    assert coupon_session.discounts and coupon_session.discounts[0].coupon
    assert not coupon_session.allow_promotion_codes
    assert client.v1.coupons.retrieve(str(coupon_session.discounts[0].coupon)).percent_off == 50

    # A trial starts at once; the Checkout collects the card for when it ends.
    await catalog.customer("gamma")
    trial = await api.ok(
        "post", "/subscriptions", {"customerId": "gamma", "planId": "trial", "checkoutOptions": OPTIONS}
    )
    assert trial["status"] == "SUCCESS" and trial["subscription"]["status"] == "IN_TRIAL"
    trial_session_id = trial["checkoutUrl"].rsplit("/", 1)[-1]
    # The sandbox keeps subscription_data internally; read it from its store.
    raw = _raw_session(stripe_sandbox, trial_session_id)
    data = raw["_subscription_data"]
    assert data["trial_end"] > 0 and data["metadata"]["tollgateSubscriptionId"] == trial["subscription"]["id"]
    paid = await pay(trial["checkoutUrl"], address_line1="Unter den Linden 1", address_country="DE")
    assert paid.status_code in (302, 303), paid.text
    stripe_sub = client.v1.subscriptions.retrieve(
        str(client.v1.checkout.sessions.retrieve(trial_session_id).subscription)
    )
    assert stripe_sub.status == "trialing"
    assert stripe_sub.automatic_tax.enabled is True


def _raw_session(sandbox: RunningSandbox, session_id: str) -> dict[str, Any]:
    store = sandbox.sandbox.store
    with store.lock:
        for account in store.accounts():
            found = store.get(account, session_id, "checkout.session")
            if found is not None:
                return found
    raise AssertionError(session_id)


async def test_no_integration_means_plain_provisioning(api: ApiEnv, database: Database) -> None:
    f = CatalogFactory(database, api)
    await f.product("app")
    await f.plan("pro", charges=[flat(3000)])
    await f.customer("solo")
    result = await api.ok("post", "/subscriptions", {"customerId": "solo", "planId": "pro"})
    assert result["status"] == "SUCCESS" and result["subscription"]["status"] == "ACTIVE"
    async with database.session() as db:
        opened = await db.scalar(
            select(func.count())
            .select_from(CheckoutSession)
            .where(CheckoutSession.environment_pk == await f.env_pk())
        )
    assert opened == 0


async def test_abandoned_checkout_is_closed_after_its_expiry(
    api: ApiEnv, catalog: CatalogFactory, database: Database, settings: Settings
) -> None:
    """No `expired` event ever came: the worker job closes it in Stripe and cleans up."""
    result = await provision_pro(api)
    sub_id = result["subscription"]["id"]
    session_id = result["checkoutUrl"].rsplit("/", 1)[-1]
    async with database.session() as db:
        row = await db.scalar(select(CheckoutSession).where(CheckoutSession.stripe_id == session_id))
        assert row is not None
        expires_at = row.expires_at
    # The job sweeps every environment (other tests' sessions too): look only at ours.
    await expire_stale_checkouts(database, settings, expires_at - dt.timedelta(seconds=1))
    assert (await api.ok("get", f"/subscriptions/{sub_id}/checkout-status"))["status"] == "PENDING"
    while await expire_stale_checkouts(database, settings, expires_at + dt.timedelta(seconds=1)):
        pass
    client = await stripe_for(database, settings, catalog)
    assert client.v1.checkout.sessions.retrieve(session_id).status == "expired"
    status = await api.ok("get", f"/subscriptions/{sub_id}/checkout-status")
    assert status["status"] == "EXPIRED" and status["subscription"]["status"] == "CANCELED"


async def test_cancelled_while_waiting_closes_the_page(
    api: ApiEnv, catalog: CatalogFactory, database: Database, settings: Settings
) -> None:
    result = await provision_pro(api)
    sub_id = result["subscription"]["id"]
    session_id = result["checkoutUrl"].rsplit("/", 1)[-1]
    canceled = await api.ok(
        "post", f"/subscriptions/{sub_id}/cancel", {"cancellationTime": "IMMEDIATE"}, status=200
    )
    assert canceled["status"] == "CANCELED"
    while await expire_stale_checkouts(database, settings, dt.datetime.now(dt.UTC)):
        pass
    client = await stripe_for(database, settings, catalog)
    assert client.v1.checkout.sessions.retrieve(session_id).status == "expired"
    assert (await api.ok("get", f"/subscriptions/{sub_id}/checkout-status"))["status"] == "EXPIRED"


async def test_existing_stripe_customer_is_used(
    api: ApiEnv, catalog: CatalogFactory, database: Database, settings: Settings
) -> None:
    """A customer already in Stripe (e.g. created by the sync) pays as that Stripe customer."""
    from app.customers.models import Customer

    client = await stripe_for(database, settings, catalog)
    existing = client.v1.customers.create(
        params={"email": "acme@example.com", "metadata": {"tollgateEntityId": "acme"}}
    )
    async with database.session() as db:
        row = await db.scalar(
            select(Customer).where(Customer.ref == "acme", Customer.environment_pk == await catalog.env_pk())
        )
        assert row is not None
        row.billing_id = existing.id
    result = await provision_pro(api)
    session = client.v1.checkout.sessions.retrieve(result["checkoutUrl"].rsplit("/", 1)[-1])
    assert session.customer == existing.id and session.customer_email is None
    assert [c.id for c in client.v1.customers.list(params={"limit": 10}).data] == [existing.id]


async def test_checkout_job_runs_in_the_worker(database: Database, settings: Settings) -> None:
    from app.billing.checkout import checkout_jobs
    from app.worker import Worker

    worker = Worker(database, checkout_jobs(settings))
    assert set(await worker.run_once()) == {"checkout-expiry"}


async def test_free_customer_upgrading_keeps_the_free_plan_until_paid(
    api: ApiEnv, catalog: CatalogFactory, database: Database, settings: Settings
) -> None:
    free = await api.ok("post", "/subscriptions", {"customerId": "acme", "planId": "free"})
    free_id = free["subscription"]["id"]
    assert free["subscription"]["status"] == "ACTIVE"

    # Abandoned: the customer stays on the free plan, with its entitlements.
    first = await provision_pro(api)
    assert first["status"] == "PAYMENT_REQUIRED" and first["checkoutUrl"]
    pending_id = first["subscription"]["id"]
    assert pending_id != free_id and first["subscription"]["status"] == "PAYMENT_PENDING"
    assert (await api.ok("get", f"/subscriptions/{free_id}"))["status"] == "ACTIVE"
    assert (await api.ok("get", "/customers/acme/entitlements/sso"))["hasAccess"] is False
    seats = await api.ok("get", "/customers/acme/entitlements/seats")
    assert seats["hasAccess"] is True and seats["usageLimit"] == 1, "the free plan still grants"
    paywall = await api.ok("get", "/subscriptions?customerId=acme&status=ACTIVE")
    assert [s["id"] for s in paywall["data"]] == [free_id]
    # Asked again while it waits: the same waiting subscription, a fresh payment page.
    again = await provision_pro(api)
    assert again["subscription"]["id"] == pending_id and again["checkoutUrl"] != first["checkoutUrl"]
    client = await stripe_for(database, settings, catalog)
    session_id = again["checkoutUrl"].rsplit("/", 1)[-1]
    client.v1.checkout.sessions.expire(session_id)
    async with database.session() as db:
        ctx = await event_context(database, settings, catalog, db)
        await on_checkout_session(ctx, {"data": {"object": {"id": session_id}}})
    assert (await api.ok("get", f"/subscriptions/{pending_id}"))["status"] == "CANCELED"
    assert (await api.ok("get", f"/subscriptions/{free_id}"))["status"] == "ACTIVE"

    # Paid: the paid subscription starts and replaces the free one, which ends now.
    second = await provision_pro(api)
    assert second["status"] == "PAYMENT_REQUIRED"
    paid_id = second["subscription"]["id"]
    assert paid_id not in (free_id, pending_id)
    assert (await pay(second["checkoutUrl"])).status_code in (302, 303)
    async with database.session() as db:
        ctx = await event_context(database, settings, catalog, db)
        await on_checkout_session(ctx, {"data": {"object": {"id": second["checkoutUrl"].rsplit("/", 1)[-1]}}})
    assert (await api.ok("get", f"/subscriptions/{paid_id}"))["status"] == "ACTIVE"
    ended = await api.ok("get", f"/subscriptions/{free_id}")
    assert ended["status"] == "CANCELED"
    assert (await api.ok("get", "/customers/acme/entitlements/sso"))["hasAccess"] is True
    live = await api.ok("get", "/subscriptions?customerId=acme&status=ACTIVE")
    assert [s["id"] for s in live["data"]] == [paid_id], "one live subscription in the product"


async def test_the_preview_of_a_waiting_upgrade_is_what_checkout_sells(
    api: ApiEnv, catalog: CatalogFactory
) -> None:
    await api.ok("post", "/subscriptions", {"customerId": "acme", "planId": "free"})
    body = {"customerId": "acme", "planId": "pro", "unitQuantities": [{"featureId": "seats", "quantity": 3}]}
    invoiced = await api.ok("post", "/subscriptions/preview", body, status=200)
    assert invoiced["paymentFirst"] is False and invoiced["changeType"] == "UPGRADE"
    paid_first = await api.ok(
        "post", "/subscriptions/preview", {**body, "checkoutOptions": OPTIONS}, status=200
    )
    assert paid_first["paymentFirst"] is True and paid_first["changeType"] == "UPGRADE"
    assert paid_first["amountDueNow"] == 3000 + 3 * 700, "a full period of the new subscription"
    assert [line["kind"] for line in paid_first["linesDueNow"]] != ["PRORATION_CREDIT", "PRORATION_CHARGE"]
    result = await provision_pro(api)
    assert result["status"] == "PAYMENT_REQUIRED"
