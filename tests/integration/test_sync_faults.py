"""The sync under faults, each test on its own sandbox (faults and the clock stay private).

429 storms, 500s and slow answers; dropped webhooks caught up from the events list; usage on
the renewal invoice, billed once; a `tollgate worker` process killed with SIGKILL mid-sync.
After the system is quiet: one Stripe customer per synced customer, one Stripe subscription
per synced subscription, and Stripe equal to the desired state (reconcile changes nothing).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import stripe
from sqlalchemy import func, select, update

from app.billing.integration import IntegrationService
from app.billing.jobs import catch_up, drain, reconcile_all
from app.billing.models import StripeIntegration, SyncState, SyncStatus, WebhookEvent, WebhookStatus
from app.billing.sync import RateBudget, SyncEngine
from app.billing.webhooks import process_pending
from app.customers.models import Customer
from app.db import Database, utcnow
from app.environments.models import Environment
from app.environments.service import create_environment
from app.migrate import upgrade_to_head
from app.settings import Settings
from app.subscriptions.models import Subscription
from tests.support.databases import _admin, postgres_url, sqlite_url
from tests.support.live_app import LiveApp, live_app
from tests.support.sandbox import RunningSandbox, running_sandbox


@dataclass
class World:
    sandbox: RunningSandbox
    live: LiveApp
    database: Database
    http: httpx.Client
    stripe: stripe.StripeClient
    env_pk: int

    def ok(self, method: str, path: str, json: Any = None, status: int | None = None) -> Any:
        response = self.http.request(method, "/api/v1" + path, json=json)
        expected = status or (201 if method == "POST" else 200)
        assert response.status_code == expected, (path, response.status_code, response.text)
        return response.json()

    def close(self) -> None:
        self.http.close()

    def engine(self) -> SyncEngine:
        return SyncEngine(self.database, self.live.settings, RateBudget(1000))


@pytest.fixture
def private_sandbox() -> Iterator[RunningSandbox]:
    with running_sandbox() as sandbox:
        yield sandbox


@pytest.fixture
async def world(
    settings: Settings, database: Database, private_sandbox: RunningSandbox
) -> AsyncIterator[World]:
    own = msgspec.structs.replace(
        settings, stripe_sandbox_url=private_sandbox.base_url, stripe_api_base=private_sandbox.base_url
    )
    async with database.session() as session:
        created = await create_environment(session, f"f-{uuid.uuid4().hex[:10]}")
    with live_app(own) as live:
        http = httpx.Client(base_url=live.url, headers={"X-API-KEY": created.server_key}, timeout=30)
        world = World(private_sandbox, live, database, http, private_sandbox.client(), 0)
        world.ok("PUT", "/integrations/stripe", {"mode": "SANDBOX"}, status=200)
        async with database.session() as session:
            env_pk = await session.scalar(
                select(Environment.pk).where(Environment.slug == created.environment_id)
            )
            row = await session.scalar(
                select(StripeIntegration).where(StripeIntegration.environment_pk == env_pk)
            )
            assert row is not None
            world.env_pk = row.environment_pk
            world.stripe = private_sandbox.client(IntegrationService(session, live.settings).api_key(row))
        try:
            yield world
        finally:
            world.close()


def flat(amount: int) -> dict[str, Any]:
    return {"billingPeriod": "MONTHLY", "currency": "usd", "billingModel": "FLAT_FEE", "amount": amount}


def seed(world: World, customers: int) -> None:
    world.ok("POST", "/products", {"id": "acme", "name": "Acme"})
    world.ok(
        "POST",
        "/plans",
        {"id": "basic", "productId": "acme", "name": "Basic", "pricingType": "PAID", "charges": [flat(1000)]},
    )
    world.ok("POST", "/plans/basic/publish", status=200)
    for i in range(customers):
        world.ok("POST", "/customers", {"id": f"c{i}", "name": f"Customer {i}"})
        world.ok(
            "POST", "/subscriptions", {"customerId": f"c{i}", "planId": "basic", "subscriptionId": f"s{i}"}
        )


async def drain_through_backoff(world: World, engine: SyncEngine) -> None:
    """Drain, jumping our clock past every retry delay (no sleeping)."""
    for hours in range(1, 30):
        await drain(engine, now=utcnow() + dt.timedelta(hours=hours))
        async with world.database.session() as session:
            pending = await session.scalar(
                select(func.count())
                .select_from(SyncState)
                .where(SyncState.environment_pk == world.env_pk, SyncState.status == SyncStatus.PENDING)
            )
        if not pending:
            return
    raise AssertionError("the sync did not settle")


async def assert_invariant(world: World, customers: int) -> None:
    stripe_customers = world.stripe.v1.customers.list(params={"limit": 100}).data
    refs = sorted(c.metadata["tollgateEntityId"] for c in stripe_customers if c.metadata)
    assert refs == sorted(f"c{i}" for i in range(customers)), "exactly one Stripe customer per customer"
    subs = world.stripe.v1.subscriptions.list(params={"limit": 100, "status": "all"}).data
    sub_refs = sorted(s.metadata["tollgateEntityId"] for s in subs if s.metadata)
    assert sub_refs == sorted(f"s{i}" for i in range(customers)), "exactly one Stripe subscription each"
    async with world.database.session() as session:
        states = (
            await session.execute(
                select(SyncState.entity_type, SyncState.status).where(
                    SyncState.environment_pk == world.env_pk
                )
            )
        ).all()
        billing_ids = (
            await session.scalars(
                select(Subscription.billing_id).where(Subscription.environment_pk == world.env_pk)
            )
        ).all()
    assert all(status is SyncStatus.SYNCED for _, status in states), states
    assert sorted(b or "" for b in billing_ids) == sorted(s.id for s in subs)
    report = await reconcile_all(world.database, world.live.settings, environment_pk=world.env_pk)
    assert report.changed == 0 and report.failed == 0, report


async def test_429_storm_500s_and_slow_answers(world: World) -> None:
    seed(world, 6)
    control = world.sandbox.control
    control.add_fault(method="POST", path="/v1/customers", count=5, status=429)
    control.add_fault(method="POST", path="/v1/subscriptions", count=3, status=500)
    control.add_fault(method="POST", path="/v1/prices", count=2, status=200, delay_ms=300)
    control.add_fault(method="GET", path="/v1/products/*", count=2, status=503)
    engine = world.engine()
    await drain_through_backoff(world, engine)
    await assert_invariant(world, 6)
    # Errors were seen and retried, not turned into FAILED (read from the sync states: the
    # engine's counters are shared by every test of the run).
    assert world.ok("GET", "/sync-states?status=FAILED&limit=100")["data"] == []


async def test_permanent_error_is_failed_with_message_and_retry(world: World) -> None:
    seed(world, 1)
    world.sandbox.control.add_fault(
        method="POST",
        path="/v1/customers",
        count=1,
        status=400,
        error_type="invalid_request_error",
        message="Invalid email address: nope",
    )
    await drain(world.engine())
    state = world.ok("GET", "/sync-states?entityType=customer")["data"][0]
    assert state["status"] == "FAILED" and state["errorMessage"] == "Invalid email address: nope"
    assert state["canRetry"]
    world.ok("POST", "/sync-states/customer/c0/retry", status=202)
    await drain(world.engine())
    assert world.ok("GET", "/sync-states?entityType=customer")["data"][0]["status"] == "SYNCED"


async def test_dropped_webhooks_are_caught_up(world: World) -> None:
    seed(world, 1)
    await drain(world.engine())
    sub_id = world.ok("GET", "/sync-states?entityType=subscription")["data"][0]["billingId"]
    assert world.ok("GET", "/subscriptions/s0")["status"] == "ACTIVE"
    # Earlier deliveries first: any event about the subscription re-fetches it (and would see the cancel).
    world.sandbox.control.drain(timeout=3)
    await process_pending(world.database, world.live.settings, utcnow(), environment_pk=world.env_pk)
    world.sandbox.control.webhook_faults(drop=1.0)
    world.stripe.v1.subscriptions.cancel(sub_id)
    world.sandbox.control.drain(timeout=3)
    await process_pending(world.database, world.live.settings, utcnow(), environment_pk=world.env_pk)
    assert world.ok("GET", "/subscriptions/s0")["status"] != "CANCELED"
    stored = await catch_up(world.database, world.live.settings)
    assert stored >= 1
    await process_pending(world.database, world.live.settings, utcnow(), environment_pk=world.env_pk)
    assert world.ok("GET", "/subscriptions/s0")["status"] == "CANCELED"
    # A second catch-up finds nothing new.
    assert await catch_up(world.database, world.live.settings) == 0


async def paying_subscription(world: World, plan: str) -> tuple[str, str]:
    """Customer c0 on `plan`, with a card in Stripe (what Checkout would do), synced."""
    world.ok("POST", "/customers", {"id": "c0"})
    # The customer reaches Stripe first and gets its card there; then the subscription.
    world.ok("PATCH", "/integrations/stripe", {"syncSubscriptions": False})
    world.ok("POST", "/subscriptions", {"customerId": "c0", "planId": plan, "subscriptionId": "s0"})
    await drain(world.engine())
    customer_id = world.ok("GET", "/sync-states?entityType=customer")["data"][0]["billingId"]
    pm = world.stripe.v1.payment_methods.attach("pm_card_visa", params={"customer": customer_id})
    world.stripe.v1.customers.update(
        customer_id, params={"invoice_settings": {"default_payment_method": pm.id}}
    )
    async with world.database.session() as session:
        await session.execute(
            update(Customer).where(Customer.billing_id == customer_id).values(has_payment_method=True)
        )
    world.ok("PATCH", "/integrations/stripe", {"syncSubscriptions": True})
    await drain(world.engine())
    sub_id = world.ok("GET", "/sync-states?entityType=subscription")["data"][0]["billingId"]
    return customer_id, sub_id


async def test_failed_renewal_payment_makes_the_subscription_payment_pending(world: World) -> None:
    world.ok("POST", "/products", {"id": "acme", "name": "Acme"})
    world.ok(
        "POST",
        "/plans",
        {"id": "basic", "productId": "acme", "name": "Basic", "pricingType": "PAID", "charges": [flat(1000)]},
    )
    world.ok("POST", "/plans/basic/publish", status=200)
    customer_id, sub_id = await paying_subscription(world, "basic")
    assert world.stripe.v1.subscriptions.retrieve(sub_id).status == "active"
    failing = world.stripe.v1.payment_methods.attach(
        "pm_card_chargeCustomerFail", params={"customer": customer_id}
    )
    world.stripe.v1.customers.update(
        customer_id, params={"invoice_settings": {"default_payment_method": failing.id}}
    )
    period_end = world.stripe.v1.subscriptions.retrieve(sub_id)["items"].data[0].current_period_end
    world.sandbox.control.advance_clock(period_end - world.sandbox.control.status()["now"] + 3700)
    world.sandbox.control.drain(timeout=5)
    await process_pending(world.database, world.live.settings, utcnow(), environment_pk=world.env_pk)
    assert world.stripe.v1.subscriptions.retrieve(sub_id).status == "past_due"
    assert world.ok("GET", "/subscriptions/s0")["status"] == "PAYMENT_PENDING"
    # The card is fixed and the invoice paid: invoice.paid brings it back to ACTIVE.
    good = world.stripe.v1.payment_methods.attach("pm_card_visa", params={"customer": customer_id})
    invoice = world.stripe.v1.subscriptions.retrieve(sub_id).latest_invoice
    assert isinstance(invoice, str)
    world.stripe.v1.invoices.pay(invoice, params={"payment_method": good.id})
    world.sandbox.control.drain(timeout=5)
    await process_pending(world.database, world.live.settings, utcnow(), environment_pk=world.env_pk)
    assert world.ok("GET", "/subscriptions/s0")["status"] == "ACTIVE"


async def _metered_subscription_with_usage(world: World) -> str:
    """A paid plan with a usage-based charge, synced; 42 calls reported in its first period."""
    world.ok(
        "POST",
        "/features",
        {
            "id": "api-calls",
            "name": "API calls",
            "featureType": "METERED",
            "meterType": "INCREMENTAL",
            "unitPlural": "calls",
        },
    )
    world.ok("POST", "/products", {"id": "acme", "name": "Acme"})
    world.ok(
        "POST",
        "/plans",
        {
            "id": "metered",
            "productId": "acme",
            "name": "Metered",
            "pricingType": "PAID",
            "entitlements": [{"featureId": "api-calls", "usageLimit": 100000, "resetPeriod": "MONTH"}],
            "charges": [
                flat(1000),
                {
                    "billingPeriod": "MONTHLY",
                    "currency": "usd",
                    "billingModel": "USAGE_BASED",
                    "amount": 3,
                    "featureId": "api-calls",
                },
            ],
        },
    )
    world.ok("POST", "/plans/metered/publish", status=200)
    _, sub_id = await paying_subscription(world, "metered")
    world.ok(
        "POST",
        "/usage",
        {
            "usages": [
                {"customerId": "c0", "featureId": "api-calls", "value": v, "idempotencyKey": f"u{v}"}
                for v in (40, 2)
            ]
        },
        status=200,
    )
    return sub_id


async def test_usage_is_billed_once_on_the_renewal_invoice(world: World) -> None:
    sub_id = await _metered_subscription_with_usage(world)
    integration = world.ok("GET", "/integrations/stripe")
    assert integration["invoiceGracePeriodSeconds"] == 3600 and integration["gracePeriodOk"] is True
    period_end = world.stripe.v1.subscriptions.retrieve(sub_id)["items"].data[0].current_period_end
    # Just past the renewal: the invoice is a draft for the next hour (the grace period).
    world.sandbox.control.advance_clock(period_end - world.sandbox.control.status()["now"] + 60)
    world.sandbox.control.drain(timeout=5)
    await _replay_invoice_events(world, 3)  # the first pass bills; replays (and redeliveries) must not
    invoices = world.stripe.v1.invoices.list(params={"subscription": sub_id, "limit": 10}).data
    cycle = [i for i in invoices if i.billing_reason == "subscription_cycle"]
    assert len(cycle) == 1
    items = world.stripe.v1.invoice_items.list(params={"invoice": cycle[0].id}).data
    usage = [i for i in items if i.metadata and "tollgateChargeId" in i.metadata]
    assert len(usage) == 1
    assert usage[0].quantity == 42 and usage[0].amount == 126
    world.sandbox.control.advance_clock(3601)
    final = world.stripe.v1.invoices.retrieve(cycle[0].id)
    assert final.status == "paid" and final.amount_paid == 1000 + 126


async def _replay_invoice_events(world: World, times: int) -> None:
    for _ in range(times):
        await process_pending(world.database, world.live.settings, utcnow(), environment_pk=world.env_pk)
        async with world.database.session() as session:
            await session.execute(
                update(WebhookEvent)
                .where(
                    WebhookEvent.environment_pk == world.env_pk, WebhookEvent.event_type == "invoice.created"
                )
                .values(status=WebhookStatus.RECEIVED)
            )
    await process_pending(world.database, world.live.settings, utcnow(), environment_pk=world.env_pk)


async def test_usage_of_an_invoice_finalized_too_early_goes_on_the_next_one(world: World) -> None:
    sub_id = await _metered_subscription_with_usage(world)
    period_end = world.stripe.v1.subscriptions.retrieve(sub_id)["items"].data[0].current_period_end
    # The event is handled only after the grace period: the renewal invoice is final by then.
    world.sandbox.control.advance_clock(period_end - world.sandbox.control.status()["now"] + 3700)
    world.sandbox.control.drain(timeout=5)
    await _replay_invoice_events(world, 3)
    cycle = [
        i
        for i in world.stripe.v1.invoices.list(params={"subscription": sub_id, "limit": 10}).data
        if i.billing_reason == "subscription_cycle"
    ]
    assert len(cycle) == 1 and cycle[0].status == "paid" and cycle[0].amount_paid == 1000
    customer = str(cycle[0].customer)
    pending = world.stripe.v1.invoice_items.list(params={"customer": customer, "pending": True}).data
    assert [(i.quantity, i.amount) for i in pending] == [(42, 126)], "billed late, once"
    assert pending[0].metadata is not None and pending[0].metadata["tollgateInvoiceId"] == cycle[0].id
    # The next renewal carries it.
    next_end = world.stripe.v1.subscriptions.retrieve(sub_id)["items"].data[0].current_period_end
    world.sandbox.control.advance_clock(next_end - world.sandbox.control.status()["now"] + 3700)
    world.sandbox.control.drain(timeout=5)
    renewals = [
        i
        for i in world.stripe.v1.invoices.list(params={"subscription": sub_id, "limit": 10}).data
        if i.billing_reason == "subscription_cycle" and i.id != cycle[0].id
    ]
    assert len(renewals) == 1 and renewals[0].amount_paid == 1000 + 126


def _worker(settings: Settings, database_url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TOLLGATE_DATABASE_URL": database_url,
        "TOLLGATE_SECRET": settings.secret,
        "TOLLGATE_PUBLIC_URL": settings.public_url,
        "TOLLGATE_STRIPE_SANDBOX_URL": settings.stripe_sandbox_url or "",
        "TOLLGATE_STRIPE_API_BASE": settings.stripe_api_base or "",
        "TOLLGATE_SYNC_CLAIM_SECONDS": "2",
        "TOLLGATE_STRIPE_RATE_LIMIT": "200",
        "TOLLGATE_LOG_LEVEL": "WARNING",
        "TOLLGATE_VAR_DIR": settings.var_dir,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker"], env=env, cwd=Path(__file__).resolve().parents[2]
    )


async def test_worker_killed_mid_sync_leaves_no_duplicates(
    settings: Settings, private_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    # SQLite: one worker process on a file database. PostgreSQL: two worker processes.
    pg_name = None
    if settings.is_sqlite:
        url, processes = sqlite_url(tmp_path), 1
    else:
        pg_name = f"tollgate_kill_{uuid.uuid4().hex[:10]}"
        await _admin(f'CREATE DATABASE "{pg_name}"')
        url, processes = postgres_url(pg_name), 2
    database = Database(url)
    try:
        await upgrade_to_head(database)
        own = msgspec.structs.replace(
            settings,
            database_url=url,
            stripe_sandbox_url=private_sandbox.base_url,
            stripe_api_base=private_sandbox.base_url,
        )
        async with database.session() as session:
            created = await create_environment(session, "killed")
        with live_app(own) as live:
            http = httpx.Client(base_url=live.url, headers={"X-API-KEY": created.server_key}, timeout=30)
            world = World(private_sandbox, live, database, http, private_sandbox.client(), 1)
            world.ok("PUT", "/integrations/stripe", {"mode": "SANDBOX"}, status=200)
            async with database.session() as session:
                row = await session.scalar(select(StripeIntegration))
                assert row is not None
                world.env_pk = row.environment_pk
                world.stripe = private_sandbox.client(IntegrationService(session, own).api_key(row))
            count = 12
            seed(world, count)
            # Slow Stripe answers so the kill lands while requests are in flight.
            private_sandbox.control.add_fault(method="POST", path="/v1/*", status=200, delay_ms=150)
            workers = [_worker(live.settings, url) for _ in range(processes)]
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    async with database.session() as session:
                        done = await session.scalar(
                            select(func.count())
                            .select_from(SyncState)
                            .where(SyncState.status == SyncStatus.SYNCED)
                        )
                    if (done or 0) >= 4:
                        break
                    await asyncio.sleep(0.05)
                for worker in workers:
                    worker.send_signal(signal.SIGKILL)
                    worker.wait(timeout=10)
            finally:
                for worker in workers:
                    if worker.poll() is None:
                        worker.kill()
            private_sandbox.control.clear_faults()
            workers = [_worker(live.settings, url) for _ in range(processes)]
            try:
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:
                    async with database.session() as session:
                        open_states = await session.scalar(
                            select(func.count())
                            .select_from(SyncState)
                            .where(SyncState.status != SyncStatus.SYNCED)
                        )
                        total = await session.scalar(select(func.count()).select_from(SyncState))
                    if total and not open_states:
                        break
                    await asyncio.sleep(0.2)
            finally:
                for worker in workers:
                    worker.send_signal(signal.SIGKILL)
                    worker.wait(timeout=10)
            await assert_invariant(world, count)
            world.close()
    finally:
        await database.dispose()
        if pg_name is not None:
            await _admin(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
