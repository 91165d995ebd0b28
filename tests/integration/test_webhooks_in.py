"""Stripe -> Tollgate: signed deliveries from the sandbox, stored once, processed by the worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.billing.jobs import drain
from app.billing.models import StripeIntegration, WebhookEvent, WebhookStatus
from app.billing.sync import SyncEngine
from app.billing.webhooks import process_pending
from app.db import Database, utcnow
from app.sandbox.webhooks import sign
from app.settings import Settings
from app.subscriptions.models import Subscription
from tests.conftest import ApiEnv
from tests.support.live_app import LiveApp, live_app
from tests.support.sandbox import RunningSandbox


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveApp]:
    with live_app(settings) as app:
        yield app


class Http:
    def __init__(self, live: LiveApp, api: ApiEnv) -> None:
        self.http = httpx.Client(base_url=live.url, headers=api.headers, timeout=30)

    def ok(self, method: str, path: str, json: Any = None, status: int | None = None) -> Any:
        response = self.http.request(method, "/api/v1" + path, json=json)
        expected = status or (201 if method == "POST" else 200)
        assert response.status_code == expected, (path, response.status_code, response.text)
        return response.json()


def charge(amount: int) -> dict[str, Any]:
    return {"billingPeriod": "MONTHLY", "currency": "usd", "billingModel": "FLAT_FEE", "amount": amount}


async def setup_paid_subscription(
    http: Http, database: Database, settings: Settings
) -> tuple[dict[str, Any], str]:
    integration = http.ok("PUT", "/integrations/stripe", {"mode": "SANDBOX"}, status=200)
    http.ok("POST", "/products", {"id": "acme", "name": "Acme"})
    http.ok(
        "POST",
        "/plans",
        {
            "id": "basic",
            "productId": "acme",
            "name": "Basic",
            "pricingType": "PAID",
            "charges": [charge(1000)],
        },
    )
    http.ok("POST", "/plans/basic/publish", status=200)
    http.ok("POST", "/customers", {"id": "c1", "email": "c1@example.com"})
    http.ok("POST", "/subscriptions", {"customerId": "c1", "planId": "basic", "subscriptionId": "s1"})
    await drain(SyncEngine(database, settings))
    state = http.ok("GET", "/sync-states?entityType=subscription")["data"][0]
    assert state["status"] == "SYNCED", state
    return integration, state["billingId"]


async def wait_processed(
    database: Database, settings: Settings, sandbox: RunningSandbox, until: Any, seconds: float = 10
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sandbox.control.drain(timeout=2)
        await process_pending(database, settings, utcnow())
        if await until():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def sub_status(database: Database, ref: str = "s1") -> str:
    async with database.session() as session:
        sub = await session.scalar(
            select(Subscription).where(Subscription.ref == ref).order_by(Subscription.pk.desc())
        )
        assert sub is not None
        return sub.status.value


async def test_stripe_cancel_reaches_tollgate_with_duplicates_and_reordering(
    api: ApiEnv, database: Database, live: LiveApp, stripe_sandbox: RunningSandbox
) -> None:
    http = Http(live, api)
    integration, sub_id = await setup_paid_subscription(http, database, live.settings)
    from tests.integration.test_sync_rules import Synced

    synced = Synced(api, database, live.settings, stripe_sandbox)
    await synced.connect_existing()
    stripe_sandbox.control.webhook_faults(duplicate=1.0, reorder=True, seed=7)
    try:
        synced.stripe.v1.subscriptions.update(sub_id, params={"cancel_at_period_end": True})

        async def canceling() -> bool:
            async with database.session() as session:
                sub = await session.scalar(select(Subscription).where(Subscription.billing_id == sub_id))
                return sub is not None and sub.cancel_at is not None

        await wait_processed(database, live.settings, stripe_sandbox, canceling)
        synced.stripe.v1.subscriptions.cancel(sub_id)

        async def canceled() -> bool:
            async with database.session() as session:
                sub = await session.scalar(select(Subscription).where(Subscription.billing_id == sub_id))
                return sub is not None and sub.status.value == "CANCELED"

        await wait_processed(database, live.settings, stripe_sandbox, canceled)
    finally:
        stripe_sandbox.control.webhook_faults()
    async with database.session() as session:
        integration_pk = await session.scalar(
            select(StripeIntegration.pk).where(StripeIntegration.ref == integration["integrationId"])
        )
        rows = (
            await session.execute(
                select(WebhookEvent.event_id, func.count())
                .where(WebhookEvent.integration_pk == integration_pk)
                .group_by(WebhookEvent.event_id)
            )
        ).all()
        failed = await session.scalar(
            select(func.count())
            .select_from(WebhookEvent)
            .where(WebhookEvent.integration_pk == integration_pk, WebhookEvent.status == WebhookStatus.FAILED)
        )
    assert rows and all(count == 1 for _, count in rows), "duplicate deliveries are stored once"
    assert failed == 0
    deliveries = stripe_sandbox.control.deliveries(account=synced.account_id)
    assert len(deliveries) > len(rows) - 1  # duplicates were really sent
    # Entitlements ended: the sync does not bring the subscription back, Stripe stays canceled.
    await drain(SyncEngine(database, live.settings))
    assert synced.stripe.v1.subscriptions.retrieve(sub_id).status == "canceled"


async def test_signature_and_unknown_integration(
    api: ApiEnv, database: Database, live: LiveApp, stripe_sandbox: RunningSandbox
) -> None:
    http = Http(live, api)
    integration = http.ok("PUT", "/integrations/stripe", {"mode": "SANDBOX"}, status=200)
    url = f"{live.url}/webhooks/stripe/{integration['integrationId']}"
    raw = httpx.AsyncClient(timeout=30)
    body = '{"id": "evt_test_1", "type": "invoice.paid", "created": 1, "data": {"object": {"id": "in_x", "object": "invoice"}}}'
    bad = await raw.post(url, content=body, headers={"Stripe-Signature": sign(body, "whsec_wrong")})
    assert bad.status_code == 400
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert bad.json()["code"] == "webhook_signature_invalid"
    missing = await raw.post(
        f"{live.url}/webhooks/stripe/int_nope", content=body, headers={"Stripe-Signature": "t=1,v1=x"}
    )
    assert missing.status_code == 404 and missing.json()["code"] == "integration_not_found"
    from app.billing.webhooks import _endpoint

    secret = (await _endpoint(database, live.settings, integration["integrationId"])).secret
    headers = {"Stripe-Signature": sign(body, secret)}
    first = await raw.post(url, content=body, headers=headers)
    second = await raw.post(url, content=body, headers=headers)
    assert first.status_code == 200 and first.json() == {"received": True, "duplicate": False}
    assert second.status_code == 200 and second.json()["duplicate"] is True
    # Not ours (no such invoice in Stripe for us): processed without touching anything.
    await process_pending(database, live.settings, utcnow())
    async with database.session() as session:
        row = await session.scalar(select(WebhookEvent).where(WebhookEvent.event_id == "evt_test_1"))
        assert row is not None and row.payload == body
        assert row.status in (WebhookStatus.PROCESSED, WebhookStatus.IGNORED), row.error


async def test_events_about_objects_that_are_not_ours_end_ignored(
    api: ApiEnv, database: Database, live: LiveApp, stripe_sandbox: RunningSandbox
) -> None:
    http = Http(live, api)
    integration, sub_id = await setup_paid_subscription(http, database, live.settings)
    from tests.integration.test_sync_rules import Synced

    synced = Synced(api, database, live.settings, stripe_sandbox)
    await synced.connect_existing()
    # Someone else's subscription in the same Stripe account (made in the Dashboard, say).
    stranger = synced.stripe.v1.customers.create(params={"name": "Not a Tollgate customer"})
    price = synced.stripe.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 300,
            "recurring": {"interval": "month"},
            "product_data": {"name": "Theirs"},
        }
    )
    theirs = synced.stripe.v1.subscriptions.create(
        params={
            "customer": stranger.id,
            "items": [{"price": price.id}],
            "collection_method": "send_invoice",
            "days_until_due": 30,
        }
    )
    synced.stripe.v1.subscriptions.cancel(theirs.id)
    synced.stripe.v1.subscriptions.update(sub_id, params={"cancel_at_period_end": True})

    async def ours_applied() -> bool:
        async with database.session() as session:
            sub = await session.scalar(select(Subscription).where(Subscription.billing_id == sub_id))
            return sub is not None and sub.cancel_at is not None

    await wait_processed(database, live.settings, stripe_sandbox, ours_applied)
    stripe_sandbox.control.drain(timeout=5)
    while await process_pending(database, live.settings, utcnow()):
        pass
    async with database.session() as session:
        integration_pk = await session.scalar(
            select(StripeIntegration.pk).where(StripeIntegration.ref == integration["integrationId"])
        )
        rows = (
            await session.execute(
                select(WebhookEvent.event_type, WebhookEvent.object_id, WebhookEvent.status).where(
                    WebhookEvent.integration_pk == integration_pk
                )
            )
        ).all()
    theirs_events = {(kind, status) for kind, obj, status in rows if obj == theirs.id}
    assert {kind for kind, _ in theirs_events} >= {
        "customer.subscription.created",
        "customer.subscription.deleted",
    }, rows
    assert {status for _, status in theirs_events} == {WebhookStatus.IGNORED}, theirs_events
    their_invoices = [
        status for kind, obj, status in rows if kind.startswith("invoice.") and obj == theirs.latest_invoice
    ]
    assert their_invoices and set(their_invoices) == {WebhookStatus.IGNORED}, rows
    # Ours is applied: PROCESSED (the update Stripe made on its own, not an echo of our write).
    ours = {status for kind, obj, status in rows if obj == sub_id and kind == "customer.subscription.updated"}
    assert WebhookStatus.PROCESSED in ours, rows
